"""The factor step: P and G from the cache's PIT tables into factors/{p,g}/<YYYY>.parquet.

The parent process only plans: it reads the calendar, the as-of date (the newest
raw/daily trade_date) and which calc dates are already stored, and hands each shard
(one factor, one year of calc dates) to the executor. A shard reads what it needs from
the cache itself (predicates pushed down to the Parquet scan), computes with the pure
functions of `factors/`, merges with the calc dates already in its year file and
replaces that file atomically. P shards run first, then G shards, which read the P
history back from the cache; a crash leaves every year file old or new, and a rerun
computes what is still missing.

Besides the calc dates not stored yet, an incremental run recomputes the stored ones
whose inputs changed since the factor's last run (`state/factors.json`): the dates of
the PIT builds' change log it has not consumed (what pit.indicators and pit.industry
read differently at), and those where the stock list (list and delist dates) changed;
G also at every date that reads a recomputed P (up to G_LOOKBACK_DAYS after it).
A calc date computed without a single row (no stock in the universe yet, the first
weeks of a history) is remembered in the state as computed, so it is not taken for
missing and recomputed, with every G date reading it, on each run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from cache.asof import data_as_of
from cache.atomic import (
    FAST_ZSTD_LEVEL,
    remove_temporary_files,
    write_json_atomic,
    write_parquet_atomic,
)
from cache.layout import CacheLayout, Layer
from cache.quarantine import clear_restored, quarantine_file, read_state_json, unreadable_reason
from factors.calendar import (
    FREQS,
    YEAR_AGO_DAYS,
    YEAR_AGO_TOLERANCE_DAYS,
    Freq,
    calc_dates,
)
from factors.g import ES_WINDOW_DAYS, G_LINEAGE_COLUMNS, g_inputs, g_scores
from factors.p import P_LINEAGE_COLUMNS, p_inputs, p_scores
from factors.schema import G_SCHEMA, P_SCHEMA, conform
from factors.universe import latest_stock_rows, staleness_cutoff, universe
from foundation.crashpoints import crash_point
from foundation.errors import AlphahomeError, UsageError
from pipeline.executor import map_shards, open_executor
from pipeline.pit.changes import Interval, covers, merge_intervals
from pipeline.pit.step import read_change_log

Factor = Literal["p", "g"]
Which = Literal["p", "g", "all"]
Mode = Literal["incremental", "backfill"]
FACTORS: tuple[Factor, ...] = ("p", "g")
MODES: tuple[Mode, ...] = ("incremental", "backfill")

SCHEMAS: dict[Factor, pl.Schema] = {"p": P_SCHEMA, "g": G_SCHEMA}
STATE_FILE = "factors.json"
# An incremental run of no more calc dates (P and G) on the default process pool runs in
# this process: starting the pool would cost more than the work (same results).
INLINE_DATES = 8
STATE_VERSION = 1
LISTING_COLUMNS = ("ts_code", "list_date", "delist_date")

# G at t reads P over (t - 730 days, t] and each of those dates' year-ago match.
G_LOOKBACK_DAYS = ES_WINDOW_DAYS + YEAR_AGO_DAYS + YEAR_AGO_TOLERANCE_DAYS

P_INDICATOR_COLUMNS = (
    "ts_code",
    "knowledge_date",
    "end_date",
    *P_LINEAGE_COLUMNS,
    "comp_type",
    "gpa",
    "roe",
    "roa",
)
G_INDICATOR_COLUMNS = (
    "ts_code",
    "knowledge_date",
    "end_date",
    *G_LINEAGE_COLUMNS,
    "revenue_yoy",
    "profit_yoy",
)
INDUSTRY_SCHEMA = pl.Schema(
    {
        "ts_code": pl.String,
        "l1_code": pl.String,
        "l1_name": pl.String,
        "l2_code": pl.String,
        "l2_name": pl.String,
        "l3_code": pl.String,
        "l3_name": pl.String,
        "in_date": pl.Date,
        "out_date": pl.Date,
    }
)


class FactorInputError(AlphahomeError):
    """A dataset the factor step needs is missing from the cache."""


@dataclass(frozen=True)
class FactorRunResult:
    """What one run did: calc dates computed and rows written per factor ("p", "g").

    rows_written counts the rows of the computed calc dates (rows merged unchanged
    from a year file are not counted). as_of is the data's as-of date (None when
    raw/daily is empty, and nothing was computed).
    """

    dates_computed: dict[Factor, int]
    rows_written: dict[Factor, int]
    duration_s: float
    as_of: dt.date | None


@dataclass(frozen=True)
class Shard:
    """One factor's calc dates within one year, and the stored rows they replace.

    Stored rows of the year file at `dates`, and (backfill) at any date within
    `clear`, are dropped before the new rows are added.
    """

    root: str
    factor: Factor
    year: int
    dates: tuple[dt.date, ...]
    clear: tuple[dt.date, dt.date] | None
    calendar: tuple[dt.date, ...]
    include_bj: bool


@dataclass(frozen=True)
class ShardOutcome:
    """What a shard computed and wrote; `empty` are its calc dates that got no row."""

    factor: Factor
    year: int
    dates: int
    rows: int
    empty: tuple[dt.date, ...] = ()


def year_file(layout: CacheLayout, factor: Factor, year: int) -> Path:
    """The Parquet file holding one factor's rows of one calendar year."""
    return layout.dataset_dir("factors", factor) / f"{year}.parquet"


