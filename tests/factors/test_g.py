"""G: EM, ES, RM, PM, ranks and score from a P history (DESIGN section 7)."""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from typing import Any

import polars as pl
import pytest

from factors.g import ES_WINDOW_DAYS, FEW_DATES, em_history, es_values, g_inputs, g_scores
from tests.factors.helpers import ES_REL_TOL, G_CONTRACT
from tests.factors.reference import ref_es

FIRST = dt.date(2020, 1, 3)  # a Friday
WEEKS = [FIRST + dt.timedelta(weeks=i) for i in range(157)]  # three years of Fridays
T = WEEKS[-1]


def _universe(codes: list[str], t: dt.date, rm: list[float | None] | None = None) -> pl.DataFrame:
    n = len(codes)
    return pl.DataFrame(
        {
            "ts_code": codes,
            "calc_date": [t] * n,
            "revenue_yoy": rm or [None] * n,
            "profit_yoy": [None] * n,
            "end_date": [t - dt.timedelta(days=60)] * n,
            "vis_date": [t - dt.timedelta(days=20)] * n,
            "yoy_vis_date": [t - dt.timedelta(days=20)] * n,
        },
        schema_overrides={"revenue_yoy": pl.Float64, "profit_yoy": pl.Float64},
    )


def _history(points: dict[tuple[str, dt.date], float]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"ts_code": c, "calc_date": d, "p_score": v, "ann_date": d}
            for (c, d), v in points.items()
        ],
        schema={
            "ts_code": pl.String,
            "calc_date": pl.Date,
            "p_score": pl.Float64,
            "ann_date": pl.Date,
        },
    )


def _g(
    points: dict[tuple[str, dt.date], float],
    codes: list[str],
    t: dt.date = T,
    dates: list[dt.date] = WEEKS,
) -> dict[str, dict[str, Any]]:
    inputs = g_inputs(_universe(codes, t), _history(points), pl.Series(dates, dtype=pl.Date))
    return {r["ts_code"]: r for r in g_scores(inputs).iter_rows(named=True)}


def _differences(diffs: list[float], code: str = "A") -> dict[tuple[str, dt.date], float]:
    """P such that the last len(diffs) Fridays up to T have D = diffs (in order), others none."""
    points = {}
    for d, s in zip(diffs, WEEKS[-len(diffs) :], strict=True):
        year_ago = s - dt.timedelta(weeks=52)  # nearest to s - 365 days: 1 day off
        points[(code, year_ago)] = 20.0
        points[(code, s)] = 20.0 + d
    return points


def test_em_is_the_exact_decimal_difference() -> None:
    points = {("A", T): 12.345678, ("A", T - dt.timedelta(weeks=52)): 10.000001}
    assert 12.345678 - 10.000001 != 2.345677  # the naive float difference is off
    assert _g(points, ["A"])["A"]["em"] == 2.345677


def test_em_is_null_without_a_calc_date_near_a_year_ago() -> None:
    gap = [d for d in WEEKS if not (T - dt.timedelta(days=400) < d < T - dt.timedelta(days=330))]
    points = {("A", d): 50.0 for d in gap}
    assert _g(points, ["A"], dates=gap)["A"]["em"] is None
    assert _g(points, ["A"])["A"]["em"] is None  # P was never stored near the year-ago date


def test_es_needs_three_differences() -> None:
    assert _g(_differences([1.0, 2.0]), ["A"])["A"]["es"] is None
    got = _g(_differences([1.0, 2.0, 4.0]), ["A"])["A"]
    sigma = statistics.pstdev([1.0, 2.0, 4.0])
    assert got["es"] == pytest.approx(4.0 / sigma * math.sqrt(3 / 8), rel=ES_REL_TOL)


def test_es_scaling_below_eight_and_full_from_eight() -> None:
    four = _g(_differences([1.0, 2.0, 3.0, 4.0]), ["A"])["A"]
    assert four["es"] == pytest.approx(4.0 / math.sqrt(1.25) * math.sqrt(4 / 8), rel=ES_REL_TOL)
    eight = _g(_differences([float(k) for k in range(1, 9)]), ["A"])["A"]
    assert eight["es"] == pytest.approx(8.0 / math.sqrt(5.25), rel=ES_REL_TOL)


def test_es_is_null_for_constant_differences_or_a_missing_em() -> None:
    assert _g(_differences([2.0, 2.0, 2.0, 2.0]), ["A"])["A"]["es"] is None
    points = _differences([1.0, 2.0, 3.0, 4.0])
    del points[("A", T)]
    got = _g(points, ["A"])["A"]
    assert got["em"] is None and got["es"] is None


