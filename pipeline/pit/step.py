"""The PIT build step: raw Parquet in, `<cache>/pit/<table>/` out (DESIGN sections 4 and 6).

Stock tables are sharded by a stable hash bucket of ts_code into `part-bb.parquet`
files (`BUCKETS` of them), plus the delta files of incremental builds
(`pipeline.pit.files`). A job reads only its stocks from raw (a predicate pushed down
to Parquet), and of them only the columns statement versions are made of (whole rows
only for a stock with a tie), and runs the pure maths of `pipeline.pit.maths`; a full
build runs `GROUPS` jobs, each writing whole bucket files atomically, a few at a time
on threads, and removes every delta. An incremental build computes only the stocks
with raw statement rows fetched after the last successful build of the target (the
watermark kept in `state/pit.json`, written after the tables), reads their stored rows
from all the table's files (one filtered scan) and writes only the rows they add: one
new delta file per table and job. A stock whose stored rows are not all among its
fresh ones (a late-found version rewriting what was known) is replaced: its rows are
removed from the files holding them and its fresh rows are in the delta. So the table
(not its files) is the one a full build gives; when a table holds more than
`FOLD_DELTAS` deltas they are folded back into the bucket files. Up to `INLINE_STOCKS`
changed stocks (a trading day's) are one job run in this process, without starting a
pool. A crash leaves every file old or new; the state still names the old build, so a
re-run redoes the same stocks and its per-stock comparison with what is stored makes
it right whatever mixture of files the crash left. The state records each table's
files, so a lost one is noticed (the target is then rebuilt in full). The industry
tables are one whole-table job, run only when raw index_member_all was fetched again
since the last build.

Each build appends to the state's change log the dates at which what the factor step
reads (pit.indicators as of a date, pit.industry by membership) changed
(`pipeline.pit.changes`); the factor step recomputes the calc dates in them.
"""

from __future__ import annotations

import datetime as dt
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from cache.atomic import (
    FAST_ZSTD_LEVEL,
    read_json_document,
    remove_atomic,
    remove_temporary_files,
    sync_folder,
    write_json_atomic,
    write_parquet_atomic,
)
from cache.catalogue.apis import api_spec
from cache.layout import CacheLayout
from cache.quarantine import (
    clear_restored,
    forget,
    quarantined,
    read_state_json,
    sweep_unreadable,
)
from foundation.crashpoints import crash_point
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger
from pipeline.executor import map_shards, open_executor, validate_executor_spec
from pipeline.pit import maths as pit
from pipeline.pit.changes import Interval, as_of_changes, membership_changes, merge_intervals
from pipeline.pit.files import (
    FILE_COLUMN,
    FOLD_DELTAS,
    delta_build,
    delta_files,
    new_delta_path,
    split_stored,
)
from pipeline.sync.spill import oldest_unmerged

BUCKETS = 64
GROUPS = 16  # jobs of a full build: bucket b is in group b % GROUPS
WRITE_THREADS = 4  # threads of a job reading, merging and writing its bucket files
STOCKS_PER_JOB = 400  # an incremental build's jobs hold about this many stocks at most,
INLINE_STOCKS = 1000  # except one of no more stocks: one job, in this process, no pool
STATE_VERSION = 4  # 2: indicators lineage columns; 3: 64 buckets, the change log; 4: deltas
READABLE_STATES = (3, 4)  # a version-3 state is one whose tables have no delta files
CHANGE_LOG_BUILDS = 64  # builds kept in the change log
STATE_FILE = "pit.json"
FETCHED_AT = "_fetched_at"
FETCHED_TYPE = pl.Datetime("us", "UTC")
MEMBERS = "index_member_all"
WHOLE_TABLE_FILE = "all.parquet"

log = get_logger("pit")

Mode = Literal["incremental", "full"]
TARGETS: tuple[str, ...] = ("income", "balance", "indicators", "industry")
# AlphaHome's names of the same targets (its `--target` choices), accepted as aliases.
TARGET_ALIASES: dict[str, str] = {
    "financial_indicators": "indicators",
    "industry_classification": "industry",
}
STOCK_TARGETS: tuple[str, ...] = ("income", "balance", "indicators")
TARGET_TABLES: dict[str, tuple[str, ...]] = {
    "income": ("statement_versions", "income_quarterly"),
    "balance": ("balance",),
    "indicators": ("indicators",),
    "industry": ("industry", "industry_monthly"),
}
# The raw datasets whose new rows make a target's stocks stale.
TARGET_INPUTS: dict[str, tuple[str, ...]] = {
    "income": pit.SOURCES,
    "balance": ("balancesheet",),
    "indicators": ("income", "balancesheet"),
    "industry": (MEMBERS,),
}


class PitBuildError(AlphahomeError):
    """Raised when the PIT build cannot start: bad arguments or no raw data at all."""


class PitRequestError(PitBuildError, UsageError):
    """A PIT build asked for with a target or mode that does not exist (a usage error)."""


@dataclass(frozen=True)
class PitBuildResult:
    """What one build did: rows written and rows per table after it, work done, time.

    `changed` are the dates at which what the factor step reads changed (None: all).
    """

    mode: Mode
    targets: tuple[str, ...]
    rows_written: dict[str, int]
    table_rows: dict[str, int]
    stocks_rebuilt: int
    buckets_rebuilt: int
    duration_s: float
    changed: list[Interval] | None = None


