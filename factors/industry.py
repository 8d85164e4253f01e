"""Shenwan industry as known at each calc date, and the financial-stock flag (DESIGN 6, 7).

A pit.industry interval holds at t when (in_date is null or in_date <= t) and
(out_date is null or t < out_date). When several hold, the latest in_date wins (a null
in_date counts as the earliest); remaining ties go to the row that sorts last by all
its columns in the table's column order, nulls first (the rule DESIGN section 6 uses
for statement versions), so the choice never depends on file order.

A stock is financial at t when its SW L1 name at t is 银行 or 非银金融; when it has no
membership at t, when comp_type of V_t(L(t)) (pit.indicators.comp_type) is 2, 3 or 4.
"""

from __future__ import annotations

import polars as pl

FINANCIAL_L1_NAMES = ("银行", "非银金融")
FINANCIAL_COMP_TYPES = ("2", "3", "4")

# The columns of one SW membership (pit.industry is these per ts_code).
INDUSTRY_COLUMNS: tuple[str, ...] = (
    "l1_code",
    "l1_name",
    "l2_code",
    "l2_name",
    "l3_code",
    "l3_name",
    "in_date",
    "out_date",
)
_TIE_BREAK = tuple(c for c in INDUSTRY_COLUMNS if c != "in_date")


def industry_at(pairs: pl.DataFrame, industry: pl.DataFrame) -> pl.DataFrame:
    """`pairs` (with ts_code, calc_date) plus industry_l1 (SW L1 name) and has_industry.

    has_industry is true when some membership holds at calc_date; industry_l1 is then
    that membership's l1_name (which may itself be null).
    """
    keys = pairs.select("ts_code", "calc_date").unique()
    # rank the (small) membership table once by the winning order, so that picking the
    # winner among the memberships holding at a date compares one integer
    ranked = (
        industry.select("ts_code", *INDUSTRY_COLUMNS)
        .sort(["ts_code", "in_date", *_TIE_BREAK], nulls_last=False)
        .with_row_index("priority")
    )
    held = (
        keys.join(ranked, on="ts_code", how="inner")
        .filter(
            (pl.col("in_date").is_null() | (pl.col("in_date") <= pl.col("calc_date")))
            & (pl.col("out_date").is_null() | (pl.col("calc_date") < pl.col("out_date")))
        )
        .group_by("ts_code", "calc_date")
        .agg(industry_l1=pl.col("l1_name").sort_by("priority").last())
        .with_columns(has_industry=pl.lit(True))
    )
    return pairs.join(held, on=["ts_code", "calc_date"], how="left").with_columns(
        pl.col("has_industry").fill_null(False)
    )


def is_financial() -> pl.Expr:
    """Financial at t from has_industry, industry_l1 and comp_type (never null)."""
    by_industry = pl.col("industry_l1").is_in(FINANCIAL_L1_NAMES).fill_null(False)
    by_comp_type = pl.col("comp_type").is_in(FINANCIAL_COMP_TYPES).fill_null(False)
    return pl.when(pl.col("has_industry")).then(by_industry).otherwise(by_comp_type)