def _scan(layout: CacheLayout, layer: Layer, name: str) -> pl.LazyFrame | None:
    """The dataset as one LazyFrame, or None when it has no Parquet file."""
    folder = layout.dataset_dir(layer, name)
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        return None
    return pl.scan_parquet(layout.glob(layer, name))


def _require(layout: CacheLayout, layer: Layer, name: str) -> pl.LazyFrame:
    scan = _scan(layout, layer, name)
    if scan is None:
        folder = layout.dataset_dir(layer, name)
        msg = f"the factor step needs {layer}/{name}, but {folder} holds no Parquet file"
        raise FactorInputError(msg)
    return scan


def _indicators(
    layout: CacheLayout, columns: Sequence[str], first: dt.date, last: dt.date
) -> pl.DataFrame:
    """pit.indicators rows that can be as of a calc date in [first, last] for the universe.

    Rows known after `last` never count; rows whose period ends before the staleness
    cutoff of `first` can only be as of a date at which the stock is stale (L(t) never
    decreases as knowledge grows), so leaving them out changes no universe row.
    """
    cutoff = pl.select(staleness_cutoff(pl.lit(first, dtype=pl.Date))).item()
    scan = _require(layout, "pit", "indicators")
    missing = [c for c in columns if c not in scan.collect_schema().names()]
    if missing:
        msg = (
            f"pit.indicators has no column {', '.join(missing)}: it was built by an older "
            "version; rebuild it with `ah pit --mode full`"
        )
        raise FactorInputError(msg)
    return (
        scan.filter((pl.col("knowledge_date") <= last) & (pl.col("end_date") >= cutoff))
        .select(columns)
        .collect()
    )


def _stock_basic(layout: CacheLayout) -> pl.DataFrame:
    scan = _require(layout, "raw", "stock_basic")
    names = scan.collect_schema().names()
    wanted = ["ts_code", "list_date", "delist_date"]
    if "_fetched_at" in names:
        wanted.append("_fetched_at")
    return scan.select(wanted).collect()


def _industry(layout: CacheLayout, first: dt.date, last: dt.date) -> pl.DataFrame:
    scan = _scan(layout, "pit", "industry")
    if scan is None:
        return INDUSTRY_SCHEMA.to_frame()
    return (
        scan.filter(
            (pl.col("in_date").is_null() | (pl.col("in_date") <= last))
            & (pl.col("out_date").is_null() | (pl.col("out_date") > first))
        )
        .select(INDUSTRY_SCHEMA.names())
        .collect()
    )


