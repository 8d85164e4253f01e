"""A slow, plain-Python reference of DESIGN section 7 (calc dates, universe, P, G).

Written from the DESIGN text with loops over lists of dicts, not from the product
code. Dates are `datetime.date`, missing values `None`. Rules the DESIGN leaves open
and the product documents are spelled out where they are used:
- a week or month only yields a calc date once the calendar covers its last day;
- among industry memberships with the same latest in_date, the one that sorts last
  by all its columns (nulls first) wins;
- ann_date (README "Definitions beyond DESIGN"): the latest of V_t(L(t))'s vis_date
  and the lineage dates of the values that are not null (`ref_p_lineage`,
  `ref_g_lineage`); P at calc dates other than t does not count for G;
- P scores are 6-decimal numbers: differences of them (EM, D) are taken exactly,
  as decimals, then turned into the nearest float; sigma is the population standard
  deviation of those exact decimals (statistics.pstdev on Fractions, correctly
  rounded).
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import math
import statistics
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

Row = dict[str, Any]

FINANCIAL_NAMES = {"银行", "非银金融"}
FINANCIAL_COMP_TYPES = {"2", "3", "4"}


# ---------------------------------------------------------------- calc dates


def ref_calc_dates(cal: Iterable[Row], as_of: dt.date, freq: str) -> list[dt.date]:
    """Last SSE open day of each ISO week / month, or every open day; only <= as_of."""
    sse = [r for r in cal if r["exchange"] == "SSE"]
    if not sse:
        return []
    covered = max(r["cal_date"] for r in sse)
    open_days = sorted({r["cal_date"] for r in sse if r["is_open"] == "1"})
    if freq == "daily":
        chosen = open_days
    else:
        last_of: dict[tuple[int, int], dt.date] = {}
        end_of: dict[tuple[int, int], dt.date] = {}
        for day in open_days:
            if freq == "weekly":
                iso = day.isocalendar()
                key = (iso[0], iso[1])
                end_of[key] = day + dt.timedelta(days=7 - iso[2])
            else:
                key = (day.year, day.month)
                end_of[key] = dt.date(day.year, day.month, calendar.monthrange(*key)[1])
            if key not in last_of or day > last_of[key]:
                last_of[key] = day
        chosen = sorted(last_of[k] for k in last_of if end_of[k] <= covered)
    return [d for d in chosen if d <= as_of]


def ref_year_ago(dates: list[dt.date], t: dt.date) -> dt.date | None:
    """The calc date nearest to t - 365 days within +-30 days; ties to the earlier."""
    target = t - dt.timedelta(days=365)
    best = None
    for c in dates:
        gap = abs((c - target).days)
        if gap > 30:
            continue
        if (
            best is None
            or gap < abs((best - target).days)
            or (gap == abs((best - target).days) and c < best)
        ):
            best = c
    return best


@functools.cache
def _year_ago_cached(dates: tuple[dt.date, ...], t: dt.date) -> dt.date | None:
    return ref_year_ago(list(dates), t)


# ---------------------------------------------------------------- universe


def _month_end_months_before(t: dt.date, months: int) -> dt.date:
    y, m = t.year, t.month - months
    while m <= 0:
        m += 12
        y -= 1
    return dt.date(y, m, calendar.monthrange(y, m)[1])


def ref_stock_rows(stocks: Iterable[Row]) -> dict[str, Row]:
    """The latest fetched stock_basic row of each ts_code."""
    latest: dict[str, Row] = {}
    for r in stocks:
        old = latest.get(r["ts_code"])
        if old is None or _nulls_first(r.get("_fetched_at")) >= _nulls_first(
            old.get("_fetched_at")
        ):
            latest[r["ts_code"]] = r
    return latest


def ref_indicator_at(indicators: Iterable[Row], code: str, t: dt.date) -> Row | None:
    """The indicators row of `code` with the latest knowledge_date <= t."""
    best = None
    for r in indicators:
        if r["ts_code"] != code or r["knowledge_date"] > t:
            continue
        if best is None or r["knowledge_date"] > best["knowledge_date"]:
            best = r
    return best


def ref_universe(
    stocks: Iterable[Row], indicators: list[Row], t: dt.date, include_bj: bool = True
) -> dict[str, Row]:
    """{ts_code: indicators row as of t} for the stocks in the universe at t."""
    by_code: dict[str, list[Row]] = {}
    for r in indicators:
        by_code.setdefault(r["ts_code"], []).append(r)
    out = {}
    for code, s in ref_stock_rows(stocks).items():
        if not include_bj and code.endswith(".BJ"):
            continue
        if s["list_date"] is None or s["list_date"] > t:
            continue
        if s["delist_date"] is not None and not t < s["delist_date"]:
            continue
        ind = ref_indicator_at(by_code.get(code, []), code, t)
        if ind is None or ind["end_date"] is None:
            continue
        if ind["end_date"] < _month_end_months_before(t, 10):
            continue
        out[code] = ind
    return out


# ---------------------------------------------------------------- industry


INDUSTRY_ORDER = (
    "l1_code",
    "l1_name",
    "l2_code",
    "l2_name",
    "l3_code",
    "l3_name",
    "in_date",
    "out_date",
)


def _nulls_first(v: Any) -> tuple[int, Any]:
    return (0, 0) if v is None else (1, v)


def ref_industry_at(industry: Iterable[Row], code: str, t: dt.date) -> Row | None:
    """The membership of `code` holding at t (latest in_date wins), or None."""
    held = [
        r
        for r in industry
        if r["ts_code"] == code
        and (r["in_date"] is None or r["in_date"] <= t)
        and (r["out_date"] is None or t < r["out_date"])
    ]
    if not held:
        return None
    return max(
        held,
        key=lambda r: (_nulls_first(r["in_date"]), *(_nulls_first(r[c]) for c in INDUSTRY_ORDER)),
    )


# ---------------------------------------------------------------- P


def ref_quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    n = len(sorted_values)
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def ref_average_ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1..n, larger value larger rank, ties get the mean of their positions."""
    out = {}
    for code, v in values.items():
        less = sum(1 for w in values.values() if w < v)
        equal = sum(1 for w in values.values() if w == v)
        out[code] = less + (equal + 1) / 2
    return out


