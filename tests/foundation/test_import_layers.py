"""The layers of the house, checked from the imports of every product module.

Every import counts: module level, inside functions, and under `TYPE_CHECKING`. The
rules (README, Architecture):
- `foundation` imports no other layer;
- `factors` is pure maths: only itself, `foundation.errors` and `.exports`, polars, numpy and
  side-effect-free standard modules;
- `cache` never imports `pipeline` or `sinks`;
- `sinks` never imports `pipeline` (sources included);
- nothing imports `cli`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.foundation.product import LAYERS, ROOT, module_name, product_files

PURE_STDLIB = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "itertools",
    "math",
    "operator",
    "typing",
}
PURE_THIRD_PARTY = {"polars", "numpy"}
PURE_FOUNDATION = {"foundation.errors", "foundation.exports"}


def imported(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module the file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def violations(rule: str, path: Path, names: set[str]) -> list[str]:
    """What the module's imports break of one layer rule."""
    top = {n.split(".")[0] for n in names}
    layer = module_name(path).split(".")[0]
    bad: list[str] = []
    if "cli" in top:
        bad.append("imports cli")
    if rule == "foundation" and layer == "foundation":
        bad += [n for n in names if n.split(".")[0] in LAYERS and n.split(".")[0] != "foundation"]
    if rule == "factors" and layer == "factors":
        allowed = {"factors", *PURE_STDLIB, *PURE_THIRD_PARTY}
        bad += [n for n in names if n.split(".")[0] not in allowed and n not in PURE_FOUNDATION]
    if rule == "cache" and layer == "cache":
        bad += [n for n in names if n.split(".")[0] in ("pipeline", "sinks")]
    if rule == "sinks" and layer == "sinks":
        bad += [n for n in names if n.split(".")[0] == "pipeline"]
    return bad


@pytest.mark.parametrize("rule", ["foundation", "factors", "cache", "sinks"])
def test_layer_rules_hold(rule: str) -> None:
    broken = {
        module_name(p): sorted(v)
        for p in product_files()
        if (v := violations(rule, p, imported(p)))
    }
    assert broken == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """A planted violation of each rule is found (the checker itself can fail)."""
    planted = {
        "factors": "import duckdb\nfrom cache.layout import CacheLayout\n",
        "cache": "def f() -> None:\n    from pipeline.sync import runner\n",
        "sinks": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from pipeline.sources import Source\n",
        "foundation": "from cache import layout\n",
    }
    for layer, source in planted.items():
        fake = ROOT / layer / "_planted_for_test.py"
        assert violations(layer, fake, imported(fake, source)), layer
    assert violations("cache", ROOT / "cache" / "x.py", {"cli"}) == ["imports cli"]


def test_nothing_imports_cli() -> None:
    users = [
        module_name(p)
        for p in product_files()[1:]
        if "cli" in {n.split(".")[0] for n in imported(p)}
    ]
    assert users == []