@dataclass(frozen=True)
class BucketJob:
    """One shard: compute `codes` for `targets` and write the files of `buckets`.

    `merge` False writes whole files (every stock of each bucket is in `codes`); True
    writes the rows `codes` add in one delta file per table, named by `build` and
    `index` (the job's number in the build), and leaves the removal of replaced stocks'
    stored rows to the build (`JobOutcome.removals`).
    """

    root: str
    buckets: tuple[int, ...]
    codes: tuple[str, ...]
    targets: tuple[str, ...]
    merge: bool = False
    build: int = 0
    index: int = 0


@dataclass(frozen=True)
class IndustryJob:
    """The whole-table job: rebuild pit.industry and pit.industry_monthly."""

    root: str


@dataclass(frozen=True)
class JobOutcome:
    """Rows written per table, and the dates at which what factors read changed.

    `changed` None means every date (a job that wrote whole files without comparing).
    `removals`: per table, the stored files (by name) holding rows of replaced stocks,
    and those stocks.
    """

    rows: dict[str, int]
    changed: list[Interval] | None
    removals: dict[str, dict[str, list[str]]] = field(default_factory=dict)


@dataclass
class _Plan:
    jobs: list[BucketJob | IndustryJob] = field(default_factory=list)
    watermarks: dict[str, str | None] = field(default_factory=dict)
    full_tables: set[str] = field(default_factory=set)
    build: int = 1


def bucket_of(ts_code: str) -> int:
    """The stable bucket of a stock: crc32 of its code modulo `BUCKETS`."""
    return zlib.crc32(ts_code.encode("utf-8")) % BUCKETS


def stock_buckets(codes: pl.Series) -> pl.DataFrame:
    """(ts_code, bucket) for the distinct codes: one crc32 per stock, not per raw row."""
    distinct = codes.unique().sort().to_list()
    return pl.DataFrame(
        {"ts_code": distinct, "bucket": [bucket_of(c) for c in distinct]},
        schema={"ts_code": pl.String, "bucket": pl.Int64},
    )


def part_path(layout: CacheLayout, table: str, bucket: int) -> Path:
    """The file holding one bucket of a stock table."""
    return layout.dataset_dir("pit", table) / f"part-{bucket:02d}.parquet"


def raw_schema(dataset: str) -> dict[str, pl.DataType]:
    """The documented columns of a raw dataset, in order, plus `_fetched_at`."""
    return {**api_spec(dataset).polars_schema(), FETCHED_AT: FETCHED_TYPE}


def _has_files(layout: CacheLayout, layer: Literal["raw", "pit"], name: str) -> bool:
    folder = layout.dataset_dir(layer, name)
    return folder.is_dir() and any(folder.rglob("*.parquet"))


def _scan_raw(layout: CacheLayout, dataset: str) -> pl.LazyFrame | None:
    """The raw dataset with its documented columns, or None when it has no files."""
    if not _has_files(layout, "raw", dataset):
        return None
    return pl.scan_parquet(
        layout.glob("raw", dataset),
        schema=raw_schema(dataset),
        missing_columns="insert",
        extra_columns="ignore",
    )


def read_raw(
    layout: CacheLayout,
    dataset: str,
    codes: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """A raw dataset (only `codes` when given, filtered inside the Parquet scan; only
    `columns` when given, in that order).

    A dataset without files reads as an empty frame with the documented columns.
    """
    scan = _scan_raw(layout, dataset)
    if scan is None:
        empty = pl.DataFrame(schema=raw_schema(dataset))
        return empty if columns is None else empty.select(columns)
    if columns is not None:
        scan = scan.select(columns)
    if codes is not None:
        scan = scan.filter(pl.col("ts_code").is_in(list(codes)))
    return scan.collect()


def read_versions(
    layout: CacheLayout, datasets: Iterable[str], codes: Sequence[str] | None
) -> pl.DataFrame:
    """pit.statement_versions of `codes` (None: every stock) from the raw statement
    `datasets`.

    Each dataset is read with only the columns versions are made of (a few of its ~100),
    and read again whole only for the stocks with a tie, the one rule that reads the
    other columns (`pit.tied_stocks`): the same versions as from whole rows, for a
    fraction of the decoding.
    """
    narrow: dict[str, pl.DataFrame] = {}
    whole: dict[str, pl.DataFrame] = {}
    for dataset in (d for d in pit.SOURCES if d in set(datasets)):
        columns = pit.version_columns(dataset, list(raw_schema(dataset)))
        frame = read_raw(layout, dataset, codes, columns)
        tied = pit.tied_stocks(frame, dataset)
        if tied:
            whole[dataset] = read_raw(layout, dataset, tied)
            frame = frame.filter(~pl.col("ts_code").is_in(tied))
        narrow[dataset] = frame
    versions = pit.statement_versions(narrow)
    if not whole:
        return versions
    return pl.concat([versions, pit.statement_versions(whole)]).sort(pit.VERSION_ORDER)


def _stock_fetches(layout: CacheLayout) -> pl.DataFrame:
    """(ts_code, dataset, fetched): the newest `_fetched_at` per stock and statement dataset."""
    frames = []
    for dataset in pit.SOURCES:
        scan = _scan_raw(layout, dataset)
        if scan is None:
            continue
        frames.append(
            scan.select("ts_code", FETCHED_AT)
            .filter(pl.col("ts_code").is_not_null())
            .group_by("ts_code")
            .agg(pl.col(FETCHED_AT).max().alias("fetched"))
            .with_columns(dataset=pl.lit(dataset))
            .collect()
        )
    if not frames:
        return pl.DataFrame(
            schema={"ts_code": pl.String, "fetched": FETCHED_TYPE, "dataset": pl.String}
        )
    return pl.concat(frames)


def _read_state(layout: CacheLayout, quarantine: bool = False) -> dict[str, Any]:
    """The last successful builds per target; empty when there is nothing usable (a
    full build follows). With `quarantine` (the build's own read) a document that does
    not parse is moved aside and recorded, and the build's new one replaces it."""
    path = layout.state_dir / STATE_FILE
    state = read_state_json(layout, path) if quarantine else read_json_document(path)
    if not state:
        return {}
    version, buckets = state.get("version"), state.get("buckets")
    if version not in READABLE_STATES or buckets != BUCKETS:
        why = f"version {version!r} with {buckets!r} buckets (this build reads version"
        why += f" {' or '.join(map(str, READABLE_STATES))} with {BUCKETS})"
    elif not _well_formed(state):
        why = "fields of a shape the build does not write (edited by hand?)"
    else:
        return state
    if quarantine:
        log.warning("%s holds %s: a full PIT build follows", path, why)
    return {}


def _well_formed(state: dict[str, Any]) -> bool:
    """Whether each field of a PIT build state has the shape the build writes: the
    build number an int, each target's entry a mapping, each change entry a build
    number with None or [start, end] spans, each table's files a list of names."""
    build, targets = state.get("build", 0), state.get("targets", {})
    changes, files = state.get("changes", []), state.get("files", {})
    if not isinstance(build, int) or not isinstance(targets, dict):
        return False
    if not all(isinstance(entry, dict) for entry in targets.values()):
        return False
    if not isinstance(changes, list) or not isinstance(files, dict):
        return False
    for entry in changes:
        spans = entry.get("changed") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("build"), int):
            return False
        if spans is not None and not (
            isinstance(spans, list)
            and all(isinstance(span, list) and len(span) == 2 for span in spans)
        ):
            return False
    return all(
        isinstance(names, list) and all(isinstance(name, str) for name in names)
        for names in files.values()
    )


