"""The PostgreSQL sink behind the seam: plan, read and load each dataset's partitions.

Each dataset's partitions (every `*.parquet` file under its folder) that changed since
their last load are loaded one transaction per partition (`sinks.postgres.
load_partition`); what was loaded is recorded in `ops.load_state` in that same
transaction, so a crash never records a load that did not commit. A partition is
unchanged when its size and mtime match the record, or, failing that, its sha256 does
(then only the mtime is updated). Partitions that left the cache are forgotten
(`sinks.postgres.forget_partition`). The next file is read while one loads. The cache
is only read, never written.
"""

from __future__ import annotations

import hashlib
import os
import time
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
from sinks.postgres import (
    Connection,
    LoadError,
    PartitionLoad,
    PartitionSource,
    analyze_table,
    connect,
    describe_url,
    error_reason,
    forget_partition,
    load_partition,
    prepare_rows,
    recorded_partitions,
    slice_fingerprints,
    touch_partition,
)

READ_BATCH_ROWS = 65_536

log = get_logger("load")


# ------------------------------------------------------------------------------ partitions


def read_partition(path: Path, partition: str, spec: TableSpec) -> PartitionSource:
    """One partition file, ready to load: its bytes are read once (so the recorded hash
    is of the rows loaded), decoded batch by batch with `ParquetFile.iter_batches`, and
    the rows typed, checked and sorted by key (`prepare_rows`) and fingerprinted by
    slice (`slice_fingerprints`)."""
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
    ready = prepare_rows(rows, spec, partition)
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
    """What a load will look at in one table: files to read, records to forget."""

    spec: TableSpec
    recorded: dict[str, tuple[int, int, str]]
    changed: list[tuple[str, Path]]
    present: frozenset[str]


def _plan_table(
    conn: Connection, layout: CacheLayout, layer: Layer, spec: TableSpec, full: bool
) -> _TablePlan:
    """The partitions whose size or mtime differ from their last load (every one when
    `full`), and the partitions present in the cache."""
    recorded = recorded_partitions(conn, spec)
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
    return _TablePlan(spec, recorded, changed, frozenset(present))


def _read_ahead(
    reader: ThreadPoolExecutor, changed: list[tuple[str, Path]], spec: TableSpec
) -> Iterator[PartitionSource]:
    """The changed partitions in order, each read while the one before it is loaded."""
    current: Future[PartitionSource] | None = None
    for partition, path in changed:
        following = reader.submit(read_partition, path, partition, spec)
        if current is not None:
            yield current.result()
        current = following
    if current is not None:
        yield current.result()


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


def _load_table(
    conn: Connection, plan: _TablePlan, full: bool, advance: Callable[[], None]
) -> TableLoad:
    """Load a table's changed partitions, reading the next file while one loads."""
    start = time.perf_counter()
    spec, recorded = plan.spec, plan.recorded
    outcome = TableLoad(spec.qualified, partitions=len(plan.present))
    outcome.unchanged = len(plan.present) - len(plan.changed)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ah-read") as reader:
        for source in _read_ahead(reader, plan.changed, spec):
            partition = source.partition
            before = recorded.get(partition)
            if not full and before and before[2] == source.content_sha256:
                touch_partition(conn, spec, partition, source.file_size, source.file_mtime_ns)
                outcome.unchanged += 1
                advance()
                continue
            try:
                part = load_partition(conn, spec, source, force=full)
            except adbc_driver_manager.Error as exc:
                msg = f"loading {spec.qualified} partition {partition} failed: {error_reason(exc)}"
                raise LoadError(msg) from None
            _count(outcome, part)
            crash_point("load-partition")
            log.info(
                "%s %s: %s, %d rows (+%d new, %d changed, %d deleted) in %.2f s",
                spec.qualified, partition, part.method, part.rows, part.inserted, part.updated,
                part.deleted, part.seconds,
            )  # fmt: skip
            advance()
    for partition in sorted(set(recorded) - plan.present):
        outcome.deleted += forget_partition(conn, spec, partition)
        outcome.forgotten += 1
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

    def __init__(self, url: str, layout: CacheLayout) -> None:
        self._url = url
        self._layout = layout

    @property
    def target(self) -> str:
        """user@host:port/dbname, never the password."""
        return describe_url(self._url)

    def migrate(self) -> list[str]:
        """Apply pending migrations (`sinks.migrations`); `version name` of each applied.

        `DatabaseUnavailableError` when the server is down or refuses the login."""
        with connect(self._url) as conn:
            try:
                applied = apply_migrations(conn)
            except adbc_driver_manager.Error as exc:
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
        with connect(self._url) as conn:
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
                    result.tables.append(_load_table(conn, plan, full, advance))
                except _DATASET_FAILURES as exc:
                    _failed(result, plan.spec.qualified, exc)
            document_tables(conn, [plan.spec for plan in plans])
            create_asof_functions(conn)
        result.seconds = time.perf_counter() - start
        result.headline = f"loaded into PostgreSQL {self.target} in {result.seconds:.1f} s"
        return result

    def counts(self, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """count(*) of each (schema, table); None when the table does not exist."""
        return row_counts(self._url, tables)
