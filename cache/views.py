"""The embedded sink: `<cache>/alphahome.duckdb`, a catalogue of every cached dataset.

Each dataset of the cache appears as `<layer>.<name>` (`raw.daily`, `pit.indicators`,
`factors.p`), the same schema and table names as in PostgreSQL: views over the Parquet
files by default, so analysts always see the cache as it is, or native tables holding a
copy of the data with `materialize=True` (`[sinks.duckdb] materialize = true`: faster
queries, a file as large as the data, a snapshot as of the rebuild). Either way the file
is built under a temporary name and renamed over the old one, so a reader holding the
old file open is never blocked and never sees a half-built catalogue. The sink `ah load`
uses when no database URL is configured (`sinks.duckdb_sink.DuckDBSink`) rebuilds it here.

The file opens in every DuckDB from 1.1 on (it is written in the 1.1 storage format,
`STORAGE_VERSION`), and the views name their files relative to the cache root
(`raw/daily/**/*.parquet`), so the cache can be moved or copied whole. DuckDB resolves a
relative path against the working directory, then `file_search_path`: open it from the
cache folder (`cd data && duckdb -readonly alphahome.duckdb`), or through
`open_catalog`, `ah sql` or `ah shell`, which set the search path to the file's folder.

Beside the tables, the "as known at t" macros of `cache.catalogue.asof_sql`
(`pit.income_asof(DATE '2020-06-30')`, `pit.universe_asof(d)`, `pit.daily_qfq(d)`, …),
each created when the tables it reads are in the cache.

`refresh_catalog(settings)` is how every caller (the sync, `ah pit`, `ah factors`, the
load) rebuilds the file: it alone reads `[sinks.duckdb] materialize`, so a materialized
catalogue stays materialized whoever rebuilds it. Views read their files when queried,
so new rows and files need no rebuild: a catalogue of views is rebuilt only when what
it was built from changed (`catalogue_signature`: the datasets, their columns, the
comments and macros, the DuckDB version) or the file itself was replaced or removed;
the signature of the last rebuild is kept in `<state>/catalogue.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import duckdb

from cache.atomic import atomic_path, read_json_document, write_json_atomic
from cache.catalogue.asof_sql import duckdb_sql, macros_for
from cache.catalogue.columns import comments_of
from cache.footers import footer
from cache.layout import LAYERS, CacheLayout, Layer, make_state_dir
from cache.quarantine import sweep_unreadable
from foundation.config import Settings
from foundation.logs import get_logger

log = get_logger("cache.views")

STORAGE_VERSION = "v1.1.0"
"""The DuckDB storage format the catalogue is written in: the oldest DuckDB it must open."""
SIGNATURE_FILE = "catalogue.json"
BIND_ATTEMPTS = 8  # creations of one view whose files a writer changed meanwhile
BIND_PAUSE_S = 0.05  # before the next creation, times the attempts made


def open_catalog(path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Connect to a catalogue file with its folder as DuckDB's `file_search_path`, so
    its views (paths relative to the cache root) read from wherever it now lives.

    The connection keeps the Parquet footers it has read (`parquet_metadata_cache`): a
    view reads every file's footer before it scans, which is most of the cost of a
    selective query (one stock's history) after the first. DuckDB drops a kept footer
    when its file's modification time changes, and the cache replaces files by rename.
    """
    path = Path(path).absolute()
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute(f"SET file_search_path = {_literal(str(path.parent))}")
    con.execute("SET parquet_metadata_cache = true")
    return con


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
    new dataset; the rebuild after the sync copies it once. A catalogue of views whose
    signature is unchanged since its last rebuild is left as it is (its views already
    read every file there is now).
    """
    materialize = catalog_materialized(settings)
    if early and materialize:
        return None
    layout = CacheLayout(settings.cache.dir)
    if materialize:
        return rebuild_catalog(layout, materialize=True)
    sweep_unreadable(layout)  # what the rebuild would sweep first
    built: dict[str, list[str]] = {layer: layout.datasets(layer) for layer in LAYERS}
    signature = catalogue_signature(layout, built)
    if _unchanged(layout, signature):
        return built
    built = rebuild_catalog(layout)
    _remember(layout, signature)
    return built


def _file_version(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return [info.st_ino, info.st_size, info.st_mtime_ns]


def _columns(layout: CacheLayout, layer: Layer, name: str) -> list[list[str]]:
    """The dataset's columns as a view over all its files shows them (union by name,
    in file order), with their Arrow types, from the files' footers."""
    seen: dict[str, str] = {}
    folder = layout.dataset_dir(layer, name)
    for path in sorted(folder.rglob("*.parquet")):
        try:
            schema = footer(path).schema.to_arrow_schema()
        except FileNotFoundError:
            continue  # replaced meanwhile: its successor is in the glob
        for field in schema:
            seen.setdefault(field.name, str(field.type))
    return [[column, kind] for column, kind in seen.items()]