def ref_sub_scores(values: dict[str, float]) -> dict[str, float]:
    """Winsorise at 1%/99%, average-rank, s = 100 (r - 1) / (n - 1), 50 when n = 1."""
    n = len(values)
    if n == 0:
        return {}
    ordered = sorted(values.values())
    lo, hi = ref_quantile(ordered, 0.01), ref_quantile(ordered, 0.99)
    clipped = {c: min(max(v, lo), hi) for c, v in values.items()}
    ranks = ref_average_ranks(clipped)
    if n == 1:
        return {c: 50.0 for c in values}
    return {c: 100 * (r - 1) / (n - 1) for c, r in ranks.items()}


def ref_min_ranks_desc(scores: dict[str, float | None]) -> dict[str, int | None]:
    """1 + number of strictly greater non-null scores; None for a null score."""
    present = [s for s in scores.values() if s is not None]
    return {
        c: None if s is None else 1 + sum(1 for o in present if o > s) for c, s in scores.items()
    }


def _latest(dates: list[dt.date | None]) -> dt.date | None:
    known = [d for d in dates if d is not None]
    return max(known) if known else None


def ref_p_lineage(ind: Row, financial: bool) -> dt.date | None:
    """ann_date of a P row from its indicators row: the versions behind its non-null values.

    V_t(L) always; the TTM versions when gpa (not a financial's), roe or roa has a
    value; the balance sheet V_t(Lb) when roe or roa has one.
    """
    fed = [ind["vis_date"]]
    by_balance = ind["roe"] is not None or ind["roa"] is not None
    if by_balance or (ind["gpa"] is not None and not financial):
        fed.append(ind["ttm_vis_date"])
    if by_balance:
        fed.append(ind["bs_vis_date"])
    return _latest(fed)


def ref_p_at(t: dt.date, members: dict[str, Row], industry: list[Row]) -> list[Row]:
    """factors.p rows at t for the universe `members` ({ts_code: indicators row})."""
    rows: dict[str, Row] = {}
    for code, ind in members.items():
        membership = ref_industry_at(industry, code, t)
        if membership is not None:
            financial = membership["l1_name"] in FINANCIAL_NAMES
        else:
            financial = ind.get("comp_type") in FINANCIAL_COMP_TYPES
        rows[code] = {
            "ts_code": code,
            "calc_date": t,
            "gpa": None if financial else ind["gpa"],
            "roe": ind["roe"],
            "roa": ind["roa"],
            "is_financial": financial,
            "industry_l1": None if membership is None else membership["l1_name"],
            "end_date": ind["end_date"],
            "ann_date": ref_p_lineage(ind, financial),
        }
    return ref_p_scores(rows)


def ref_p_scores(rows: dict[str, Row]) -> list[Row]:
    """Sub-scores, P, p_score and p_rank of one date's rows (gpa already null for financials)."""
    for metric in ("gpa", "roe", "roa"):
        values = {c: r[metric] for c, r in rows.items() if r[metric] is not None}
        scores = ref_sub_scores(values)
        for c, r in rows.items():
            r[f"s_{metric}"] = scores.get(c)
    for r in rows.values():
        weights = (
            {"roe": 0.5, "roa": 0.5} if r["is_financial"] else {"gpa": 0.4, "roe": 0.3, "roa": 0.3}
        )
        num = 0.0
        den = 0.0
        for metric in ("gpa", "roe", "roa"):
            s = r[f"s_{metric}"]
            if metric in weights and s is not None:
                num += weights[metric] * s
                den += weights[metric]
        r["p_score"] = round(num / den, 6) if den > 0 else None
    ranks = ref_min_ranks_desc({c: r["p_score"] for c, r in rows.items()})
    for c, r in rows.items():
        r["p_rank"] = ranks[c]
    return list(rows.values())


