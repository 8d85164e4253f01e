"""Load a table whose scope values span files (the PIT stock tables) in one transaction.

A PIT stock table's stock may have rows in its bucket file and in any number of delta
files (`TableSpec.spans_files`); no row is in two files, and the table is the union of
every file's rows. So a partition cannot be loaded on its own as one that owns its
stocks (`sinks.postgres.load_partition` would delete a stock's rows that another file
holds). Instead, per table and in ONE transaction under the table's lock:
1. each changed file (read whole, with its per-stock fingerprints) is compared with its
   record in `ops.load_state`, read under the lock: a stock new to the file is
   *added* (its rows are new rows of the table: the file is a delta, or took the stock
   on a bucket's merge); a stock whose fingerprint differs, or that left the file, is
   *rewritten*, as is every stock of a file that left the cache;
2. the rewritten stocks' rows are gathered from EVERY present file (a changed file's
   rows are in memory; an unchanged file that holds one of them, by its record, is
   read with the stocks pushed down as a filter), the added stocks' rows from the
   files that added them;
3. ONE merge with the table's rows of those stocks: new rows inserted, changed rows
   rewritten, and rows gone deleted for rewritten stocks only (an added stock keeps
   the rows other files gave it);
4. every changed file recorded and every removed file's record deleted.
A day's new delta file thus costs its own read and one merge of its stocks' rows,
whatever the number of bucket files; a crash leaves the table and its records as
they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_manager.dbapi import Connection, Cursor

from foundation.crashpoints import crash_point
from sinks.ddl import ARROW_FOR_PG, TableSpec, quote_ident
from sinks.postgres import (
    PartitionSource,
    _begin,
    _key_match,
    _list_param,
    _pause_for_tests,
    _reader,
    _record,
    _transaction,
    apply_diff,
    ensure_table,
    fetch_row,
    fit_rows,
    table_columns,
    values_differ,
)

__all__ = ["SpanLoad", "SpanRecord", "load_spanning", "span_changes"]

ReadRows = Callable[[str, Sequence[str]], pa.Table]
"""(partition, scope values) -> that present file's rows of those values, prepared."""


@dataclass(frozen=True)
class SpanRecord:
    """A partition's record in `ops.load_state`: its sha256 and slice fingerprints."""

    sha256: str
    fingerprints: dict[str, str]


@dataclass
class SpanLoad:
    """What loading a spanning table did: partitions whose content was loaded, whose
    record was only refreshed (same content), and forgotten; row counts."""

    loaded: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    method: Literal["copy", "merge", "unchanged"] = "unchanged"
    lock_waited: bool = False
    seconds: float = 0.0


def span_changes(
    fresh: Mapping[str, str], recorded: Mapping[str, str] | None
) -> tuple[set[str], set[str]]:
    """(rewritten, added) scope values of one file, from its fresh fingerprints (value ->
    fingerprint) and those recorded at its last load (None: a file never loaded).

    Added: values the file did not hold before (all of a new file's). Rewritten: values
    whose fingerprint changed or that left the file. Pure."""
    if recorded is None:
        return set(), set(fresh)
    added = {v for v in fresh if v not in recorded}
    rewritten = {v for v, fp in recorded.items() if fresh.get(v) != fp}
    return rewritten, added


def _fingerprints(source: PartitionSource) -> dict[str, str]:
    fps = source.fingerprints
    return dict(zip(fps["value"].to_pylist(), fps["fingerprint"].to_pylist(), strict=True))


def _records(cur: Cursor, spec: TableSpec) -> dict[str, SpanRecord]:
    """Every partition's record of the table, read under its lock."""
    cur.execute(
        "SELECT partition, content_sha256, slice_values, slice_fingerprints "
        "FROM ops.load_state WHERE table_name = $1",
        (spec.qualified,),
    )
    return {
        partition: SpanRecord(sha, dict(zip(values, fps, strict=True)))
        for partition, sha, values, fps in cur.fetchall()
    }


def _of_values(rows: pa.Table, column: str, values: set[str]) -> pa.Table:
    if not values:
        return rows.slice(0, 0)
    wanted = pa.array(sorted(values), pa.string())
    return rows.filter(pc.is_in(rows[column].cast(pa.string()), value_set=wanted))


