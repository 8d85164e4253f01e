"""The PostgreSQL sink: load one cache partition into its table, in one transaction.

A partition (one Parquet file) arrives as an Arrow table, already cast to the sink's
types, checked (no null or duplicate key) and sorted by key (`prepare_rows`), with a
fingerprint per slice: the rows of one value of the table's slice column, i.e. its
first key column (a trade date, a calc date) or, for PIT tables, its scope column (a
stock) (`slice_fingerprints`). Inside one transaction, serialised per table by
`pg_advisory_xact_lock(hashtext('alphahome.' || table))`:
1. the table is created, or widened with ALTER TABLE ADD COLUMN for new cache columns
   (a type conflict is an error);
2. slices whose fingerprint equals the one recorded at the partition's last load are
   left alone (a daily reload of a month file writes the new day only);
3. when the table holds no row of the remaining slices, their rows are COPYed straight
   into the table by `adbc_ingest` (initial loads and new dates run at COPY speed);
4. otherwise they are COPYed into a temporary staging table and ONE hash full join
   with the table's rows of those slices computes the difference: new rows, changed
   rows (any column IS DISTINCT FROM, so NaN and null stay distinct and equal values
   are not rewritten) and, for tables with a scope, rows gone from the partition. Old
   versions of changed and gone rows are deleted by ctid and the new versions
   inserted in key order. Unchanged rows are not touched (ON CONFLICT DO UPDATE …
   WHERE would still lock, and so dirty, every conflicting row);
5. `ops.load_state` records the partition (size, mtime, sha256, rows, slice values and
   fingerprints).
A failure anywhere rolls everything back, so the table is as before; loading the same
data again finds no difference and changes nothing. A table that does not exist yet
is loaded whole in one transaction instead (`load_new_table`): created bare, every
partition COPYed in one stream, then its key and indexes built and every partition
recorded; or by parallel streams, each in its own transaction, into a staging table
(`create_staging`, `copy_to_staging`) that one transaction renames into place, keys
and records (`finish_new_table`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import adbc_driver_manager
import adbc_driver_manager.dbapi
import adbc_driver_postgresql
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_manager.dbapi import Connection, Cursor

from foundation.crashpoints import crash_point
from foundation.errors import AlphahomeError
from foundation.logs import get_logger, register_secrets, scrub
from sinks.ddl import (
    ARROW_FOR_PG,
    FETCHED_AT,
    PG_BIGINT,
    PG_BOOLEAN,
    PG_DATE,
    PG_DOUBLE,
    PG_TEXT,
    PG_TIMESTAMPTZ,
    ROW_HASH,
    TableDefinitionError,
    TableSpec,
    add_columns_sql,
    create_table_sql,
    history_index_sql,
    index_sql,
    key_sql,
    pg_type,
    primary_key_using_index_sql,
    quote_ident,
    row_hash_sql,
)

PAUSE_ENV = "AH_TEST_LOAD_PAUSE_S"
APPLICATION_NAME = "alphahome"
CONNECT_TIMEOUT_S = 10
BATCH_ROWS = 65_536
WORK_MEM = "128MB"
MAINTENANCE_WORK_MEM = "256MB"  # a new table's index builds sort in memory
TEMP_BUFFERS = "256MB"
ANALYZE_SHARE = 0.1  # of the table's rows written by a load: refresh its statistics
FINGERPRINT_SEED = 11

log = get_logger("sinks.postgres")


class DatabaseUnavailableError(AlphahomeError):
    """The server cannot be reached or refuses the login; `reason` is libpq's, one line."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class LoadError(AlphahomeError):
    """The data cannot be loaded as it is (type conflict, null or duplicate key, …)."""


# ------------------------------------------------------------------------------ connecting


def describe_url(url: str) -> str:
    """`user@host:port/dbname` of a PostgreSQL URL, never the password."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = parts.port or 5432
    return f"{user}{parts.hostname}:{port}{parts.path or '/'}"


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def with_password(url: str, password: str) -> str:
    """`url` with `password` set (e.g. one typed at a prompt), percent-encoded."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _libpq_url(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    query.setdefault("application_name", APPLICATION_NAME)
    return urlunsplit(parts._replace(query=urlencode(query)))


