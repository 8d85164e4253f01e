"""The universe at t: listing, delisting, staleness of L(t), Beijing stocks."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from factors.universe import staleness_cutoff, universe
from tests.factors.helpers import indicators_of, stocks_of
from tests.factors.reference import ref_universe

D = dt.date


def _members(stocks: pl.DataFrame, indicators: pl.DataFrame, t: dt.date, **kw: bool) -> set[str]:
    rows = universe(stocks, indicators, pl.Series([t], dtype=pl.Date), **kw)
    return set(rows.get_column("ts_code"))


def test_staleness_cutoff_is_the_month_end_ten_months_before() -> None:
    dates = pl.Series([D(2024, 4, 15), D(2024, 1, 1), D(2024, 12, 31), D(2021, 3, 31)])
    got = pl.select(staleness_cutoff(pl.lit(dates))).to_series().to_list()
    assert got == [D(2023, 6, 30), D(2023, 3, 31), D(2024, 2, 29), D(2020, 5, 31)]


def test_design_example_for_staleness() -> None:
    t = D(2024, 4, 15)  # needs L(t) >= 2023-06-30
    stocks = stocks_of([{"ts_code": c, "list_date": D(2010, 1, 1)} for c in ("A", "B", "C")])
    indicators = indicators_of(
        [
            {"ts_code": "A", "knowledge_date": D(2023, 8, 30), "end_date": D(2023, 6, 30)},
            {"ts_code": "B", "knowledge_date": D(2023, 4, 30), "end_date": D(2023, 3, 31)},
            # C's newer report is announced after t: as of t it is stale
            {"ts_code": "C", "knowledge_date": D(2023, 4, 30), "end_date": D(2023, 3, 31)},
            {"ts_code": "C", "knowledge_date": D(2024, 4, 16), "end_date": D(2023, 12, 31)},
        ]
    )
    assert _members(stocks, indicators, t) == {"A"}
    assert _members(stocks, indicators, D(2024, 4, 16)) == {"A", "C"}


def test_listing_and_delisting_days() -> None:
    t = D(2022, 6, 10)
    stocks = stocks_of(
        [
            {"ts_code": "LISTS_TODAY", "list_date": t},
            {"ts_code": "LISTS_TOMORROW", "list_date": t + dt.timedelta(days=1)},
            {"ts_code": "DELISTS_TODAY", "list_date": D(2010, 1, 1), "delist_date": t},
            {"ts_code": "DELISTS_LATER", "list_date": D(2010, 1, 1), "delist_date": D(2022, 7, 1)},
            {"ts_code": "NO_REPORT", "list_date": D(2010, 1, 1)},
        ]
    )
    indicators = indicators_of(
        [
            {"ts_code": c, "knowledge_date": D(2022, 4, 28), "end_date": D(2022, 3, 31)}
            for c in ("LISTS_TODAY", "LISTS_TOMORROW", "DELISTS_TODAY", "DELISTS_LATER")
        ]
    )
    assert _members(stocks, indicators, t) == {"LISTS_TODAY", "DELISTS_LATER"}


def test_beijing_stocks_are_in_unless_left_out() -> None:
    stocks = stocks_of([{"ts_code": c, "list_date": D(2010, 1, 1)} for c in ("1.SH", "2.BJ")])
    indicators = indicators_of(
        [
            {"ts_code": c, "knowledge_date": D(2022, 4, 28), "end_date": D(2022, 3, 31)}
            for c in ("1.SH", "2.BJ")
        ]
    )
    t = D(2022, 5, 6)
    assert _members(stocks, indicators, t) == {"1.SH", "2.BJ"}
    assert _members(stocks, indicators, t, include_bj=False) == {"1.SH"}


def test_the_latest_fetched_stock_basic_row_wins() -> None:
    fetched = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    stocks = stocks_of(
        [
            {"ts_code": "A", "list_date": D(2010, 1, 1), "_fetched_at": fetched},
            {
                "ts_code": "A",
                "list_date": D(2010, 1, 1),
                "delist_date": D(2022, 1, 1),
                "_fetched_at": fetched + dt.timedelta(days=1),
            },
        ]
    )
    indicators = indicators_of(
        [{"ts_code": "A", "knowledge_date": D(2021, 10, 28), "end_date": D(2021, 9, 30)}]
    )
    assert _members(stocks, indicators, D(2021, 12, 31)) == {"A"}
    assert _members(stocks, indicators, D(2022, 1, 7)) == set()


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[dict], list[dict], list[dt.date], bool]:
    day = st.integers(0, 1500).map(lambda n: D(2019, 1, 1) + dt.timedelta(days=n))
    stocks, indicators = [], []
    for i in range(draw(st.integers(1, 6))):
        code = f"{i}.{draw(st.sampled_from(['SH', 'SZ', 'BJ']))}"
        listed = draw(st.one_of(st.none(), day))
        delisted = draw(st.one_of(st.none(), day))
        stocks.append({"ts_code": code, "list_date": listed, "delist_date": delisted})
        known = sorted(draw(st.sets(day, max_size=6)))
        ends = sorted(draw(st.lists(day, min_size=len(known), max_size=len(known))))
        indicators += [
            {"ts_code": code, "knowledge_date": k, "end_date": e}
            for k, e in zip(known, ends, strict=True)
        ]
    dates = sorted(draw(st.sets(day, min_size=1, max_size=8)))
    return stocks, indicators, dates, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(_cases())
def test_universe_matches_the_reference(
    case: tuple[list[dict], list[dict], list[dt.date], bool],
) -> None:
    stocks, indicators, dates, include_bj = case
    got = universe(
        stocks_of(stocks),
        indicators_of(indicators),
        pl.Series(dates, dtype=pl.Date),
        include_bj=include_bj,
    )
    pairs = set(got.select("ts_code", "calc_date").iter_rows())
    expected = {
        (code, t)
        for t in dates
        for code in ref_universe(stocks, indicators_of(indicators).to_dicts(), t, include_bj)
    }
    assert pairs == expected
    assert got.get_column("knowledge_date").le(got.get_column("calc_date")).all()
