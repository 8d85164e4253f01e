"""The PostgreSQL sink behind the seam: plan, read and load each dataset's partitions.

A table not in the database yet is loaded by `load_streams` parallel COPY streams, one
per connection, its partition files dealt among them by size: under the table's session
lock, a staging table is made and committed, each stream COPYs its partitions into it in
a transaction of its own, and ONE last transaction renames it into place, builds the key
and indexes and records every partition in `ops.load_state`
(`sinks.postgres.finish_new_table`), so the table appears whole or not at all; a staging
table a crash left is dropped by the next load. With one stream (or one partition) the
table is loaded in ONE COPY stream and one transaction instead
(`sinks.postgres.load_new_table`). Either way every partition file is read, checked and
fingerprinted on reader threads while the server copies the one before, and the key and
indexes are built once the rows are in. When the partitions' schemas disagree, or a
stream fails (a partition that cannot be read or loaded, a key two partitions share),
nothing is left of it and the partitions load one by one instead, as for an existing
table: each partition that changed since its last load in its own transaction
(`sinks.postgres.load_partition`), recorded in `ops.load_state` in that same
transaction, so a crash never records a load that did not commit. A partition is
unchanged when its size and mtime match the record, or, failing that, its sha256 does
(then only the mtime is updated). Partitions that left the cache are forgotten
(`sinks.postgres.forget_partition`). A table whose stocks span files (a PIT stock
table's bucket and delta files, `TableSpec.spans_files`) loads all its changed and
removed files in ONE transaction instead (`sinks.pg_span.load_spanning`): a changed
stock's rows are replaced by its rows in every file, a new delta's rows are added.
The partitions are found by listing the dataset's folder (any layout: monthly,
yearly, buckets, deltas). The cache is only read, never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_manager
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cache.layout import CacheLayout, Layer
from foundation.crashpoints import crash_point
from foundation.errors import AlphahomeError, StorageError
from foundation.logs import get_logger
from sinks.base import Dataset, LoadResult, ProgressCallback, SinkCapabilities, TableLoad
from sinks.ddl import TableDefinitionError, TableSpec, table_spec
from sinks.migrations import apply_migrations
from sinks.pg_inspect import row_counts
from sinks.pg_macros import create_asof_functions, document_tables
from sinks.pg_span import load_spanning
from sinks.postgres import (
    BATCH_ROWS,
    Connection,
    DatabaseUnavailableError,
    LoadError,
    PartitionLoad,
    PartitionRecord,
    PartitionSource,
    analyze_table,
    conform_rows,
    connect,
    connection_lost,
    copy_to_staging,
    create_staging,
    describe_url,
    drop_staging,
    error_reason,
    failed_by_lost_connection,
    finish_new_table,
    forget_partition,
    index_staging,
    load_new_table,
    load_partition,
    lock_table,
    prepare_rows,
    recorded_partitions,
    slice_fingerprints,
    stream_schema,
    touch_partition,
    unlock_table,
)

READ_BATCH_ROWS = 65_536
READERS = 2  # reader threads: decode, prepare and fingerprint partitions
READ_AHEAD = 2  # partitions read ahead of the one loading (bounds the memory held)
MAX_DEFAULT_STREAMS = 4  # COPY streams of a new table when the configuration says none


def load_streams(configured: int | None) -> int:
    """The COPY streams (connections) a new table's initial load uses: the configured
    number (`[database] load_streams`), else one per two CPUs (a stream keeps a client
    core decoding and a server core copying busy: on a machine that also runs the
    server, more streams than that only take turns), at least 1, at most
    MAX_DEFAULT_STREAMS."""
    if configured is not None:
        return configured
    return max(1, min((os.cpu_count() or 1) // 2, MAX_DEFAULT_STREAMS))


log = get_logger("load")


# ------------------------------------------------------------------------------ partitions


def read_partition(
    path: Path, partition: str, spec: TableSpec, by_key: bool = True
) -> PartitionSource:
    """One partition file, ready to load: its bytes are read once (so the recorded hash
    is of the rows loaded), decoded batch by batch with `ParquetFile.iter_batches`, and
    the rows typed, checked and sorted by key unless not `by_key` (`prepare_rows`) and
    fingerprinted by slice (`slice_fingerprints`)."""
    with open(path, "rb") as fh:
        stat = os.fstat(fh.fileno())
        data = fh.read()
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        batches = list(parquet.iter_batches(batch_size=READ_BATCH_ROWS))
        rows = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    except (pa.ArrowException, OSError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise LoadError(msg) from None
    ready = prepare_rows(rows, spec, partition, by_key)
    return PartitionSource(
        partition=partition,
        file_size=stat.st_size,
        file_mtime_ns=stat.st_mtime_ns,
        content_sha256=hashlib.sha256(data).hexdigest(),
        rows=ready,
        fingerprints=slice_fingerprints(ready, spec.slice_column),
    )


@dataclass(frozen=True)
class _TablePlan:
    """What a load will look at in one table: files to read, records to forget, and
    whether the table is new (not in the database yet)."""

    spec: TableSpec
    base: Path
    recorded: dict[str, tuple[int, int, str]]
    changed: list[tuple[str, Path]]
    present: frozenset[str]
    new: bool


def _plan_table(
    conn: Connection, layout: CacheLayout, layer: Layer, spec: TableSpec, full: bool
) -> _TablePlan:
    """The partitions whose size or mtime differ from their last load (every one when
    `full`), and the partitions present in the cache."""
    found = recorded_partitions(conn, spec)
    recorded = found or {}
    base = layout.dataset_dir(layer, spec.name)
    changed: list[tuple[str, Path]] = []
    present: set[str] = set()
    for path in sorted(base.rglob("*.parquet")) if base.is_dir() else []:
        partition = path.relative_to(base).as_posix()
        present.add(partition)
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # removed since listed: forgotten at the next load
        before = recorded.get(partition)
        if full or before is None or before[:2] != (stat.st_size, stat.st_mtime_ns):
            changed.append((partition, path))
    return _TablePlan(spec, base, recorded, changed, frozenset(present), found is None)


def _read_ahead(
    reader: ThreadPoolExecutor,
    changed: Sequence[tuple[str, Path]],
    spec: TableSpec,
    by_key: bool = True,
    ahead: int = READ_AHEAD,
) -> Iterator[PartitionSource]:
    """The changed partitions in order, the next `ahead` read by the reader threads
    while the one before them is loaded."""
    pending: deque[Future[PartitionSource]] = deque()
    for partition, path in changed:
        pending.append(reader.submit(read_partition, path, partition, spec, by_key))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# What fails one dataset, not the load: its data (LoadError), its files (unreadable,
# refused by the disk), Arrow or Polars refusing a partition's contents.
_DATASET_FAILURES = (LoadError, StorageError, OSError, pa.ArrowException, pl.exceptions.PolarsError)


def _failed(result: LoadResult, dataset: str, exc: BaseException) -> None:
    """Record a dataset that could not be loaded, with its reason on one line."""
    reason = str(exc) if isinstance(exc, AlphahomeError) else f"{type(exc).__name__}: {exc}"
    reason = " ".join(reason.split())
    log.error("%s not loaded: %s", dataset, reason)
    result.failed.append(f"{dataset}: {reason}")


def _count(outcome: TableLoad, part: PartitionLoad) -> None:
    """Add one partition's outcome to its table's."""
    if part.method in ("skipped", "unchanged"):
        outcome.unchanged += 1
    else:
        outcome.loaded += 1
    outcome.inserted += part.inserted
    outcome.updated += part.updated
    outcome.deleted += part.deleted
    outcome.lock_waits += int(part.lock_waited)


class _Progress:
    """Counts partitions read for `advance`, each once: a new table's stream that falls
    back to loading partition by partition does not count its partitions twice."""

    def __init__(self, advance: Callable[[], None]) -> None:
        self._advance = advance
        self._lock = threading.Lock()  # parallel streams step from their threads
        self.counted = 0  # partitions reported
        self.seen = 0  # partitions passed in the current pass

    def step(self) -> None:
        with self._lock:
            self.seen += 1
            if self.seen > self.counted:
                self.counted = self.seen
                self._advance()

    def restart(self) -> None:
        with self._lock:
            self.seen = 0


def _stream_schema(plan: _TablePlan) -> pa.Schema | None:
    """The one schema a new table's streams share (`sinks.postgres.stream_schema`), or
    None when its partitions must load one by one."""
    try:
        return stream_schema([pq.read_schema(path) for _, path in plan.changed])
    except (pa.ArrowException, OSError):
        return None


def _label(changed: Sequence[tuple[str, Path]]) -> str:
    first, last = changed[0][0], changed[-1][0]
    return first if first == last else f"{first} .. {last}"


def _fell_back(spec: TableSpec, how: str, cause: BaseException, progress: _Progress) -> bool:
    """Log why a new table's stream load gave up; False (load partition by partition)."""
    reason = error_reason(cause) if isinstance(cause, adbc_driver_manager.Error) else cause
    log.info("%s: %s load failed (%s); loading partition by partition",
             spec.qualified, how, reason)  # fmt: skip
    progress.restart()
    return False


