"""Prices: closes driven day by day within the limit bands, and bars derived from them.

The tape is built once per horizon, vectorised across stocks and stepping through the
trading days: a stock's return mixes a market factor with slowly changing volatility,
its SW L1 industry factor, its own noise and rare jumps, with a weak pull towards a
drifting anchor so 15 years stay in a plausible price range. Closes are clipped to the
day's limit band (±10% main board, ±20% STAR and ChiNext from 2020-08-24, ±30%
Beijing, ±5% for ST on ±10% boards, +44%/-36% on the listing day) with the exchanges'
half-up rounding to the cent. Ex-dates replace the previous close by the ex-rights
reference price (previous close - cash) / (1 + bonus shares per share), which moves
adj_factor; the anchor follows bonus shares only, so prices earn cash dividends back
over time. Suspended and paused days have no bar.

Per-stock randomness comes from streams keyed by (seed, stock), so the horizon can grow
without changing earlier days. Open, high, low, volume and amount are derived on
demand from the close, the previous close and counter-based noise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator import noise
from pipeline.sources.simulator.calendar import TradingCalendar
from pipeline.sources.simulator.fundamentals import Fundamentals
from pipeline.sources.simulator.industries import tree
from pipeline.sources.simulator.steps import StepSeries, running_product
from pipeline.sources.simulator.universe import BJ, CHINEXT, STAR, Universe

NOT_LISTED, TRADING, SUSPENDED = 0, 1, 2
CHINEXT_REFORM = dt.date(2020, 8, 24).toordinal()
_DRIFT = 0.00025
_PULL = 0.002
_JUMP_THRESHOLD = 2.2  # |z| beyond it: a jump of 7% to 16% (~2.8% of days)
_CHUNK = 256  # stocks per block when drawing returns
_MAX_CASH_SHARE = 0.3  # guard: an ex-date never takes more than 30% of the price in cash
_IPO_POP = 0.6


@dataclass(frozen=True)
class Tape:
    """Daily closes of every stock over the market's open days, [day, stock] grids."""

    days: NDArray[np.int64]  # open days (ordinals) from the first day of history
    close: NDArray[np.int32]  # cents; on a non-trading listed day, the last close
    pre: NDArray[np.int32]  # cents; the reference (previous or ex-rights) close, 0 when not listed
    status: NDArray[np.int8]  # NOT_LISTED, TRADING, SUSPENDED
    up_pct: NDArray[np.int8]  # limit band, percent
    down_pct: NDArray[np.int8]
    sigma: NDArray[np.float64]  # per stock: daily idiosyncratic volatility
    turnover: NDArray[np.float64]  # per stock: typical daily turnover of the float
    adj_factor: StepSeries  # column factor

    def limits(
        self, d: NDArray[np.int64], s: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Limit-up and limit-down prices in cents at tape positions (d, s)."""
        return limit_prices(self.pre[d, s].astype(np.int64), self.up_pct[d, s], self.down_pct[d, s])


def limit_prices(
    pre: NDArray[np.int64], up_pct: NDArray, down_pct: NDArray
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Limit prices in cents, rounded half up as the exchanges do."""
    up = (pre * (100 + up_pct.astype(np.int64)) + 50) // 100
    down = (pre * (100 - down_pct.astype(np.int64)) + 50) // 100
    return up, np.maximum(down, 1)


def _status(universe: Universe, days: NDArray[np.int64]) -> NDArray[np.int8]:
    status = np.zeros((len(days), universe.count), dtype=np.int8)
    first = np.searchsorted(days, universe.list_day)
    last = np.searchsorted(days, np.minimum(universe.delist_day, universe.pause_day))
    for s in range(universe.count):
        status[first[s] : last[s], s] = TRADING
    for s, day, sessions in universe.suspensions:
        i = np.searchsorted(days, day)
        stop = min(i + sessions, last[s])
        if i < stop:
            status[i:stop, s] = np.where(status[i:stop, s] == TRADING, SUSPENDED, status[i:stop, s])
    return status


def _bands(
    universe: Universe, days: NDArray[np.int64]
) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
    board = universe.board
    base = np.where(board == BJ, 30, np.where(board == STAR, 20, 10)).astype(np.int8)
    up = np.repeat(base[None, :], len(days), axis=0)
    reform = np.searchsorted(days, CHINEXT_REFORM)
    up[reform:, board == CHINEXT] = 20
    for s, first, stop in universe.st_intervals:
        i, j = np.searchsorted(days, first), np.searchsorted(days, stop)
        up[i:j, s] = np.where(up[i:j, s] == 10, 5, up[i:j, s])
    down = up.copy()
    listing = np.searchsorted(days, universe.list_day)
    ipo = (listing > 0) & (listing < len(days))
    up[listing[ipo], np.flatnonzero(ipo)] = 44
    down[listing[ipo], np.flatnonzero(ipo)] = 36
    return up, down


def _returns(
    seed: int, universe: Universe, days: NDArray[np.int64], sigma: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Unclipped daily log-returns [day, stock] before the pull to the anchor."""
    n_days, m = len(days), universe.count
    regime = noise.stream(seed, "vol_regime", 0).standard_normal(n_days)
    level = np.empty(n_days)
    acc = 0.0
    for i, e in enumerate(regime):
        acc = 0.985 * acc + 0.17 * e
        level[i] = acc
    market = 0.011 * np.exp(0.35 * level) * noise.stream(seed, "market", 0).standard_normal(n_days)
    l1 = np.array([c.l1 for c in tree().l3])[universe.first_l3]
    industry = np.stack(
        [noise.stream(seed, "industry", k).standard_normal(n_days) for k in range(len(tree().l1))]
    )
    idx = np.arange(m)
    beta = np.where(universe.comp_type == 2, 0.7, noise.between(seed, "beta", 0.6, 1.4, idx))
    gamma = noise.between(seed, "gamma", 0.004, 0.010, idx)
    market32, industry32 = market.astype(np.float32), industry.astype(np.float32)
    out = np.empty((n_days, m), dtype=np.float32)
    for lo in range(0, m, _CHUNK):
        stocks = idx[lo : lo + _CHUNK]
        z = np.stack(
            [
                noise.stream(seed, "idio", int(s)).standard_normal(n_days, dtype=np.float32)
                for s in stocks
            ]
        )
        # the tails of a stock's own shocks become jumps (news days)
        size = np.float32(0.07) + np.float32(0.09) * ((np.abs(z) - _JUMP_THRESHOLD) * 4 % 1.0)
        own = np.where(
            np.abs(z) > _JUMP_THRESHOLD,
            np.sign(z) * size,
            sigma[stocks, None].astype(np.float32) * z,
        )
        own += (
            beta[stocks, None].astype(np.float32) * market32
            + gamma[stocks, None].astype(np.float32) * industry32[l1[stocks]]
        )
        out[:, lo : lo + _CHUNK] = own.T + np.float32(_DRIFT)
    return out


def build_tape(
    seed: int,
    calendar: TradingCalendar,
    universe: Universe,
    fundamentals: Fundamentals,
    first: dt.date,
    last: dt.date,
) -> Tape:
    """Closes of every stock over the open days from `first` to `last`."""
    days = calendar.open_between(first.toordinal(), last.toordinal())
    n_days, m = len(days), universe.count
    idx = np.arange(m)
    board_vol = np.where(
        np.isin(universe.board, [STAR, CHINEXT]), 1.3, np.where(universe.board == BJ, 1.5, 1.0)
    )
    sigma = (
        noise.between(seed, "sigma", 0.012, 0.026, idx)
        * board_vol
        * np.where(universe.comp_type > 1, 0.6, 1.0)
    )
    turnover = np.exp(np.log(0.012) + 0.6 * noise.normal(seed, "turnover", idx)) * board_vol
    status = _status(universe, days)
    up_pct, down_pct = _bands(universe, days)
    raw = _returns(seed, universe, days, sigma)
    entry = np.searchsorted(days, universe.list_day)  # 0 for stocks listed before `first`
    ipo = universe.list_day >= days[0]
    raw[np.minimum(entry[ipo], n_days - 1), idx[ipo]] = _IPO_POP

    plans = fundamentals.dividends
    done = plans.carried_out & (plans.ex >= days[0]) & (plans.ex <= days[-1])
    ex_at = np.searchsorted(days, plans.ex[done])
    ex_stock, ex_cash = plans.stock[done], plans.cash_tax[done] * 100
    ex_ratio = 1.0 + plans.bonus[done] + plans.conversion[done]
    by_day = np.argsort(ex_at, kind="stable")
    ex_at, ex_stock, ex_cash, ex_ratio = (
        ex_at[by_day],
        ex_stock[by_day],
        ex_cash[by_day],
        ex_ratio[by_day],
    )
    ex_bounds = np.searchsorted(ex_at, np.arange(n_days + 1))
    factor_rows: list[tuple[int, int, float]] = []

    close = np.zeros((n_days, m), dtype=np.int32)
    pre = np.zeros((n_days, m), dtype=np.int32)
    last_close = np.zeros(m, dtype=np.int64)
    anchor = np.log(fundamentals.price0 * 100)
    start_price = np.round(fundamentals.price0 * 100).astype(np.int64)
    entries = np.argsort(entry, kind="stable")
    entry_bounds = np.searchsorted(entry[entries], np.arange(n_days + 1))
    for d in range(n_days):
        newcomers = entries[entry_bounds[d] : entry_bounds[d + 1]]
        last_close[newcomers] = start_price[newcomers]
        lo, hi = ex_bounds[d], ex_bounds[d + 1]
        if hi > lo:
            s = ex_stock[lo:hi]
            before = last_close[s]
            cash = np.minimum(ex_cash[lo:hi], _MAX_CASH_SHARE * before)
            after = np.maximum(
                np.floor((before - cash) / ex_ratio[lo:hi] + 0.5).astype(np.int64), 1
            )
            last_close[s] = after
            anchor[s] -= np.log(
                ex_ratio[lo:hi]
            )  # bonus shares split the price; cash is earned back
            factor_rows += zip(
                s.tolist(), [int(days[d])] * (hi - lo), (before / after).tolist(), strict=True
            )
        st = status[d]
        up, down = limit_prices(last_close, up_pct[d], down_pct[d])
        listed = st != NOT_LISTED
        safe = np.maximum(last_close, 1)
        target = safe * np.exp(raw[d] - _PULL * (np.log(safe) - anchor))
        today = np.where(
            st == TRADING, np.clip(np.rint(target).astype(np.int64), down, up), last_close
        )
        close[d] = np.where(listed, today, 0)
        pre[d] = np.where(listed, last_close, 0)
        last_close = np.where(listed, today, last_close)
        anchor += _DRIFT
    return Tape(
        days=days,
        close=close,
        pre=pre,
        status=status,
        up_pct=up_pct,
        down_pct=down_pct,
        sigma=sigma,
        turnover=turnover,
        adj_factor=_adj_factors(seed, universe, days, factor_rows),
    )


def _adj_factors(
    seed: int, universe: Universe, days: NDArray[np.int64], rows: list[tuple[int, int, float]]
) -> StepSeries:
    """adj_factor: 1 at listing (a random older level for stocks listed before history
    starts), multiplied at each ex-date by previous close / ex-rights reference."""
    idx = np.arange(universe.count)
    old = universe.list_day < days[0]
    base = np.where(old, np.exp(2.5 * noise.uniform(seed, "adj_base", idx)), 1.0)
    stocks = np.concatenate([idx, np.array([r[0] for r in rows], dtype=np.int64)])
    when = np.concatenate(
        [np.zeros(universe.count, dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64)]
    )
    factor = np.concatenate([base, np.array([r[2] for r in rows])])
    order = np.lexsort((when, stocks))
    running = running_product(stocks[order], factor[order])
    return StepSeries(stocks[order], when[order], {"factor": np.round(running, 3)})
