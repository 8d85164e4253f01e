"""The output contract of factors.p and factors.g (DESIGN section 7): columns, order, types."""

from __future__ import annotations

import polars as pl

P_SCHEMA = pl.Schema(
    {
        "ts_code": pl.String,
        "calc_date": pl.Date,
        "p_score": pl.Float64,
        "p_rank": pl.Int64,
        "gpa": pl.Float64,
        "roe": pl.Float64,
        "roa": pl.Float64,
        "s_gpa": pl.Float64,
        "s_roe": pl.Float64,
        "s_roa": pl.Float64,
        "is_financial": pl.Boolean,
        "industry_l1": pl.String,
        "end_date": pl.Date,
        "ann_date": pl.Date,
    }
)

G_SCHEMA = pl.Schema(
    {
        "ts_code": pl.String,
        "calc_date": pl.Date,
        "g_score": pl.Float64,
        "g_rank": pl.Int64,
        "em": pl.Float64,
        "es": pl.Float64,
        "rm": pl.Float64,
        "pm": pl.Float64,
        "rank_em": pl.Float64,
        "rank_es": pl.Float64,
        "rank_rm": pl.Float64,
        "rank_pm": pl.Float64,
        "end_date": pl.Date,
        "ann_date": pl.Date,
    }
)


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """`frame` with exactly the contract's columns, in order, cast to the contract's types."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