def _created(outcome: TableLoad, records: Sequence[PartitionRecord]) -> None:
    """Count a new table's partitions, each past the `load-partition` crash point."""
    for record in records:
        outcome.loaded += 1
        outcome.inserted += record.row_count
        crash_point("load-partition")


def _stream(
    conn: Connection,
    plan: _TablePlan,
    reader: ThreadPoolExecutor,
    outcome: TableLoad,
    progress: _Progress,
) -> bool:
    """Load a new table in one COPY stream (`sinks.postgres.load_new_table`); True when
    done. False (nothing written) when its partitions must load one by one: their
    schemas disagree, another loader created the table meanwhile, or the stream failed
    (a partition that cannot be read or loaded: the partition-by-partition load names
    it and keeps the ones before it)."""
    spec = plan.spec
    schema = _stream_schema(plan)
    if schema is None:
        return False
    records: list[PartitionRecord] = []
    failures: list[BaseException] = []  # what stopped the stream on the reading side

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for source in _read_ahead(reader, plan.changed, spec, by_key=False):
                yield from conform_rows(source.rows, schema).to_batches(BATCH_ROWS)
                records.append(source.record())
                crash_point("load-commit")  # inside the transaction, mid-stream
                progress.step()
        except Exception as exc:
            failures.append(exc)
            raise

    label = _label(plan.changed)
    try:
        done = load_new_table(conn, spec, schema, batches(), lambda: records, label)
    except (adbc_driver_manager.Error, *_DATASET_FAILURES) as exc:
        if connection_lost(exc) and not failures:  # a failed read ends the COPY as I/O does
            raise
        return _fell_back(spec, "one-stream", failures[0] if failures else exc, progress)
    outcome.lock_waits += int(done.lock_waited)
    if not done.loaded:
        progress.restart()
        return False
    _created(outcome, records)
    log.info(
        "%s: created, %d partitions, %d rows in one COPY stream in %.2f s",
        spec.qualified, len(records), done.rows, done.seconds,
    )  # fmt: skip
    return True


