"""The embedded sink: `<cache>/alphahome.duckdb`, a catalogue of every cached dataset.

Each dataset of the cache appears as `<layer>.<name>` (`raw.daily`, `pit.indicators`,
`factors.p`), the same schema and table names as in PostgreSQL: views over the Parquet
files by default, so analysts always see the cache as it is, or native tables holding a
copy of the data with `materialize=True` (`[sinks.duckdb] materialize = true`: faster
queries, a file as large as the data, a snapshot as of the rebuild). Either way the file
is built under a temporary name and renamed over the old one, so a reader holding the
old file open is never blocked and never sees a half-built catalogue. The sink `ah load`
uses when no database URL is configured (`sinks.duckdb_sink.DuckDBSink`) rebuilds it here.

`refresh_catalog(settings)` is how every caller (the sync, `ah pit`, `ah factors`, the
load) rebuilds the file: it alone reads `[sinks.duckdb] materialize`, so a materialized
catalogue stays materialized whoever rebuilds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from cache.atomic import atomic_path
from cache.layout import LAYERS, CacheLayout
from cache.quarantine import sweep_unreadable
from foundation.config import Settings


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def catalog_materialized(settings: Settings) -> bool:
    """True when the catalogue holds native tables (a copy), False for views."""
    return settings.sinks.duckdb.materialize


def refresh_catalog(settings: Settings, early: bool = False) -> dict[str, list[str]] | None:
    """Rebuild the catalogue file as the settings want it (views, or tables when
    materialized); the names per schema.

    `early` is a mid-sync refresh that only shows a newly arrived dataset at once: a
    materialized catalogue skips it (None), as it would copy the whole cache for every
    new dataset; the rebuild after the sync copies it once.
    """
    materialize = catalog_materialized(settings)
    if early and materialize:
        return None
    return rebuild_catalog(CacheLayout(settings.cache.dir), materialize=materialize)


def rebuild_catalog(layout: CacheLayout, materialize: bool = False) -> dict[str, list[str]]:
    """Rebuild the catalogue of every dataset in the cache; returns the names per schema.

    Unreadable Parquet files are quarantined first (`cache.quarantine`). Views by
    default, tables with `materialize`; callers go through `refresh_catalog`,
    which reads the choice from the settings. Paths in the views are absolute, so
    the file can be opened from any working directory (`duckdb -readonly
    data/alphahome.duckdb`).
    """
    kind = "TABLE" if materialize else "VIEW"
    layout.root.mkdir(parents=True, exist_ok=True)
    sweep_unreadable(layout)  # one unreadable file would fail its whole view
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
