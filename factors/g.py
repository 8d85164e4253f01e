"""G (growth) at each calc date, from a history of stored P scores (DESIGN section 7).

EM = P_t - P_{t-1y} (t-1y from `factors.calendar.year_ago_dates`); ES = EM / sigma,
scaled by sqrt(n / 8) when 3 <= n < 8, where sigma is the population standard
deviation of the n non-null differences D = P_s - P_{s-1y} over calc dates s with
t - 730 days < s <= t; RM and PM are pit.indicators revenue_yoy and profit_yoy at t.
rank_k = 100 * (average rank) / n per sub-factor and date; g_score is the mean of the
available rank_k, rounded half to even to 6 places; g_rank as p_rank.

P scores are stored rounded to 6 places, so every difference is computed on their
exact integer counts of 1e-6 (`score_units`): EM is that integer difference divided
by 1e6 (the float nearest to the exact decimal difference, so equal decimal
differences are equal floats), and the moments behind sigma are exact integer window
sums (Int128 for n * sum(d^2) - (sum d)^2), so sigma does not depend on summation
order and is exactly 0 for constant differences.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from factors.calendar import year_ago_dates
from factors.rounding import SCORE_SCALE, divide_exactly, round_half_even, score_units
from factors.schema import G_SCHEMA, conform
from factors.standardize import best_first_rank, percent_rank

SUB_FACTORS = ("em", "es", "rm", "pm")
ES_WINDOW_DAYS = 730
ES_WINDOW = f"{ES_WINDOW_DAYS}d"
# es_values at up to this many dates sums each date's window alone (one cross-section
# each) rather than rolling along the whole history
FEW_DATES = 4
ES_FULL_N = 8
ES_MIN_N = 3
SIGMA_FLOOR = 1e-9

# pit.indicators columns G's lineage is taken from (DESIGN 7 ann_date, README).
G_LINEAGE_COLUMNS = ("vis_date", "yoy_vis_date")

G_INPUT_COLUMNS = ("ts_code", "calc_date", "em", "es", "rm", "pm", "end_date", "ann_date")


def em_history(
    p_history: pl.DataFrame, dates: pl.Series, since: dt.date | None = None
) -> pl.DataFrame:
    """(ts_code, calc_date, d, em) for every stored P at a calc date s with P_{s-1y} known.

    Rows come in no particular order.

    `p_history` holds (ts_code, calc_date, p_score); rows at dates not in `dates`
    (another frequency) and null scores are ignored. d is EM in units of 1e-6 (Int64).
    With `since`, only the rows at calc dates s >= since are returned (the year-ago
    matches still come from the whole history): a window sum at t reads no earlier row
    than t - 729 days, so the others need not be computed.
    """
    # eager on purpose: as one lazy query, Polars reorders the two joins into a
    # many-to-many self-join on ts_code first (quadratic in the dates per stock)
    scores = p_history.filter(
        pl.col("calc_date").is_in(dates.implode()) & pl.col("p_score").is_not_null()
    ).select("ts_code", "calc_date", units=score_units(pl.col("p_score")))
    lag = year_ago_dates(dates).filter(pl.col("year_ago").is_not_null())
    later = scores
    if since is not None:
        later = scores.filter(pl.col("calc_date") >= since)
        lag = lag.filter(pl.col("calc_date") >= since)
        scores = scores.filter(pl.col("calc_date").is_in(lag.get_column("year_ago").implode()))
    earlier = scores.select("ts_code", year_ago=pl.col("calc_date"), units_year_ago=pl.col("units"))
    matched = later.join(lag, on="calc_date", how="inner").join(
        earlier, on=["ts_code", "year_ago"], how="inner"
    )
    return matched.select(
        "ts_code", "calc_date", d=pl.col("units") - pl.col("units_year_ago")
    ).with_columns(em=divide_exactly(pl.col("d"), SCORE_SCALE))


def _window_moments(value: pl.Expr) -> dict[str, pl.Expr]:
    """n, sum d and sum d^2 of `value` (d), the moments behind sigma (Int64)."""
    return {"n": value.is_not_null().cast(pl.Int64), "s1": value, "s2": value * value}


def _rolling_moments(history: pl.DataFrame) -> pl.DataFrame:
    """`history` with n, s1 and s2 summed over (s - 730 days, s] per stock, every row."""
    # sorting by date is enough: each stock's rows are then in date order within `over`
    return history.sort("calc_date").with_columns(
        [
            term.rolling_sum_by("calc_date", window_size=ES_WINDOW, closed="right")
            .over("ts_code")
            .alias(name)
            for name, term in _window_moments(pl.col("d")).items()
        ]
    )


def _moments_at(history: pl.DataFrame, dates: Sequence[dt.date]) -> pl.DataFrame:
    """The rows of `history` at `dates` with the window moments of `_rolling_moments`.

    Each date's sums are taken over its own window by a group-by: the sums are of
    integers, so they equal the rolling ones exactly, at the cost of one cross-section.
    """
    frames = []
    for t in dates:
        inside = pl.col("calc_date").is_between(t - dt.timedelta(days=ES_WINDOW_DAYS - 1), t)
        sums = (
            history.filter(inside)
            .group_by("ts_code")
            .agg([term.sum().alias(name) for name, term in _window_moments(pl.col("d")).items()])
        )
        now = history.filter(pl.col("calc_date") == t)
        frames.append(now.join(sums, on="ts_code", how="inner"))
    if not frames:
        return _rolling_moments(history.clear())
    return pl.concat(frames, how="vertical_relaxed")


def es_values(history: pl.DataFrame, dates: Sequence[dt.date] | None = None) -> pl.DataFrame:
    """(ts_code, calc_date, em, es) for every row of an `em_history` frame.

    n, sum d and sum d^2 are integer sums over (s - 730 days, s] per stock. With
    `dates`, only the rows at those dates are returned, and up to `FEW_DATES` of them
    are summed one cross-section each instead of along the whole history (same
    numbers). Rows come in no particular order.
    """
    if dates is None:
        moments = _rolling_moments(history)
    elif len(dates) <= FEW_DATES:
        moments = _moments_at(history, sorted(set(dates)))
    else:
        wanted = pl.Series(dates, dtype=pl.Date).implode()
        moments = _rolling_moments(history).filter(pl.col("calc_date").is_in(wanted))
    n = pl.col("n")
    spread = n.cast(pl.Int128) * pl.col("s2").cast(pl.Int128) - pl.col("s1").cast(
        pl.Int128
    ) * pl.col("s1").cast(pl.Int128)
    sigma = spread.cast(pl.Float64).sqrt() / (n.cast(pl.Float64) * SCORE_SCALE)
    ratio = pl.col("em") / pl.col("sigma")
    es = (
        pl.when((pl.col("sigma") < SIGMA_FLOOR) | (n < ES_MIN_N))
        .then(None)
        .when(n >= ES_FULL_N)
        .then(ratio)
        .otherwise(ratio * (n.cast(pl.Float64) / ES_FULL_N).sqrt())
    )
    return moments.with_columns(sigma=sigma).select("ts_code", "calc_date", "em", es=es)


def g_inputs(
    universe_rows: pl.DataFrame, p_history: pl.DataFrame, dates: pl.Series
) -> pl.DataFrame:
    """The G inputs (`G_INPUT_COLUMNS`) at each (ts_code, calc_date) of `universe_rows`.

    `universe_rows` are `factors.universe.universe` rows (revenue_yoy, profit_yoy,
    end_date and the `G_LINEAGE_COLUMNS` as of calc_date); `p_history` the stored P
    rows (ts_code, calc_date, p_score, ann_date) at the calc dates `dates`, reaching
    back far enough for the year-ago matches and the 730-day ES window of every date in
    `universe_rows`. ann_date comes from `g_lineage`.
    """
    at = sorted(universe_rows.get_column("calc_date").unique().drop_nulls().to_list())
    wanted = pl.Series(at, dtype=pl.Date).implode()
    since = at[0] - dt.timedelta(days=ES_WINDOW_DAYS - 1) if at else None
    sub_factors = es_values(em_history(p_history, dates, since), at)
    p_now = p_history.filter(pl.col("calc_date").is_in(wanted)).select(
        "ts_code", "calc_date", p_ann_date="ann_date"
    )
    return (
        universe_rows.select(
            "ts_code",
            "calc_date",
            *G_LINEAGE_COLUMNS,
            rm=pl.col("revenue_yoy").cast(pl.Float64),
            pm=pl.col("profit_yoy").cast(pl.Float64),
            end_date="end_date",
        )
        .join(sub_factors, on=["ts_code", "calc_date"], how="left")
        .join(p_now, on=["ts_code", "calc_date"], how="left")
        .with_columns(ann_date=g_lineage())
        .select(G_INPUT_COLUMNS)
    )


def _has_value(column: str) -> pl.Expr:
    """True where the column holds a number (neither null nor NaN, as the ranks read it)."""
    return pl.col(column).cast(pl.Float64).fill_nan(None).is_not_null()


def g_lineage() -> pl.Expr:
    """ann_date of a G row: the latest vis_date of the versions that fed its values.

    V_t(L(t)) always (end_date = L(t)); P_t's own lineage (p_ann_date, the factors.p
    ann_date at t) when em is non-null (es is only non-null with em); the income
    versions behind q_t(L) and q_t(L-4) (yoy_vis_date) when rm or pm is non-null.
    P at other calc dates (P_{t-1y}, the ES window) is a stored score of an earlier
    row, whose versions that row's own ann_date names; it is not counted here.
    """
    return pl.max_horizontal(
        pl.col("vis_date"),
        pl.when(_has_value("em")).then(pl.col("p_ann_date")),
        pl.when(_has_value("rm") | _has_value("pm")).then(pl.col("yoy_vis_date")),
    )


def g_scores(inputs: pl.DataFrame) -> pl.DataFrame:
    """factors.g rows (G_SCHEMA, sorted by ts_code, calc_date) from G inputs.

    Used both for fresh computations and to re-rank stored rows: only the columns
    `G_INPUT_COLUMNS` are read. The mean of the ranks sums them in the order em, es,
    rm, pm.
    """
    values = inputs.select(G_INPUT_COLUMNS).with_columns(
        [pl.col(k).cast(pl.Float64).fill_nan(None) for k in SUB_FACTORS]
    )
    ranked = values.with_columns(
        [percent_rank(pl.col(k), "calc_date").alias(f"rank_{k}") for k in SUB_FACTORS]
    )
    ranks = [pl.col(f"rank_{k}") for k in SUB_FACTORS]
    total = ranks[0].fill_null(0.0)
    for rank in ranks[1:]:
        total = total + rank.fill_null(0.0)
    count = pl.sum_horizontal([rank.is_not_null().cast(pl.Int64) for rank in ranks])
    scored = ranked.with_columns(
        g_score=round_half_even(pl.when(count > 0).then(total / count.cast(pl.Float64)))
    ).with_columns(g_rank=best_first_rank(pl.col("g_score"), "calc_date"))
    return conform(scored, G_SCHEMA).sort("ts_code", "calc_date")
