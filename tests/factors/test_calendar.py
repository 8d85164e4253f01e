"""Calc dates from the trade calendar, and the year-ago calc date."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factors.calendar import calc_dates, year_ago_dates
from foundation.errors import UsageError
from tests.factors.reference import ref_calc_dates, ref_year_ago

D = dt.date


def _calendar(first: dt.date, last: dt.date, closed: set[dt.date] = frozenset()) -> pl.DataFrame:
    """SSE rows for every day of [first, last]: weekdays open unless in `closed`."""
    days = pl.date_range(first, last, eager=True)
    is_open = ["1" if d.isoweekday() <= 5 and d not in closed else "0" for d in days]
    return pl.DataFrame(
        {"exchange": "SSE", "cal_date": days, "is_open": is_open},
        schema={"exchange": pl.String, "cal_date": pl.Date, "is_open": pl.String},
    )


def test_weekly_takes_the_last_open_day_of_each_iso_week() -> None:
    # Friday 2021-01-01 closed: the ISO week 2020-W53 (Mon 12-28 .. Sun 01-03) ends on Thursday
    cal = _calendar(D(2020, 12, 14), D(2021, 1, 17), closed={D(2021, 1, 1), D(2021, 1, 15)})
    got = calc_dates(cal, D(2021, 1, 31)).to_list()
    assert got == [D(2020, 12, 18), D(2020, 12, 25), D(2020, 12, 31), D(2021, 1, 8), D(2021, 1, 14)]


def test_monthly_and_daily() -> None:
    cal = _calendar(D(2021, 1, 1), D(2021, 3, 31), closed={D(2021, 2, 26)})
    assert calc_dates(cal, D(2021, 12, 31), "monthly").to_list() == [
        D(2021, 1, 29),
        D(2021, 2, 25),
        D(2021, 3, 31),
    ]
    daily = calc_dates(cal, D(2021, 1, 8), "daily").to_list()
    week = [D(2021, 1, 4), D(2021, 1, 5), D(2021, 1, 6), D(2021, 1, 7), D(2021, 1, 8)]
    assert daily == [D(2021, 1, 1), *week]  # Friday 2021-01-01 is open in this calendar


def test_a_calc_date_after_the_as_of_date_is_not_used_yet() -> None:
    cal = _calendar(D(2024, 1, 1), D(2024, 2, 29))
    # as of Wednesday 2024-01-17, the week's Friday is still to come
    assert calc_dates(cal, D(2024, 1, 17)).to_list() == [D(2024, 1, 5), D(2024, 1, 12)]
    assert calc_dates(cal, D(2024, 1, 19)).to_list()[-1] == D(2024, 1, 19)


def test_a_period_the_calendar_does_not_cover_to_its_end_is_not_used() -> None:
    # the calendar stops on Wednesday: Thursday or Friday may still be open days
    cal = _calendar(D(2024, 1, 1), D(2024, 1, 17))
    assert calc_dates(cal, D(2024, 3, 1)).to_list() == [D(2024, 1, 5), D(2024, 1, 12)]
    assert calc_dates(cal, D(2024, 3, 1), "monthly").to_list() == []


def test_only_sse_open_days_count_and_duplicates_are_harmless() -> None:
    cal = _calendar(D(2024, 1, 1), D(2024, 1, 14), closed={D(2024, 1, 12)})
    szse = cal.with_columns(exchange=pl.lit("SZSE"), is_open=pl.lit("1"))
    got = calc_dates(pl.concat([cal, szse, cal]), D(2024, 2, 1)).to_list()
    assert got == [D(2024, 1, 5), D(2024, 1, 11)]


def test_unknown_frequency_is_an_error() -> None:
    with pytest.raises(UsageError, match="quarterly"):
        calc_dates(_calendar(D(2024, 1, 1), D(2024, 1, 7)), D(2024, 2, 1), "quarterly")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    closed=st.sets(st.integers(0, 200), max_size=60),
    start=st.integers(0, 400),
    length=st.integers(1, 200),
    as_of=st.integers(0, 620),
    freq=st.sampled_from(["weekly", "monthly", "daily"]),
)
def test_calc_dates_match_the_reference(
    closed: set[int], start: int, length: int, as_of: int, freq: str
) -> None:
    base = D(2019, 12, 20) + dt.timedelta(days=start)
    shut = {base + dt.timedelta(days=c) for c in closed}
    cal = _calendar(base, base + dt.timedelta(days=length), shut)
    cut = D(2019, 12, 20) + dt.timedelta(days=as_of)
    expected = ref_calc_dates(cal.to_dicts(), cut, freq)
    assert calc_dates(cal, cut, freq).to_list() == expected  # type: ignore[arg-type]


def _year_ago(dates: list[dt.date]) -> dict[dt.date, dt.date | None]:
    frame = year_ago_dates(pl.Series(dates, dtype=pl.Date))
    return dict(frame.iter_rows())


def test_year_ago_is_the_nearest_date_within_30_days_and_ties_go_earlier() -> None:
    t = D(2022, 6, 30)
    target = t - dt.timedelta(days=365)  # 2021-06-30
    tie = [target - dt.timedelta(days=3), target + dt.timedelta(days=3), t]
    assert _year_ago(tie)[t] == target - dt.timedelta(days=3)
    closer_after = [target - dt.timedelta(days=5), target + dt.timedelta(days=4), t]
    assert _year_ago(closer_after)[t] == target + dt.timedelta(days=4)
    edge = [target - dt.timedelta(days=30), t]
    assert _year_ago(edge)[t] == target - dt.timedelta(days=30)
    edge_tie = [target - dt.timedelta(days=30), target + dt.timedelta(days=30), t]
    assert _year_ago(edge_tie)[t] == target - dt.timedelta(days=30)
    too_far = [target - dt.timedelta(days=31), target + dt.timedelta(days=31), t]
    assert _year_ago(too_far)[t] is None


@settings(max_examples=80, deadline=None)
@given(st.sets(st.integers(0, 1200), min_size=1, max_size=80))
def test_year_ago_matches_the_reference(offsets: set[int]) -> None:
    dates = sorted(D(2019, 1, 1) + dt.timedelta(days=o) for o in offsets)
    got = _year_ago(dates)
    assert got == {t: ref_year_ago(dates, t) for t in dates}
