"""The factor reference: P and G the way they are usually written, for the speed-up ratio.

A pandas script looping over calc dates and, within each, over stocks: the stock's
indicator history filtered to what was known at t, its industry membership at t, then
the cross-section (winsorise, rank, weight) with pandas. G looks each stock's P up at t,
at t-1y and over the two-year window of differences. The inputs are the same cache
tables the product reads (pit.indicators, pit.industry, raw.stock_basic; the stored P
history for G). It runs on a few calc dates and is extrapolated to all of them; its
agreement with the product's stored scores on those dates is reported, to show that it
does the same work.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

FINANCIAL_L1 = ("银行", "非银金融")
FINANCIAL_COMP_TYPES = ("2", "3", "4")
P_WEIGHTS = {"gpa": 0.4, "roe": 0.3, "roa": 0.3}
P_WEIGHTS_FINANCIAL = {"gpa": 0.0, "roe": 0.5, "roa": 0.5}
G_PARTS = ("em", "es", "rm", "pm")
SCORE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ReferenceJob:
    """The prepared cache and how many calc dates to compute."""

    cache: Path
    dates: int


def _read(cache: Path, layer: str, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """One cache dataset as pandas (the usual `pd.read_parquet` of its folder)."""
    return pd.read_parquet(cache / layer / name, columns=list(columns))


def _stale_before(t: dt.date) -> dt.date:
    """The last day of the month ten months before t's month."""
    month = t.year * 12 + t.month - 1 - 10
    first_next = dt.date((month + 1) // 12, (month + 1) % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def _year_ago(dates: Sequence[dt.date], t: dt.date) -> dt.date | None:
    target = t - dt.timedelta(days=365)
    near = [(abs((d - target).days), d) for d in dates if abs((d - target).days) <= 30]
    return min(near)[1] if near else None


class Inputs:
    """The tables loaded once, grouped by stock as such a script would."""

    def __init__(self, cache: Path) -> None:
        indicators = _read(
            cache,
            "pit",
            "indicators",
            ["ts_code", "knowledge_date", "end_date", "ann_date", "comp_type", "gpa", "roe",
             "roa", "revenue_yoy", "profit_yoy"],
        ).sort_values(["ts_code", "knowledge_date"])  # fmt: skip
        self.indicators = {code: frame for code, frame in indicators.groupby("ts_code")}
        industry = _read(cache, "pit", "industry", ["ts_code", "l1_name", "in_date", "out_date"])
        self.industry = {code: frame for code, frame in industry.groupby("ts_code")}
        stocks = _read(cache, "raw", "stock_basic", ["ts_code", "list_date", "delist_date"])
        self.stocks = stocks.drop_duplicates("ts_code", keep="last").sort_values("ts_code")
        p_history = _read(cache, "factors", "p", ["ts_code", "calc_date", "p_score"])
        self.calc_dates = sorted(p_history["calc_date"].unique())
        self.p_score = {
            code: dict(zip(frame["calc_date"], frame["p_score"], strict=True))
            for code, frame in p_history.groupby("ts_code")
        }


def _is_financial(inputs: Inputs, code: str, t: dt.date, comp_type: Any) -> bool:
    members = inputs.industry.get(code)
    if members is not None:
        held = members[
            (members["in_date"].isna() | (members["in_date"] <= t))
            & (members["out_date"].isna() | (members["out_date"] > t))
        ]
        if len(held):
            latest = held.sort_values("in_date", na_position="first").iloc[-1]
            return latest["l1_name"] in FINANCIAL_L1
    return comp_type in FINANCIAL_COMP_TYPES


def _known_rows(inputs: Inputs, t: dt.date) -> pd.DataFrame:
    """The universe at t: one row per listed, non-stale stock with its indicators."""
    rows = []
    for stock in inputs.stocks.itertuples(index=False):
        if pd.isna(stock.list_date) or stock.list_date > t:
            continue
        if not pd.isna(stock.delist_date) and t >= stock.delist_date:
            continue
        history = inputs.indicators.get(stock.ts_code)
        if history is None:
            continue
        known = history[history["knowledge_date"] <= t]
        if known.empty:
            continue
        last = known.iloc[-1]
        if last["end_date"] < _stale_before(t):
            continue
        financial = _is_financial(inputs, stock.ts_code, t, last["comp_type"])
        rows.append(
            {
                "ts_code": stock.ts_code,
                "gpa": None if financial else last["gpa"],
                "roe": last["roe"],
                "roa": last["roa"],
                "financial": financial,
                "rm": last["revenue_yoy"],
                "pm": last["profit_yoy"],
            }
        )
    return pd.DataFrame(rows)


def p_at(inputs: Inputs, t: dt.date) -> pd.DataFrame:
    """P at one calc date: ts_code, p_score."""
    frame = _known_rows(inputs, t)
    numerator = pd.Series(0.0, index=frame.index)
    denominator = pd.Series(0.0, index=frame.index)
    for metric, weight in P_WEIGHTS.items():
        values = pd.to_numeric(frame[metric], errors="coerce")
        present = values.notna()
        n = int(present.sum())
        if n == 0:
            continue
        low, high = values[present].quantile(0.01), values[present].quantile(0.99)
        ranks = values.clip(low, high).rank(method="average")
        score = 50.0 if n == 1 else 100.0 * (ranks - 1.0) / (n - 1)
        weights = frame["financial"].map({True: P_WEIGHTS_FINANCIAL[metric], False: weight})
        numerator += (weights * score).where(present, 0.0)
        denominator += weights.where(present, 0.0)
    frame["p_score"] = (numerator / denominator).where(denominator > 0).round(6)
    frame["p_rank"] = frame["p_score"].rank(method="min", ascending=False)
    return frame[["ts_code", "p_score", "p_rank"]]


def _difference(scores: dict[Any, float], s: dt.date, before: dt.date | None) -> float | None:
    if before is None:
        return None
    now, then = scores.get(s), scores.get(before)
    if now is None or then is None or math.isnan(now) or math.isnan(then):
        return None
    return round(now - then, 6)


def g_at(inputs: Inputs, t: dt.date) -> pd.DataFrame:
    """G at one calc date: ts_code, g_score."""
    frame = _known_rows(inputs, t)
    dates = inputs.calc_dates
    window = [s for s in dates if t - dt.timedelta(days=730) < s <= t]
    year_ago = {s: _year_ago(dates, s) for s in window}
    em_values, es_values = [], []
    for code in frame["ts_code"]:
        scores = inputs.p_score.get(code, {})
        em = _difference(scores, t, year_ago[t])
        diffs = [d for s in window if (d := _difference(scores, s, year_ago[s])) is not None]
        n = len(diffs)
        sigma = pd.Series(diffs).std(ddof=0) if n else 0.0
        es = None
        if em is not None and n >= 3 and sigma >= 1e-9:
            es = em / sigma if n >= 8 else em / sigma * math.sqrt(n / 8)
        em_values.append(em)
        es_values.append(es)
    frame["em"], frame["es"] = em_values, es_values
    ranks = []
    for part in G_PARTS:
        values = pd.to_numeric(frame[part], errors="coerce")
        ranks.append(100.0 * values.rank(method="average") / values.notna().sum())
    frame["g_score"] = pd.concat(ranks, axis=1).mean(axis=1, skipna=True).round(6)
    frame["g_rank"] = frame["g_score"].rank(method="min", ascending=False)
    return frame[["ts_code", "g_score", "g_rank"]]


def _agreement(mine: pd.DataFrame, stored: pd.DataFrame, column: str) -> float:
    """Share of the stocks of either side whose scores agree (a missing row disagrees,
    null equals null)."""
    both = stored.merge(mine, on="ts_code", how="outer", suffixes=("", "_ref"), indicator=True)
    a, b = both[column], both[f"{column}_ref"]
    equal = (a.isna() & b.isna()) | ((a - b).abs() <= SCORE_TOLERANCE)
    same = (both["_merge"] == "both") & equal
    return float(same.mean()) if len(both) else 1.0


def run_reference(job: ReferenceJob) -> dict[str, Any]:
    """In a child: load, then P and G at `job.dates` calc dates spread over the history."""
    started, cpu = time.perf_counter(), time.process_time()
    inputs = Inputs(job.cache)
    setup, setup_cpu = time.perf_counter() - started, time.process_time() - cpu
    dates = inputs.calc_dates
    step = len(dates) / (job.dates + 1)
    chosen = [dates[int(step * (i + 1))] for i in range(job.dates)]
    stored_p = _read(job.cache, "factors", "p", ["ts_code", "calc_date", "p_score"])
    stored_g = _read(job.cache, "factors", "g", ["ts_code", "calc_date", "g_score"])
    p_seconds, g_seconds, p_agree, g_agree = [], [], [], []
    p_cpu, g_cpu = [], []
    for t in chosen:
        started, cpu = time.perf_counter(), time.process_time()
        p = p_at(inputs, t)
        p_seconds.append(time.perf_counter() - started)
        p_cpu.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        g = g_at(inputs, t)
        g_seconds.append(time.perf_counter() - started)
        g_cpu.append(time.process_time() - cpu)
        p_agree.append(_agreement(p, stored_p[stored_p["calc_date"] == t], "p_score"))
        g_agree.append(_agreement(g, stored_g[stored_g["calc_date"] == t], "g_score"))
    return {
        "setup_s": setup,
        "setup_cpu_s": setup_cpu,
        "p_s": p_seconds,
        "g_s": g_seconds,
        "p_cpu_s": p_cpu,
        "g_cpu_s": g_cpu,
        "dates": [d.isoformat() for d in chosen],
        "calc_dates": len(dates),
        "p_agreement": min(p_agree),
        "g_agreement": min(g_agree),
    }
