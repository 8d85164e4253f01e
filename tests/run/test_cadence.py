"""The evening run's calendar: factors on the period's last open day (caught up when a
day was missed), a full PIT on the week's last open day, judged on the exchange
calendar (holidays included), never on weekday names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from cache.layout import CacheLayout
from pipeline.ops.stats import trade_calendar
from pipeline.run.cadence import decide_cadence, plan_cadence
from tests.ops.conftest import write_calendar


def _calendar(tmp_path: Path) -> pl.DataFrame:
    layout = CacheLayout(tmp_path / "data")
    write_calendar(layout)
    return trade_calendar(layout)


def test_weekly_factors_and_full_pit_on_the_weeks_last_open_day(tmp_path: Path) -> None:
    calendar = _calendar(tmp_path)
    friday = dt.date(2024, 3, 29)
    plan = decide_cadence(calendar, friday, "weekly", dt.date(2024, 3, 22))
    assert plan.factors_due and plan.pit_full and "2024-03-29" in plan.reason
    # Tuesday after that week's factors: nothing due, PIT incremental
    plan = decide_cadence(calendar, dt.date(2024, 4, 2), "weekly", friday)
    assert not plan.factors_due and not plan.pit_full
    # Qingming (Thu 4th and Fri 5th closed): the week ends on Wednesday the 3rd
    plan = decide_cadence(calendar, dt.date(2024, 4, 3), "weekly", friday)
    assert plan.factors_due and plan.pit_full
    # a missed week end is caught up on the next run
    plan = decide_cadence(calendar, dt.date(2024, 4, 2), "weekly", dt.date(2024, 3, 22))
    assert plan.factors_due and not plan.pit_full
    # Spring Festival (Feb 9-16 closed): Feb 8 (Thursday) ends its week
    plan = decide_cadence(calendar, dt.date(2024, 2, 8), "weekly", dt.date(2024, 2, 2))
    assert plan.factors_due and plan.pit_full


def test_monthly_and_daily_factor_cadences(tmp_path: Path) -> None:
    calendar = _calendar(tmp_path)
    march_end = dt.date(2024, 3, 29)
    assert not decide_cadence(calendar, dt.date(2024, 4, 26), "monthly", march_end).factors_due
    assert decide_cadence(calendar, dt.date(2024, 4, 30), "monthly", march_end).factors_due
    tuesday = dt.date(2024, 4, 2)
    assert decide_cadence(calendar, tuesday, "daily", dt.date(2024, 4, 1)).factors_due
    assert not decide_cadence(calendar, tuesday, "daily", tuesday).factors_due


def test_without_calendar_or_factors_everything_runs(tmp_path: Path) -> None:
    empty = pl.DataFrame(schema={"exchange": pl.String, "cal_date": pl.Date, "is_open": pl.String})
    plan = decide_cadence(empty, dt.date(2024, 4, 2), "weekly", None)
    assert plan.factors_due and not plan.pit_full
    calendar = _calendar(tmp_path)
    assert decide_cadence(calendar, dt.date(2024, 4, 2), "weekly", None).factors_due
    # on the cache itself: no raw/daily, so no as-of date
    plan = plan_cadence(CacheLayout(tmp_path / "data"), "weekly")
    assert plan.factors_due and "no calendar or as-of date" in plan.reason