def _write_state(layout: CacheLayout, state: dict[str, Any]) -> None:
    write_json_atomic(state, layout.state_dir / STATE_FILE)


def _expand_targets(targets: Iterable[str]) -> tuple[str, ...]:
    chosen: set[str] = set()
    for given in targets:
        target = TARGET_ALIASES.get(given, given)
        if target == "all":
            chosen.update(TARGETS)
        elif target in TARGETS:
            chosen.add(target)
        else:
            msg = f"unknown PIT target {target!r}; expected one of {', '.join((*TARGETS, 'all'))}"
            raise PitRequestError(msg)
    if not chosen:
        msg = f"no PIT target given; expected one or more of {', '.join((*TARGETS, 'all'))}"
        raise PitRequestError(msg)
    return tuple(t for t in TARGETS if t in chosen)


def _unmerged(layout: CacheLayout, datasets: Iterable[str]) -> dict[str, dt.datetime]:
    """The fetch time of the oldest rows a sync may still merge, per dataset with any
    (`oldest_unmerged`: spill files, and syncs fetching now); said in a warning."""
    unmerged = {d: t for d in datasets if (t := oldest_unmerged(layout, d)) is not None}
    if unmerged:
        log.warning(
            "rows of %s fetched since %s are not merged yet (a sync running, or spill "
            "files a killed sync left, which the next sync merges): this PIT build's "
            "watermark stays before them, so the next build takes them",
            ", ".join(sorted(unmerged)), min(unmerged.values()).isoformat(timespec="seconds"),
        )  # fmt: skip
    return unmerged


def _fetch_ceiling(
    started: dt.datetime, unmerged: dict[str, dt.datetime], datasets: Iterable[str]
) -> dt.datetime:
    """The newest watermark a build that reads `datasets` from `started` on may record.

    A watermark says "every row fetched up to here is built", and the next build takes
    only rows fetched after it. Rows can reach the cache after rows fetched later: a
    sync merges its tasks' batches in its own order, and pages a killed sync left in
    spill files are merged by the next sync with their first fetch time. So the ceiling
    is just before the oldest rows of `datasets` a sync may still merge (`unmerged`,
    taken before the build reads the rows), and not after `started` (what a sync
    fetches from then on is merged later).
    """
    waiting = [unmerged[d] - dt.timedelta(microseconds=1) for d in datasets if d in unmerged]
    return min([started, *waiting])


def _watermark(newest: object, ceiling: dt.datetime) -> str | None:
    """The watermark to record: the newest fetch time read, at most `ceiling`."""
    if newest is None:
        return None
    assert isinstance(newest, dt.datetime)  # a timestamp column
    return min(newest, ceiling).isoformat()


def _changed_codes(
    fetches: pl.DataFrame,
    target: str,
    mode: Mode,
    built: bool,
    previous: dict[str, Any],
    ceiling: dt.datetime,
) -> tuple[str | None, set[str] | None]:
    """A stock target's new watermark, and the stocks to rebuild (None: all of them)."""
    mine = fetches.filter(pl.col("dataset").is_in(TARGET_INPUTS[target]))
    watermark = _watermark(mine["fetched"].max(), ceiling)
    if mode == "full" or not built or "watermark" not in previous:
        return watermark, None
    mark = previous["watermark"]
    if mark is not None:
        mine = mine.filter(pl.col("fetched") > dt.datetime.fromisoformat(mark))
    return watermark, set(mine["ts_code"].to_list())


