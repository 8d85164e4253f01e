"""P (profitability) at each calc date (DESIGN section 7).

At t, for the universe at t: gpa, roe and roa as known at t (pit.indicators); per
metric and date, winsorise the non-null values at the 1st/99th percentiles,
average-rank them and score s = 100 (r - 1) / (n - 1) (50 for a lone value);
P = sum(w s) / sum(w) over the available sub-scores with w = 0.4 gpa, 0.3 roe,
0.3 roa, or 0.5 roe, 0.5 roa for financials, whose gpa is null and left out of the
gpa cross-section. p_score = P rounded half to even to 6 places; p_rank ranks it
descending with ties at the smallest rank.
"""

from __future__ import annotations

import polars as pl

from factors.industry import industry_at, is_financial
from factors.rounding import round_half_even
from factors.schema import P_SCHEMA, conform
from factors.standardize import best_first_rank, spread_score

METRICS = ("gpa", "roe", "roa")
WEIGHTS = {"gpa": 0.4, "roe": 0.3, "roa": 0.3}
FINANCIAL_WEIGHTS = {"gpa": 0.0, "roe": 0.5, "roa": 0.5}

# pit.indicators columns P's lineage is taken from (DESIGN 7 ann_date, README).
P_LINEAGE_COLUMNS = ("vis_date", "ttm_vis_date", "bs_vis_date")

P_INPUT_COLUMNS = (
    "ts_code",
    "calc_date",
    "gpa",
    "roe",
    "roa",
    "is_financial",
    "industry_l1",
    "end_date",
    "ann_date",
)


def p_inputs(universe_rows: pl.DataFrame, industry: pl.DataFrame) -> pl.DataFrame:
    """The P inputs at each (ts_code, calc_date) of `universe_rows`.

    `universe_rows` are `factors.universe.universe` rows (with gpa, roe, roa,
    comp_type, end_date and the `P_LINEAGE_COLUMNS` as of calc_date); `industry` is
    pit.industry. Returns the columns `P_INPUT_COLUMNS`: the metrics, is_financial and
    the SW L1 name at calc_date, and the lineage (end_date = L(t), ann_date from
    `p_lineage`).
    """
    with_industry = industry_at(universe_rows, industry)
    return (
        with_industry.with_columns(is_financial=is_financial())
        .with_columns(ann_date=p_lineage())
        .select(P_INPUT_COLUMNS)
    )


def _has_value(column: str) -> pl.Expr:
    """True where the column holds a number (neither null nor NaN, as the scores read it)."""
    return pl.col(column).cast(pl.Float64).fill_nan(None).is_not_null()


def p_lineage() -> pl.Expr:
    """ann_date of a P row: the latest vis_date of the versions that fed its values.

    V_t(L(t)) always (end_date = L(t), and comp_type when is_financial comes from it);
    the income versions behind the TTMs at L(t) (ttm_vis_date) when gpa (not a
    financial's), roe or roa is non-null; V_t(Lb(t)) (bs_vis_date) when roe or roa is
    non-null. A null metric was fed by nothing: its versions count only through another
    non-null metric. Reads is_financial, the metrics and `P_LINEAGE_COLUMNS`.
    """
    gpa = _has_value("gpa") & ~pl.col("is_financial")
    by_balance = _has_value("roe") | _has_value("roa")
    return pl.max_horizontal(
        pl.col("vis_date"),
        pl.when(gpa | by_balance).then(pl.col("ttm_vis_date")),
        pl.when(by_balance).then(pl.col("bs_vis_date")),
    )


def _weighted(metric: str) -> tuple[pl.Expr, pl.Expr]:
    """(w * s, w) for one sub-score, both 0 where the sub-score is missing."""
    weight = (
        pl.when(pl.col("is_financial")).then(FINANCIAL_WEIGHTS[metric]).otherwise(WEIGHTS[metric])
    )
    score = pl.col(f"s_{metric}")
    present = score.is_not_null()
    return (
        pl.when(present).then(weight * score).otherwise(0.0),
        pl.when(present).then(weight).otherwise(0.0),
    )


def p_scores(inputs: pl.DataFrame) -> pl.DataFrame:
    """factors.p rows (P_SCHEMA, sorted by ts_code, calc_date) from P inputs.

    Used both for fresh computations and to re-rank stored rows: only the columns
    `P_INPUT_COLUMNS` are read. Terms are summed in the order gpa, roe, roa.
    """
    metrics = inputs.select(P_INPUT_COLUMNS).with_columns(
        [pl.col(m).cast(pl.Float64).fill_nan(None) for m in METRICS]
    )
    metrics = metrics.with_columns(
        gpa=pl.when(pl.col("is_financial")).then(None).otherwise(pl.col("gpa"))
    )
    scored = metrics.with_columns(
        [spread_score(pl.col(m), "calc_date").alias(f"s_{m}") for m in METRICS]
    )
    terms = [_weighted(m) for m in METRICS]
    numerator = (terms[0][0] + terms[1][0]) + terms[2][0]
    denominator = (terms[0][1] + terms[1][1]) + terms[2][1]
    with_p = scored.with_columns(
        p_score=round_half_even(pl.when(denominator > 0).then(numerator / denominator))
    ).with_columns(p_rank=best_first_rank(pl.col("p_score"), "calc_date"))
    return conform(with_p, P_SCHEMA).sort("ts_code", "calc_date")