def _p_history(layout: CacheLayout, first: dt.date, last: dt.date) -> pl.DataFrame:
    scan = _scan(layout, "factors", "p")
    if scan is None:
        return pl.Schema(
            {
                "ts_code": pl.String,
                "calc_date": pl.Date,
                "p_score": pl.Float64,
                "ann_date": pl.Date,
            }
        ).to_frame()
    return (
        scan.filter(pl.col("calc_date").is_between(first, last))
        .select("ts_code", "calc_date", "p_score", "ann_date")
        .collect()
    )


def _merge_into_year_file(path: Path, fresh: pl.DataFrame, shard: Shard, schema: pl.Schema) -> None:
    """Replace the year file atomically by its kept stored rows plus `fresh`.

    `fresh` comes sorted by (ts_code, calc_date) from `p_scores` / `g_scores`. The open
    year's file is rewritten at every calc date, so it is written at the fast zstd level.
    """
    if not path.exists():
        write_parquet_atomic(fresh, path, level=FAST_ZSTD_LEVEL)
        return
    stored = pl.read_parquet(path)
    drop = pl.col("calc_date").is_in(pl.Series(shard.dates, dtype=pl.Date).implode())
    if shard.clear is not None:
        drop = drop | pl.col("calc_date").is_between(*shard.clear)
    kept = conform(stored.filter(~drop), schema)
    merged = pl.concat([kept, fresh], how="vertical")
    write_parquet_atomic(merged.sort("ts_code", "calc_date"), path, level=FAST_ZSTD_LEVEL)


def compute_shard(shard: Shard) -> ShardOutcome:
    """Compute one factor for one year of calc dates from the cache and write its file."""
    layout = CacheLayout(Path(shard.root))
    dates = pl.Series("calc_date", shard.dates, dtype=pl.Date)
    first, last = min(shard.dates), max(shard.dates)
    stock_basic = _stock_basic(layout)
    if shard.factor == "p":
        indicators = _indicators(layout, P_INDICATOR_COLUMNS, first, last)
        rows = universe(stock_basic, indicators, dates, include_bj=shard.include_bj)
        fresh = p_scores(p_inputs(rows, _industry(layout, first, last)))
    else:
        indicators = _indicators(layout, G_INDICATOR_COLUMNS, first, last)
        rows = universe(stock_basic, indicators, dates, include_bj=shard.include_bj)
        since = first - dt.timedelta(days=G_LOOKBACK_DAYS)
        calendar = pl.Series("calc_date", shard.calendar, dtype=pl.Date)
        calendar = calendar.filter(calendar.is_between(since, last))
        fresh = g_scores(g_inputs(rows, _p_history(layout, since, last), calendar))
    _merge_into_year_file(
        year_file(layout, shard.factor, shard.year), fresh, shard, SCHEMAS[shard.factor]
    )
    filled = set(fresh.get_column("calc_date").unique().to_list())
    empty = tuple(d for d in shard.dates if d not in filled)
    return ShardOutcome(shard.factor, shard.year, len(shard.dates), fresh.height, empty)


def _as_of_date(layout: CacheLayout) -> dt.date | None:
    """The data's as-of date (cache/asof.py); raw/daily must be there."""
    _require(layout, "raw", "daily")
    return data_as_of(layout)


def _stored_dates(layout: CacheLayout, factor: Factor) -> set[dt.date]:
    scan = _scan(layout, "factors", factor)
    if scan is None:
        return set()
    return set(scan.select(pl.col("calc_date").unique()).collect().get_column("calc_date"))


