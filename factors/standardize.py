"""Cross-sectional standardisation: winsorising and ranks within each calc date.

Every function returns an expression evaluated per group (`over(by)`), over the
group's non-null values; null inputs give null outputs.
"""

from __future__ import annotations

import polars as pl

WINSOR_LOWER = 0.01
WINSOR_UPPER = 0.99


def winsorized(value: pl.Expr, by: str) -> pl.Expr:
    """`value` clipped to its group's 1st and 99th percentiles (linear interpolation).

    The percentiles interpolate linearly between order statistics, as numpy's and
    Polars' default: with the n sorted values x_0..x_{n-1} and h = (n - 1) q, the
    q-quantile is x_floor(h) + (h - floor(h)) (x_floor(h)+1 - x_floor(h)).
    """
    lower = value.quantile(WINSOR_LOWER, interpolation="linear").over(by)
    upper = value.quantile(WINSOR_UPPER, interpolation="linear").over(by)
    return value.clip(lower, upper)


def average_rank(value: pl.Expr, by: str) -> pl.Expr:
    """Rank 1..n within the group, larger value = larger rank, ties get their mean rank."""
    return value.rank("average").over(by)


def spread_score(value: pl.Expr, by: str) -> pl.Expr:
    """P sub-score: s = 100 (r - 1) / (n - 1) of the winsorised value's average rank r.

    n is the group's count of non-null values; a lone value scores 50.
    """
    n = value.count().over(by)
    rank = average_rank(winsorized(value, by), by)
    return (
        pl.when(value.is_null())
        .then(None)
        .when(n == 1)
        .then(50.0)
        .otherwise(100.0 * (rank - 1.0) / (n - 1).cast(pl.Float64))
    )


def percent_rank(value: pl.Expr, by: str) -> pl.Expr:
    """G rank: 100 * (average rank) / n, in (0, 100]; n = the group's non-null count."""
    n = value.count().over(by)
    return 100.0 * average_rank(value, by) / n.cast(pl.Float64)


def best_first_rank(score: pl.Expr, by: str) -> pl.Expr:
    """Rank of `score` descending, 1 = best, equal scores share the smallest rank (Int64)."""
    return score.rank("min", descending=True).over(by).cast(pl.Int64)