def error_reason(exc: BaseException) -> str:
    """The useful part of a driver error: the server's message, or libpq's reason why
    the connection failed, on one line and without secrets."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "ERROR:" in text:
        first = text.rsplit("ERROR:", 1)[1].strip().splitlines()[0]
    reason = first.rsplit(" failed: ", 1)[-1].replace("FATAL:  ", "")
    return scrub(reason.removeprefix("IO: ").removeprefix("[libpq] ").strip())


def connection_lost(exc: BaseException) -> bool:
    """Whether a driver error means the server or the connection is gone (libpq's I/O
    status, SQLSTATE class 08, or a server shutdown 57P01-57P03), not a fault of the
    data: the load then stops instead of trying the next partition or dataset."""
    if not isinstance(exc, adbc_driver_manager.Error):
        return False
    state = exc.sqlstate or ""
    return (
        exc.status_code == adbc_driver_manager.AdbcStatusCode.IO
        or state.startswith("08")
        or state in ("57P01", "57P02", "57P03")
    )


_DATABASES: dict[str, Any] = {}  # libpq URL -> the driver's database object, per process
_DATABASES_LOCK = threading.Lock()


def _database(libpq_url: str) -> Any:
    """The driver's database object for `libpq_url`, made once per process: making one
    logs in and reads the server's type catalogue, which a connection made from it
    does not do again (a second login per connection saved). Shared by threads; kept
    until the process ends."""
    with _DATABASES_LOCK:
        shared = _DATABASES.get(libpq_url)
        if shared is None:
            database = adbc_driver_postgresql.connect(libpq_url)
            shared = adbc_driver_manager.dbapi._SharedDatabase(database)
            _DATABASES[libpq_url] = shared
        return shared


def connect(url: str, autocommit: bool = False) -> Connection:
    """An ADBC connection with the sink's settings; transactions unless `autocommit`.

    A server that is down, unknown or refuses the login raises
    `DatabaseUnavailableError` naming user@host:port/dbname, never the password.
    """
    register_secrets([urlsplit(url).password])
    libpq_url = _libpq_url(url)
    try:
        shared = _database(libpq_url)
        conn = Connection(
            shared, adbc_driver_manager.AdbcConnection(shared._db), autocommit=autocommit
        )
    except adbc_driver_manager.Error as exc:
        with _DATABASES_LOCK:  # a server restarted or a password changed: made anew
            _DATABASES.pop(libpq_url, None)
        reason = error_reason(exc)
        msg = f"cannot connect to PostgreSQL at {describe_url(url)}: {reason}"
        raise DatabaseUnavailableError(msg, reason) from None
    with conn.cursor() as cur:
        # Must be set before the session first touches a temporary table.
        cur.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
    if not autocommit:
        conn.commit()
    return conn


def fetch_row(cur: Cursor) -> tuple[Any, ...]:
    """The one row a statement returns (an aggregate, an EXISTS, a RETURNING)."""
    row = cur.fetchone()
    if row is None:
        msg = "the statement returned no row"
        raise AlphahomeError(msg)
    return row


# ------------------------------------------------------------------------------ table shape


def table_columns(cur: Cursor, spec: TableSpec) -> dict[str, str] | None:
    """Column name -> PostgreSQL type of the table, in order; None when it does not exist.

    Read from the catalogue tables with the statement's snapshot (not `to_regclass`,
    whose cached lookup can miss a table another loader committed while this one
    waited for the lock).
    """
    return column_facts(cur, spec, "format_type(a.atttypid, a.atttypmod)")


def column_facts(cur: Cursor, spec: TableSpec, fact: str) -> dict[str, Any] | None:
    """Column name -> `fact` (an SQL expression over `pg_attribute a`, e.g. the column's
    type or comment) for each column of the table, in order; None when it does not exist."""
    cur.execute(
        f"SELECT a.attname, {fact} FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (spec.schema, spec.name),
    )
    found = dict(cur.fetchall())
    return found or None


def ensure_table(
    cur: Cursor,
    spec: TableSpec,
    schema: pa.Schema,
    partition: str,
    existing: Mapping[str, str] | None,
    with_key: bool = True,
) -> dict[str, str]:
    """Create the table or add the columns it lacks; the table's columns and types.

    `existing` is the table's current columns (None: it does not exist); a table created
    without `with_key` gets its key from `ddl.key_sql` later. Columns whose
    Arrow type is null (no value in this partition) are created only when a later
    partition gives them a type. Creating a table forgets stale `ops.load_state` rows
    of a table that was dropped by hand.
    """
    wanted = [(f.name, pg_type(f.type, f.name)) for f in schema]
    if spec.row_hash:
        wanted.append((ROW_HASH, PG_TEXT))
    typed = [(name, typ) for name, typ in wanted if typ is not None]
    if existing is None:
        try:
            statements = create_table_sql(spec, typed, with_key)
        except TableDefinitionError as exc:
            msg = f"{exc} (partition {partition})"
            raise LoadError(msg) from None
        for sql in statements:
            cur.execute(sql)
        cur.execute("DELETE FROM ops.load_state WHERE table_name = $1", (spec.qualified,))
        log.info("created table %s", spec.qualified)
        return dict(typed)
    conflicts = [
        f"{name} is {existing[name]} in PostgreSQL but {typ} in the cache"
        for name, typ in typed
        if name in existing and existing[name] != typ
    ]
    if conflicts:
        msg = (
            f"{spec.qualified}, partition {partition}: column type conflict: "
            f"{'; '.join(conflicts)} (change the cache or migrate the table)"
        )
        raise LoadError(msg)
    added = [(name, typ) for name, typ in typed if name not in existing]
    for sql in add_columns_sql(spec, added):
        cur.execute(sql)
    if added:
        log.info("%s: added column(s) %s", spec.qualified, ", ".join(n for n, _ in added))
    return {**existing, **dict(added)}


# ------------------------------------------------------------------------------ rows


def prepare_rows(rows: pa.Table, spec: TableSpec, partition: str, by_key: bool = True) -> pa.Table:
    """A partition's rows in the sink's Arrow types, checked and sorted by key.

    Without `by_key` the rows keep the file's order and are not checked for duplicate
    keys: for a new table's stream, whose key is built after the COPY (that build
    sorts the rows itself, and refuses a duplicate).

    Needs no connection, so the loader prepares the next partition while the database
    works on the current one. Columns without any value (Arrow null type) stay as they
    are: their type comes from the table (`fit_rows`). A null in a key column that is
    not nullable, or two rows with the same key, is a `LoadError` naming an example.
    """
    arrays = []
    for column in rows.schema:
        try:
            typ = pg_type(column.type, column.name)
        except TableDefinitionError as exc:
            msg = f"{spec.qualified}, partition {partition}: {exc}"
            raise LoadError(msg) from None
        values = rows[column.name]
        arrays.append(values if typ is None else values.cast(ARROW_FOR_PG[typ]))
    table = pa.table(arrays, names=rows.column_names)
    for key in spec.data_key:
        if key not in table.column_names:
            msg = f"{spec.qualified}, partition {partition}: key column {key!r} is missing"
            raise LoadError(msg)
        if key not in spec.nullable_key and table[key].null_count:
            msg = f"{spec.qualified}, partition {partition}: null in key column {key!r}"
            raise LoadError(msg)
    if not by_key:
        return table
    ordered = table.sort_by([(k, "ascending", "at_end") for k in spec.data_key])
    if not spec.row_hash:
        _check_unique(ordered, spec, partition)
    return ordered


def fit_rows(rows: pa.Table, columns: Mapping[str, str]) -> pa.Table:
    """Columns without values take the table's type, or are left out if it has none yet."""
    kept = [name for name in rows.column_names if name in columns]
    return pa.table([rows[name].cast(ARROW_FOR_PG[columns[name]]) for name in kept], names=kept)


