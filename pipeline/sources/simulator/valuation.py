"""What the market knew about each company on each day: the inputs of daily_basic.

Valuation ratios use the formal reports as first announced, from the day they became
visible (the later of ann_date and f_ann_date), so daily_basic never looks ahead:
TTM net income and revenue of the latest visible period p are
ytd(p) + annual(p's previous year) - ytd(p - 4 quarters), null while any part is not
yet visible; "lyr" figures come from the latest visible annual report; book value is
the attributable equity of the latest visible period. Dividend yields use the cash per
share of the latest annual plan (dv_ratio) and of the ex-dates of the past 365 days
(dv_ttm).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.steps import StepSeries
from pipeline.sources.simulator.universe import NEVER


def _ytd(grid: NDArray[np.float64], first_pid: int) -> NDArray[np.float64]:
    """Year-to-date sums of a single-quarter [period, stock] grid."""
    out = grid.copy()
    quarter = (np.arange(len(grid)) + first_pid) % 4
    for i in range(1, len(grid)):
        if quarter[i] != 0:
            out[i] += out[i - 1]
    return out


def financial_knowledge(market: Market) -> StepSeries:
    """Per stock, from each report's visibility day: ttm_np, ttm_rev, lyr_np, lyr_rev, equity."""

    def build() -> StepSeries:
        sched, fund = market.schedule, market.fundamentals
        shift = sched.first_pid - fund.first_pid
        np_ytd = _ytd(fund.net_income, fund.first_pid)[shift:]
        rev_ytd = _ytd(fund.revenue, fund.first_pid)[shift:]
        equity = fund.equity[shift:]
        visible = np.where(sched.reported, sched.visible, NEVER)
        p_idx, s_idx = np.nonzero(sched.reported)
        day = visible[p_idx, s_idx]
        order = np.lexsort((p_idx, day, s_idx))
        p_idx, s_idx, day = p_idx[order], s_idx[order], day[order]
        stock_base = s_idx * 10_000
        latest = (
            np.maximum.accumulate(stock_base + p_idx) - stock_base
        )  # latest period visible so far
        annual_mask = (p_idx + sched.first_pid) % 4 == 3
        latest_annual = (
            np.maximum.accumulate(np.where(annual_mask, stock_base + p_idx, stock_base - 1))
            - stock_base
        )

        def known(rows: NDArray[np.int64]) -> NDArray[np.bool_]:
            ok = rows >= 0
            r = np.maximum(rows, 0)
            return ok & (visible[r, s_idx] <= day)

        prior_annual = latest - (latest + sched.first_pid) % 4 - 1
        year_ago = latest - 4
        ttm_ok = (
            known(latest)
            & known(year_ago)
            & (known(prior_annual) | ((latest + sched.first_pid) % 4 == 3))
        )
        l_, a_, y_ = latest, np.maximum(prior_annual, 0), np.maximum(year_ago, 0)
        is_annual = (latest + sched.first_pid) % 4 == 3
        ttm_np = np.where(
            is_annual, np_ytd[l_, s_idx], np_ytd[l_, s_idx] + np_ytd[a_, s_idx] - np_ytd[y_, s_idx]
        )
        ttm_rev = np.where(
            is_annual,
            rev_ytd[l_, s_idx],
            rev_ytd[l_, s_idx] + rev_ytd[a_, s_idx] - rev_ytd[y_, s_idx],
        )
        ttm_ok = np.where(is_annual, known(latest), ttm_ok)
        la = np.maximum(latest_annual, 0)
        lyr_ok = latest_annual >= 0
        return StepSeries(
            s_idx,
            day,
            {
                "ttm_np": np.where(ttm_ok, ttm_np, np.nan),
                "ttm_rev": np.where(ttm_ok, ttm_rev, np.nan),
                "lyr_np": np.where(lyr_ok, np_ytd[la, s_idx], np.nan),
                "lyr_rev": np.where(lyr_ok, rev_ytd[la, s_idx], np.nan),
                "equity": equity[l_, s_idx],
            },
        )

    return market.part("financial_knowledge", build)


def dividend_knowledge(market: Market) -> tuple[StepSeries, StepSeries]:
    """Per stock: cash per share of the latest annual plan; cash paid over the last 365 days."""

    def build() -> tuple[StepSeries, StepSeries]:
        plans = market.fundamentals.dividends
        latest = StepSeries(plans.stock, plans.ann, {"cash": plans.cash_tax})
        done = plans.carried_out
        stocks = np.concatenate([plans.stock[done], plans.stock[done]])
        days = np.concatenate([plans.ex[done], plans.ex[done] + 365])
        change = np.concatenate([plans.cash_tax[done], -plans.cash_tax[done]])
        order = np.lexsort((days, stocks))
        stocks, days, change = stocks[order], days[order], change[order]
        first = np.r_[True, stocks[1:] != stocks[:-1]]
        running = np.cumsum(change)
        start = np.maximum.accumulate(np.where(first, np.arange(len(stocks)), 0))
        trailing = np.round(running - np.r_[0.0, running][start], 6)
        return latest, StepSeries(stocks, days, {"cash": trailing})

    return market.part("dividend_knowledge", build)
