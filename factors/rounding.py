"""Exact decimal rounding, half to even, of Float64 scores (DESIGN section 7).

Scores are stored rounded to `SCORE_DECIMALS` places so that ranks and ties do not
depend on floating-point summation order. The rounding is exact on the binary value:
the result is what Python's `round(x, 6)` gives (and `Decimal(x).quantize(...,
ROUND_HALF_EVEN)`), i.e. a value is rounded up or down according to its true binary
value, and only an exact binary half goes to the even neighbour.

`np.round(x, 6)` and Polars' `round(6)` are not exact: they compute `x * 1e6`, which
is itself rounded, and a value just above (or below) a half can land exactly on the
half and go the wrong way (e.g. 26.7673665, whose binary value is above the half,
gives 26.767366 instead of 26.767367). Here the product's rounding error is recovered
exactly (Dekker's two-product: 1e6 has 14 significant bits, so the split halves of x
multiply by it exactly), and the rounded integer is corrected by one when the error
puts the true value on the other side of the half.

Division by a constant goes through numpy (`divide_exactly`): Polars divides a column
by a scalar as a multiplication by the scalar's reciprocal, which is not the correctly
rounded quotient (30714286 / 1e6 gives 30.714285999999998, not 30.714286).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from foundation.errors import InternalError

SCORE_DECIMALS = 6
SCORE_SCALE = 10.0**SCORE_DECIMALS

_DEKKER_SPLIT = 134217729.0  # 2**27 + 1: splits a double into two 26-bit halves


def round_half_even(value: pl.Expr, decimals: int = SCORE_DECIMALS) -> pl.Expr:
    """`value` rounded to `decimals` places, half to even on its exact binary value.

    Valid for |value| * 10**decimals < 2**52 (scores are within [0, 100]) and
    0 <= decimals <= 8 (so that 10**decimals splits exactly); nulls stay null.
    """
    if not 0 <= decimals <= 8:
        msg = f"round_half_even supports 0..8 decimals, got {decimals}"
        raise InternalError(msg)
    scale = 10.0**decimals
    scaled = value * scale
    nearest = scaled.round(0, mode="half_to_even")
    split = value * _DEKKER_SPLIT
    high = split - (split - value)
    low = value - high
    error = (high * scale - scaled) + low * scale  # value * scale == scaled + error exactly
    off_half = scaled - nearest  # exactly +-0.5 only when `scaled` sits on a half
    corrected = (
        pl.when((off_half == 0.5) & (error > 0))
        .then(nearest + 1.0)
        .when((off_half == -0.5) & (error < 0))
        .then(nearest - 1.0)
        .otherwise(nearest)
    )
    return divide_exactly(corrected, scale)


def divide_exactly(value: pl.Expr, divisor: float) -> pl.Expr:
    """`value / divisor` as IEEE division (correctly rounded), nulls kept (Float64)."""
    return value.map_batches(
        lambda batch: _divide(batch, divisor), return_dtype=pl.Float64, is_elementwise=True
    )


def _divide(batch: pl.Series, divisor: float) -> pl.Series:
    quotient = np.divide(batch.cast(pl.Float64).to_numpy(), divisor)
    return pl.Series(batch.name, quotient, dtype=pl.Float64).set(batch.is_null(), None)


def score_units(score: pl.Expr) -> pl.Expr:
    """A rounded score as an exact integer count of 10**-SCORE_DECIMALS (Int64).

    Differences and sums of these integers are exact, unlike those of the floats.
    """
    return (score * SCORE_SCALE).round(0, mode="half_to_even").cast(pl.Int64)