def slice_fingerprints(rows: pa.Table, column: str) -> pa.Table:
    """(value, fingerprint) for each distinct value of `column` (as text): the slices.

    A fingerprint sums, per slice, the two 32-bit halves of a seeded 64-bit Polars row
    hash, with the row count and a digest of the column names and types: the same rows
    in any order give the same fingerprint; a changed value, null, NaN, column name or
    type changes it (but for a ~2^-64 chance). A reload writes only the slices whose
    fingerprint changed. Polars may change its hashes between versions: then every
    slice looks changed once, which costs time, never correctness.
    """
    layout = ",".join(f"{f.name}:{f.type}" for f in rows.schema)
    digest = hashlib.sha256(layout.encode()).hexdigest()[:16]
    frame = pl.DataFrame(rows)
    hashed = frame.hash_rows(seed=FINGERPRINT_SEED)
    sums = (  # grouped by the column's own values; only the distinct ones become text
        pl.DataFrame(
            {
                "value": frame.get_column(column),
                "hi": (hashed // 2**32).cast(pl.Int64),
                "lo": (hashed % 2**32).cast(pl.Int64),
            }
        )
        .group_by("value")
        .agg(pl.len().alias("rows"), pl.col("hi").sum(), pl.col("lo").sum())
        .to_arrow()
    )
    sums = sums.set_column(0, "value", sums["value"].cast(pa.string()))
    ordered = pl.DataFrame(sums).sort("value")
    fingerprint = pl.concat_str([pl.lit(digest), "rows", "hi", "lo"], separator=":")
    text = pa.schema([("value", pa.string()), ("fingerprint", pa.string())])
    return ordered.select("value", fingerprint=fingerprint).to_arrow().cast(text)


def _same_as_previous(column: pa.ChunkedArray) -> pa.Array:
    values = column.combine_chunks()
    n = len(values)
    here, before = values.slice(1, n - 1), values.slice(0, n - 1)
    both_null = pc.and_(pc.is_null(here), pc.is_null(before))
    return pc.or_(both_null, pc.fill_null(pc.equal(here, before), False))


def _check_unique(ordered: pa.Table, spec: TableSpec, partition: str) -> None:
    if ordered.num_rows < 2:
        return
    same = _same_as_previous(ordered[spec.data_key[0]])
    for key in spec.data_key[1:]:
        same = pc.and_(same, _same_as_previous(ordered[key]))
    if pc.any(same).as_py():
        row = pc.index(same, True).as_py()
        example = {k: ordered[k][row].as_py() for k in spec.data_key}
        count = pc.sum(same).as_py()
        msg = (
            f"{spec.qualified}, partition {partition}: {count} duplicate key(s) "
            f"({', '.join(spec.data_key)}), e.g. {example}"
        )
        raise LoadError(msg)


def _reader(rows: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches(BATCH_ROWS))


def _list_param(values: pa.Array) -> pa.RecordBatch:
    """One query parameter: the array as a PostgreSQL array."""
    return pa.record_batch([pa.array([values], pa.list_(values.type))], names=["values"])


# ------------------------------------------------------------------------------ the load


@dataclass(frozen=True)
class PartitionRecord:
    """What `ops.load_state` records of a loaded partition: its file's identity, its row
    count and its `slice_fingerprints`."""

    partition: str
    file_size: int
    file_mtime_ns: int
    content_sha256: str
    row_count: int
    fingerprints: pa.Table


@dataclass(frozen=True)
class PartitionSource:
    """One partition file read from the cache: its identity, its rows as `prepare_rows`
    returns them, and their `slice_fingerprints`."""

    partition: str
    file_size: int
    file_mtime_ns: int
    content_sha256: str
    rows: pa.Table
    fingerprints: pa.Table

    def record(self) -> PartitionRecord:
        """What the load records of it (without the rows)."""
        return PartitionRecord(
            self.partition, self.file_size, self.file_mtime_ns, self.content_sha256,
            self.rows.num_rows, self.fingerprints,
        )  # fmt: skip


@dataclass(frozen=True)
class PartitionLoad:
    """What loading one partition did."""

    table: str
    partition: str
    rows: int
    inserted: int
    updated: int
    deleted: int
    method: Literal["copy", "merge", "unchanged", "skipped"]
    lock_waited: bool
    seconds: float


@contextlib.contextmanager
def _transaction(conn: Connection) -> Iterator[Cursor]:
    """A cursor for one transaction that the block commits itself: if the block raises,
    the transaction is rolled back (quietly when the connection is gone) and the error
    goes on as it was; the cursor is closed either way."""
    cur = conn.cursor()
    try:
        yield cur
    except BaseException:
        with contextlib.suppress(adbc_driver_manager.Error):
            conn.rollback()
        raise
    finally:
        cur.close()


def _lock_name(spec: TableSpec) -> str:
    """The advisory lock that loaders of the table take turns on."""
    return f"alphahome.{spec.qualified}"


def _begin(cur: Cursor, spec: TableSpec) -> bool:
    """Settings for this transaction and the table's advisory lock; True if it waited."""
    lock_name = _lock_name(spec)
    cur.execute(  # one round trip: settings, then the lock if it is free
        f"SELECT set_config('work_mem', '{WORK_MEM}', true), "
        "set_config('extra_float_digits', '1', true), set_config('TimeZone', 'UTC', true), "
        "set_config('DateStyle', 'ISO, YMD', true), pg_try_advisory_xact_lock(hashtext($1))",
        (lock_name,),
    )
    if fetch_row(cur)[-1]:
        return False
    log.info("%s: waiting for another loader of this table", spec.qualified)
    cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (lock_name,))
    cur.fetchall()
    return True


