"""Where every dataset lives in the cache (DESIGN section 4, a contract).

`<root>/<layer>/<name>/…/*.parquet` for the layers raw, pit and factors; internal
state, reports, logs and metrics beside them; `alphahome.duckdb` at the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from foundation.errors import InternalError

Layer = Literal["raw", "pit", "factors"]
LAYERS: tuple[Layer, ...] = ("raw", "pit", "factors")


@dataclass(frozen=True)
class CacheLayout:
    """Paths of one cache root. Creates nothing; writers create what they need.

    `state_root` moves the state folder elsewhere (`[state] dir`, for task state and
    locks kept apart from the data); None keeps it at `<root>/state`.
    """

    root: Path
    state_root: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().absolute())
        if self.state_root is not None:
            object.__setattr__(self, "state_root", Path(self.state_root).expanduser().absolute())

    def dataset_dir(self, layer: Layer, name: str) -> Path:
        """The folder holding every Parquet file of one dataset."""
        if layer not in LAYERS:
            msg = f"unknown cache layer {layer!r}; expected one of {', '.join(LAYERS)}"
            raise InternalError(msg)
        return self.root / layer / name

    def glob(self, layer: Layer, name: str) -> str:
        """The glob that reads a dataset as one table (DuckDB `read_parquet`, `pl.scan_parquet`)."""
        return str(self.dataset_dir(layer, name) / "**" / "*.parquet")

    def relative_glob(self, layer: Layer, name: str) -> str:
        """`glob` relative to the cache root (`raw/daily/**/*.parquet`): what the
        catalogue's views name, so a moved cache still reads."""
        self.dataset_dir(layer, name)  # checks the layer
        return f"{layer}/{name}/**/*.parquet"

    def datasets(self, layer: Layer) -> list[str]:
        """Names of the datasets of a layer that hold at least one Parquet file."""
        base = self.root / layer
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and any(p.rglob("*.parquet")))

    @property
    def state_dir(self) -> Path:
        """Manifests, task state and lock files (internal)."""
        return self.state_root if self.state_root is not None else self.root / "state"

    @property
    def reports_dir(self) -> Path:
        """Run reports (JSON and HTML)."""
        return self.root / "reports"

    @property
    def logs_dir(self) -> Path:
        """Rotating log files."""
        return self.root / "logs"

    @property
    def metrics_dir(self) -> Path:
        """The Prometheus textfile."""
        return self.root / "metrics"

    @property
    def duckdb_path(self) -> Path:
        """The analysts' DuckDB catalogue of views (and the embedded sink)."""
        return self.root / "alphahome.duckdb"


STATE_DIR_MODE = 0o700  # hosts, pids and paths: the owner's business only


def make_state_dir(layout: CacheLayout) -> Path:
    """`<cache>/state`, created owner-only (0700) when missing (its mode is left alone
    when it exists: `ah health` reports an open one)."""
    state = layout.state_dir
    if not state.is_dir():
        state.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
        os.chmod(state, STATE_DIR_MODE)
    return state
