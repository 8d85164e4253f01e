"""Winsorising and ranks within a calc date."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from factors.standardize import best_first_rank, percent_rank, spread_score, winsorized


def _one(expr: pl.Expr, values: list[float | None], groups: list[int] | None = None) -> list:
    frame = pl.DataFrame(
        {"x": values, "g": groups or [0] * len(values)}, schema={"x": pl.Float64, "g": pl.Int64}
    )
    return frame.select(expr).to_series().to_list()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300))
def test_winsorising_clips_at_numpy_linear_percentiles(values: list[float]) -> None:
    lo, hi = np.quantile(values, [0.01, 0.99], method="linear")
    got = _one(winsorized(pl.col("x"), "g"), values)
    np.testing.assert_allclose(got, np.clip(values, lo, hi), rtol=1e-13, atol=0)


def test_winsorising_ignores_nulls_and_works_per_group() -> None:
    values = [None, *range(101), 1000.0, -1000.0]
    groups = [0] * 102 + [1, 1]
    got = _one(winsorized(pl.col("x"), "g"), values, groups)
    valid = list(range(101))
    lo, hi = np.quantile(valid, [0.01, 0.99])
    assert got[0] is None
    assert got[1:102] == list(np.clip(valid, lo, hi))
    assert got[102:] == [1000 - 0.02 * 1000, -1000 + 0.02 * 1000]  # two values: 1%/99% interpolate


def test_spread_score_average_ranks_ties_and_a_lone_value() -> None:
    got = _one(spread_score(pl.col("x"), "g"), [3.0, 1.0, 3.0, None, 2.0, 7.0], [0, 0, 0, 0, 0, 1])
    # group 0: values 1, 2, 3, 3 -> ranks 1, 2, 3.5, 3.5 -> s = 100 (r - 1) / 3
    assert got == [250 / 3, 0.0, 250 / 3, None, 100 / 3, 50.0]


def test_percent_rank_and_best_first_rank() -> None:
    values = [10.0, 30.0, 30.0, None, 20.0]
    assert _one(percent_rank(pl.col("x"), "g"), values) == [25.0, 87.5, 87.5, None, 50.0]
    assert _one(best_first_rank(pl.col("x"), "g"), values) == [4, 1, 1, None, 3]