def recorded_partitions(
    conn: Connection, spec: TableSpec
) -> dict[str, tuple[int, int, str]] | None:
    """Partition -> (file size, mtime ns, sha256) of its last committed load.

    None when the table itself is missing (never loaded, or dropped by hand): everything
    is loaded, as a new table.
    """
    with conn.cursor() as cur:
        if table_columns(cur, spec) is None:
            found: dict[str, tuple[int, int, str]] | None = None
        else:
            cur.execute(
                "SELECT partition, file_size, file_mtime_ns, content_sha256 "
                "FROM ops.load_state WHERE table_name = $1",
                (spec.qualified,),
            )
            found = {p: (size, mtime, sha) for p, size, mtime, sha in cur.fetchall()}
    conn.commit()
    return found


def touch_partition(
    conn: Connection, spec: TableSpec, partition: str, size: int, mtime: int
) -> None:
    """Record a new mtime for a partition whose content (sha256) did not change."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE ops.load_state SET file_size = $3, file_mtime_ns = $4 "
            "WHERE table_name = $1 AND partition = $2",
            (spec.qualified, partition, size, mtime),
        )
    conn.commit()


def load_partition(
    conn: Connection, spec: TableSpec, source: PartitionSource, force: bool = False
) -> PartitionLoad:
    """Load one partition in one transaction (see the module docstring).

    Only the slices (rows of one value of the slice column) whose fingerprint differs
    from the one recorded at the partition's last load are written, unless `force`.
    Skipped (nothing written) when `ops.load_state`, read under the table's lock,
    already records this file's content and `force` is false: another loader got there
    first.
    """
    start = time.perf_counter()
    cur = conn.cursor()
    try:
        waited = _begin(cur, spec)
        existing = table_columns(cur, spec)
        recorded_sha, recorded = _recorded(cur, spec, source.partition)
        if not force and existing is not None and recorded_sha == source.content_sha256:
            conn.rollback()
            return PartitionLoad(
                spec.qualified, source.partition, source.rows.num_rows, 0, 0, 0, "skipped",
                waited, time.perf_counter() - start,
            )  # fmt: skip
        columns = ensure_table(cur, spec, source.rows.schema, source.partition, existing)
        crash_point("load-ddl")
        changed = _changed_slices(source, None if force or existing is None else recorded)
        rows = fit_rows(_rows_of(source, spec.slice_column, changed), columns)
        values = pc.unique(pa.concat_arrays([changed, _unclaimed(cur, spec, source)]))
        if len(values):
            slice_values = values.cast(source.rows.schema.field(spec.slice_column).type)
            inserted, updated, deleted, written = _write(cur, spec, rows, columns, slice_values)
            method: Literal["copy", "merge", "unchanged"] = written
        else:
            inserted, updated, deleted, method = 0, 0, 0, "unchanged"
        _record(cur, spec, source.record())
        _pause_for_tests(spec, source.partition)
        crash_point("load-commit")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
    return PartitionLoad(
        spec.qualified, source.partition, source.rows.num_rows, inserted, updated, deleted,
        method, waited, time.perf_counter() - start,
    )  # fmt: skip


def stream_schema(schemas: Sequence[pa.Schema]) -> pa.Schema | None:
    """The columns of a table loaded from partitions with these file schemas, in the
    sink's Arrow types, in order of first appearance; columns without a value in any
    partition (Arrow null type) are left out. None when the partitions disagree on a
    column's type or hold a type the sink cannot store: then they load one by one, and
    the partition at fault is named."""
    fields: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            try:
                typ = pg_type(field.type, field.name)
            except TableDefinitionError:
                return None
            if typ is None:
                continue
            wanted = ARROW_FOR_PG[typ]
            if fields.setdefault(field.name, wanted) != wanted:
                return None
    return pa.schema([pa.field(name, typ) for name, typ in fields.items()])


def conform_rows(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """`rows` with exactly the columns of `schema` (a `stream_schema`), in its order and
    types; a column the partition lacks is all null."""
    n = rows.num_rows
    arrays = [
        rows[f.name].cast(f.type) if f.name in rows.column_names else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class TableStream:
    """What loading a new table in one COPY stream did; `loaded` is False when the table
    existed by the time the lock was taken (another loader created it): nothing was
    written, and its partitions must load one by one."""

    loaded: bool
    rows: int
    lock_waited: bool
    seconds: float


def load_new_table(
    conn: Connection,
    spec: TableSpec,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    records: Callable[[], Sequence[PartitionRecord]],
    label: str,
) -> TableStream:
    """Create the table and COPY every partition into it in ONE stream and ONE
    transaction: the initial load, at the speed of one COPY. The table is created bare
    and its key and indexes (`ddl.key_sql`, the history index) are built after the
    COPY: a sorted build per index costs less than an index insert per row. A key
    that two partitions share fails that build (and the stream).

    `batches` yields the rows of every partition, each already prepared (`prepare_rows`)
    and conformed to `schema` (`conform_rows`), produced while the server copies; after
    the stream ends, `records()` gives each partition's identity and fingerprints, which
    are recorded in `ops.load_state` in the same transaction. A crash or any failure
    rolls everything back: neither the table nor a record is left. A failure raises
    as it was (the caller may then load partition by partition, which names the
    partition at fault and keeps the ones before it).
    """
    start = time.perf_counter()
    with _transaction(conn) as cur:
        waited = _begin(cur, spec)
        if table_columns(cur, spec) is not None:
            conn.rollback()
            return TableStream(False, 0, waited, time.perf_counter() - start)
        columns = ensure_table(cur, spec, schema, label, None, with_key=False)
        crash_point("load-ddl")  # the table made in the transaction, no rows yet
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        rows = cur.adbc_ingest(spec.name, reader, mode="append", db_schema_name=spec.schema)
        cur.execute(f"SELECT set_config('maintenance_work_mem', '{MAINTENANCE_WORK_MEM}', true)")
        index = history_index_sql(spec, columns)
        for sql in [*key_sql(spec), *([index] if index else [])]:
            cur.execute(sql)  # each index built once, from the rows in place
        for record in records():
            _record(cur, spec, record)
        _pause_for_tests(spec, label)
        conn.commit()
    return TableStream(True, int(rows), waited, time.perf_counter() - start)


STAGING_PREFIX = "_ah_load_"


def staging_spec(spec: TableSpec) -> TableSpec:
    """The table a new table's parallel COPY streams fill before it is renamed into
    place (`finish_new_table`): same schema, name prefixed `_ah_load_`."""
    return replace(spec, name=f"{STAGING_PREFIX}{spec.name}")


def lock_table(conn: Connection, spec: TableSpec) -> bool:
    """Take the table's advisory lock for the session (the lock `_begin` takes per
    transaction, so loaders of the table take turns), for a load that spans several
    transactions; True if it waited. Released by `unlock_table`, or when the session
    ends (a crashed loader holds nothing)."""
    lock_name = _lock_name(spec)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext($1))", (lock_name,))
        waited = not fetch_row(cur)[0]
        if waited:
            log.info("%s: waiting for another loader of this table", spec.qualified)
            cur.execute("SELECT pg_advisory_lock(hashtext($1))", (lock_name,))
            cur.fetchall()
    conn.commit()
    return waited


def unlock_table(conn: Connection, spec: TableSpec) -> None:
    """Release the session lock `lock_table` took."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(hashtext($1))", (_lock_name(spec),))
        cur.fetchall()
    conn.commit()


