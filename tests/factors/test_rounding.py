"""Exact half-to-even rounding to 6 places and exact division by a constant."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from factors.rounding import divide_exactly, round_half_even, score_units


def _rounded(values: list[float | None]) -> list[float | None]:
    frame = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    return frame.select(round_half_even(pl.col("x"))).to_series().to_list()


def _near_halves() -> st.SearchStrategy[float]:
    """Floats within a few ulps of k + 0.5 millionths: where naive rounding goes wrong."""

    def around(k: int, steps: int) -> float:
        x = (k + 0.5) / 1e6
        for _ in range(abs(steps)):
            x = math.nextafter(x, math.inf if steps > 0 else -math.inf)
        return x

    return st.builds(around, st.integers(-(10**8), 10**8), st.integers(-3, 3))


@settings(max_examples=300)
@given(st.lists(st.one_of(_near_halves(), st.floats(-1000, 1000)), min_size=1, max_size=50))
def test_matches_python_round_on_the_binary_value(values: list[float]) -> None:
    assert _rounded(values) == [round(v, 6) for v in values]


def test_exact_binary_halves_go_to_the_even_neighbour() -> None:
    # k/128 has 7 decimals ending in 5: an exact binary half at 6 places
    assert _rounded([1 / 128, 3 / 128, 5 / 128, 7 / 128]) == [
        0.007812,
        0.023438,
        0.039062,
        0.054688,
    ]
    assert _rounded([-1 / 128]) == [-0.007812]


def test_value_above_the_half_in_binary_rounds_up_where_np_round_does_not() -> None:
    # 26.7673665 is stored as 26.76736650000000139...: above the half
    assert _rounded([26.7673665]) == [26.767367]
    assert np.round(26.7673665, 6) == 26.767366  # why np.round is not used


def test_nulls_stay_null() -> None:
    assert _rounded([None, 2.3456784, None]) == [None, 2.345678, None]


def test_divide_exactly_is_the_correctly_rounded_quotient() -> None:
    frame = pl.DataFrame({"x": [30714286, None, -7]}, schema={"x": pl.Int64})
    got = frame.select(divide_exactly(pl.col("x"), 1e6)).to_series().to_list()
    assert got == [30714286 / 1e6, None, -7 / 1e6]
    assert got[0] == 30.714286


@given(st.integers(0, 10**8))
def test_score_units_recovers_the_integer_of_a_rounded_score(k: int) -> None:
    frame = pl.DataFrame({"s": [k / 1e6]})
    assert frame.select(score_units(pl.col("s"))).item() == k