def split_partitions(
    changed: Sequence[tuple[str, Path]], streams: int
) -> list[list[tuple[str, Path]]]:
    """The partitions dealt to at most `streams` groups of about equal bytes (largest
    file first, to the group holding the fewest bytes); each group in cache order."""
    sizes = {}
    for partition, path in changed:
        try:
            sizes[partition] = path.stat().st_size
        except FileNotFoundError:
            sizes[partition] = 0  # removed since listed: its reader names it
    groups: list[list[tuple[str, Path]]] = [[] for _ in range(max(1, streams))]
    held = [0] * len(groups)
    for item in sorted(changed, key=lambda item: -sizes[item[0]]):
        emptiest = held.index(min(held))
        groups[emptiest].append(item)
        held[emptiest] += sizes[item[0]]
    return [sorted(group) for group in groups if group]


def _stop_on_failure(stop: threading.Event) -> Callable[[Future[int]], None]:
    """A done-callback that sets `stop` when its stream failed."""

    def check(done: Future[int]) -> None:
        if done.exception() is not None:
            stop.set()

    return check


def _parallel_stream(
    conn: Connection,
    url: str,
    plan: _TablePlan,
    reader: ThreadPoolExecutor,
    outcome: TableLoad,
    progress: _Progress,
    streams: int,
) -> bool:
    """Load a new table in `streams` COPY streams on as many connections (the first on
    `conn`), each in its own transaction, into a staging table made and committed
    first; then, in ONE transaction, rename it into place, build the key and indexes
    and record every partition (`sinks.postgres.finish_new_table`). True when done.

    The table's session lock (`lock_table`) is held throughout, so loaders of one table
    take turns; a crash leaves at most the staging table, which the next load drops.
    False, with nothing left, in the cases `_stream` returns False."""
    spec = plan.spec
    schema = _stream_schema(plan)
    if schema is None:
        return False
    start = time.perf_counter()
    label = _label(plan.changed)
    groups = split_partitions(plan.changed, streams)
    records: list[PartitionRecord] = []
    failures: list[BaseException] = []  # what stopped a stream on the reading side
    stop = threading.Event()  # a stream failed: the others end early (staging is dropped)

    def batches(index: int) -> Iterator[pa.RecordBatch]:
        try:
            for source in _read_ahead(reader, groups[index], spec, by_key=False, ahead=1):
                if stop.is_set():
                    return
                yield from conform_rows(source.rows, schema).to_batches(BATCH_ROWS)
                records.append(source.record())
                crash_point("load-commit")  # inside a stream's transaction
                progress.step()
        except Exception as exc:
            failures.append(exc)
            stop.set()
            raise

    def copy(index: int) -> int:
        if index == 0:
            return copy_to_staging(conn, spec, schema, batches(0))
        with contextlib.closing(connect(url)) as own:
            return copy_to_staging(own, spec, schema, batches(index))

    outcome.lock_waits += int(lock_table(conn, spec))
    try:
        columns = create_staging(conn, spec, schema, label)
        if columns is None:  # another loader created it meanwhile
            progress.restart()
            return False
        crash_point("load-ddl")  # the staging table made, no rows yet
        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="ah-copy") as pool:
            futures = [pool.submit(copy, index) for index in range(len(groups))]
            for future in futures:
                future.add_done_callback(_stop_on_failure(stop))
        failed = [f for f in futures if f.exception() is not None]
        if failed:
            # a failed read ends its COPY as lost I/O would: a lost connection counts
            # only when no read failed
            if not failures:
                for future in failed:
                    if failed_by_lost_connection(future):
                        future.result()  # raises it: the load stops
            drop_staging(conn, spec)
            errors = [e for f in failed if (e := f.exception()) is not None]
            return _fell_back(spec, "parallel", (failures or errors)[0], progress)
        rows = sum(f.result() for f in futures)
        crash_point("load-staged")  # every stream committed, the table not in place
        index_staging(url, spec, columns)
        finish_new_table(conn, spec, records, label)
    except (adbc_driver_manager.Error, *_DATASET_FAILURES) as exc:
        if connection_lost(exc):
            raise
        with contextlib.suppress(adbc_driver_manager.Error):
            drop_staging(conn, spec)
        return _fell_back(spec, "parallel", exc, progress)
    finally:
        with contextlib.suppress(adbc_driver_manager.Error):
            unlock_table(conn, spec)
    _created(outcome, records)
    log.info(
        "%s: created, %d partitions, %d rows in %d parallel COPY streams in %.2f s",
        spec.qualified, len(records), rows, len(groups), time.perf_counter() - start,
    )  # fmt: skip
    return True