def create_staging(
    conn: Connection, spec: TableSpec, schema: pa.Schema, label: str
) -> dict[str, str] | None:
    """Under the session lock (`lock_table`): the staging table (`staging_spec`) made
    bare and committed, so that several connections can COPY into it; its columns and
    types. A staging table a crashed load left is dropped first. None (nothing done)
    when the table itself exists by now: another loader created it."""
    with _transaction(conn) as cur:
        _begin(cur, spec)
        if table_columns(cur, spec) is not None:
            conn.rollback()
            return None
        staging = staging_spec(spec)
        cur.execute(f"DROP TABLE IF EXISTS {staging.sql_name}")
        columns = ensure_table(cur, staging, schema, label, None, with_key=False)
        conn.commit()
    return columns


def copy_to_staging(
    conn: Connection, spec: TableSpec, schema: pa.Schema, batches: Iterator[pa.RecordBatch]
) -> int:
    """One COPY stream of `batches` into the staging table, in its own transaction;
    rows copied. Its COMMIT need not wait for the disk (synchronous_commit off): the
    rows count only once `finish_new_table` commits, which waits, and the log is
    written in order, so a crash can never keep that COMMIT and lose these rows."""
    staging = staging_spec(spec)
    with _transaction(conn) as cur:
        cur.execute("SELECT set_config('synchronous_commit', 'off', true)")
        cur.fetchall()
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        rows = cur.adbc_ingest(staging.name, reader, mode="append", db_schema_name=spec.schema)
        conn.commit()
    return int(rows)