def load_spanning(
    conn: Connection,
    spec: TableSpec,
    sources: Sequence[PartitionSource],
    present: frozenset[str],
    read_rows: ReadRows,
    exists: Callable[[str], bool],
    force: bool = False,
) -> SpanLoad:
    """Bring a spanning table up to date with its files in one transaction (see the
    module docstring): `sources` are the changed files, read; `present` every file of
    the table listed in the cache; `read_rows` reads a present file's rows of some scope
    values; `exists` says whether a file is in the cache now (a recorded file missing
    from `present` may have been written, and loaded by another loader, since the
    listing: it is kept, not forgotten). With `force`, every value of every source is
    rewritten."""
    assert spec.scope is not None and spec.spans_files
    scope = spec.scope
    start = time.perf_counter()
    outcome = SpanLoad()
    with _transaction(conn) as cur:
        outcome.lock_waited = _begin(cur, spec)
        existing = table_columns(cur, spec)
        records = _records(cur, spec) if existing is not None else {}
        rewritten: set[str] = set()
        added: set[str] = set()
        changed: list[tuple[PartitionSource, dict[str, str]]] = []
        for source in sources:
            before = records.get(source.partition)
            if not force and before is not None and before.sha256 == source.content_sha256:
                outcome.touched.append(source.partition)
                continue
            fresh = _fingerprints(source)
            gone, new = span_changes(fresh, before.fingerprints if before else None)
            if force:
                gone, new = gone | set(fresh), set()
            rewritten |= gone
            added |= new
            changed.append((source, fresh))
        outcome.loaded = [source.partition for source, _ in changed]
        read = {source.partition for source in sources}
        unlisted = sorted(set(records) - present - read)
        outcome.forgotten = [partition for partition in unlisted if not exists(partition)]
        others = (present | set(unlisted)) - read - set(outcome.forgotten)
        for partition in outcome.forgotten:
            rewritten |= set(records[partition].fingerprints)
        added -= rewritten

        pieces = [  # a changed file's rows of its rewritten and added values
            (source.partition, _of_values(source.rows, scope, (rewritten | added) & set(fresh)))
            for source, fresh in changed
        ]
        loaded = set(outcome.loaded)
        for source in sources:  # a file whose content equals its record: rewritten values
            if source.partition not in loaded:
                held = rewritten & set(records[source.partition].fingerprints)
                pieces.append((source.partition, _of_values(source.rows, scope, held)))
        for partition in sorted(others):  # unchanged files holding rewritten values
            before = records.get(partition)
            needed = sorted(rewritten.intersection(before.fingerprints)) if before else []
            if needed:
                pieces.append((partition, read_rows(partition, needed)))
        pieces = [(partition, rows) for partition, rows in pieces if rows.num_rows]
        columns = existing
        for partition, rows in pieces:
            columns = ensure_table(cur, spec, rows.schema, partition, columns)
        if columns is None and sources:  # a new table, no rows: made from the first file
            columns = ensure_table(cur, spec, sources[0].rows.schema, sources[0].partition, None)
        crash_point("load-ddl")
        if columns is not None and (rewritten or added):
            rows = _staged_rows([rows for _, rows in pieces], columns)
            counts = _merge(cur, spec, columns, rows, sorted(rewritten), sorted(added))
            outcome.inserted, outcome.updated, outcome.deleted, outcome.method = counts
        for source in sources:
            _record(cur, spec, source.record())
        cur.execute(
            "DELETE FROM ops.load_state WHERE table_name = $1 AND partition = ANY($2)",
            _forget_param(spec, outcome.forgotten),
        )
        _pause_for_tests(spec, f"{len(sources)} changed file(s)")
        crash_point("load-commit")
        conn.commit()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _forget_param(spec: TableSpec, partitions: list[str]) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array([spec.qualified]), pa.array([partitions], pa.list_(pa.string()))],
        names=["t", "p"],
    )


def _staged_rows(pieces: list[pa.Table], columns: Mapping[str, str]) -> pa.Table:
    """The pieces as one table with every column of the table, in its types (a column
    a file lacks is null)."""
    schema = pa.schema([pa.field(name, ARROW_FOR_PG[typ]) for name, typ in columns.items()])
    fitted = []
    for piece in pieces:
        rows = fit_rows(piece, columns)
        n = rows.num_rows
        fitted.append(
            pa.Table.from_arrays(
                [
                    rows[f.name] if f.name in rows.column_names else pa.nulls(n, f.type)
                    for f in schema
                ],
                schema=schema,
            )
        )
    return pa.concat_tables(fitted) if fitted else schema.empty_table()


def _merge(
    cur: Cursor,
    spec: TableSpec,
    columns: Mapping[str, str],
    rows: pa.Table,
    rewritten: list[str],
    added: list[str],
) -> tuple[int, int, int, Literal["copy", "merge"]]:
    """Write `rows` (every row of the rewritten values, the added rows of the added
    ones): a straight COPY when the table holds no row of those values, else ONE hash
    full join with the table's rows of them, deleting the rows gone of rewritten values
    only. (inserted, updated, deleted, method)."""
    assert spec.scope is not None
    target = spec.sql_name
    scope = quote_ident(spec.scope)
    scope_type = columns[spec.scope]
    every = _list_param(pa.array(sorted({*rewritten, *added}), pa.string()))
    cur.execute(  # one index probe per value
        f"SELECT EXISTS (SELECT 1 FROM unnest($1::{scope_type}[]) v "
        f"WHERE EXISTS (SELECT 1 FROM {target} t WHERE t.{scope} = v))",
        every,
    )
    if not fetch_row(cur)[0]:
        ordered = rows.sort_by([(k, "ascending", "at_end") for k in spec.key])
        cur.adbc_ingest(spec.name, _reader(ordered), mode="append", db_schema_name=spec.schema)
        return rows.num_rows, 0, 0, "copy"

    all_columns = list(columns)
    column_list = ", ".join(quote_ident(c) for c in all_columns)
    cur.execute(f"CREATE TEMP TABLE _ah_stage AS SELECT {column_list} FROM {target} WITH NO DATA")
    cur.adbc_ingest("_ah_stage", _reader(rows), mode="append", temporary=True)
    params: Any = pa.record_batch(
        [
            pa.array([pa.array(sorted({*rewritten, *added}))], pa.list_(pa.string())),
            pa.array([pa.array(rewritten, pa.string())], pa.list_(pa.string())),
        ],
        names=["every", "rewritten"],
    )
    cur.execute(
        f"CREATE TEMP TABLE _ah_diff AS SELECT o.ctid AS _ah_old, s.* "
        f"FROM (SELECT true AS _ah_in, {column_list} FROM _ah_stage) s FULL JOIN "
        f"(SELECT ctid, * FROM {target} WHERE {scope} = ANY($1::{scope_type}[])) o "
        f"ON {_key_match(spec, columns)} "
        f"WHERE CASE WHEN s._ah_in IS NULL THEN o.{scope} = ANY($2::{scope_type}[]) "
        f"ELSE o.ctid IS NULL OR {values_differ(spec, columns)} END",
        params,
    )
    inserted, updated, deleted = apply_diff(cur, spec, all_columns, ["_ah_stage"])
    return inserted, updated, deleted, "merge"