def missing_factor_files(layout: CacheLayout) -> list[Path]:
    """Factor files that should be there and are not: a factor folder with no file while
    pit.indicators has rows, or a year file missing between the first and last year
    stored of either factor (deleted, or quarantined as unreadable)."""
    if _scan(layout, "pit", "indicators") is None:
        return []
    years: dict[Factor, set[int]] = {}
    for factor in FACTORS:
        folder = layout.dataset_dir("factors", factor)
        found = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        years[factor] = {int(p.stem) for p in found if p.stem.isdigit()}
    every = set().union(*years.values())
    missing = []
    for factor in FACTORS:
        folder = layout.dataset_dir("factors", factor)
        if not years[factor]:
            missing.append(folder)
            continue
        span = range(min(every), max(every) + 1) if every else range(0)
        missing += [folder / f"{y}.parquet" for y in span if y not in years[factor]]
    return missing


def _needed_for_g(candidates: Sequence[dt.date], g_dates: Sequence[dt.date]) -> list[dt.date]:
    """The candidate dates d with some G date t such that t - G_LOOKBACK_DAYS <= d <= t."""
    if not g_dates or not candidates:
        return []
    lhs = pl.DataFrame({"d": pl.Series(candidates, dtype=pl.Date)}).sort("d")
    rhs = pl.DataFrame({"t": pl.Series(g_dates, dtype=pl.Date)}).sort("t")
    nearest_after = lhs.join_asof(rhs, left_on="d", right_on="t", strategy="forward")
    within = (pl.col("t") - pl.col("d")).dt.total_days() <= G_LOOKBACK_DAYS
    return nearest_after.filter(within).get_column("d").to_list()


def _reading_p(g_candidates: Sequence[dt.date], p_dates: Iterable[dt.date]) -> set[dt.date]:
    """The G candidate dates t that read P at one of `p_dates` (t - G_LOOKBACK_DAYS <= d <= t)."""
    p_sorted = sorted(set(p_dates))
    if not g_candidates or not p_sorted:
        return set()
    lhs = pl.DataFrame({"t": pl.Series(g_candidates, dtype=pl.Date)}).sort("t")
    rhs = pl.DataFrame({"d": pl.Series(p_sorted, dtype=pl.Date)})
    latest_before = lhs.join_asof(rhs, left_on="t", right_on="d", strategy="backward")
    within = (pl.col("t") - pl.col("d")).dt.total_days() <= G_LOOKBACK_DAYS
    return set(latest_before.filter(within).get_column("t").to_list())


def _to_compute(
    wanted: Iterable[dt.date],
    stored: set[dt.date],
    mode: Mode,
    recompute_since: dt.date | None,
    changed: set[dt.date] | None = None,
) -> list[dt.date]:
    """The dates of `wanted` to compute: all (backfill), else missing, >= recompute_since
    or in `changed` (stored dates whose inputs changed)."""
    return sorted(
        d
        for d in wanted
        if mode == "backfill"
        or d not in stored
        or (recompute_since is not None and d >= recompute_since)
        or (changed is not None and d in changed)
    )


# ------------------------------------------------------------------------------ change tracking


def _read_state(layout: CacheLayout) -> dict[str, Any]:
    """Per factor, the last PIT build it consumed; empty when there is nothing usable
    (every stored date then counts as changed). A document that does not parse is moved
    aside and recorded (`cache.quarantine`); the run writes a new one."""
    state = read_state_json(layout, layout.state_dir / STATE_FILE)
    return state if state.get("version") == STATE_VERSION else {}


def _write_state(layout: CacheLayout, state: dict[str, Any]) -> None:
    write_json_atomic({**state, "version": STATE_VERSION}, layout.state_dir / STATE_FILE)


def listing_path(layout: CacheLayout, factor: Factor) -> Path:
    """The stock list (ts_code, list_date, delist_date) as of the factor's last run."""
    return layout.state_dir / f"factors-listing-{factor}.parquet"