def read_scope_rows(path: Path, partition: str, spec: TableSpec, values: Sequence[str]) -> pa.Table:
    """The rows of a partition file whose scope value is one of `values`, prepared
    (`prepare_rows`): the filter is pushed down into the Parquet reader, so row groups
    of other values are skipped (PIT files are sorted by stock)."""
    assert spec.scope is not None
    try:
        rows = pq.read_table(path, filters=[(spec.scope, "in", list(values))])
    except (pa.ArrowException, OSError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise LoadError(msg) from None
    return prepare_rows(rows, spec, partition)


@contextlib.contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """A database error of loading `what` (a partition, or a spanning table's files) as
    a `LoadError` naming it, which fails that dataset only; a lost connection is raised
    as it is, to stop the whole load."""
    try:
        yield
    except adbc_driver_manager.Error as exc:
        if connection_lost(exc):
            raise
        msg = f"loading {what} failed: {error_reason(exc)}"
        raise LoadError(msg) from None


def _load_spanning(
    conn: Connection,
    plan: _TablePlan,
    pending: Sequence[tuple[str, Path]],
    full: bool,
    reader: ThreadPoolExecutor,
    outcome: TableLoad,
    progress: _Progress,
) -> None:
    """Load a table whose scope values span files (`sinks.pg_span.load_spanning`): the
    changed files read, then ONE transaction that merges the changed stocks' rows of
    every file and records every changed and removed file."""
    spec = plan.spec
    forgotten = set(plan.recorded) - plan.present
    if not pending and not forgotten:
        return
    sources = []
    for source in _read_ahead(reader, pending, spec):
        sources.append(source)
        progress.step()

    def read_rows(partition: str, values: Sequence[str]) -> pa.Table:
        return read_scope_rows(plan.base / partition, partition, spec, values)

    files = ", ".join(sorted({p for p, _ in pending} | forgotten))
    with _failing_as(f"{spec.qualified} ({files})"):
        done = load_spanning(
            conn, spec, sources, plan.present, read_rows, lambda p: (plan.base / p).is_file(), full
        )
    outcome.loaded += len(done.loaded)
    outcome.unchanged += len(done.touched)
    outcome.forgotten += len(done.forgotten)
    outcome.inserted += done.inserted
    outcome.updated += done.updated
    outcome.deleted += done.deleted
    outcome.lock_waits += int(done.lock_waited)
    for _ in done.loaded:
        crash_point("load-partition")
    log.info(
        "%s: %d file(s) loaded, %d forgotten: %s, +%d new, %d changed, %d deleted in %.2f s",
        spec.qualified, len(done.loaded), len(done.forgotten), done.method, done.inserted,
        done.updated, done.deleted, done.seconds,
    )  # fmt: skip


def _load_partitions(
    conn: Connection,
    plan: _TablePlan,
    pending: Sequence[tuple[str, Path]],
    full: bool,
    reader: ThreadPoolExecutor,
    outcome: TableLoad,
    progress: _Progress,
) -> None:
    """Load each changed partition in its own transaction (`sinks.postgres.load_partition`),
    the next ones read ahead, and forget the partitions that left the cache."""
    spec, recorded = plan.spec, plan.recorded
    for source in _read_ahead(reader, pending, spec):
        partition = source.partition
        before = recorded.get(partition)
        if not full and before and before[2] == source.content_sha256:
            touch_partition(conn, spec, partition, source.file_size, source.file_mtime_ns)
            outcome.unchanged += 1
            progress.step()
            continue
        with _failing_as(f"{spec.qualified} partition {partition}"):
            part = load_partition(conn, spec, source, force=full)
        _count(outcome, part)
        crash_point("load-partition")
        log.info(
            "%s %s: %s, %d rows (+%d new, %d changed, %d deleted) in %.2f s",
            spec.qualified, partition, part.method, part.rows, part.inserted, part.updated,
            part.deleted, part.seconds,
        )  # fmt: skip
        progress.step()
    for partition in sorted(set(recorded) - plan.present):
        outcome.deleted += forget_partition(conn, spec, partition)
        outcome.forgotten += 1


def _load_table(
    conn: Connection,
    plan: _TablePlan,
    full: bool,
    advance: Callable[[], None],
    url: str,
    streams: int,
) -> TableLoad:
    """Load a table's changed partitions, reading the next file while one loads; a new
    table in `streams` parallel COPY streams (one when it has a single partition)."""
    start = time.perf_counter()
    spec = plan.spec
    outcome = TableLoad(spec.qualified, partitions=len(plan.present))
    outcome.unchanged = len(plan.present) - len(plan.changed)
    progress = _Progress(advance)
    readers = max(READERS, streams)
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="ah-read") as reader:
        pending = plan.changed
        parallel = streams > 1 and len(pending) > 1
        if (
            plan.new
            and not spec.row_hash
            and pending
            and (
                _parallel_stream(conn, url, plan, reader, outcome, progress, streams)
                if parallel
                else _stream(conn, plan, reader, outcome, progress)
            )
        ):
            pending = []
        if spec.spans_files:
            _load_spanning(conn, plan, pending, full, reader, outcome, progress)
        else:
            _load_partitions(conn, plan, pending, full, reader, outcome, progress)
    if outcome.loaded or outcome.forgotten:
        analyze_table(conn, spec, outcome.inserted + outcome.updated + outcome.deleted)
    crash_point("load-table")
    outcome.seconds = time.perf_counter() - start
    return outcome


