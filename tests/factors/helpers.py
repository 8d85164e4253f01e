"""Run the product's pure factor chain and the plain-Python reference on the same inputs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from factors.calendar import Freq, calc_dates
from factors.g import g_inputs, g_scores
from factors.p import p_inputs, p_scores
from factors.universe import universe
from tests.factors.reference import ref_factors
from tests.factors.synthetic import INDUSTRY_SCHEMA, Market
from tests.pit.reference import INDICATOR_CONTRACT

ES_REL_TOL = 1e-12

# The output contract of factors.p and factors.g as DESIGN section 7 states it (columns,
# order, types), written here rather than read from factors.schema: a wrong entry
# there must not be wrong in the reference too.
P_CONTRACT = pl.Schema(
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
G_CONTRACT = pl.Schema(
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


def product_factors(
    market: Market, as_of: dt.date, freq: Freq = "weekly", include_bj: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(factors.p, factors.g) from the product's pure functions, every calc date at once."""
    dates = calc_dates(market.trade_cal, as_of, freq)
    rows = universe(market.stock_basic, market.indicators, dates, include_bj=include_bj)
    p = p_scores(p_inputs(rows, market.industry))
    g = g_scores(g_inputs(rows, p.select("ts_code", "calc_date", "p_score", "ann_date"), dates))
    return p, g


def reference_factors(
    market: Market, as_of: dt.date, freq: Freq = "weekly", include_bj: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(factors.p, factors.g) from the plain-Python reference, as contract frames."""
    p_rows, g_rows = ref_factors(
        market.trade_cal.to_dicts(),
        market.stock_basic.to_dicts(),
        market.indicators.to_dicts(),
        market.industry.to_dicts(),
        as_of,
        freq,
        include_bj,
    )
    p = pl.DataFrame(p_rows, schema=P_CONTRACT, orient="row" if not p_rows else None)
    g = pl.DataFrame(g_rows, schema=G_CONTRACT, orient="row" if not g_rows else None)
    return p.sort("ts_code", "calc_date"), g.sort("ts_code", "calc_date")


def assert_p_equal(product: pl.DataFrame, reference: pl.DataFrame) -> None:
    """Every P column bit-for-bit."""
    assert_frame_equal(product, reference, check_exact=True)


def assert_g_equal(product: pl.DataFrame, reference: pl.DataFrame) -> None:
    """Every G column bit-for-bit, except es (sigma's last bits) to a relative 1e-12."""
    assert_frame_equal(product.drop("es"), reference.drop("es"), check_exact=True)
    assert_frame_equal(
        product.select("es"), reference.select("es"), rel_tol=ES_REL_TOL, abs_tol=0.0
    )


STOCK_SCHEMA = pl.Schema(
    {
        "ts_code": pl.String,
        "list_date": pl.Date,
        "delist_date": pl.Date,
        "_fetched_at": pl.Datetime("us", "UTC"),
    }
)


def frame_of(rows: list[dict[str, Any]], schema: pl.Schema) -> pl.DataFrame:
    """A frame with every column of `schema`; keys missing from a row are null."""
    return pl.DataFrame(
        [{name: row.get(name) for name in schema.names()} for row in rows], schema=schema
    )


def indicators_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """pit.indicators in the shared schema; every lineage date defaults to knowledge_date."""
    lineage = ("vis_date", "ttm_vis_date", "yoy_vis_date", "bs_vis_date", "ann_date")
    full = [{**dict.fromkeys(lineage, r["knowledge_date"]), **r} for r in rows]
    return frame_of(full, INDICATOR_CONTRACT)


def stocks_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """raw/stock_basic rows (ts_code, list_date, delist_date, _fetched_at)."""
    return frame_of(rows, STOCK_SCHEMA)


def industry_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """pit.industry rows in the shared schema."""
    return frame_of(rows, INDUSTRY_SCHEMA)