def _listing(layout: CacheLayout) -> pl.DataFrame:
    """The stock list the universe reads now: one (ts_code, list_date, delist_date) a stock."""
    return latest_stock_rows(_stock_basic(layout)).select(LISTING_COLUMNS).sort("ts_code")


def _listed_span(start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date] | None:
    """[list_date, delist_date) as `universe.listed` reads it: never listed without a
    list_date, no end without a delist_date."""
    return None if start is None else (start, end or dt.date.max)


def listing_changes(old: pl.DataFrame, new: pl.DataFrame) -> list[Interval]:
    """The dates at which some stock is listed in one stock list and not in the other.

    A stock is listed at t when list_date <= t < delist_date (a null delist_date: no
    end); a stock missing from a list is never listed there.
    """
    both = old.join(new, on="ts_code", how="full", coalesce=True, suffix="_new")
    found: list[Interval] = []
    for row in both.iter_rows(named=True):
        spans = [_listed_span(row[f"list_date{s}"], row[f"delist_date{s}"]) for s in ("", "_new")]
        if spans[0] == spans[1]:
            continue
        points = sorted({p for span in spans if span is not None for p in span})
        for lo, hi in itertools.pairwise(points):
            inside = [span is not None and span[0] <= lo < span[1] for span in spans]
            if inside[0] != inside[1]:
                found.append((lo, None if hi == dt.date.max else hi))
    return merge_intervals(found)


def _pending(
    layout: CacheLayout, state: dict[str, Any], factor: Factor, listing: pl.DataFrame
) -> list[Interval] | None:
    """The dates whose inputs changed since `factor` last ran (None: any date may have).

    From the PIT change log entries after the build the factor consumed (None when the
    log no longer reaches back to it) and the stock list against its stored copy.
    """
    last, log = read_change_log(layout)
    seen = int(state.get(factor, {}).get("pit_build", 0))
    intervals: list[Interval] = []
    if last < seen:
        return None  # the PIT state started over: its log says nothing about our dates
    if last > seen:
        entries = [e for e in log if e["build"] > seen]
        if not entries or entries[0]["build"] != seen + 1:
            return None
        for entry in entries:
            if entry["changed"] is None:
                return None
            for start, end in entry["changed"]:
                stop = None if end is None else dt.date.fromisoformat(end)
                intervals.append((dt.date.fromisoformat(start), stop))
    path = listing_path(layout, factor)
    if not path.exists():
        return None
    reason = unreadable_reason(path, deep=True)
    if reason is not None:  # the old list is lost: any date may have changed
        quarantine_file(layout, "state", path, reason)
        return None
    intervals += listing_changes(pl.read_parquet(path), listing)
    return merge_intervals(intervals)


def _covered(dates: Iterable[dt.date], intervals: list[Interval] | None) -> set[dt.date]:
    if intervals is None:
        return set(dates)
    return {d for d in dates if covers(intervals, d)}


def empty_dates(state: dict[str, Any], factor: Factor) -> set[dt.date]:
    """The calc dates the factor was computed at without a row (kept in the state)."""
    return {dt.date.fromisoformat(d) for d in state.get(factor, {}).get("empty", [])}


def _record(
    layout: CacheLayout,
    factors: Sequence[Factor],
    listing: pl.DataFrame,
    empty: dict[Factor, set[dt.date]],
) -> None:
    """Note that `factors` are up to date with the PIT build and the stock list of now,
    and the calc dates computed without a row (`empty`)."""
    state = _read_state(layout)
    last, _ = read_change_log(layout)
    for factor in factors:
        write_parquet_atomic(listing, listing_path(layout, factor))
        state[factor] = {"pit_build": last, "empty": sorted(d.isoformat() for d in empty[factor])}
    _write_state(layout, state)


