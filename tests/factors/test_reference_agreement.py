"""The vectorised P and G agree with the plain-Python reference of DESIGN section 7.

Cases: hypothesis-drawn small markets (ties, nulls, a single stock, financials by
industry and by comp_type, listings, delistings, stale reports, gaps in the P
history, calendar holes around year-ago dates) and synthetic markets.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factors.helpers import (
    P_CONTRACT,
    assert_g_equal,
    assert_p_equal,
    indicators_of,
    industry_of,
    product_factors,
    reference_factors,
    stocks_of,
)
from tests.factors.reference import ref_average_ranks
from tests.factors.synthetic import Market, synthetic_market

D = dt.date
START = D(2019, 1, 1)
VALUES = [None, -5.0, 0.0, 0.0, 2.5, 10.0, 33.3]
QUARTER_ENDS = [
    D(y, m, 30 if m in (6, 9) else 31) for y in range(2018, 2023) for m in (3, 6, 9, 12)
]


def _day(offset: int) -> dt.date:
    return START + dt.timedelta(days=offset)


def _calendar(days: int, holes: set[int]) -> pl.DataFrame:
    """SSE calendar from START: weekdays open except `holes` (day offsets)."""
    dates = [_day(i) for i in range(days)]
    return pl.DataFrame(
        {
            "exchange": "SSE",
            "cal_date": dates,
            "is_open": [
                "1" if d.isoweekday() <= 5 and i not in holes else "0" for i, d in enumerate(dates)
            ],
        },
        schema={"exchange": pl.String, "cal_date": pl.Date, "is_open": pl.String},
    )


@st.composite
def markets(draw: st.DrawFn) -> tuple[Market, dt.date, str]:
    freq = draw(st.sampled_from(["weekly", "weekly", "monthly", "daily"]))
    span = 420 if freq == "daily" else 1200
    # a block of closed days makes some year-ago dates unmatched
    gap_start = draw(st.integers(0, span))
    holes = set(range(gap_start, gap_start + draw(st.sampled_from([0, 0, 40, 75]))))
    holes |= draw(st.sets(st.integers(0, span), max_size=20))
    stocks, indicators, industry = [], [], []
    for i in range(draw(st.integers(1, 6))):
        code = f"00000{i}.{draw(st.sampled_from(['SZ', 'SH', 'BJ']))}"
        listed = _day(draw(st.integers(-200, span // 2)))
        delisted = draw(st.one_of(st.none(), st.integers(span // 3, span + 30).map(_day)))
        stocks.append({"ts_code": code, "list_date": listed, "delist_date": delisted})
        known = -120
        quarter = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(0, 3 * span // 100))):
            known += draw(st.integers(5, 150))
            quarter += draw(st.sampled_from([0, 1, 1, 1, 2]))
            end = QUARTER_ENDS[min(quarter, len(QUARTER_ENDS) - 1)]
            day = max(_day(known), end + dt.timedelta(days=1))
            indicators.append(
                {
                    "ts_code": code,
                    "knowledge_date": day,
                    "end_date": end,
                    "vis_date": day - dt.timedelta(days=draw(st.integers(0, 3))),
                    "ttm_vis_date": day - dt.timedelta(days=draw(st.integers(0, 60))),
                    "yoy_vis_date": day - dt.timedelta(days=draw(st.integers(0, 60))),
                    "bs_vis_date": day - dt.timedelta(days=draw(st.integers(0, 60))),
                    "comp_type": draw(st.sampled_from([None, "1", "1", "2", "3", "4"])),
                    "gpa": draw(st.sampled_from(VALUES)),
                    "roe": draw(st.sampled_from(VALUES)),
                    "roa": draw(st.sampled_from(VALUES)),
                    "revenue_yoy": draw(st.sampled_from(VALUES)),
                    "profit_yoy": draw(st.sampled_from(VALUES)),
                }
            )
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.one_of(st.none(), st.integers(-100, span).map(_day)))
            stop = draw(st.one_of(st.none(), st.integers(0, span).map(_day)))
            industry.append(
                {
                    "ts_code": code,
                    "l1_name": draw(st.sampled_from(["银行", "非银金融", "电子", None])),
                    "in_date": start,
                    "out_date": stop,
                }
            )
    frame = indicators_of(indicators)
    # one row per knowledge date, and L(t) never decreasing (as the PIT table guarantees)
    frame = (
        frame.sort("ts_code", "knowledge_date")
        .unique(["ts_code", "knowledge_date"], keep="last", maintain_order=True)
        .with_columns(pl.col("end_date").cum_max().over("ts_code"))
    )
    market = Market(
        trade_cal=_calendar(span + 60, holes),
        stock_basic=stocks_of(stocks),
        daily=pl.DataFrame(),
        indicators=frame,
        industry=industry_of(industry),
    )
    return market, _day(draw(st.integers(span // 2, span + 60))), freq


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_drawn_markets_match_the_reference(case: tuple[Market, dt.date, str]) -> None:
    market, as_of, freq = case
    p, g = product_factors(market, as_of, freq)  # type: ignore[arg-type]
    ref_p, ref_g = reference_factors(market, as_of, freq)  # type: ignore[arg-type]
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    for frame in (p, g):
        assert frame.filter(pl.col("ann_date") > pl.col("calc_date")).is_empty()


@pytest.mark.parametrize("include_bj", [True, False])
def test_synthetic_market_matches_the_reference(small_market: Market, include_bj: bool) -> None:
    as_of = D(2021, 6, 30)
    p, g = product_factors(small_market, as_of, include_bj=include_bj)
    ref_p, ref_g = reference_factors(small_market, as_of, include_bj=include_bj)
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    # the case exercises what it should
    assert p.get_column("is_financial").any()
    assert g.get_column("es").is_not_null().any() and g.get_column("es").is_null().any()
    assert p.get_column("p_score").null_count() < p.height


def test_small_synthetic_market_covers_es_cases() -> None:
    market = synthetic_market(5, D(2018, 1, 1), D(2020, 12, 31), seed=11)
    p, g = product_factors(market, D(2020, 12, 31))
    ref_p, ref_g = reference_factors(market, D(2020, 12, 31))
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)


WIDE_STOCKS = 160  # > 101: the 1st/99th percentiles fall inside the two outermost gaps


def _wide_market(seed: int) -> Market:
    """WIDE_STOCKS stocks with one report each, a few far outliers, some financials."""
    rng = np.random.default_rng(seed)
    codes = [f"{i:06d}.SZ" for i in range(1, WIDE_STOCKS + 1)]
    stocks = [{"ts_code": c, "list_date": D(2015, 1, 5), "delist_date": None} for c in codes]
    metrics = {m: rng.normal(10.0, 4.0, WIDE_STOCKS) for m in ("gpa", "roe", "roa")}
    for values in metrics.values():  # outliers on both sides, on different stocks
        picks = rng.choice(WIDE_STOCKS, size=6, replace=False)
        values[picks] = [900.0, 400.0, 250.0, -300.0, -80.0, -70.0]
    indicators = [
        {
            "ts_code": c,
            "knowledge_date": D(2018, 11, 1) + dt.timedelta(days=int(rng.integers(0, 20))),
            "end_date": D(2018, 9, 30),
            "comp_type": "2" if i % 17 == 0 else "1",
            "gpa": float(metrics["gpa"][i]),
            "roe": float(metrics["roe"][i]),
            "roa": float(metrics["roa"][i]),
            "revenue_yoy": float(rng.normal(0, 30)),
            "profit_yoy": float(rng.normal(0, 30)),
        }
        for i, c in enumerate(codes)
    ]
    return Market(
        trade_cal=_calendar(120, set()),
        stock_basic=stocks_of(stocks),
        daily=pl.DataFrame(),
        indicators=indicators_of(indicators),
        industry=industry_of([]),
    )


def test_a_wide_cross_section_with_outliers_where_clipping_changes_ranks() -> None:
    market = _wide_market(seed=20)
    as_of = _day(119)
    p, g = product_factors(market, as_of, "monthly")
    ref_p, ref_g = reference_factors(market, as_of, "monthly")
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    assert p.schema == P_CONTRACT
    assert p.get_column("calc_date").n_unique() == 4  # one per month, Jan to Apr 2019
    assert p.group_by("calc_date").len().get_column("len").to_list() == [WIDE_STOCKS] * 4

    # the case is one where winsorising matters: without it, the sub-scores would differ
    one_date = ref_p.filter(pl.col("calc_date") == pl.col("calc_date").min())
    for metric in ("gpa", "roe", "roa"):
        present = one_date.filter(pl.col(metric).is_not_null())
        values = dict(zip(present["ts_code"], present[metric], strict=True))
        n = len(values)
        assert n > 101 and len(set(values.values())) == n  # wide, and no ties to begin with
        unclipped = {c: 100 * (r - 1) / (n - 1) for c, r in ref_average_ranks(values).items()}
        clipped = dict(zip(present["ts_code"], present[f"s_{metric}"], strict=True))
        changed = [c for c in values if clipped[c] != unclipped[c]]
        # the two lowest and the two highest tie once clipped (1st/99th percentiles)
        assert len(changed) == 4, (metric, changed)
        assert present[f"s_{metric}"].n_unique() == n - 2
