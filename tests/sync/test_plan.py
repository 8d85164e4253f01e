"""The planner without a source: units wanted, units missing, strategies, splits."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipeline.sync.plan import (
    CannotSplit,
    Market,
    PlanOptions,
    _calls,
    _candidates,
    _cap,
    follow_ups,
    plan_task,
    quarter_ends,
    unit_date,
    unit_key,
    wanted_units,
)
from pipeline.sync.tasks import TASKS, task


def weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    days, d = [], first
    while d <= last:
        if d.weekday() < 5 and (d.month, d.day) != (1, 1):
            days.append(d)
        d += dt.timedelta(days=1)
    return days


def market(stocks: int, first: dt.date, last: dt.date, as_of: dt.date | None = None) -> Market:
    listings = pl.DataFrame(
        {
            "ts_code": [f"{600000 + i:06d}.SH" for i in range(stocks)],
            "list_date": [dt.date(2000, 1, 1)] * stocks,
            "delist_date": [None] * stocks,
        },
        schema={"ts_code": pl.String, "list_date": pl.Date, "delist_date": pl.Date},
    )
    return Market(tuple(weekdays(first, last)), as_of or last, listings)


def test_wanted_units_follow_the_calendar() -> None:
    m = market(3, dt.date(2023, 12, 1), dt.date(2024, 3, 15))
    lo, hi = dt.date(2024, 1, 1), dt.date(2024, 2, 29)
    days = wanted_units(task("daily"), m, lo, hi)
    assert days == [unit_key(d) for d in m.open_days if lo <= d <= hi]
    weeks = wanted_units(task("weekly"), m, lo, hi)
    # reference: the last open day of each ISO week, by a plain scan
    expected = []
    for d in m.open_days:
        later = [e for e in m.open_days if e > d and e.isocalendar()[:2] == d.isocalendar()[:2]]
        if not later and lo <= d <= hi:
            expected.append(unit_key(d))
    assert weeks == expected and len(weeks) == 8  # the week of 1 March ends after hi
    months = wanted_units(task("monthly"), m, lo, hi)
    assert months == ["20240131", "20240229"]
    # reports: every calendar day (the day a version becomes visible)
    days = wanted_units(task("income"), m, dt.date(2024, 2, 27), dt.date(2024, 3, 2))
    assert days == ["20240227", "20240228", "20240229", "20240301", "20240302"]
    # disclosure plans: report periods, including the next one once it is a month away
    periods = wanted_units(task("disclosure_date"), m, dt.date(2023, 1, 1), dt.date(2024, 3, 5))
    assert periods == [unit_key(q) for q in quarter_ends(dt.date(2023, 1, 1), dt.date(2024, 3, 31))]
    assert quarter_ends(dt.date(2023, 1, 1), dt.date(2023, 12, 30)) == [
        dt.date(2023, 3, 31), dt.date(2023, 6, 30), dt.date(2023, 9, 30)
    ]  # fmt: skip


def test_missing_units_are_the_uncommitted_plus_the_refresh_window() -> None:
    m = market(3, dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    opts = PlanOptions(points=5000, start=dt.date(2024, 1, 1))
    everything = plan_task(task("daily"), set(), m, opts)
    wanted = list(everything.wanted)
    committed = set(wanted[:-10]) - {wanted[5]}
    plan = plan_task(task("daily"), committed, m, opts)
    assert list(plan.missing) == [wanted[5], *wanted[-10:]]
    # everything committed: only the refresh window (3 trade dates) comes again
    plan = plan_task(task("daily"), set(wanted), m, opts)
    assert list(plan.missing) == wanted[-3:]
    assert plan.strategy == "ranges" and plan.calls == 1  # 9 rows: one ranged call
    one_day = plan_task(task("daily"), set(wanted), m, PlanOptions(5000, refresh_override=1))
    assert one_day.strategy == "per_unit" and [dict(i.params) for i in one_day.items] == [
        {"trade_date": wanted[-1]}
    ]
    # append mode never re-fetches what is stored; --full re-fetches everything
    assert plan_task(task("daily"), set(wanted), m, PlanOptions(5000, append=True)).missing == ()
    full = PlanOptions(5000, dt.date(2024, 1, 1), full=True)
    assert plan_task(task("daily"), set(wanted), m, full).missing == tuple(wanted)


def test_every_unit_is_covered_and_calls_approach_the_minimum() -> None:
    m = market(300, dt.date(2019, 1, 1), dt.date(2023, 12, 29))
    opts = PlanOptions(points=5000, start=dt.date(2019, 1, 1))
    plan = plan_task(task("daily"), set(), m, opts)
    # one request for the whole run of dates, paged by the service (one call per 6000 rows)
    assert plan.strategy == "ranges" and len(plan.items) == 1
    assert set(plan.items[0].units) == set(plan.wanted)
    assert dict(plan.items[0].params) == {"start_date": "20190102", "end_date": "20231229"}
    assert plan.calls == -(-300 * len(plan.wanted) // 6000)  # expected pages of 6000 rows
    # a hole in the committed units: one request per run of missing dates
    hole = set(plan.wanted) - set(plan.wanted[100:110])
    patched = plan_task(task("daily"), hole, m, opts)
    assert [dict(i.params) for i in patched.items] == [
        {"start_date": plan.wanted[100], "end_date": plan.wanted[109]},
        {"start_date": plan.wanted[-3], "end_date": plan.wanted[-1]},
    ]
    # codes that must be named one by one, over a long history: one call per code
    indexes = Market(m.open_days, m.as_of, m.listings, index_codes=("000001.SH", "399001.SZ"))
    plan = plan_task(task("index_daily"), set(), indexes, opts)
    assert plan.strategy == "per_code" and plan.calls == 2
    assert {dict(i.params)["ts_code"] for i in plan.items} == {"000001.SH", "399001.SZ"}


def test_points_decide_skips_and_the_vip_variant() -> None:
    m = market(30, dt.date(2023, 1, 1), dt.date(2024, 3, 29))
    low = plan_task(task("limit_list_d"), set(), m, PlanOptions(points=2000))
    assert low.skip_reason and "5000" in low.skip_reason
    start = dt.date(2023, 1, 1)
    vip = plan_task(task("income"), set(), m, PlanOptions(points=5000, start=start))
    # a long span of days: the whole market per report period, two years before the start
    assert vip.api == "income_vip" and vip.strategy == "per_period"
    periods = quarter_ends(dt.date(2021, 1, 1), dt.date(2024, 3, 29))
    assert [dict(i.params) for i in vip.items] == [{"period": unit_key(q)} for q in periods]
    assert vip.missing[0] == "20210101" and vip.missing[-1] == "20240329"
    # a couple of days: announcement ranges and exact f_ann_date days
    recent = set(vip.wanted[:-2])
    days = plan_task(task("income"), recent, m, PlanOptions(points=5000, start=start))
    assert days.strategy == "per_day"
    assert [dict(i.params) for i in days.items] == [
        {"start_date": "20240328", "end_date": "20240329"},
        {"f_ann_date": "20240328"},
        {"f_ann_date": "20240329"},
    ]
    plain = plan_task(task("income"), set(), m, PlanOptions(points=2000, start=start))
    assert plain.api == "income" and plain.strategy == "per_code" and plain.calls == 30


@pytest.mark.parametrize("name", ["income", "cashflow", "daily", "index_daily", "adj_factor"])
@pytest.mark.parametrize("days", [1, 400])
def test_strategies_counted_without_their_items_count_what_their_items_cost(
    name: str, days: int
) -> None:
    m = market(40, dt.date(2021, 1, 1), dt.date(2024, 3, 29))
    m = Market(m.open_days, m.as_of, m.listings, index_codes=("000001.SH", "399001.SZ"))
    spec = task(name)
    opts = PlanOptions(points=5000, start=dt.date(2021, 1, 1))
    wanted = list(plan_task(spec, set(), m, opts).wanted)
    plan = plan_task(spec, set(wanted[:-days]), m, opts)
    missing, first, hi = list(plan.missing), unit_date(wanted[0]), unit_date(wanted[-1])
    api = spec.api_for(opts.points)
    candidates = _candidates(spec, api, m, wanted, missing, first, hi, opts)
    assert "per_code" in [c.name for c in candidates]
    for candidate in candidates:
        items = candidate.build()
        assert candidate.calls == _calls(items, _cap(spec)) > 0, candidate.name
    # the plan picks the cheapest, and builds only that one's items
    cheapest = min(candidates, key=lambda c: c.calls + c.extra)
    assert plan.strategy == cheapest.name and plan.calls == cheapest.calls


def test_snapshot_filters_pick_the_snapshots() -> None:
    m = market(3, dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    both = plan_task(task("stock_basic"), set(), m, PlanOptions(5000))
    assert [dict(i.params) for i in both.items] == [{"list_status": s} for s in "LDP"]
    filters = {"list_status": "D", "exchange": "SSE"}
    one = plan_task(task("stock_basic"), set(), m, PlanOptions(5000, filters=filters))
    assert [dict(i.params) for i in one.items] == [{"list_status": "D", "exchange": "SSE"}]


def test_cut_short_answers_are_continued_or_split() -> None:
    m = market(4, dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    days = [dt.date(2024, 1, 5), dt.date(2024, 1, 5), dt.date(2024, 1, 4), dt.date(2024, 1, 3)]
    page = pl.DataFrame({"ts_code": ["A", "B", "A", "A"], "trade_date": days})
    params = {"start_date": "20240101", "end_date": "20240131"}
    follow = follow_ups(task("daily"), params, page, m)
    assert follow.keep["trade_date"].to_list() == days[:3]  # 2024-01-03 may be incomplete
    assert follow.requests == [{"start_date": "20240101", "end_date": "20240103"}]
    assert follow.complete_after == dt.date(2024, 1, 3)
    # one date alone fills the answer: halve the range, the newer half asked first (last)
    same = page.with_columns(trade_date=pl.lit(dt.date(2024, 1, 5)))
    follow = follow_ups(task("daily"), params, same, m)
    assert follow.keep.height == 0 and follow.complete_after is None
    assert follow.requests == [
        {"start_date": "20240101", "end_date": "20240116"},
        {"start_date": "20240117", "end_date": "20240131"},
    ]
    # a single date: split by stock
    follow = follow_ups(task("daily"), {"trade_date": "20240105"}, same, m)
    assert [r["ts_code"] for r in follow.requests] == sorted(m.listings["ts_code"].to_list())
    assert all(r["trade_date"] == "20240105" for r in follow.requests)
    with pytest.raises(CannotSplit):
        follow_ups(task("daily"), {"trade_date": "20240105", "ts_code": "A"}, same, m)


def test_every_latest_dataset_keys_on_its_partition_date() -> None:
    for spec in TASKS:
        if spec.storage == "latest" and spec.partitioning != "single":
            assert spec.date_field in spec.key, spec.name
        assert set(spec.key) <= set(spec.columns), spec.name
        assert set(spec.sort_by) <= set(spec.fields), spec.name
        # a stored column the API does not return is the parameter the task asks by
        for column in set(spec.columns) - set(spec.fields):
            assert column == "type" and spec.types, spec.name


def test_an_incremental_plan_reaches_a_new_version_of_any_old_period() -> None:
    """Statements are asked by the day a version becomes visible, never by recent period:
    a restatement of a period two years back that keeps its old ann_date, and a late
    first report of an old period, are both reached by the plan of the new days."""
    m = market(30, dt.date(2021, 1, 1), dt.date(2024, 3, 29))
    day = dt.date(2024, 3, 28)
    old, older = dt.date(2021, 12, 31), dt.date(2021, 9, 30)
    events = pl.DataFrame(
        {
            "ts_code": ["600003.SH", "600007.SH"],
            "end_date": [old, older],
            "ann_date": [dt.date(2022, 4, 20), day],  # restated (old ann_date) / reported late
            "visible": [day, day],
            "update_flag": ["1", "0"],
        }
    )
    with_events = Market(m.open_days, m.as_of, m.listings, events=events)
    opts = PlanOptions(points=5000, start=dt.date(2023, 1, 1))
    for name in ("income", "balancesheet", "cashflow", "fina_indicator", "express", "forecast"):
        spec = task(name)
        wanted = plan_task(spec, set(), with_events, opts).wanted
        plan = plan_task(spec, set(wanted[:-2]), with_events, opts)  # last run: 2 days ago
        assert plan.strategy == "per_day" and plan.missing == wanted[-2:], name
        asked = [dict(i.params) for i in plan.items]
        assert not any(set(p) == {"period"} for p in asked), name  # never by period alone
        ann_days = {"start_date": "20240328", "end_date": "20240329"}
        assert (ann_days in asked) == spec.ann_range, name  # the late report: by ann_date
        if "f_ann_date" in spec.day_params or "ann_date" in spec.day_params:
            param = spec.day_params[0]
            assert {param: "20240328"} in asked and {param: "20240329"} in asked, name
        if spec.events == "late":  # the restatement: by its (stock, period) pair
            assert {"ts_code": "600003.SH", "period": "20211231"} in asked, name
            assert {"ts_code": "600007.SH", "period": "20210930"} not in asked, name
        elif spec.name in ("income", "cashflow"):  # the restatement: by f_ann_date
            assert {"f_ann_date": "20240328"} in asked, name