def _shards(
    layout: CacheLayout,
    factor: Factor,
    dates: Sequence[dt.date],
    clear: tuple[dt.date, dt.date] | None,
    calendar: tuple[dt.date, ...],
    include_bj: bool,
) -> list[Shard]:
    by_year: dict[int, list[dt.date]] = {}
    for d in sorted(dates):
        by_year.setdefault(d.year, []).append(d)
    return [
        Shard(str(layout.root), factor, year, tuple(days), clear, calendar, include_bj)
        for year, days in sorted(by_year.items())
    ]


def _progress(
    on_progress: Callable[[int, int], None] | None, offset: int, total: int
) -> Callable[[int, int], None] | None:
    """A phase's `on_done` reporting (shards done over all phases, total shards)."""
    if on_progress is None:
        return None

    def report(done: int, _phase_total: int) -> None:
        on_progress(offset + done, total)

    return report


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(choices)}, got {value!r}"
        raise UsageError(msg)


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    """`UsageError` for a `--start` after `--end` (a range that holds no date)."""
    if start is not None and end is not None and start > end:
        msg = f"--start {start} is after --end {end}"
        raise UsageError(msg)


def compute_factors(
    layout: CacheLayout,
    which: Which = "all",
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    freq: Freq = "weekly",
    mode: Mode = "incremental",
    recompute_since: dt.date | None = None,
    executor: str = "process",
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    include_bj: bool = True,
) -> FactorRunResult:
    """Compute P and/or G at the calc dates of [start, end] into factors/{p,g}/<YYYY>.parquet.

    Calc dates come from raw/trade_cal (`freq`) up to the as-of date (the newest
    raw/daily trade_date), from the first one on or after the earliest
    pit.indicators knowledge_date. `incremental` computes the calc dates not stored
    yet, plus those >= `recompute_since` (late data); `backfill` recomputes every calc
    date of the range and drops stored rows of the range at other dates. G at t needs
    the stored P over the G_LOOKBACK_DAYS before t: that P is computed first where it
    is missing (or >= recompute_since; all of it in backfill). Shards (one factor, one
    year) run on `open_executor(executor, workers)`; `on_progress(done, total)` counts
    finished shards. `include_bj=False` leaves Beijing-exchange stocks out.
    """
    started = time.perf_counter()
    _check_choice("which", which, ("p", "g", "all"))
    _check_choice("freq", freq, FREQS)
    _check_choice("mode", mode, MODES)
    _check_range(start, end)
    for factor in FACTORS:  # what a killed run left; the factors stage lock is held
        remove_temporary_files(layout.dataset_dir("factors", factor))
    factors: tuple[Factor, ...] = FACTORS if which == "all" else (which,)
    as_of = _as_of_date(layout)
    empty = {f: 0 for f in FACTORS}
    if as_of is None:
        return FactorRunResult(dict(empty), dict(empty), time.perf_counter() - started, None)
    trade_cal = _require(layout, "raw", "trade_cal").select("exchange", "cal_date", "is_open")
    calendar = tuple(calc_dates(trade_cal.collect(), as_of, freq).to_list())
    first_known = (
        _require(layout, "pit", "indicators")
        .select(pl.col("knowledge_date").min())
        .collect()
        .item()
    )
    with_data = [d for d in calendar if first_known is not None and d >= first_known]
    in_range = [d for d in with_data if (start is None or d >= start) and (end is None or d <= end)]
    clear = (start or dt.date.min, end or dt.date.max) if mode == "backfill" else None

    state = _read_state(layout)
    with_rows = {f: _stored_dates(layout, f) for f in FACTORS}
    known_empty = {f: empty_dates(state, f) - with_rows[f] for f in FACTORS}
    stored = {f: with_rows[f] | known_empty[f] for f in FACTORS}
    listing = _listing(layout)
    changed: dict[Factor, set[dt.date]] = {f: set() for f in FACTORS}
    p_moved: set[dt.date] = set()
    if mode == "incremental":
        pending = {f: _pending(layout, state, f, listing) for f in FACTORS}
        changed["p"] = _covered(stored["p"], pending["p"])
        p_moved = _covered(stored["p"], pending["g"]) | changed["p"]
        changed["g"] = _covered(stored["g"], pending["g"])
    p_dates = set(
        _to_compute(in_range, stored["p"], mode, recompute_since, changed["p"])
        if "p" in factors
        else []
    )
    g_dates: list[dt.date] = []
    if "g" in factors:
        changed["g"] |= _reading_p(sorted(stored["g"]), p_moved | p_dates)
        g_dates = _to_compute(in_range, stored["g"], mode, recompute_since, changed["g"])
    needed = _needed_for_g(with_data, g_dates)
    p_dates |= set(_to_compute(needed, stored["p"], mode, recompute_since, changed["p"]))

    p_shards = _shards(
        layout, "p", sorted(p_dates), clear if "p" in factors else None, calendar, include_bj
    )
    g_shards = _shards(layout, "g", g_dates, clear, calendar, include_bj)
    total = len(p_shards) + len(g_shards)
    outcomes: list[ShardOutcome] = []
    crash_point("factors-plan")
    if total:
        small = mode == "incremental" and len(p_dates) + len(g_dates) <= INLINE_DATES
        spec = "inline" if executor == "process" and small else executor
        with open_executor(spec, workers) as pool:
            for offset, phase in ((0, p_shards), (len(p_shards), g_shards)):
                progress = _progress(on_progress, offset, total)
                outcomes += map_shards(compute_shard, phase, pool, on_done=progress)
    crash_point("factors-written")
    computed: dict[Factor, set[dt.date]] = {"p": p_dates, "g": set(g_dates)}
    for factor in FACTORS:
        known_empty[factor] -= computed[factor]
    for outcome in outcomes:
        known_empty[outcome.factor] |= set(outcome.empty)
    if start is None and end is None:
        _record(layout, factors, listing, known_empty)
    crash_point("factors-state")
    clear_restored(layout)
    dates_done = dict(empty)
    rows_done = dict(empty)
    for outcome in outcomes:
        dates_done[outcome.factor] += outcome.dates
        rows_done[outcome.factor] += outcome.rows
    return FactorRunResult(dates_done, rows_done, time.perf_counter() - started, as_of)