def _lost_file(
    layout: CacheLayout,
    state: dict[str, Any],
    fetches: pl.DataFrame,
    target: str,
    changed: set[str],
) -> bool:
    """Whether a file of the target's stock tables that the last build left is gone
    (deleted, or quarantined as unreadable): one the state records (bucket or delta)
    or, for a state that records none, a bucket holding an unchanged stock (every
    unchanged stock was there at the last build). The target is then rebuilt in full,
    since adding its changed stocks' rows to a table missing a file would lose others.
    So is a target with a stray delta file (`_stray_deltas`), whose rows may repeat
    others."""
    unchanged = fetches.filter(~pl.col("ts_code").is_in(sorted(changed)))
    tables = [table for table in TARGET_TABLES[target] if table in TABLE_STOCKS]
    return any(
        not path.is_file()
        for table in tables
        for path in _expected_files(layout, state, unchanged, table)
    ) or any(_stray_deltas(layout, state, table) for table in tables)


def _stray_deltas(layout: CacheLayout, state: dict[str, Any], table: str) -> list[Path]:
    """Delta files of a table that the state does not record and that no crashed run of
    this build left (those are named by this build's number and hold rows the build
    adopts): copied or restored from elsewhere, their rows may repeat recorded ones."""
    recorded = state.get("files", {}).get(table)
    if recorded is None:
        return []
    this_build = int(state.get("build", 0)) + 1
    return [
        path
        for path in delta_files(layout.dataset_dir("pit", table))
        if path.name not in recorded and delta_build(path) != this_build
    ]


def _groups(buckets: Iterable[int], count: int) -> list[list[int]]:
    """`buckets` dealt into at most `count` non-empty groups, in bucket order."""
    ordered = sorted(buckets)
    count = max(1, min(count, len(ordered)))
    return [g for g in (ordered[i::count] for i in range(count)) if g]


