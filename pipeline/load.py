"""The load step (`ah load`, and the last step of `ah run`): cache datasets into the sink.

With a database URL, each dataset's partitions (every `*.parquet` file under its
folder) that changed since their last load are loaded into PostgreSQL, one
transaction per partition (`sinks.postgres.load_partition`); what was loaded is
recorded in `ops.load_state` in that same transaction, so a crash never records a
load that did not commit. A partition is unchanged when its size and mtime match the
record, or, failing that, its sha256 does (then only the mtime is updated). Partitions
that left the cache are forgotten (`sinks.postgres.forget_partition`). The cache is
only read, never written.

Without a URL the embedded DuckDB catalogue is rebuilt instead (`cache.views`).
By default the PIT and factor tables are loaded; raw datasets when named or configured
(`[sinks] raw_datasets`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import adbc_driver_manager
import pyarrow as pa
import pyarrow.parquet as pq

from cache.layout import LAYERS, CacheLayout, Layer
from cache.views import rebuild_catalog
from foundation.config import Settings
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger
from sinks.ddl import TableDefinitionError, TableSpec, table_spec
from sinks.migrations import apply_migrations
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

DEFAULT_LAYERS: tuple[Layer, ...] = ("pit", "factors")
READ_BATCH_ROWS = 65_536

log = get_logger("load")

ProgressCallback = Callable[[int, int], None]  # (partitions read, partitions to read)


@dataclass
class TableLoad:
    """What one load did to one table."""

    table: str
    partitions: int = 0
    loaded: int = 0
    unchanged: int = 0
    forgotten: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    lock_waits: int = 0
    seconds: float = 0.0

    def add(self, part: PartitionLoad) -> None:
        """Count one partition's outcome."""
        if part.method in ("skipped", "unchanged"):
            self.unchanged += 1
        else:
            self.loaded += 1
        self.inserted += part.inserted
        self.updated += part.updated
        self.deleted += part.deleted
        self.lock_waits += int(part.lock_waited)


@dataclass
class LoadResult:
    """The outcome of `load_datasets`: where, what per table, how long."""

    sink: Literal["postgres", "duckdb"]
    target: str
    tables: list[TableLoad] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)
    duckdb_catalogue: dict[str, list[str]] = field(default_factory=dict)
    duckdb_materialized: bool = False
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """A human summary, one line per table."""
        if self.sink == "duckdb":
            count = sum(len(names) for names in self.duckdb_catalogue.values())
            kind = "tables" if self.duckdb_materialized else "views over the Parquet files"
            return [
                f"no database configured: rebuilt the DuckDB catalogue {self.target} "
                f"({count} datasets as {kind})"
            ]
        out = [f"loaded into PostgreSQL {self.target} in {self.seconds:.1f} s"]
        if self.migrations_applied:
            out.append(f"  migrations applied: {', '.join(self.migrations_applied)}")
        for t in self.tables:
            out.append(
                f"  {t.table}: {t.partitions} partitions ({t.loaded} loaded, {t.unchanged} "
                f"unchanged, {t.forgotten} removed from the cache); rows +{t.inserted} new, "
                f"{t.updated} changed, {t.deleted} deleted; {t.seconds:.1f} s"
            )
        out.extend(f"  {name}: not loaded (no key defined)" for name in self.not_loaded)
        return out


# ------------------------------------------------------------------------------ datasets


def _split(name: str) -> tuple[Layer | None, str]:
    for layer in LAYERS:
        if name.startswith(layer + "."):
            return layer, name[len(layer) + 1 :]
    return None, name


def resolve_datasets(
    layout: CacheLayout, datasets: Sequence[str] | None, raw_datasets: Sequence[str] = ()
) -> list[tuple[Layer, str]]:
    """(layer, name) of every dataset to load, in order, without repeats.

    `datasets` None means every PIT and factor dataset in the cache plus `raw_datasets`.
    A name is `layer.name` or a bare name found in exactly one layer of the cache
    (`daily`, `indicators`); a named dataset that is not in the cache is a `UsageError`.
    """
    chosen: list[tuple[Layer, str]] = []
    if datasets is None:
        for layer in DEFAULT_LAYERS:
            chosen += [(layer, name) for name in layout.datasets(layer)]
        for name in raw_datasets:
            _, bare = _split(name)
            if bare in layout.datasets("raw"):
                chosen.append(("raw", bare))
            else:
                log.warning("configured raw dataset %r is not in the cache yet", name)
    else:
        chosen = [_resolve_one(layout, name) for name in datasets]
    return list(dict.fromkeys(chosen))