# ---------------------------------------------------------------- G


def _exact(score: float) -> Decimal:
    """A stored 6-decimal score as the exact decimal it stands for."""
    return Decimal(repr(score))


def ref_em(
    p: dict[tuple[str, dt.date], float | None], dates: list[dt.date], code: str, t: dt.date
) -> Decimal | None:
    """P_t - P_{t-1y} of a stock, exactly; None if either is missing."""
    before = _year_ago_cached(tuple(dates), t)
    now = p.get((code, t))
    if before is None or now is None:
        return None
    then = p.get((code, before))
    if then is None:
        return None
    return _exact(now) - _exact(then)


def ref_es(
    p: dict[tuple[str, dt.date], float | None], dates: list[dt.date], code: str, t: dt.date
) -> float | None:
    """ES of a stock at t (DESIGN 7), from P history `p` at calc dates `dates`."""
    em = ref_em(p, dates, code, t)
    if em is None:
        return None
    window = [s for s in dates if t - dt.timedelta(days=730) < s <= t]
    diffs = [ref_em(p, dates, code, s) for s in window]
    diffs = [d for d in diffs if d is not None]
    n = len(diffs)
    if n < 3:
        return None
    sigma = statistics.pstdev([Fraction(d) for d in diffs])
    if sigma < 1e-9:
        return None
    if n >= 8:
        return float(em) / sigma
    return float(em) / sigma * math.sqrt(n / 8)


def ref_percent_ranks(values: dict[str, float]) -> dict[str, float]:
    n = len(values)
    return {c: 100 * r / n for c, r in ref_average_ranks(values).items()}


def ref_g_lineage(ind: Row, em: Decimal | None, p_ann: dt.date | None) -> dt.date | None:
    """ann_date of a G row: V_t(L), P_t's ann_date `p_ann` if EM has a value, the q(L)
    and q(L-4) versions if RM or PM has one."""
    fed = [ind["vis_date"]]
    if em is not None:
        fed.append(p_ann)
    if ind["revenue_yoy"] is not None or ind["profit_yoy"] is not None:
        fed.append(ind["yoy_vis_date"])
    return _latest(fed)


def ref_g_at(
    t: dt.date,
    members: dict[str, Row],
    p: dict[tuple[str, dt.date], float | None],
    dates: list[dt.date],
    p_ann: dict[tuple[str, dt.date], dt.date | None] | None = None,
) -> list[Row]:
    """factors.g rows at t for the universe `members`, from P history `p`.

    `p_ann` holds the P rows' ann_date (none: G's lineage leaves P out).
    """
    rows: dict[str, Row] = {}
    for code, ind in members.items():
        em = ref_em(p, dates, code, t)
        p_lineage = None if p_ann is None else p_ann.get((code, t))
        rows[code] = {
            "ts_code": code,
            "calc_date": t,
            "em": None if em is None else float(em),
            "es": ref_es(p, dates, code, t),
            "rm": ind["revenue_yoy"],
            "pm": ind["profit_yoy"],
            "end_date": ind["end_date"],
            "ann_date": ref_g_lineage(ind, em, p_lineage),
        }
    return ref_g_scores(rows)


def ref_g_scores(rows: dict[str, Row]) -> list[Row]:
    """rank_*, g_score and g_rank of one date's rows."""
    for k in ("em", "es", "rm", "pm"):
        ranks = ref_percent_ranks({c: r[k] for c, r in rows.items() if r[k] is not None})
        for c, r in rows.items():
            r[f"rank_{k}"] = ranks.get(c)
    for r in rows.values():
        available = [r[f"rank_{k}"] for k in ("em", "es", "rm", "pm") if r[f"rank_{k}"] is not None]
        total = 0.0
        for v in available:
            total += v
        r["g_score"] = round(total / len(available), 6) if available else None
    ranks = ref_min_ranks_desc({c: r["g_score"] for c, r in rows.items()})
    for c, r in rows.items():
        r["g_rank"] = ranks[c]
    return list(rows.values())


# ---------------------------------------------------------------- everything


def ref_factors(
    cal: list[Row],
    stocks: list[Row],
    indicators: list[Row],
    industry: list[Row],
    as_of: dt.date,
    freq: str = "weekly",
    include_bj: bool = True,
) -> tuple[list[Row], list[Row]]:
    """(factors.p rows, factors.g rows) at every calc date, from raw inputs."""
    dates = ref_calc_dates(cal, as_of, freq)
    p_rows: list[Row] = []
    members_at = {}
    for t in dates:
        members_at[t] = ref_universe(stocks, indicators, t, include_bj)
        p_rows += ref_p_at(t, members_at[t], industry)
    p = {(r["ts_code"], r["calc_date"]): r["p_score"] for r in p_rows}
    p_ann = {(r["ts_code"], r["calc_date"]): r["ann_date"] for r in p_rows}
    g_rows: list[Row] = []
    for t in dates:
        g_rows += ref_g_at(t, members_at[t], p, dates, p_ann)
    return p_rows, g_rows
