"""The universe at each calc date t (DESIGN section 7).

A stock is in at t when it is listed at t (list_date <= t and, if it has a
delist_date, t < delist_date) and its latest income period as known at t, L(t) =
pit.indicators.end_date as of t, ends on or after the last day of the month ten
months before t's month (t = 2024-04-15 needs L(t) >= 2023-06-30). Beijing-exchange
stocks (.BJ) are in unless `include_bj` is false.
"""

from __future__ import annotations

import polars as pl

from factors.asof import as_of

BEIJING_SUFFIX = ".BJ"
STALE_AFTER_MONTHS = 10


def latest_stock_rows(stock_basic: pl.DataFrame) -> pl.DataFrame:
    """One stock_basic row per ts_code: the most recently fetched one (by `_fetched_at`)."""
    order = ["ts_code", "_fetched_at"] if "_fetched_at" in stock_basic.columns else ["ts_code"]
    return (
        stock_basic.sort(order, nulls_last=False, maintain_order=True)
        .unique("ts_code", keep="last", maintain_order=True)
        .select("ts_code", "list_date", "delist_date")
    )


def listed(stock_basic: pl.DataFrame, dates: pl.Series, *, include_bj: bool = True) -> pl.DataFrame:
    """(ts_code, calc_date) for every stock listed at every date of `dates`."""
    stocks = latest_stock_rows(stock_basic)
    if not include_bj:
        stocks = stocks.filter(~pl.col("ts_code").str.ends_with(BEIJING_SUFFIX))
    calc = pl.DataFrame({"calc_date": dates.cast(pl.Date)}).unique()
    return (
        stocks.join(calc, how="cross")
        .filter(
            (pl.col("list_date") <= pl.col("calc_date"))
            & (pl.col("delist_date").is_null() | (pl.col("calc_date") < pl.col("delist_date")))
        )
        .select("ts_code", "calc_date")
    )


def staleness_cutoff(calc_date: pl.Expr) -> pl.Expr:
    """The last day of the month `STALE_AFTER_MONTHS` months before calc_date's month."""
    return calc_date.dt.month_start().dt.offset_by(f"-{STALE_AFTER_MONTHS}mo").dt.month_end()


def universe(
    stock_basic: pl.DataFrame,
    indicators: pl.DataFrame,
    dates: pl.Series,
    *,
    include_bj: bool = True,
) -> pl.DataFrame:
    """Universe rows (ts_code, calc_date, then every pit.indicators column as of calc_date).

    `indicators` needs ts_code, knowledge_date and end_date; its other columns are
    carried along as known at each calc date (the row with the latest knowledge_date
    <= calc_date). Sorted by (ts_code, calc_date), as `as_of` returns them.
    """
    pairs = listed(stock_basic, dates, include_bj=include_bj)
    known = as_of(pairs, indicators, by="ts_code", left_on="calc_date", right_on="knowledge_date")
    return known.filter(pl.col("end_date") >= staleness_cutoff(pl.col("calc_date")))
