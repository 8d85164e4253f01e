"""The PIT build step: raw Parquet in, `<cache>/pit/<table>/` out (DESIGN sections 4 and 6).

Stock tables are sharded by a stable hash bucket of ts_code: bucket b is one job that
reads only its stocks from raw (a predicate pushed down to Parquet), runs the pure
maths of `pipeline.pit.maths`, and replaces its own `part-bb.parquet` file of each table
atomically. An incremental build reruns only the buckets holding stocks with raw
statement rows fetched after the last successful build (kept in `state/pit.json`,
written after the tables), so it gives the same files as a full build. A crash leaves
every file old or new; the state still names the old build, so a re-run redoes the
same buckets. Industry tables are one small whole-table job.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from cache.atomic import remove_atomic, write_bytes_atomic, write_parquet_atomic
from cache.catalogue.apis import api_spec
from cache.layout import CacheLayout
from cache.quarantine import clear_restored
from foundation.errors import AlphahomeError, UsageError
from pipeline.executor import map_shards, open_executor, validate_executor_spec
from pipeline.pit import maths as pit

BUCKETS = 16
STATE_VERSION = 2  # 2: pit.indicators has the lineage columns (ttm/yoy/bs_vis_date)
STATE_FILE = "pit.json"
FETCHED_AT = "_fetched_at"
FETCHED_TYPE = pl.Datetime("us", "UTC")
MEMBERS = "index_member_all"
WHOLE_TABLE_FILE = "all.parquet"

Mode = Literal["incremental", "full"]
TARGETS: tuple[str, ...] = ("income", "balance", "indicators", "industry")
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
    """What one build did: rows written and rows per table after it, work done, time."""

    mode: Mode
    targets: tuple[str, ...]
    rows_written: dict[str, int]
    table_rows: dict[str, int]
    stocks_rebuilt: int
    buckets_rebuilt: int
    duration_s: float


@dataclass(frozen=True)
class BucketJob:
    """One shard: rebuild the files of bucket `bucket` of `targets` from these stocks."""

    root: str
    bucket: int
    codes: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class IndustryJob:
    """The whole-table job: rebuild pit.industry and pit.industry_monthly."""

    root: str


@dataclass
class _Plan:
    jobs: list[BucketJob | IndustryJob] = field(default_factory=list)
    watermarks: dict[str, str | None] = field(default_factory=dict)


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


def read_raw(layout: CacheLayout, dataset: str, codes: Sequence[str] | None = None) -> pl.DataFrame:
    """A raw dataset (only `codes` when given, filtered inside the Parquet scan).

    A dataset without files reads as an empty frame with the documented columns.
    """
    scan = _scan_raw(layout, dataset)
    if scan is None:
        return pl.DataFrame(schema=raw_schema(dataset))
    if codes is not None:
        scan = scan.filter(pl.col("ts_code").is_in(list(codes)))
    return scan.collect()


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


def _read_state(layout: CacheLayout) -> dict[str, Any]:
    """The last successful builds per target; empty when there is nothing usable."""
    path = layout.state_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text("utf-8"))
    except ValueError:
        return {}  # unreadable: forget it, so the next build is a full one
    if state.get("version") != STATE_VERSION or state.get("buckets") != BUCKETS:
        return {}  # a different layout of the files: rebuild everything
    return state


def _write_state(layout: CacheLayout, state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(text.encode("utf-8"), layout.state_dir / STATE_FILE)


def _expand_targets(targets: Iterable[str]) -> tuple[str, ...]:
    chosen: set[str] = set()
    for target in targets:
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


def _plan(layout: CacheLayout, targets: Sequence[str], mode: Mode, state: dict[str, Any]) -> _Plan:
    """Which buckets each stock target rebuilds, and the watermark each build records."""
    fetches = _stock_fetches(layout)
    fetches = fetches.join(stock_buckets(fetches["ts_code"]), on="ts_code")
    plan = _Plan()
    stale: dict[int, set[str]] = {}
    for target in targets:
        if target not in STOCK_TARGETS:
            continue
        mine = fetches.filter(pl.col("dataset").is_in(TARGET_INPUTS[target]))
        newest = mine["fetched"].max()
        assert newest is None or isinstance(newest, dt.date)  # a timestamp column
        plan.watermarks[target] = None if newest is None else newest.isoformat()
        previous = state.get("targets", {}).get(target, {})
        built = all(layout.dataset_dir("pit", t).is_dir() for t in TARGET_TABLES[target])
        if mode == "full" or not built or "watermark" not in previous:
            buckets = set(range(BUCKETS))
        else:
            mark = previous["watermark"]
            if mark is not None:
                mine = mine.filter(pl.col("fetched") > dt.datetime.fromisoformat(mark))
            buckets = set(mine["bucket"].to_list())
            for table in TARGET_TABLES[target]:  # a file deleted or quarantined since
                expected = _expected_buckets(fetches, table)
                buckets |= {b for b in expected if not part_path(layout, table, b).is_file()}
        for bucket in buckets:
            stale.setdefault(bucket, set()).add(target)
    codes = fetches.select("ts_code", "bucket").unique()
    for bucket in sorted(stale):
        members = codes.filter(pl.col("bucket") == bucket)["ts_code"].sort().to_list()
        jobs_targets = tuple(t for t in STOCK_TARGETS if t in stale[bucket])
        plan.jobs.append(BucketJob(str(layout.root), bucket, tuple(members), jobs_targets))
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


def missing_parts(layout: CacheLayout, fetches: pl.DataFrame | None = None) -> list[Path]:
    """PIT files a finished build has made and that are not there now (deleted, or
    quarantined as unreadable): one per bucket holding stocks of each stock table of a
    built target, and the industry tables' single files."""
    built = _read_state(layout).get("targets", {})
    if fetches is None:
        fetches = _stock_fetches(layout) if built else pl.DataFrame()
    missing = []
    for target in built:
        for table in TARGET_TABLES.get(target, ()):
            if table in TABLE_STOCKS:
                paths = [part_path(layout, table, b) for b in _expected_buckets(fetches, table)]
            elif _has_files(layout, "raw", MEMBERS):
                paths = [layout.dataset_dir("pit", table) / WHOLE_TABLE_FILE]
            else:
                paths = []
            missing += [p for p in sorted(paths) if not p.is_file()]
    return missing