def _plan(layout: CacheLayout, targets: Sequence[str], mode: Mode, state: dict[str, Any]) -> _Plan:
    """The jobs of the build and the watermark each target records.

    Targets built in full run `GROUPS` whole-file jobs; the others share jobs that
    compute only the changed stocks and merge them into their buckets' files. A bucket
    is written by one job only, whatever the worker count.
    """
    inputs = sorted({d for t in targets if t in STOCK_TARGETS for d in TARGET_INPUTS[t]})
    started, unmerged = dt.datetime.now(dt.UTC), _unmerged(layout, inputs)
    fetches = _stock_fetches(layout)
    buckets_of = stock_buckets(fetches["ts_code"])
    plan = _Plan(build=int(state.get("build", 0)) + 1)
    full: list[str] = []
    changed: dict[str, set[str]] = {}
    for target in targets:
        if target not in STOCK_TARGETS:
            continue
        previous = state.get("targets", {}).get(target, {})
        built = all(layout.dataset_dir("pit", t).is_dir() for t in TARGET_TABLES[target])
        plan.watermarks[target], codes = _changed_codes(
            fetches, target, mode, built, previous,
            _fetch_ceiling(started, unmerged, TARGET_INPUTS[target]),
        )  # fmt: skip
        if codes is None or _lost_file(layout, state, fetches, target, codes):
            full.append(target)
        elif codes:
            changed[target] = codes
    root = str(layout.root)
    if full:
        plan.full_tables.update(_tables_of(full))
        for group in _groups(range(BUCKETS), GROUPS):
            members = buckets_of.filter(pl.col("bucket").is_in(group))["ts_code"].to_list()
            plan.jobs.append(BucketJob(root, tuple(group), tuple(sorted(members)), tuple(full)))
    if changed:
        stale = sorted(set().union(*changed.values()))
        merged = tuple(t for t in STOCK_TARGETS if t in changed)
        touched = buckets_of.filter(pl.col("ts_code").is_in(stale))
        count = 1 if len(stale) <= INLINE_STOCKS else -(-len(stale) // STOCKS_PER_JOB)
        groups = _groups(touched["bucket"].unique().to_list(), count)
        for index, group in enumerate(groups):
            members = touched.filter(pl.col("bucket").is_in(group))["ts_code"].to_list()
            job = BucketJob(
                root, tuple(group), tuple(sorted(members)), merged, True, plan.build, index
            )
            plan.jobs.append(job)
    return plan


# The raw dataset whose stocks each stock table holds a file for (one per bucket).
TABLE_STOCKS: dict[str, str] = {
    "statement_versions": "income",
    "income_quarterly": "income",
    "balance": "balancesheet",
    "indicators": "income",
}


def _expected_buckets(fetches: pl.DataFrame, table: str) -> set[int]:
    mine = fetches.filter(pl.col("dataset") == TABLE_STOCKS[table])
    return {bucket_of(code) for code in mine["ts_code"].unique().to_list()}


def _expected_files(
    layout: CacheLayout, state: dict[str, Any], fetches: pl.DataFrame, table: str
) -> list[Path]:
    """The files of a stock table the last build left: those the state records, or (a
    state of before delta files) one per bucket holding a stock of `fetches`."""
    folder = layout.dataset_dir("pit", table)
    recorded = state.get("files", {}).get(table)
    if recorded is not None:
        return [folder / name for name in recorded]
    return [part_path(layout, table, b) for b in _expected_buckets(fetches, table)]


def _table_files(layout: CacheLayout, table: str) -> list[str]:
    folder = layout.dataset_dir("pit", table)
    return sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []


def missing_parts(layout: CacheLayout, fetches: pl.DataFrame | None = None) -> list[Path]:
    """PIT files a finished build has made and that are not there now (deleted, or
    quarantined as unreadable): the bucket and delta files of each stock table of a
    built target, and the industry tables' single files."""
    state = _read_state(layout)
    built = state.get("targets", {})
    if fetches is None:
        fetches = _stock_fetches(layout) if built else pl.DataFrame()
    missing = []
    for target in built:
        for table in TARGET_TABLES.get(target, ()):
            if table in TABLE_STOCKS:
                paths = _expected_files(layout, state, fetches, table)
            elif _has_files(layout, "raw", MEMBERS):
                paths = [layout.dataset_dir("pit", table) / WHOLE_TABLE_FILE]
            else:
                paths = []
            missing += [p for p in sorted(paths) if not p.is_file()]
    return missing


def stray_files(layout: CacheLayout) -> list[Path]:
    """Delta files of the built stock tables that the PIT build state does not record
    and that no crashed run of the next build left (`_stray_deltas`); the next build
    rebuilds their targets in full."""
    state = _read_state(layout)
    tables = {t for target in state.get("targets", {}) for t in TARGET_TABLES.get(target, ())}
    return [
        path for t in sorted(tables & set(TABLE_STOCKS)) for path in _stray_deltas(layout, state, t)
    ]


def _write_part(path: Path, frame: pl.DataFrame, sync_dir: bool = True) -> None:
    """Replace one output file atomically (zstd at the fast level: PIT files are rewritten
    on every run); a file with no rows is removed instead."""
    if frame.is_empty():
        remove_atomic(path, sync_dir)
    else:
        write_parquet_atomic(frame, path, sync_dir, level=FAST_ZSTD_LEVEL)


def _read_part(path: Path, schema: pl.Schema) -> pl.DataFrame:
    """A stored bucket file (empty with `schema` when there is none)."""
    return pl.read_parquet(path) if path.exists() else schema.to_frame()


def _by_bucket(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
    """A table's rows split by the bucket of their stock."""
    buckets = stock_buckets(frame.get_column("ts_code"))
    tagged = frame.join(buckets, on="ts_code", how="left", maintain_order="left")
    parts = tagged.partition_by("bucket", as_dict=True, maintain_order=True)
    return {int(key[0]): part.drop("bucket") for key, part in parts.items()}


def _compute(layout: CacheLayout, job: BucketJob) -> dict[str, pl.DataFrame]:
    """The job's stocks' rows of each table of its targets (the pure maths)."""
    inputs = {d for t in job.targets for d in TARGET_INPUTS[t]}
    versions = read_versions(layout, inputs, job.codes)
    wanted = set(job.targets)
    tables: dict[str, pl.DataFrame] = {}
    if wanted & {"income", "indicators"}:
        tables["income_quarterly"] = pit.income_quarterly(versions)
    if wanted & {"balance", "indicators"}:
        tables["balance"] = pit.balance(versions)
    if "indicators" in wanted:
        tables["indicators"] = pit.indicators(tables["income_quarterly"], tables["balance"])
    if "income" in wanted:
        tables["statement_versions"] = versions
    return {t: f for t, f in tables.items() if t in _tables_of(job.targets)}


def build_bucket(job: BucketJob) -> JobOutcome:
    """Compute the job's stocks for its targets and write its files: whole bucket files
    (a full build's job) or one delta file per table (`write_delta`).

    Runs in a worker: reads only the job's stocks from raw, computes, writes. Files are
    read, merged and written by a few threads; the folders are synced once at the end,
    not after each file.
    """
    layout = CacheLayout(Path(job.root))
    tables = _compute(layout, job)
    if job.merge:
        return write_delta(layout, job, tables)
    parts = {table: _by_bucket(frame) for table, frame in tables.items()}

    def write(table: str, bucket: int) -> int:
        fresh = parts[table].get(bucket, tables[table].clear())
        _write_part(part_path(layout, table, bucket), fresh, sync_dir=False)
        return fresh.height

    # Most of the time goes to encoding and fsync, which release the interpreter lock.
    tasks = [(table, bucket) for table in tables for bucket in job.buckets]
    with ThreadPoolExecutor(WRITE_THREADS) as threads:
        done = list(zip(tasks, threads.map(lambda t: write(*t), tasks), strict=True))
    written = dict.fromkeys(tables, 0)
    for (table, _bucket), rows in done:
        written[table] += rows
    for table in tables:
        folder = layout.dataset_dir("pit", table)
        if folder.is_dir():
            sync_folder(folder)
    return JobOutcome(written, None)


def _stored_rows(layout: CacheLayout, table: str, codes: Sequence[str]) -> pl.DataFrame | None:
    """The stored rows of `codes` from every file of a table, each with the name of its
    file (`FILE_COLUMN`); None when the table has no file."""
    if not _has_files(layout, "pit", table):
        return None
    scan = pl.scan_parquet(layout.glob("pit", table), include_file_paths=FILE_COLUMN)
    stored = scan.filter(pl.col("ts_code").is_in(list(codes))).collect()
    names = stored.get_column(FILE_COLUMN).str.split("/").list.last()
    return stored.with_columns(names.alias(FILE_COLUMN))


def write_delta(layout: CacheLayout, job: BucketJob, tables: dict[str, pl.DataFrame]) -> JobOutcome:
    """Write the rows the job's stocks add to each table as one new delta file.

    Each table's stored rows of the job's stocks are read from all its files and
    compared per stock with the fresh ones (`files.split_stored`): nothing is written
    for a stock stored as computed, only the new rows for one whose stored rows are all
    among the fresh ones, and all its rows for one replaced, whose stored rows the build
    then removes (the outcome's `removals`). Also reports the dates at which the job's
    stocks' pit.indicators rows read differently.
    """

    def write(table: str) -> tuple[str, int, pl.DataFrame | None, dict[str, list[str]]]:
        fresh = tables[table]
        stored = _stored_rows(layout, table, job.codes)
        if stored is None or set(stored.columns) != {*fresh.columns, FILE_COLUMN}:
            # no file, or files of other columns: every stock of the job is replaced
            removals = {} if stored is None else _holders(stored, job.codes)
            rows, old = fresh, None
        else:
            old = stored.select(fresh.columns)
            rows, replaced = split_stored(old, fresh)
            removals = _holders(stored, replaced)
        if not rows.is_empty():
            path = new_delta_path(layout.dataset_dir("pit", table), job.build, job.index)
            write_parquet_atomic(rows, path, sync_dir=False, level=FAST_ZSTD_LEVEL)
            sync_folder(path.parent)
        return table, rows.height, old, removals

    with ThreadPoolExecutor(WRITE_THREADS) as threads:
        done = list(threads.map(write, list(tables)))
    crash_point("pit-delta")
    written = {table: rows for table, rows, _old, _removals in done}
    removals = {table: holders for table, _rows, _old, holders in done if holders}
    if "indicators" not in tables:
        return JobOutcome(written, [], removals)
    (before,) = [old for table, _rows, old, _removals in done if table == "indicators"]
    if before is None:
        return JobOutcome(written, None, removals)  # no rows to compare with: every date
    return JobOutcome(written, as_of_changes(before, tables["indicators"]), removals)


def _holders(stored: pl.DataFrame, codes: Sequence[str]) -> dict[str, list[str]]:
    """The files holding stored rows of `codes`, each with those of `codes` it holds."""
    mine = stored.filter(pl.col("ts_code").is_in(list(codes))).select(FILE_COLUMN, "ts_code")
    held = mine.unique().group_by(FILE_COLUMN).agg(pl.col("ts_code").sort())
    return {name: codes for name, codes in held.iter_rows()}


def _remove_stocks(layout: CacheLayout, outcomes: Sequence[JobOutcome]) -> None:
    """Remove the replaced stocks' stored rows from the files holding them (a file left
    with no rows is removed), a few files at a time on threads."""
    doomed: dict[tuple[str, str], set[str]] = {}
    for outcome in outcomes:
        for table, holders in outcome.removals.items():
            for name, codes in holders.items():
                doomed.setdefault((table, name), set()).update(codes)
    if not doomed:
        return

    def remove(task: tuple[tuple[str, str], set[str]]) -> None:
        (table, name), codes = task
        path = layout.dataset_dir("pit", table) / name
        kept = pl.read_parquet(path).filter(~pl.col("ts_code").is_in(sorted(codes)))
        _write_part(path, kept, sync_dir=False)

    with ThreadPoolExecutor(WRITE_THREADS) as threads:
        list(threads.map(remove, sorted(doomed.items())))
    for table in sorted({table for table, _name in doomed}):
        sync_folder(layout.dataset_dir("pit", table))


def _fold(layout: CacheLayout, table: str) -> None:
    """Fold a table's delta files into its bucket files and remove them.

    Each bucket file a delta touches is rewritten with its rows and the deltas' rows of
    its stocks (a row already there, left by a fold a crash cut short, is kept once:
    no row of a table is in two files otherwise), sorted by ts_code; the deltas are
    removed after every bucket is written. A crash before that leaves the deltas for
    the next fold; one while removing them leaves the state naming a lost delta, so the
    target is rebuilt in full.
    """
    deltas = delta_files(layout.dataset_dir("pit", table))
    parts = _by_bucket(pl.concat([pl.read_parquet(p) for p in deltas], how="vertical"))

    def fold(bucket: int) -> None:
        path = part_path(layout, table, bucket)
        added = parts[bucket]
        stored = _read_part(path, added.schema)
        merged = pl.concat([stored, added.select(stored.columns)]).unique(maintain_order=True)
        _write_part(path, merged.sort("ts_code", maintain_order=True), sync_dir=False)

    with ThreadPoolExecutor(WRITE_THREADS) as threads:
        list(threads.map(fold, sorted(parts)))
    sync_folder(layout.dataset_dir("pit", table))
    crash_point("pit-fold")
    for path in deltas:
        remove_atomic(path, sync_dir=False)
    sync_folder(layout.dataset_dir("pit", table))


def build_industry(job: IndustryJob) -> JobOutcome:
    """Rebuild pit.industry and pit.industry_monthly from raw index_member_all."""
    layout = CacheLayout(Path(job.root))
    members = read_raw(layout, MEMBERS)
    table = pit.industry(members)
    known = [
        members[FETCHED_AT].max(),
        members["in_date"].max(),
        members["out_date"].max(),
    ]
    dates = [d.date() if isinstance(d, dt.datetime) else d for d in known if isinstance(d, dt.date)]
    monthly = pit.industry_monthly(table, max(dates)) if dates else table.clear()
    outputs = {"industry": table, "industry_monthly": monthly}
    stored = layout.dataset_dir("pit", "industry") / WHOLE_TABLE_FILE
    changed: list[Interval] | None = None
    if stored.exists():
        changed = membership_changes(pl.read_parquet(stored).select(table.columns), table)
    for name, frame in outputs.items():
        _write_part(layout.dataset_dir("pit", name) / WHOLE_TABLE_FILE, frame)
    return JobOutcome({name: frame.height for name, frame in outputs.items()}, changed)


def _tables_of(targets: Iterable[str]) -> list[str]:
    return [table for target in targets for table in TARGET_TABLES[target]]


def run_job(job: BucketJob | IndustryJob) -> JobOutcome:
    """Run one job of the build (in a worker); rows written per table and the changes."""
    if isinstance(job, IndustryJob):
        return build_industry(job)
    return build_bucket(job)


def _table_rows(layout: CacheLayout, table: str) -> int:
    if not _has_files(layout, "pit", table):
        return 0
    return pl.scan_parquet(layout.glob("pit", table)).select(pl.len()).collect().item()


def _members_watermark(layout: CacheLayout) -> str | None:
    """The newest `_fetched_at` of raw index_member_all, at most `_fetch_ceiling` (None
    when it has no rows)."""
    started, unmerged = dt.datetime.now(dt.UTC), _unmerged(layout, (MEMBERS,))
    ceiling = _fetch_ceiling(started, unmerged, (MEMBERS,))
    scan = _scan_raw(layout, MEMBERS)
    if scan is None:
        return None
    return _watermark(scan.select(pl.col(FETCHED_AT).max()).collect().item(), ceiling)


def _industry_stale(
    layout: CacheLayout, mode: Mode, state: dict[str, Any], watermark: str | None
) -> bool:
    """Whether the industry tables need a rebuild: full mode, missing, or new members."""
    previous = state.get("targets", {}).get("industry", {})
    built = all(layout.dataset_dir("pit", t).is_dir() for t in TARGET_TABLES["industry"])
    if mode == "full" or not built or "watermark" not in previous:
        return True
    return bool(previous["watermark"] != watermark)


def _remove_strays(layout: CacheLayout, tables: Iterable[str]) -> None:
    """Delete files of fully rebuilt stock tables that no bucket of this layout names
    (delta files, and the files of an older layout)."""
    for table in tables:
        names = {part_path(layout, table, b).name for b in range(BUCKETS)}
        folder = layout.dataset_dir("pit", table)
        for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
            if path.name not in names:
                remove_atomic(path)


def _forget_dropped(
    layout: CacheLayout, files: dict[str, list[str]], tables: Iterable[str]
) -> None:
    """Forget the quarantine records of files of the just-built stock `tables` that the
    tables no longer hold: the build rebuilt the target without them (a lost recorded
    file means a full build). A delta's name is never written again, so the record of a
    quarantined delta would otherwise stay, failing every later run and verify."""
    built = {f"pit.{table}": set(files[table]) for table in tables if table in files}
    for entry in quarantined(layout):
        if entry.dataset in built and entry.partition not in built[entry.dataset]:
            forget(layout, entry)


def _log_changes(
    state: dict[str, Any], outcomes: Sequence[JobOutcome]
) -> tuple[int, list[Interval] | None]:
    """This build's number and the dates its jobs changed (None: all dates)."""
    build = int(state.get("build", 0)) + 1
    if any(o.changed is None for o in outcomes):
        return build, None
    return build, merge_intervals(i for o in outcomes for i in o.changed or [])


def _change_entry(build: int, changed: list[Interval] | None) -> dict[str, Any]:
    spans = None if changed is None else [
        [start.isoformat(), None if end is None else end.isoformat()] for start, end in changed
    ]  # fmt: skip
    return {"build": build, "changed": spans}


def read_change_log(layout: CacheLayout) -> tuple[int, list[dict[str, Any]]]:
    """The number of the last PIT build and its change log (oldest first).

    Each entry is {"build": n, "changed": [[start, end or None], ...] or None (every
    date)}; only the last `CHANGE_LOG_BUILDS` builds are kept. (0, []) when there is no
    usable state.
    """
    state = _read_state(layout)
    return int(state.get("build", 0)), list(state.get("changes", []))


def _executor_for(plan: _Plan, executor: str) -> str:
    """`executor`, except that a small incremental build on the default process pool runs
    in this process: starting the pool would cost more than the work (same results)."""
    stocks = sum(len(job.codes) for job in plan.jobs if isinstance(job, BucketJob))
    small = not plan.full_tables and stocks <= INLINE_STOCKS
    return "inline" if executor == "process" and small else executor


def _write_plan(
    layout: CacheLayout,
    chosen: Sequence[str],
    mode: Mode,
    state: dict[str, Any],
    executor: str,
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[_Plan, list[JobOutcome], dict[str, int]]:
    """Plan the build and write its files (jobs, replaced stocks, folds); the plan, the
    jobs' outcomes and the rows written per table."""
    tables = _tables_of(chosen)
    plan = _plan(layout, chosen, mode, state)
    crash_point("pit-plan")
    for table in sorted(plan.full_tables):  # first: a crash then leaves a lost delta
        for path in delta_files(layout.dataset_dir("pit", table)):
            remove_atomic(path)
    if "industry" in chosen:
        plan.watermarks["industry"] = _members_watermark(layout)
        if _industry_stale(layout, mode, state, plan.watermarks["industry"]):
            plan.jobs.insert(0, IndustryJob(str(layout.root)))  # the longest job first
    written: dict[str, int] = {}
    outcomes: list[JobOutcome] = []
    if plan.jobs:
        with open_executor(_executor_for(plan, executor), workers) as pool:
            outcomes = map_shards(run_job, plan.jobs, pool, on_done=on_progress)
        for outcome in outcomes:
            for table, rows in outcome.rows.items():
                written[table] = written.get(table, 0) + rows
        _remove_stocks(layout, outcomes)
    for table in tables:
        folded = table in TABLE_STOCKS and table not in plan.full_tables
        if folded and len(delta_files(layout.dataset_dir("pit", table))) > FOLD_DELTAS:
            _fold(layout, table)
    return plan, outcomes, written


def _quarantine_unreadable(layout: CacheLayout, tables: Sequence[str]) -> bool:
    """Move every PIT file of `tables` with a page that does not decode to quarantine
    (read in full: the run's own sweep reads only footers); whether any was."""
    moved = sweep_unreadable(layout, ("pit",), tuple(tables), deep=True)
    for entry in moved:
        log.warning("quarantined %s", entry.line())
    return bool(moved)


def build_pit(
    layout: CacheLayout,
    targets: Sequence[str] = ("all",),
    mode: Mode = "incremental",
    executor: str = "process",
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> PitBuildResult:
    """Build the PIT tables of `targets` from the raw datasets of the cache.

    `full` rebuilds every bucket; `incremental` only the stocks whose raw statement rows
    were fetched after the last successful build of that target (and the industry
    tables only when index_member_all was fetched again), with the same result. Missing
    raw datasets count as empty; `PitBuildError` when none of the targets' inputs has
    any file. `on_progress(done, total)` counts finished jobs.
    """
    started = time.perf_counter()
    if mode not in ("incremental", "full"):
        msg = f"unknown PIT build mode {mode!r}; expected incremental or full"
        raise PitRequestError(msg)
    validate_executor_spec(executor)
    chosen = _expand_targets(targets)
    tables = _tables_of(chosen)
    inputs = sorted({d for t in chosen for d in TARGET_INPUTS[t]})
    if not any(_has_files(layout, "raw", d) for d in inputs):
        looked = ", ".join(inputs)
        msg = f"no raw data for the PIT build under {layout.root / 'raw'} (looked for {looked})"
        raise PitBuildError(msg)

    state = _read_state(layout, quarantine=True)
    for table in tables:  # what a killed build left; the PIT stage lock is held
        remove_temporary_files(layout.dataset_dir("pit", table))
    args = (layout, chosen, mode, state, executor, workers, on_progress)
    try:
        plan, outcomes, written = _write_plan(*args)
    except (pl.exceptions.PolarsError, OSError):
        # a stored file that does not decode: quarantined, it is a lost file, so its
        # target is rebuilt in full by the second attempt; anything else is raised
        if not _quarantine_unreadable(layout, tables):
            raise
        plan, outcomes, written = _write_plan(*args)
    crash_point("pit-written")
    _remove_strays(layout, plan.full_tables)

    now = dt.datetime.now(dt.UTC).isoformat()
    entries = dict(state.get("targets", {}))
    for target in chosen:
        entries[target] = {"built_at": now, "mode": mode}
        if target in plan.watermarks:
            entries[target]["watermark"] = plan.watermarks[target]
    build, changed = _log_changes(state, outcomes)
    log = [*state.get("changes", []), _change_entry(build, changed)][-CHANGE_LOG_BUILDS:]
    files = dict(state.get("files", {}))
    for table in tables:
        if table in TABLE_STOCKS:
            files[table] = _table_files(layout, table)
    _write_state(
        layout,
        {
            "version": STATE_VERSION,
            "buckets": BUCKETS,
            "targets": entries,
            "build": build,
            "changes": log,
            "files": files,
        },
    )
    crash_point("pit-state")
    _forget_dropped(layout, files, (t for t in tables if t in TABLE_STOCKS))
    clear_restored(layout)

    buckets = [job for job in plan.jobs if isinstance(job, BucketJob)]
    return PitBuildResult(
        mode=mode,
        targets=chosen,
        rows_written={t: written.get(t, 0) for t in tables},
        table_rows={t: _table_rows(layout, t) for t in tables},
        stocks_rebuilt=sum(len(job.codes) for job in buckets),
        buckets_rebuilt=sum(len(job.buckets) for job in buckets),
        duration_s=time.perf_counter() - started,
        changed=changed,
    )


# What verify_pit checks: (table, column, must be <= this column).
PIT_ORDER_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("income_quarterly", "vis_date", "knowledge_date"),
    ("indicators", "vis_date", "knowledge_date"),
    ("indicators", "ann_date", "knowledge_date"),
)
SHOWN_OFFENDERS = 5


def verify_pit(layout: CacheLayout) -> list[str]:
    """Point-in-time violations over the whole PIT tables, one readable line per problem.

    Every row must have vis_date <= knowledge_date (pit.income_quarterly and
    pit.indicators) and ann_date <= knowledge_date (pit.indicators); a null counts as a
    violation. Each finding gives the count and the first offending rows. Empty = clean.
    """
    findings = []
    for table, column, bound in PIT_ORDER_CHECKS:
        if not _has_files(layout, "pit", table):
            continue
        ok = (pl.col(column) <= pl.col(bound)).fill_null(False)
        bad = pl.scan_parquet(layout.glob("pit", table)).filter(~ok)
        bad = bad.select("ts_code", "end_date", bound, column)
        count = bad.select(pl.len()).collect().item()
        if count == 0:
            continue
        shown = "; ".join(
            ", ".join(f"{k}={v}" for k, v in row.items())
            for row in bad.head(SHOWN_OFFENDERS).collect().iter_rows(named=True)
        )
        findings.append(f"pit.{table}: {count} row(s) where {column} is not <= {bound}: {shown}")
    return findings