def index_staging(url: str, spec: TableSpec, columns: Mapping[str, str]) -> None:
    """Build the staging table's indexes (`ddl.index_sql`, named with the staging
    prefix), each on a connection of its own at the same time, each committed: the
    builds, most of a new table's time after its COPY, overlap. A key two partitions
    share fails its unique index (and this call)."""
    statements = index_sql(staging_spec(spec), columns)

    def build(sql: str) -> None:
        with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
            cur.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            cur.execute(sql)
            conn.commit()

    with ThreadPoolExecutor(max_workers=len(statements) or 1) as pool:
        futures = [pool.submit(build, sql) for sql in statements]
    # a failure raised by its future, a lost connection first: it stops the load
    for future in sorted(futures, key=lambda f: not failed_by_lost_connection(f)):
        future.result()


def failed_by_lost_connection(future: Future[Any]) -> bool:
    """Whether a finished future failed because the server or connection is gone."""
    exc = future.exception()
    return exc is not None and connection_lost(exc)


def finish_new_table(
    conn: Connection,
    spec: TableSpec,
    records: Sequence[PartitionRecord],
    label: str,
) -> None:
    """In ONE transaction: the staging table filled by `copy_to_staging` and indexed by
    `index_staging` renamed into place, its key index made the primary key and its
    indexes renamed as a table created whole names them, and every partition recorded
    in `ops.load_state`. The table appears whole, with its key, or not at all."""
    staging = staging_spec(spec)
    with _transaction(conn) as cur:
        _begin(cur, spec)
        if table_columns(cur, spec) is not None:
            msg = f"{spec.qualified} was created by another loader during the load"
            raise LoadError(msg)
        cur.execute(f"ALTER TABLE {staging.sql_name} RENAME TO {quote_ident(spec.name)}")
        key = primary_key_using_index_sql(spec, f"{staging.name}_pkey")
        if key:
            cur.execute(key)
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 "
            "AND starts_with(indexname, $3)",
            (spec.schema, spec.name, STAGING_PREFIX),
        )
        for (index,) in cur.fetchall():
            final = quote_ident(index.removeprefix(STAGING_PREFIX))
            cur.execute(
                f"ALTER INDEX {quote_ident(spec.schema)}.{quote_ident(index)} RENAME TO {final}"
            )
        cur.execute("DELETE FROM ops.load_state WHERE table_name = $1", (spec.qualified,))
        for record in sorted(records, key=lambda r: r.partition):
            _record(cur, spec, record)
        _pause_for_tests(spec, label)
        conn.commit()


def drop_staging(conn: Connection, spec: TableSpec) -> None:
    """Drop the staging table of a parallel load that failed (nothing of it stays)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {staging_spec(spec).sql_name}")
    conn.commit()


def _recorded(cur: Cursor, spec: TableSpec, partition: str) -> tuple[str | None, pa.Table]:
    """The sha256 and the slice fingerprints recorded at the partition's last load."""
    cur.execute(
        "SELECT content_sha256, slice_values, slice_fingerprints FROM ops.load_state "
        "WHERE table_name = $1 AND partition = $2",
        (spec.qualified, partition),
    )
    found = cur.fetchall()
    sha, values, fingerprints = found[0] if found else (None, [], [])
    table = pa.table(
        {"value": pa.array(values, pa.string()), "fingerprint": pa.array(fingerprints, pa.string())}
    )
    return sha, table


