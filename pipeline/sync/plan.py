"""The sync planner: which units a task wants, which are missing, and the calls to make.

Pure: frames and dates in, a `TaskPlan` out, no I/O. Missing = wanted − committed, plus
the refresh window (the latest units, which the vendor may still revise). The missing
units become work items by the cheapest strategy the API's documented parameters allow,
estimated from the listings:

- `per_unit`: one call per unit (`trade_date=…`, `end_date=…`): a few recent units;
- `ranges`: runs of consecutive units as `start_date`/`end_date` requests, paged newest
  first by the service: long spans of a whole-market API;
- `per_code`: one call per stock (or index) over a date range within the cap: long
  spans of an API that must name a code, or of few codes;
- `per_period`: one call per report period (the `*_vip` variants), for a long span of
  announcement days;
- `per_day`: the rows that became visible on each missing day: announcement ranges,
  exact-day parameters, and the (stock, period) pairs of income versions those cannot
  reach (events);
- `snapshot`: one call per parameter set of a whole dataset;
- `per_code` of a `code` task: one call per listed code of its kind (and parameter set).

A unit is committed once every item covering it is done; an item that covers units only
partly (a per-code or per-period item) lists every unit of its span, so those complete
together.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from foundation.errors import AlphahomeError
from pipeline.sync.tasks import INCOME_EVENTS, VIP_POINTS, TaskSpec

SNAPSHOT_UNIT = "*"
UNKNOWN_CAP = 100_000  # planning bound for APIs without a documented cap
FILL = 0.98  # plan a little under the cap: estimates may run over
REPORTS_PER_STOCK_YEAR = 4.2  # report versions a stock publishes a year (planning only)
OPEN_PLAN_DAYS = 400  # a dividend plan not carried out within this many days is dead


@dataclass(frozen=True)
class Market:
    """What planning knows about the source: calendar, as-of date, codes, events."""

    open_days: tuple[dt.date, ...]
    as_of: dt.date | None
    listings: pl.DataFrame  # ts_code, list_date, delist_date
    index_codes: tuple[str, ...] = ()
    sw_l1: tuple[str, ...] = ()
    other_codes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # fund, hk, ...
    # income versions visible on the missing days: ts_code, end_date, ann_date, visible, update_flag
    events: pl.DataFrame | None = None
    open_plans: tuple[dt.date, ...] = ()  # ann_date of dividend plans not yet carried out
    # stock codes per (lo, hi) asked so far: a run plans every task twice or more
    _stocks: dict[tuple[dt.date | None, dt.date | None], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def codes(self, kind: str | None, lo: dt.date | None, hi: dt.date | None) -> list[str]:
        """Codes of `kind` that may have rows between `lo` and `hi` (None: unbounded)."""
        if kind == "stock":
            if (lo, hi) not in self._stocks:
                self._stocks[(lo, hi)] = tuple(self._listed(lo, hi))
            return list(self._stocks[(lo, hi)])
        if kind == "index":
            return list(self.index_codes)
        if kind == "sw_l1":
            return list(self.sw_l1)
        return list(self.other_codes.get(kind or "", ()))

    def _listed(self, lo: dt.date | None, hi: dt.date | None) -> list[str]:
        frame = self.listings
        if hi is not None:
            frame = frame.filter(pl.col("list_date").is_null() | (pl.col("list_date") <= hi))
        if lo is not None:
            frame = frame.filter(pl.col("delist_date").is_null() | (pl.col("delist_date") > lo))
        return sorted(frame["ts_code"].unique().to_list())

    def listed_counts(self, days: Sequence[dt.date]) -> np.ndarray:
        """Stocks listed on each day (list_date <= day < delist_date)."""
        ordinals = np.array([d.toordinal() for d in days], dtype=np.int64)
        listed = _ordinals(self.listings["list_date"])
        delisted = _ordinals(self.listings["delist_date"].drop_nulls())
        return np.searchsorted(listed, ordinals, side="right") - np.searchsorted(
            delisted, ordinals, side="right"
        )


def _ordinals(dates: pl.Series) -> np.ndarray:
    values = dates.fill_null(dt.date(1900, 1, 1)).to_list()
    return np.sort(np.array([d.toordinal() for d in values], dtype=np.int64))


@dataclass(frozen=True)
class PlanOptions:
    """What the user asked: bounds, full refetch, mode, filters, points."""

    points: int
    start: dt.date | None = None
    end: dt.date | None = None
    full: bool = False
    append: bool = False
    start_override: dt.date | None = None  # [tasks.<name>] start_date
    refresh_override: int | None = None  # [tasks.<name>] lookback_units
    filters: Mapping[str, str] = field(default_factory=dict)
    allow_vip: bool = True
    events_free: bool = False  # the run asks for the events anyway (income goes per day)


@dataclass(frozen=True)
class WorkItem:
    """One request (split further at fetch time if the answer is cut short)."""

    id: str
    api: str
    params: tuple[tuple[str, str], ...]
    units: tuple[str, ...]
    est_rows: float

    @property
    def param_dict(self) -> dict[str, str]:
        """The parameters as a dict."""
        return dict(self.params)


@dataclass(frozen=True)
class TaskPlan:
    """What one task will do in this run."""

    task: TaskSpec
    api: str
    strategy: str
    lo: dt.date | None
    hi: dt.date | None
    wanted: tuple[str, ...]
    missing: tuple[str, ...]
    items: tuple[WorkItem, ...]
    skip_reason: str | None = None
    expected_calls: int = 0  # the items' calls, paged answers counted in full pages
    extra_calls: int = 0  # calls made for it elsewhere (the events), in the estimate
    awaiting_events: bool = False  # per-day items still need the income events

    @property
    def plan_id(self) -> str:
        """Identifies the plan for resuming: same items, same id."""
        digest = hashlib.sha256("\n".join(i.id for i in self.items).encode()).hexdigest()
        return f"{self.strategy}:{digest[:16]}"

    @property
    def calls(self) -> int:
        """Planned calls: one per item, or one per page of rows for a paged item."""
        return self.expected_calls


def unit_key(day: dt.date) -> str:
    """The unit id of a date (YYYYMMDD, as the API writes dates)."""
    return day.strftime("%Y%m%d")


def unit_date(unit: str) -> dt.date:
    """The date of a unit id."""
    return dt.date(int(unit[:4]), int(unit[4:6]), int(unit[6:8]))


def request_id(api: str, params: Mapping[str, str]) -> str:
    """A request written as `api?k=v&…` (sorted): the id of a work item."""
    return api + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def _item(api: str, params: Mapping[str, str], units: Sequence[str], rows: float) -> WorkItem:
    ordered = tuple(sorted(params.items()))
    return WorkItem(request_id(api, params), api, ordered, tuple(units), float(rows))


def _last_per_group(days: Sequence[dt.date], group: str) -> list[dt.date]:
    """The last day of each ISO week or calendar month among `days` (sorted)."""
    if group == "weekly":
        label = [d.isocalendar()[:2] for d in days]
    else:
        label = [(d.year, d.month) for d in days]
    return [d for i, d in enumerate(days) if i + 1 == len(days) or label[i + 1] != label[i]]


def quarter_ends(lo: dt.date, hi: dt.date, quarters: Sequence[int] = (1, 2, 3, 4)) -> list[dt.date]:
    """Report periods (quarter ends of the given quarters) with lo <= period <= hi."""
    out = []
    for year in range(lo.year, hi.year + 1):
        for q, (month, day) in enumerate(((3, 31), (6, 30), (9, 30), (12, 31)), start=1):
            end = dt.date(year, month, day)
            if q in quarters and lo <= end <= hi:
                out.append(end)
    return out


def bounds(spec: TaskSpec, market: Market, opts: PlanOptions) -> tuple[dt.date | None, dt.date]:
    """The first and last date the task wants: its start (finance tasks reach back
    `lead_years` before it) and the as-of date (or --end)."""
    today = market.as_of or dt.date.today()
    hi = min(today, opts.end) if opts.end else today
    lo = opts.start_override or spec.start
    if opts.start is not None:
        lo = max(lo, opts.start) if lo else opts.start
    if lo is not None and spec.lead_years:
        lo = dt.date(lo.year - spec.lead_years, 1, 1)
    return lo, hi


def wanted_units(spec: TaskSpec, market: Market, lo: dt.date | None, hi: dt.date) -> list[str]:
    """Every unit the task wants between the bounds, oldest first."""
    if spec.unit in ("snapshot", "code"):
        return [SNAPSHOT_UNIT]
    first = lo or dt.date(1990, 1, 1)
    if spec.unit == "month":
        months = (hi.year - first.year) * 12 + hi.month - first.month + 1
        return [
            f"{first.year + (first.month - 1 + i) // 12:04d}{(first.month - 1 + i) % 12 + 1:02d}01"
            for i in range(months)
        ]
    if spec.unit == "period":
        ahead = hi + dt.timedelta(days=spec.period_ahead_days)
        return [unit_key(q) for q in quarter_ends(first, ahead, spec.quarters)]
    if spec.unit == "day":
        return list(_day_units(first, hi))
    days = list(market.open_days)
    if spec.calendar != "daily":
        # a week's (month's) last open day, once the calendar shows the whole week (month)
        days = _last_per_group(days, spec.calendar)
    return [unit_key(d) for d in days if first <= d <= hi]


@functools.lru_cache(maxsize=16)
def _day_units(first: dt.date, hi: dt.date) -> tuple[str, ...]:
    """Every calendar day's unit from `first` to `hi`: the report datasets plan
    decades of days on every run, and share their bounds."""
    return tuple(unit_key(first + dt.timedelta(days=i)) for i in range((hi - first).days + 1))


def missing_units(
    spec: TaskSpec, wanted: Sequence[str], committed: set[str], opts: PlanOptions
) -> list[str]:
    """Wanted units not committed, plus the refresh window (not in append mode)."""
    if spec.unit in ("snapshot", "code"):
        return list(wanted)
    missing = {u for u in wanted if opts.full or u not in committed}
    if not opts.append:
        window = spec.refresh if opts.refresh_override is None else opts.refresh_override
        missing.update(wanted[len(wanted) - window :] if window else ())
    return [u for u in wanted if u in missing]


def _cap(spec: TaskSpec) -> int:
    return spec.row_cap or UNKNOWN_CAP


def _calls(items: Sequence[WorkItem], cap: int) -> int:
    """Expected calls of items, counting the splits of those over the cap."""
    return sum(max(1, math.ceil(i.est_rows / cap)) for i in items)


def _runs(wanted: Sequence[str], missing: Sequence[str]) -> list[list[str]]:
    """Missing units grouped into runs that are consecutive in `wanted`."""
    position = {u: i for i, u in enumerate(wanted)}
    runs: list[list[str]] = []
    for u in missing:
        if runs and position[u] == position[runs[-1][-1]] + 1:
            runs[-1].append(u)
        else:
            runs.append([u])
    return runs


# ------------------------------------------------------------------ strategies


def _rows_per_unit(spec: TaskSpec, market: Market, units: Sequence[str]) -> np.ndarray:
    """Expected rows of each unit across all codes (planning estimate)."""
    if spec.code_kind == "index":
        return np.full(len(units), len(market.index_codes) * spec.density)
    return market.listed_counts([unit_date(u) for u in units]) * spec.density


def _unit_param(spec: TaskSpec, unit: str) -> str:
    """A unit as its request parameter: `YYYYMM` for months, `YYYYMMDD` otherwise."""
    return unit[:6] if spec.unit == "month" else unit


def _per_unit(spec: TaskSpec, api: str, missing: Sequence[str], rows: np.ndarray) -> list[WorkItem]:
    assert spec.date_param is not None
    return [
        _item(api, {**dict(spec.fills), spec.date_param: _unit_param(spec, u)}, [u], r)
        for u, r in zip(missing, rows, strict=True)
    ]


def _ranges(
    spec: TaskSpec, api: str, wanted: Sequence[str], missing: Sequence[str], rows: np.ndarray
) -> list[WorkItem]:
    """One request per run of consecutive units; the service pages it newest first and
    each page's complete dates are committed as they come (see `follow_ups`), so every
    call but the last of a run returns a full page."""
    per_unit = dict(zip(missing, rows, strict=True))
    return [
        _item(
            api,
            {**dict(spec.fills), "start_date": run[0], "end_date": run[-1]},
            run,
            sum(per_unit[u] for u in run),
        )
        for run in _runs(wanted, missing)
    ]


def _per_code_chunk(spec: TaskSpec) -> int:
    """Units per call of a per-code range request, within the cap."""
    return max(1, math.floor(_cap(spec) * FILL / max(spec.density, 1e-9)))


def _per_code_ranges(
    spec: TaskSpec, api: str, market: Market, missing: Sequence[str]
) -> list[WorkItem]:
    """Per code, the span of the missing units cut into ranges within the cap."""
    assert spec.code_param is not None
    lo, hi = unit_date(missing[0]), unit_date(missing[-1])
    per_call = _per_code_chunk(spec)
    items = []
    for code in market.codes(spec.code_kind, lo, hi):
        for i in range(0, len(missing), per_call):
            chunk = missing[i : i + per_call]
            params = {
                **dict(spec.fills),
                spec.code_param: code,
                "start_date": chunk[0],
                "end_date": chunk[-1],
            }
            items.append(_item(api, params, missing, len(chunk) * spec.density))
    return items


def _with_types(spec: TaskSpec, params: Mapping[str, str]) -> list[dict[str, str]]:
    return [{**params, "type": t} for t in spec.types] if spec.types else [dict(params)]


def _report_periods(spec: TaskSpec, lo: dt.date, hi: dt.date) -> list[dt.date]:
    return quarter_ends(lo, hi, spec.quarters)


def _per_period(
    spec: TaskSpec, api: str, market: Market, missing: Sequence[str], lo: dt.date, hi: dt.date
) -> list[WorkItem]:
    """Whole-market requests per report period (the vip variant), covering every day."""
    rows = len(market.codes("stock", None, hi)) * spec.density
    return [
        _item(api, params, missing, rows)
        for period in _report_periods(spec, lo, hi)
        for params in _with_types(spec, {"period": unit_key(period)})
    ]


def _per_stock(
    spec: TaskSpec, api: str, market: Market, missing: Sequence[str], lo: dt.date, hi: dt.date
) -> list[WorkItem]:
    """Everything the API has for each stock, covering every day."""
    rows = len(_report_periods(spec, lo, hi)) * spec.density
    return [
        _item(api, params, missing, rows)
        for code in market.codes("stock", None, hi)
        for params in _with_types(spec, {"ts_code": code})
    ]


def _expected_events(spec: TaskSpec, market: Market, days: int, hi: dt.date) -> float:
    """Planning estimate of the (stock, period) pairs a per-day run re-asks."""
    stocks = len(market.codes("stock", None, hi))
    share = 0.1 if spec.events == "late" else 0.5
    return stocks * REPORTS_PER_STOCK_YEAR / 365 * days * share


def day_items(
    spec: TaskSpec,
    api: str,
    market: Market,
    wanted: Sequence[str],
    missing: Sequence[str],
    lo: dt.date,
    hi: dt.date,
) -> list[WorkItem]:
    """Requests for the rows that became visible on the missing days: announcement
    ranges, exact-day parameters, event pairs, open dividend plans."""
    stocks = len(market.codes("stock", None, hi))
    per_day = stocks * REPORTS_PER_STOCK_YEAR / 365 * spec.density
    items = []
    if spec.ann_range:
        for run in _runs(wanted, missing):
            params = {"start_date": run[0], "end_date": run[-1]}
            items.append(_item(api, params, run, per_day * len(run)))
    for day in missing:
        for name in spec.day_params:
            items.append(_item(api, {name: day}, [day], per_day))
    if spec.events in INCOME_EVENTS and market.events is not None:
        for code, period in _event_pairs(spec, market.events, missing, lo):
            for params in _with_types(spec, {"period": unit_key(period), "ts_code": code}):
                items.append(_item(api, params, missing, spec.density))
    if spec.events == "open_plans":
        asked = set(missing)
        oldest = hi - dt.timedelta(OPEN_PLAN_DAYS)
        for plan_day in market.open_plans:
            if unit_key(plan_day) not in asked and plan_day >= oldest:
                items.append(_item(api, {"ann_date": unit_key(plan_day)}, missing, 1.0))
    return items


def _event_pairs(
    spec: TaskSpec, events: pl.DataFrame, missing: Sequence[str], lo: dt.date
) -> list[tuple[str, dt.date]]:
    """(stock, period) pairs to re-ask: income versions visible on a missing day that the
    task's own day queries cannot reach (announced on another day), or every original
    report (for datasets without dates of their own)."""
    days = [unit_date(u) for u in missing]
    chosen = events.filter(
        pl.col("visible").is_in(days)
        & (pl.col("end_date") >= lo)
        & pl.col("end_date").dt.month().is_in([3 * q for q in spec.quarters])
    )
    if spec.events == "late":
        chosen = chosen.filter(~pl.col("ann_date").is_in(days))
    else:
        chosen = chosen.filter(pl.col("update_flag") == "0")
    pairs = chosen.select("ts_code", "end_date").unique().sort("end_date", "ts_code")
    return list(pairs.iter_rows())


def _per_listed_code(spec: TaskSpec, api: str, market: Market) -> list[WorkItem]:
    """One request per code of the task's kind listed at the as-of date (and per
    parameter set)."""
    assert spec.code_param is not None
    at = market.as_of
    return [
        _item(api, {**dict(params), spec.code_param: code}, [SNAPSHOT_UNIT], 0)
        for code in market.codes(spec.code_kind, at, at)
        for params in spec.snapshots
    ]


def _snapshot(spec: TaskSpec, api: str, opts: PlanOptions) -> list[WorkItem]:
    chosen = {k: v for k, v in opts.filters.items() if k in spec.filters}
    items = []
    for params in spec.snapshots:
        merged = dict(params)
        if any(k in merged and merged[k] != v for k, v in chosen.items()):
            continue  # a --list-status filter keeps only its own snapshot
        merged.update(chosen)
        items.append(_item(api, merged, [SNAPSHOT_UNIT], 0))
    return items


@dataclass(frozen=True)
class Candidate:
    """One strategy: its name, expected calls (its own and those made for it
    elsewhere), and how to build its items. Per-code strategies are counted without
    building one item per code: only the chosen strategy's items are built, so a
    one-day plan does not cost an item per listed stock."""

    name: str
    calls: int
    extra: int
    build: Callable[[], list[WorkItem]]


def _built(name: str, items: list[WorkItem], cap: int, extra: int = 0) -> Candidate:
    return Candidate(name, _calls(items, cap), extra, lambda: items)


def _per_stock_calls(spec: TaskSpec, market: Market, lo: dt.date, hi: dt.date, cap: int) -> int:
    """The calls `_per_stock` would plan, without building its items."""
    rows = len(_report_periods(spec, lo, hi)) * spec.density
    per_code = max(len(spec.types), 1) * max(1, math.ceil(rows / cap))
    return len(market.codes("stock", None, hi)) * per_code


def _per_code_range_calls(spec: TaskSpec, market: Market, missing: Sequence[str], cap: int) -> int:
    """The calls `_per_code_ranges` would plan, without building its items."""
    lo, hi = unit_date(missing[0]), unit_date(missing[-1])
    per_call = _per_code_chunk(spec)
    chunks = [min(per_call, len(missing) - i) for i in range(0, len(missing), per_call)]
    per_code = sum(max(1, math.ceil(n * spec.density / cap)) for n in chunks)
    return len(market.codes(spec.code_kind, lo, hi)) * per_code


def _candidates(
    spec: TaskSpec,
    api: str,
    market: Market,
    wanted: Sequence[str],
    missing: Sequence[str],
    lo: dt.date,
    hi: dt.date,
    opts: PlanOptions,
) -> list[Candidate]:
    """Every strategy the API allows, in order of preference on a tie."""
    cap = _cap(spec)
    out: list[Candidate] = []
    if spec.unit == "day":
        whole_market = api != spec.name or not spec.needs_code
        if whole_market:
            events = 0
            if spec.events in INCOME_EVENTS and market.events is None:
                # the events cost the income queries of these days, unless made anyway
                days = len(missing)
                events = 0 if opts.events_free else len(_runs(wanted, missing)) + days
                events += math.ceil(_expected_events(spec, market, days, hi)) * max(
                    len(spec.types), 1
                )
            items = day_items(spec, api, market, wanted, missing, lo, hi)
            out.append(_built("per_day", items, cap, events))
        if spec.backfill == "per_period" and api != spec.name:
            out.append(_built("per_period", _per_period(spec, api, market, missing, lo, hi), cap))
        if spec.code_param:
            calls = _per_stock_calls(spec, market, lo, hi, cap)
            build = lambda: _per_stock(spec, spec.name, market, missing, lo, hi)  # noqa: E731
            out.append(Candidate("per_code", calls, 0, build))
        return out
    rows = _rows_per_unit(spec, market, missing)
    if spec.date_param and not spec.needs_code:
        out.append(_built("per_unit", _per_unit(spec, api, missing, rows), cap))
    if spec.ranged:
        out.append(_built("ranges", _ranges(spec, api, wanted, missing, rows), cap))
    if spec.code_param and spec.unit == "trade_date":
        calls = _per_code_range_calls(spec, market, missing, cap)
        build = lambda: _per_code_ranges(spec, api, market, missing)  # noqa: E731
        out.append(Candidate("per_code", calls, 0, build))
    return out


def plan_task(spec: TaskSpec, committed: set[str], market: Market, opts: PlanOptions) -> TaskPlan:
    """The plan of one task: wanted and missing units, and the cheapest work items."""
    api = spec.api_for(opts.points if opts.allow_vip else min(opts.points, VIP_POINTS - 1))
    lo, hi = bounds(spec, market, opts)
    if spec.min_points > opts.points:
        reason = f"needs {spec.min_points} points, the account has {opts.points}"
        return TaskPlan(spec, spec.api, "none", lo, hi, (), (), (), skip_reason=reason)
    if spec.unit == "snapshot":
        unit, snapshots = (SNAPSHOT_UNIT,), tuple(_snapshot(spec, api, opts))
        return TaskPlan(
            spec, api, "snapshot", lo, hi, unit, unit, snapshots, expected_calls=len(snapshots)
        )
    if spec.unit == "code":
        unit, per_code = (SNAPSHOT_UNIT,), tuple(_per_listed_code(spec, api, market))
        return TaskPlan(
            spec, api, "per_code", lo, hi, unit, unit, per_code, expected_calls=len(per_code)
        )
    if lo is not None and lo > hi:
        return TaskPlan(spec, api, "none", lo, hi, (), (), ())
    wanted = wanted_units(spec, market, lo, hi)
    missing = missing_units(spec, wanted, committed, opts)
    if not missing:
        return TaskPlan(spec, api, "none", lo, hi, tuple(wanted), (), ())
    first = lo or unit_date(wanted[0])
    candidates = _candidates(spec, api, market, wanted, missing, first, hi, opts)
    cap = _cap(spec)
    chosen = min(candidates, key=lambda c: c.calls + c.extra)
    strategy, items, extra = chosen.name, chosen.build(), chosen.extra
    chosen_api = items[0].api if items else api
    awaiting = strategy == "per_day" and spec.events in INCOME_EVENTS and market.events is None
    return TaskPlan(
        spec, chosen_api, strategy, lo, hi, tuple(wanted), tuple(missing), tuple(items),
        expected_calls=_calls(items, cap), extra_calls=extra, awaiting_events=awaiting,
    )  # fmt: skip


# ------------------------------------------------------------------ cut-short answers


class CannotSplit(AlphahomeError):
    """A cut-short answer that no narrower request can complete."""


@dataclass(frozen=True)
class FollowUp:
    """What to do with an answer cut short: the rows to keep, the requests still to
    make (newest first: the last is asked next), and, for a cursor, the date after which
    everything the request covers is complete."""

    keep: pl.DataFrame
    requests: list[dict[str, str]]
    complete_after: dt.date | None = None


def follow_ups(
    spec: TaskSpec, params: Mapping[str, str], frame: pl.DataFrame, market: Market
) -> FollowUp:
    """For an answer cut short at the row cap: the rows known complete, and the narrower
    requests that fetch the rest.

    Rows come newest first, so with several dates in the answer every date but the
    oldest is complete: keep those and continue up to that oldest date (a cursor).
    When one date alone fills the answer, or the order is not newest first, the range
    is halved; a single date is split by code (stock, index, industry).
    """
    field_ = _range_field(spec)
    if field_ and field_ in frame.columns:
        dates = frame[field_].drop_nulls()
        lo, hi = params.get("start_date"), params.get("end_date")
        oldest, newest = dates.min(), dates.max()  # None when no row has the date
        if (
            isinstance(oldest, dt.date)
            and isinstance(newest, dt.date)
            and dates.is_sorted(descending=True)
            and oldest < newest
        ):
            keep = frame.filter(pl.col(field_) > oldest)
            return FollowUp(keep, [{**params, "end_date": unit_key(oldest)}], oldest)
        if lo and hi and lo < hi:
            first, last = unit_date(lo), unit_date(hi)
            middle = first + (last - first) // 2
            after = unit_key(middle + dt.timedelta(days=1))
            older, newer = {**params, "end_date": unit_key(middle)}, {**params, "start_date": after}
            return FollowUp(frame.clear(), [older, newer])
    if spec.code_param and spec.code_param not in params:
        day = params.get(spec.date_param or "", params.get("end_date"))
        at = unit_date(day) if day and len(day) == 8 else None
        codes = market.codes(spec.code_kind, at, at)
        if codes:
            return FollowUp(frame.clear(), [{**params, spec.code_param: c} for c in codes])
    msg = f"{spec.name}: an answer to {dict(params)} was cut short and cannot be split further"
    raise CannotSplit(msg)


def _range_field(spec: TaskSpec) -> str | None:
    """The output date that `start_date`/`end_date` filter, when they filter one."""
    if spec.ranged or (spec.needs_code and spec.unit == "trade_date"):
        return spec.date_field
    if spec.ann_range:
        return "ann_date"
    return None


def within_bounds(plan: TaskPlan, frame: pl.DataFrame) -> pl.DataFrame:
    """The fetched rows the task keeps: from its first date on (the period for reports,
    the trade date for market data) and, for rows that appear on a known day, not
    after the as-of date, so every strategy stores the same rows. Snapshots are whole."""
    spec = plan.task
    if spec.unit in ("snapshot", "code", "month") or spec.date_field is None or plan.hi is None:
        return frame
    date = pl.col(spec.date_field)
    keep = date >= (plan.lo or dt.date(1900, 1, 1))
    if spec.unit == "trade_date":
        keep &= date <= plan.hi
    visible = [c for c in spec.visible if c in frame.columns]
    if spec.unit == "day" and visible:
        keep &= pl.max_horizontal(*visible) <= plan.hi
    return frame.filter(keep)
