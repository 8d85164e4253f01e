"""The product's files and packages, as the structure tests walk them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("foundation", "pipeline", "factors", "sinks", "cache")


def product_files() -> list[Path]:
    """cli.py and every module of the layer packages."""
    files = [ROOT / "cli.py"]
    for layer in LAYERS:
        files.extend(sorted((ROOT / layer).rglob("*.py")))
    return files


def module_name(path: Path) -> str:
    """`pipeline/sync/runner.py` -> `pipeline.sync.runner`."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def packages() -> list[str]:
    """Every package of the product, by dotted name."""
    return [module_name(p) for p in product_files() if p.name == "__init__.py"]