def _pair(fingerprints: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(
        fingerprints["value"], fingerprints["fingerprint"], "\x1f"
    ).combine_chunks()


def _changed_slices(source: PartitionSource, recorded: pa.Table | None) -> pa.Array:
    """Slice values (text) whose rows differ from the last load (all when `recorded` is
    None: a forced load or a new table)."""
    new = source.fingerprints
    if recorded is None:
        return new["value"].combine_chunks()
    same = pc.is_in(_pair(new), value_set=_pair(recorded))
    return new["value"].combine_chunks().filter(pc.invert(same))


def _rows_of(source: PartitionSource, column: str, values: pa.Array) -> pa.Table:
    """The rows whose `column`, as text, is one of `values` (the slices to write)."""
    if len(values) == source.fingerprints.num_rows:
        return source.rows
    return source.rows.filter(pc.is_in(source.rows[column].cast(pa.string()), value_set=values))


def _unclaimed(cur: Cursor, spec: TableSpec, source: PartitionSource) -> pa.Array:
    """Scope values (text) the partition held at its last load, no longer holds, and no
    other loaded partition claims: rows of a stock or date that left the cache must
    leave the table too. Empty for tables without a scope (raw rows are never deleted).
    """
    if spec.scope is None:
        return pa.array([], pa.string())
    cur.execute(
        "SELECT coalesce(array_agg(v), '{}') FROM ops.load_state s, unnest(s.slice_values) v "
        "WHERE s.table_name = $1 AND s.partition = $2 AND v <> ALL($3) AND NOT EXISTS ("
        "SELECT 1 FROM ops.load_state o WHERE o.table_name = $1 AND o.partition <> $2 "
        "AND v = ANY(o.slice_values))",
        pa.record_batch(
            [
                pa.array([spec.qualified]),
                pa.array([source.partition]),
                pa.array([source.fingerprints["value"].combine_chunks()], pa.list_(pa.string())),
            ],
            names=["t", "p", "v"],
        ),
    )
    return pa.array(fetch_row(cur)[0], pa.string())


def _null_join_value(pgtype: str) -> str:
    return {
        PG_DATE: "DATE '1970-01-01'",
        PG_DOUBLE: "0::double precision",
        PG_BIGINT: "0::bigint",
        PG_BOOLEAN: "false",
        PG_TEXT: "''",
        PG_TIMESTAMPTZ: "TIMESTAMPTZ 'epoch'",
    }[pgtype]


def _key_match(spec: TableSpec, columns: Mapping[str, str]) -> str:
    """Hash-joinable equality of s and o on the key, a null equal to a null."""
    terms = []
    for key in spec.key:
        q = quote_ident(key)
        if key in spec.nullable_key:
            fill = _null_join_value(columns[key])
            terms.append(f"(s.{q} IS NULL) = (o.{q} IS NULL)")
            terms.append(f"coalesce(s.{q}, {fill}) = coalesce(o.{q}, {fill})")
        else:
            terms.append(f"s.{q} = o.{q}")
    return " AND ".join(terms)


def _write(
    cur: Cursor,
    spec: TableSpec,
    rows: pa.Table,
    columns: Mapping[str, str],
    slice_values: pa.Array,
) -> tuple[int, int, int, Literal["copy", "merge"]]:
    """Write the partition: straight COPY when its slice is empty, else stage and merge."""
    target = spec.sql_name
    slice_param = _list_param(slice_values)
    cur.execute(  # one index probe per value (a plain "= ANY" may scan the whole table)
        f"SELECT EXISTS (SELECT 1 FROM unnest($1::{columns[spec.slice_column]}[]) v "
        f"WHERE EXISTS (SELECT 1 FROM {target} t WHERE t.{quote_ident(spec.slice_column)} = v))",
        slice_param,
    )
    occupied = fetch_row(cur)[0]
    if not occupied and not spec.row_hash:
        cur.adbc_ingest(spec.name, _reader(rows), mode="append", db_schema_name=spec.schema)
        return rows.num_rows, 0, 0, "copy"

    incoming = ", ".join(quote_ident(c) for c in rows.column_names)
    cur.execute(f"CREATE TEMP TABLE _ah_stage AS SELECT {incoming} FROM {target} WITH NO DATA")
    cur.adbc_ingest("_ah_stage", _reader(rows), mode="append", temporary=True)
    source = "_ah_stage"
    if spec.row_hash:
        source = _versions(cur, spec, rows.column_names)

    all_columns = list(columns)
    present = set(rows.column_names) | ({ROW_HASH} if spec.row_hash else set())
    s_columns = ", ".join(
        quote_ident(c) if c in present else f"NULL::{columns[c]} AS {quote_ident(c)}"
        for c in all_columns
    )
    join = "FULL JOIN" if spec.scope else "LEFT JOIN"
    cur.execute(
        f"CREATE TEMP TABLE _ah_diff AS SELECT o.ctid AS _ah_old, s.* "
        f"FROM (SELECT true AS _ah_in, {s_columns} FROM {source}) s {join} "
        f"(SELECT ctid, * FROM {target} WHERE {quote_ident(spec.slice_column)} = ANY($1)) o "
        f"ON {_key_match(spec, columns)} "
        f"WHERE s._ah_in IS NULL OR o.ctid IS NULL OR {values_differ(spec, columns)}",
        slice_param,
    )
    inserted, updated, deleted = apply_diff(cur, spec, all_columns, ["_ah_stage", source])
    return inserted, updated, deleted, "merge"


def values_differ(spec: TableSpec, columns: Iterable[str]) -> str:
    """SQL that is true where a staged row `s` and a stored row `o` of the same key differ
    in a value column (false for a table of key columns only)."""
    values = [c for c in columns if c not in spec.key]
    if not values:
        return "false"
    staged = ", ".join("s." + quote_ident(c) for c in values)
    stored = ", ".join("o." + quote_ident(c) for c in values)
    return f"({staged}) IS DISTINCT FROM ({stored})"


def apply_diff(
    cur: Cursor, spec: TableSpec, columns: Sequence[str], staged: Sequence[str]
) -> tuple[int, int, int]:
    """Apply the temporary table `_ah_diff` (a stored row's ctid `_ah_old`, the staged row,
    `_ah_in` true where there is one): the stored rows it names are deleted and its
    staged rows inserted in key order; then it and the `staged` temporary tables are
    dropped. (inserted, updated, deleted)."""
    target = spec.sql_name
    cur.execute(
        f"DELETE FROM {target} WHERE ctid = ANY(ARRAY("
        "SELECT _ah_old FROM _ah_diff WHERE _ah_old IS NOT NULL))"
    )
    column_list = ", ".join(quote_ident(c) for c in columns)
    key_list = ", ".join(quote_ident(c) for c in spec.key)
    cur.execute(
        f"INSERT INTO {target} ({column_list}) SELECT {column_list} FROM _ah_diff "
        f"WHERE _ah_in ORDER BY {key_list}"
    )
    cur.execute(
        "SELECT count(*) FILTER (WHERE _ah_in AND _ah_old IS NULL), "
        "count(*) FILTER (WHERE _ah_in AND _ah_old IS NOT NULL), "
        "count(*) FILTER (WHERE _ah_in IS NULL) FROM _ah_diff"
    )
    inserted, updated, deleted = fetch_row(cur)
    cur.execute(f"DROP TABLE {', '.join(dict.fromkeys(['_ah_diff', *staged]))}")
    return inserted, updated, deleted


def _versions(cur: Cursor, spec: TableSpec, incoming: list[str]) -> str:
    """Statement rows with their version hash; rows equal but for `_fetched_at` are one.

    Of such rows the one with the earliest `_fetched_at` is kept: the cache stamps a
    version with the fetch that first brought it.
    """
    keys = ", ".join(quote_ident(c) for c in spec.key)
    earliest = f", {quote_ident(FETCHED_AT)}" if FETCHED_AT in incoming else ""
    cur.execute(
        f"CREATE TEMP TABLE _ah_versions AS SELECT DISTINCT ON ({keys}) * FROM ("
        f'SELECT s.*, {row_hash_sql("s", incoming)} COLLATE "C" AS {quote_ident(ROW_HASH)} '
        f"FROM _ah_stage s) h ORDER BY {keys}{earliest}"
    )
    return "_ah_versions"


def _record(cur: Cursor, spec: TableSpec, source: PartitionRecord) -> None:
    cur.execute(
        "INSERT INTO ops.load_state (table_name, partition, file_size, file_mtime_ns, "
        "content_sha256, row_count, slice_values, slice_fingerprints, loaded_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp()) "
        "ON CONFLICT (table_name, partition) DO UPDATE SET file_size = EXCLUDED.file_size, "
        "file_mtime_ns = EXCLUDED.file_mtime_ns, content_sha256 = EXCLUDED.content_sha256, "
        "row_count = EXCLUDED.row_count, slice_values = EXCLUDED.slice_values, "
        "slice_fingerprints = EXCLUDED.slice_fingerprints, loaded_at = EXCLUDED.loaded_at",
        pa.record_batch(
            [
                pa.array([spec.qualified]),
                pa.array([source.partition]),
                pa.array([source.file_size], pa.int64()),
                pa.array([source.file_mtime_ns], pa.int64()),
                pa.array([source.content_sha256]),
                pa.array([source.row_count], pa.int64()),
                pa.array([source.fingerprints["value"].combine_chunks()], pa.list_(pa.string())),
                pa.array(
                    [source.fingerprints["fingerprint"].combine_chunks()], pa.list_(pa.string())
                ),
            ],
            names=["t", "p", "size", "mtime", "sha", "rows", "values", "fingerprints"],
        ),
    )


def analyze_table(conn: Connection, spec: TableSpec, rows_written: int) -> bool:
    """Refresh the key columns' statistics when a load changed a tenth of the table or
    more (or it was never analyzed), so the next load's comparisons plan well; smaller
    changes are left to autovacuum, as it would judge them. True if it analyzed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2",
            (spec.schema, spec.name),
        )
        found = cur.fetchall()
        stale = bool(found) and (found[0][0] < 0 or rows_written >= ANALYZE_SHARE * found[0][0])
        if stale:
            keys = ", ".join(quote_ident(c) for c in spec.key)
            cur.execute(f"ANALYZE {spec.sql_name} ({keys})")
    conn.commit()
    return stale


def forget_partition(conn: Connection, spec: TableSpec, partition: str) -> int:
    """A partition file left the cache: drop its record and, for tables with a scope,
    the rows of the scope values no other loaded partition claims. Rows deleted."""
    cur = conn.cursor()
    try:
        _begin(cur, spec)
        deleted = 0
        columns = table_columns(cur, spec)
        if spec.scope is not None and columns is not None:
            scope_type = columns[spec.scope]
            cur.execute(
                f"WITH gone AS (DELETE FROM {spec.sql_name} WHERE {quote_ident(spec.scope)} = "
                "ANY(ARRAY(SELECT v FROM ops.load_state s, unnest(s.slice_values) v "
                "WHERE s.table_name = $1 AND s.partition = $2 AND NOT EXISTS ("
                "SELECT 1 FROM ops.load_state o WHERE o.table_name = $1 AND o.partition <> $2 "
                f"AND v = ANY(o.slice_values)))::{scope_type}[]) RETURNING 1) "
                "SELECT count(*) FROM gone",
                (spec.qualified, partition),
            )
            deleted = fetch_row(cur)[0]
        cur.execute(
            "DELETE FROM ops.load_state WHERE table_name = $1 AND partition = $2",
            (spec.qualified, partition),
        )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
    return deleted


def _pause_for_tests(spec: TableSpec, partition: str) -> None:
    """Tests only: sleep inside the transaction, before COMMIT, when AH_TEST_LOAD_PAUSE_S
    is set (to kill -9 a loader mid-transaction or make another one wait for the lock)."""
    seconds = os.environ.get(PAUSE_ENV)
    if not seconds:
        return
    print(
        f"{PAUSE_ENV}: in transaction of {spec.qualified} {partition}", file=sys.stderr, flush=True
    )
    time.sleep(float(seconds))