def _write_part(path: Path, frame: pl.DataFrame) -> None:
    """Replace one output file atomically; a file with no rows is removed instead."""
    if frame.is_empty():
        remove_atomic(path)
    else:
        write_parquet_atomic(frame, path)


def build_bucket(job: BucketJob) -> dict[str, int]:
    """Rebuild one bucket's files of the job's targets; rows written per table.

    Runs in a worker: reads only the bucket's stocks from raw, computes, writes.
    """
    layout = CacheLayout(Path(job.root))
    inputs = {d for t in job.targets for d in TARGET_INPUTS[t]}
    raw = {d: read_raw(layout, d, job.codes) for d in pit.SOURCES if d in inputs}
    versions = pit.statement_versions(raw)
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
    tables = {t: f for t, f in tables.items() if t in _tables_of(job.targets)}
    for table, frame in tables.items():
        _write_part(part_path(layout, table, job.bucket), frame)
    return {table: frame.height for table, frame in tables.items()}


def build_industry(job: IndustryJob) -> dict[str, int]:
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
    for name, frame in outputs.items():
        _write_part(layout.dataset_dir("pit", name) / WHOLE_TABLE_FILE, frame)
    return {name: frame.height for name, frame in outputs.items()}


def _tables_of(targets: Iterable[str]) -> list[str]:
    return [table for target in targets for table in TARGET_TABLES[target]]


def run_job(job: BucketJob | IndustryJob) -> dict[str, int]:
    """Run one job of the build (in a worker); rows written per table."""
    if isinstance(job, IndustryJob):
        return build_industry(job)
    return build_bucket(job)


def _table_rows(layout: CacheLayout, table: str) -> int:
    if not _has_files(layout, "pit", table):
        return 0
    return pl.scan_parquet(layout.glob("pit", table)).select(pl.len()).collect().item()


def build_pit(
    layout: CacheLayout,
    targets: Sequence[str] = ("all",),
    mode: Mode = "incremental",
    executor: str = "process",
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> PitBuildResult:
    """Build the PIT tables of `targets` from the raw datasets of the cache.

    `full` rebuilds every bucket; `incremental` only buckets with stocks whose raw
    statement rows were fetched after the last successful build of that target, with
    the same result. Missing raw datasets count as empty; `PitBuildError` when none of
    the targets' inputs has any file. `on_progress(done, total)` counts finished jobs.
    """
    started = time.perf_counter()
    if mode not in ("incremental", "full"):
        msg = f"unknown PIT build mode {mode!r}; expected incremental or full"
        raise PitRequestError(msg)
    validate_executor_spec(executor)
    chosen = _expand_targets(targets)
    inputs = sorted({d for t in chosen for d in TARGET_INPUTS[t]})
    if not any(_has_files(layout, "raw", d) for d in inputs):
        looked = ", ".join(inputs)
        msg = f"no raw data for the PIT build under {layout.root / 'raw'} (looked for {looked})"
        raise PitBuildError(msg)

    state = _read_state(layout)
    plan = _plan(layout, chosen, mode, state)
    if "industry" in chosen:  # first: the longest single job starts at once
        plan.jobs.insert(0, IndustryJob(str(layout.root)))
    written: dict[str, int] = {}
    if plan.jobs:
        with open_executor(executor, workers) as pool:
            counts = map_shards(run_job, plan.jobs, pool, on_done=on_progress)
        for count in counts:
            for table, rows in count.items():
                written[table] = written.get(table, 0) + rows

    now = dt.datetime.now(dt.UTC).isoformat()
    entries = dict(state.get("targets", {}))
    for target in chosen:
        entries[target] = {"built_at": now, "mode": mode}
        if target in plan.watermarks:
            entries[target]["watermark"] = plan.watermarks[target]
    _write_state(layout, {"version": STATE_VERSION, "buckets": BUCKETS, "targets": entries})
    clear_restored(layout)

    tables = _tables_of(chosen)
    buckets = [job for job in plan.jobs if isinstance(job, BucketJob)]
    return PitBuildResult(
        mode=mode,
        targets=chosen,
        rows_written={t: written.get(t, 0) for t in tables},
        table_rows={t: _table_rows(layout, t) for t in tables},
        stocks_rebuilt=sum(len(job.codes) for job in buckets),
        buckets_rebuilt=len(buckets),
        duration_s=time.perf_counter() - started,
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