def rerank_factors(
    layout: CacheLayout,
    which: Which = "all",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> FactorRunResult:
    """Recompute scores and ranks of stored rows in [start, end] from their sub-factors.

    P: s_gpa, s_roe, s_roa, p_score and p_rank from gpa, roe, roa and is_financial;
    G: rank_em..rank_pm, g_score and g_rank from em, es, rm and pm. Neither the PIT
    tables nor the sub-factors are read or changed; each year file is replaced
    atomically.
    """
    started = time.perf_counter()
    _check_choice("which", which, ("p", "g", "all"))
    _check_range(start, end)
    factors: tuple[Factor, ...] = FACTORS if which == "all" else (which,)
    lo, hi = start or dt.date.min, end or dt.date.max
    dates_done = {f: 0 for f in FACTORS}
    rows_done = {f: 0 for f in FACTORS}
    for factor in factors:
        folder = layout.dataset_dir("factors", factor)
        paths = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        for path in paths:
            stored = pl.read_parquet(path)
            chosen = pl.col("calc_date").is_between(lo, hi)
            picked = stored.filter(chosen)
            if picked.is_empty():
                continue
            fresh = p_scores(picked) if factor == "p" else g_scores(picked)
            kept = conform(stored.filter(~chosen), SCHEMAS[factor])
            merged = pl.concat([kept, fresh], how="vertical").sort("ts_code", "calc_date")
            write_parquet_atomic(merged, path, level=FAST_ZSTD_LEVEL)
            dates_done[factor] += picked.get_column("calc_date").n_unique()
            rows_done[factor] += fresh.height
    return FactorRunResult(dates_done, rows_done, time.perf_counter() - started, None)