# ------------------------------------------------------------------------------ the sink


class PostgresSink:
    """The database at `url`, loaded from the cache at `layout`."""

    capabilities = SinkCapabilities(
        name="postgres", supports_upsert=True, supports_schemas=True, durable=True, needs_keys=True
    )

    def __init__(self, url: str, layout: CacheLayout, streams: int | None = None) -> None:
        self._url = url
        self._layout = layout
        self._streams = load_streams(streams)  # COPY streams of a new table
        self._conn: Connection | None = None  # migrate's, kept for the load that follows

    def _connection(self) -> Connection:
        """The open connection, or a new one (an ADBC login costs a tenth of a second:
        the fixed cost of a small incremental load, paid once for migrate and load)."""
        if self._conn is None:
            self._conn = connect(self._url)
        return self._conn

    def close(self) -> None:
        """Close the connection kept since `migrate` (`load` closes it when it ends)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    @property
    def target(self) -> str:
        """user@host:port/dbname, never the password."""
        return describe_url(self._url)

    def migrate(self) -> list[str]:
        """Apply pending migrations (`sinks.migrations`); `version name` of each applied.

        `DatabaseUnavailableError` when the server is down or refuses the login."""
        conn = self._connection()
        try:
            applied = apply_migrations(conn)
        except adbc_driver_manager.Error as exc:
            self.close()
            msg = f"cannot migrate {self.target}: {error_reason(exc)}"
            raise AlphahomeError(msg) from None
        return [f"{m.version} {m.name}" for m in applied]

    def load(
        self, datasets: Sequence[Dataset], full: bool, on_progress: ProgressCallback | None = None
    ) -> LoadResult:
        """Load each dataset's changed partitions (every one when `full`), one transaction
        per partition; `on_progress(done, total)` after each partition read.

        A derived dataset without a key is reported not loaded. A raw dataset without
        one, or data that cannot be loaded (that partition's transaction is rolled back;
        earlier partitions stay), fails that dataset only: it is listed in
        `result.failed` and the load goes on with the next dataset. A server that cannot
        be reached (`DatabaseUnavailableError`) still stops the whole load.
        """
        start = time.perf_counter()
        result = LoadResult(self.capabilities.name, self.target)
        try:
            self._load(datasets, full, on_progress, result)
        except adbc_driver_manager.Error as exc:
            if not connection_lost(exc):
                raise
            reason = error_reason(exc)
            msg = f"lost the connection to PostgreSQL at {self.target} during the load: {reason}"
            raise DatabaseUnavailableError(msg, reason) from None
        result.seconds = time.perf_counter() - start
        result.headline = f"loaded into PostgreSQL {self.target} in {result.seconds:.1f} s"
        return result

    def _load(
        self,
        datasets: Sequence[Dataset],
        full: bool,
        on_progress: ProgressCallback | None,
        result: LoadResult,
    ) -> None:
        with contextlib.closing(self._connection()) as conn:
            self._conn = None  # closed when this load ends
            plans = []
            for layer, name in datasets:
                try:
                    spec = table_spec(layer, name)
                except TableDefinitionError as exc:
                    if layer == "raw":
                        _failed(result, f"{layer}.{name}", exc)
                        continue
                    log.warning("%s.%s not loaded: %s", layer, name, exc)
                    result.not_loaded.append(f"{layer}.{name}")
                    continue
                plans.append(_plan_table(conn, self._layout, layer, spec, full))
            total = sum(len(plan.changed) for plan in plans)
            done = 0

            def advance() -> None:
                nonlocal done
                done += 1
                if on_progress is not None:
                    on_progress(done, total)

            for plan in plans:  # a dataset that fails is reported; the others still load
                try:
                    result.tables.append(
                        _load_table(conn, plan, full, advance, self._url, self._streams)
                    )
                except _DATASET_FAILURES as exc:
                    _failed(result, plan.spec.qualified, exc)
            document_tables(conn, [plan.spec for plan in plans])
            create_asof_functions(conn)

    def counts(self, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """count(*) of each (schema, table); None when the table does not exist."""
        return row_counts(self._url, tables)