def test_es_window_excludes_t_minus_730_days() -> None:
    t = dt.date(2023, 1, 1)
    edge = t - dt.timedelta(days=730)
    inside = [t - dt.timedelta(days=729), t - dt.timedelta(days=300), t]
    year_agos = [s - dt.timedelta(days=365) for s in [edge, *inside]]
    dates = sorted({edge, *inside, *year_agos})
    points = {("A", y): 0.0 for y in year_agos}
    points |= {("A", s): v for s, v in zip([edge, *inside], [100.0, 1.0, 2.0, 4.0], strict=True)}
    got = _g(points, ["A"], t=t, dates=dates)["A"]
    # D in (t - 730, t]: 1 (t-729), 2 (t-300), 4 (t), and -100 at t-365, whose year-ago
    # date is the edge itself; D = 100 at the edge (t - 730 days) is outside
    sigma = statistics.pstdev([1.0, 2.0, 4.0, -100.0])
    assert got["em"] == 4.0
    assert got["es"] == pytest.approx(4.0 / sigma * math.sqrt(4 / 8), rel=ES_REL_TOL)
    assert got["es"] == pytest.approx(ref_es(points, dates, "A", t), rel=ES_REL_TOL)


def test_year_ago_tie_takes_the_earlier_date() -> None:
    target = T - dt.timedelta(days=365)
    early, late = target - dt.timedelta(days=10), target + dt.timedelta(days=10)
    points = {("A", T): 30.0, ("A", early): 10.0, ("A", late): 20.0}
    assert _g(points, ["A"], dates=[early, late, T])["A"]["em"] == 20.0


def test_ranks_and_score_from_hand_values() -> None:
    inputs = pl.DataFrame(
        {
            "ts_code": ["A", "B", "C"],
            "calc_date": [T] * 3,
            "em": [1.0, 2.0, None],
            "es": [None, None, None],
            "rm": [5.0, 5.0, 1.0],
            "pm": [None, None, None],
            "end_date": [T] * 3,
            "ann_date": [T] * 3,
        },
        schema_overrides={"es": pl.Float64, "pm": pl.Float64},
    )
    got = {r["ts_code"]: r for r in g_scores(inputs).iter_rows(named=True)}
    assert [got[c]["rank_em"] for c in "ABC"] == [50.0, 100.0, None]
    assert [got[c]["rank_rm"] for c in "ABC"] == [250 / 3, 250 / 3, 100 / 3]
    # A: (50 + 83.33..) / 2 ; B: (100 + 83.33..) / 2 ; C: 33.33..
    assert [got[c]["g_score"] for c in "ABC"] == [66.666667, 91.666667, 33.333333]
    assert [got[c]["g_rank"] for c in "ABC"] == [2, 1, 3]
    assert g_scores(inputs).schema == G_CONTRACT


def test_a_stock_with_nothing_computable_keeps_its_row() -> None:
    got = _g({}, ["A", "B"])
    assert set(got) == {"A", "B"}
    assert all(r["g_score"] is None and r["g_rank"] is None for r in got.values())


def test_es_at_a_few_dates_equals_the_rolling_history() -> None:
    rng = random.Random(19)
    edges = [t - dt.timedelta(days=ES_WINDOW_DAYS) for t in (T, WEEKS[-40])]  # just outside
    days = sorted({*WEEKS, *edges, *(e - dt.timedelta(weeks=52) for e in edges)})
    points = {
        (f"S{k:02d}", d): round(rng.uniform(0, 100), 6)
        for k in range(30)
        for d in days
        if d in edges or rng.random() < 0.9
    }
    dates = pl.Series(days, dtype=pl.Date)
    history = em_history(_history(points), dates)
    every = es_values(history)
    for at in ([T], [T, WEEKS[-40]], WEEKS[-FEW_DATES - 3 :]):
        since = min(at) - dt.timedelta(days=ES_WINDOW_DAYS - 1)
        got = es_values(em_history(_history(points), dates, since), at)
        wanted = every.filter(pl.col("calc_date").is_in(pl.Series(at, dtype=pl.Date).implode()))
        order = ["ts_code", "calc_date"]
        assert got.height == wanted.height > 20 * len(at)
        assert got.get_column("es").drop_nulls().len() > 10 * len(at)
        assert got.sort(order).equals(wanted.sort(order), null_equal=True)