def catalogue_signature(layout: CacheLayout, built: dict[str, list[str]]) -> str:
    """A digest of everything a catalogue of views over `built` is made of: each
    dataset's columns, the column comments, the macros, the DuckDB version and the
    storage format. Equal signatures, equal catalogues."""
    present = {f"{layer}.{name}" for layer, names in built.items() for name in names}
    doc: dict[str, Any] = {
        "duckdb": duckdb.__version__,
        "storage": STORAGE_VERSION,
        "columns": {
            f"{layer}.{name}": _columns(layout, layer, name)
            for layer in LAYERS
            for name in built.get(layer, [])
        },
        "comments": {key: comments_of(key) for key in sorted(present)},
        "macros": [duckdb_sql(macro) for macro in macros_for(present)],
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unchanged(layout: CacheLayout, signature: str) -> bool:
    """Whether the catalogue file is the one last rebuilt, from the same signature."""
    known = read_json_document(layout.state_dir / SIGNATURE_FILE)
    version = _file_version(layout.duckdb_path)
    return version is not None and known == {"signature": signature, "file": version}


def _remember(layout: CacheLayout, signature: str) -> None:
    make_state_dir(layout)
    doc = {"signature": signature, "file": _file_version(layout.duckdb_path)}
    write_json_atomic(doc, layout.state_dir / SIGNATURE_FILE)


def _file_versions(folder: Path) -> dict[str, list[int] | None]:
    """Every Parquet file of a dataset folder with its version (inode, size, mtime)."""
    return {str(p): _file_version(p) for p in folder.rglob("*.parquet")}


def _create_over_files(con: duckdb.DuckDBPyConnection, statement: str, folder: Path) -> None:
    """Run one CREATE of a view or table over a dataset's files, again when its files
    changed while DuckDB opened them: a writer beside the rebuild (a sync compacting
    its monthly files, a PIT build) may remove a file DuckDB has listed, and the
    listing of the next attempt no longer holds it. Each attempt waits a little longer
    first, so a burst of removals (a year's twelve monthly files) is over. An error with
    the files unchanged is the files' own, and is raised."""
    for attempt in range(1, BIND_ATTEMPTS + 1):
        before = _file_versions(folder)
        try:
            con.execute(statement)
            return
        except duckdb.IOException:
            if attempt == BIND_ATTEMPTS or _file_versions(folder) == before:
                raise
            log.debug("catalogue: files of %s changed while read; again", folder.name)
            time.sleep(BIND_PAUSE_S * attempt)


def _comment(con: duckdb.DuckDBPyConnection, built: dict[str, list[str]]) -> None:
    """COMMENT ON each column of the catalogue's tables: the column dictionary's text
    (one batch of statements: a statement each costs a catalogue write)."""
    present = set(
        con.execute("SELECT schema_name, table_name, column_name FROM duckdb_columns()").fetchall()
    )
    statements = [
        f"COMMENT ON COLUMN {_quote(layer)}.{_quote(name)}.{_quote(column)} IS {_literal(text)}"
        for layer, names in built.items()
        for name in names
        for column, text in comments_of(f"{layer}.{name}").items()
        if (layer, name, column) in present
    ]
    if statements:
        con.execute("BEGIN")
        con.execute(";\n".join(statements))
        con.execute("COMMIT")


def rebuild_catalog(layout: CacheLayout, materialize: bool = False) -> dict[str, list[str]]:
    """Rebuild the catalogue of every dataset in the cache; returns the names per schema.

    Unreadable Parquet files are quarantined first (`cache.quarantine`). Views by
    default, tables with `materialize`; callers go through `refresh_catalog`, which
    reads the choice from the settings. Paths in the views are relative to the cache
    root (see the module docstring).
    """
    kind = "TABLE" if materialize else "VIEW"
    layout.root.mkdir(parents=True, exist_ok=True)
    sweep_unreadable(layout)  # one unreadable file would fail its whole view
    built: dict[str, list[str]] = {}
    with atomic_path(layout.duckdb_path) as tmp:
        config: dict[str, str | bool | int | float | list[str]] = {
            "storage_compatibility_version": STORAGE_VERSION
        }
        con = duckdb.connect(str(tmp), config=config)
        try:
            con.execute(f"SET file_search_path = {_literal(str(layout.root))}")
            for layer in LAYERS:
                names = layout.datasets(layer)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(layer)}")
                for name in names:
                    glob = _literal(layout.relative_glob(layer, name))
                    _create_over_files(
                        con,
                        f"CREATE OR REPLACE {kind} {_quote(layer)}.{_quote(name)} AS "
                        f"SELECT * FROM read_parquet({glob}, hive_partitioning = false, "
                        "union_by_name = true)",
                        layout.dataset_dir(layer, name),
                    )
                built[layer] = names
            _comment(con, built)
            present = {f"{layer}.{name}" for layer, names in built.items() for name in names}
            for macro in macros_for(present):
                try:
                    con.execute(duckdb_sql(macro))
                except duckdb.Error as exc:  # a table of another shape: no macro over it
                    log.warning("catalogue: %s not created: %s", macro.qualified, exc)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        wal = Path(f"{tmp}.wal")
        if wal.exists():
            os.remove(wal)
    return built
