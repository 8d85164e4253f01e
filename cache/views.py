"""The embedded sink: `<cache>/alphahome.duckdb`, a catalogue of every cached dataset.

Each dataset of the cache appears as `<layer>.<name>` (`raw.daily`, `pit.indicators`,
`factors.p`), the same schema and table names as in PostgreSQL: views over the Parquet
files by default, so analysts always see the cache as it is, or native tables holding a
copy of the data with `materialize=True` (`[sinks.duckdb] materialize = true`: faster
queries, a file as large as the data, a snapshot as of the rebuild). Either way the file
is built under a temporary name and renamed over the old one, so a reader holding the
old file open is never blocked and never sees a half-built catalogue. This is also the
sink `ah load` uses when no database URL is configured.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from cache.atomic import atomic_path
from cache.layout import LAYERS, CacheLayout


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rebuild_catalog(layout: CacheLayout, materialize: bool = False) -> dict[str, list[str]]:
    """Rebuild the catalogue of every dataset in the cache; returns the names per schema.

    Views by default, tables with `materialize`. Paths in the views are absolute, so
    the file can be opened from any working directory (`duckdb -readonly
    data/alphahome.duckdb`).
    """
    kind = "TABLE" if materialize else "VIEW"
    layout.root.mkdir(parents=True, exist_ok=True)
    built: dict[str, list[str]] = {}
    with atomic_path(layout.duckdb_path) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            for layer in LAYERS:
                names = layout.datasets(layer)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(layer)}")
                for name in names:
                    glob = _literal(layout.glob(layer, name))
                    con.execute(
                        f"CREATE OR REPLACE {kind} {_quote(layer)}.{_quote(name)} AS "
                        f"SELECT * FROM read_parquet({glob}, hive_partitioning = false, "
                        "union_by_name = true)"
                    )
                built[layer] = names
            con.execute("CHECKPOINT")
        finally:
            con.close()
        wal = Path(f"{tmp}.wal")
        if wal.exists():
            os.remove(wal)
    return built