def _resolve_one(layout: CacheLayout, name: str) -> tuple[Layer, str]:
    layer, bare = _split(name)
    layers = [lay for lay in LAYERS if layer in (None, lay)]
    found = [lay for lay in layers if bare in layout.datasets(lay)]
    if len(found) == 1:
        return found[0], bare
    if len(found) > 1:
        msg = f"dataset {name!r} is ambiguous: say {' or '.join(f'{f}.{bare}' for f in found)}"
        raise UsageError(msg)
    where = layout.root / (layer or "*") / bare
    msg = f"dataset {name!r} is not in the cache (no Parquet files under {where})"
    raise UsageError(msg)


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
            outcome.add(part)
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
    outcome.seconds = time.perf_counter() - start
    return outcome


# ------------------------------------------------------------------------------ entry points


def load_datasets(
    layout: CacheLayout,
    url: str | None,
    datasets: Sequence[str] | None = None,
    full: bool = False,
    raw_datasets: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
    duckdb_materialize: bool = False,
) -> LoadResult:
    """Load cache datasets into PostgreSQL at `url`, or rebuild the DuckDB file if None.

    `datasets` names what to load (`raw.daily`, `daily`, `factors.p`, …); None means the
    PIT and factor tables plus `raw_datasets`. Only partitions changed since their last
    load are read unless `full`. Pending schema migrations are applied first.
    `on_progress(done, total)` is called after each partition read (as the PIT and
    factor steps report theirs). Raises `DatabaseUnavailableError`
    when the server is down or refuses the login, `LoadError` when data cannot be
    loaded (the partition's transaction is rolled back; earlier partitions stay).
    """
    start = time.perf_counter()
    if url is None:
        built = rebuild_catalog(layout, materialize=duckdb_materialize)
        return LoadResult(
            "duckdb",
            str(layout.duckdb_path),
            duckdb_catalogue=built,
            duckdb_materialized=duckdb_materialize,
            seconds=time.perf_counter() - start,
        )
    targets = resolve_datasets(layout, datasets, raw_datasets)
    result = LoadResult("postgres", describe_url(url))
    with connect(url) as conn:
        try:
            applied = apply_migrations(conn)
        except adbc_driver_manager.Error as exc:
            msg = f"cannot migrate {describe_url(url)}: {error_reason(exc)}"
            raise AlphahomeError(msg) from None
        result.migrations_applied = [f"{m.version} {m.name}" for m in applied]
        plans = []
        for layer, name in targets:
            try:
                spec = table_spec(layer, name)
            except TableDefinitionError as exc:
                if layer == "raw":
                    raise LoadError(str(exc)) from None
                log.warning("%s.%s not loaded: %s", layer, name, exc)
                result.not_loaded.append(f"{layer}.{name}")
                continue
            plans.append(_plan_table(conn, layout, layer, spec, full))
        total = sum(len(plan.changed) for plan in plans)
        done = 0

        def advance() -> None:
            nonlocal done
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        for plan in plans:
            result.tables.append(_load_table(conn, plan, full, advance))
    result.seconds = time.perf_counter() - start
    return result


def load_from_settings(
    settings: Settings,
    datasets: Sequence[str] | None = None,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
) -> LoadResult:
    """`load_datasets` with the sink configuration of `settings` (for `ah load`, `ah run`)."""
    return load_datasets(
        CacheLayout(settings.cache.dir),
        settings.database.url,
        datasets=datasets,
        full=full,
        raw_datasets=settings.sinks.raw_datasets,
        on_progress=on_progress,
        duckdb_materialize=settings.sinks.duckdb.materialize,
    )
