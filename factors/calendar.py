"""Calc dates: the trading days on which P and G are computed (DESIGN section 7).

A calc date is the last SSE open day of an ISO week (Monday to Sunday), of a month,
or every open day. The source publishes the calendar ahead of today, so the last open
day of a period is known before the period ends; a period is only used once the
calendar covers it to its last calendar day (otherwise a later open day could still
appear), and a calc date is only used once it is on or before the data's as-of date.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl

from foundation.errors import UsageError

Freq = Literal["weekly", "monthly", "daily"]
FREQS: tuple[Freq, ...] = ("weekly", "monthly", "daily")

CALENDAR_EXCHANGE = "SSE"
OPEN = "1"

YEAR_AGO_DAYS = 365
YEAR_AGO_TOLERANCE_DAYS = 30


def _period_end(freq: Freq) -> pl.Expr:
    day = pl.col("cal_date")
    if freq == "weekly":
        return day + pl.duration(days=7 - day.dt.weekday().cast(pl.Int64))  # weekday: Monday = 1
    if freq == "monthly":
        return day.dt.month_end()
    return day


def calc_dates(trade_cal: pl.DataFrame, as_of: dt.date, freq: Freq = "weekly") -> pl.Series:
    """The sorted calc dates (pl.Date, named `calc_date`) on or before `as_of`.

    `trade_cal` holds raw/trade_cal rows (exchange, cal_date, is_open as the String
    '1'/'0'); only SSE rows count. Duplicated calendar rows are harmless.
    """
    if freq not in FREQS:
        msg = f"unknown calc-date frequency {freq!r}; expected one of {', '.join(FREQS)}"
        raise UsageError(msg)
    sse = trade_cal.lazy().filter(pl.col("exchange") == CALENDAR_EXCHANGE)
    covered_until = sse.select(pl.col("cal_date").max())
    dates = (
        sse.filter(pl.col("is_open") == OPEN)
        .select("cal_date")
        .unique()
        .with_columns(period_end=_period_end(freq))
        .group_by("period_end")
        .agg(pl.col("cal_date").max())
        .join(covered_until.rename({"cal_date": "covered_until"}), how="cross")
        .filter((pl.col("period_end") <= pl.col("covered_until")) & (pl.col("cal_date") <= as_of))
        .select(pl.col("cal_date").alias("calc_date"))
        .sort("calc_date")
        .collect()
    )
    return dates.get_column("calc_date")


def year_ago_dates(dates: pl.Series) -> pl.DataFrame:
    """For each calc date t, t-1y: the calc date nearest to t - 365 days, within 30 days.

    Returns (calc_date, year_ago), one row per distinct date of `dates`; year_ago is
    null when no calc date lies within +-30 days (inclusive) of t - 365 days. When two
    are equally near, the earlier one wins. Both neighbours come from as-of joins (the
    latest date <= the target and the earliest date >= it), so the tie rule is explicit.
    """
    frame = (
        pl.DataFrame({"calc_date": dates.cast(pl.Date)})
        .unique()
        .sort("calc_date")
        .with_columns(target=pl.col("calc_date") - pl.duration(days=YEAR_AGO_DAYS))
    )
    candidates = frame.select(pl.col("calc_date").alias("candidate"))
    before = frame.join_asof(
        candidates.rename({"candidate": "before"}),
        left_on="target",
        right_on="before",
        strategy="backward",
    )
    both = before.join_asof(
        candidates.rename({"candidate": "after"}),
        left_on="target",
        right_on="after",
        strategy="forward",
    )
    gap_before = (pl.col("target") - pl.col("before")).dt.total_days()
    gap_after = (pl.col("after") - pl.col("target")).dt.total_days()
    nearest = (
        pl.when(pl.col("after").is_null() | (gap_before <= gap_after))
        .then(pl.col("before"))
        .otherwise(pl.col("after"))
    )
    gap = pl.when(nearest == pl.col("before")).then(gap_before).otherwise(gap_after)
    return both.select(
        "calc_date",
        year_ago=pl.when(gap <= YEAR_AGO_TOLERANCE_DAYS).then(nearest),
    )
