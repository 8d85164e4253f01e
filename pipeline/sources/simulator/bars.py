"""Daily bars of (day, stock) pairs: open, high, low, volume and amount around the close.

The close and the reference price come from the tape; the rest is counter-based noise
keyed by (stock, day), so a bar is the same whichever request produced it. Opens sit
near the reference price, highs and lows bracket the open and the close inside the
limit band, a board sealed at the limit all day (一字板) has open = high = low = close,
and volume is the stock's usual turnover of its float, higher on big moves and on the
listing day, thin on sealed boards.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator import noise
from pipeline.sources.simulator.market import Market

Bars = dict[str, NDArray[np.float64]]


def float_shares(
    market: Market, stocks: NDArray[np.int64], days: NDArray[np.int64]
) -> tuple[NDArray[np.float64], ...]:
    """Total, float and free-float share counts (shares) of stocks on days (ordinals)."""
    f = market.fundamentals
    total = f.total_shares.at("shares", stocks, days, 0.0)
    floating = np.round(total * f.float_shares.at("ratio", stocks, days, 1.0), -2)
    free = np.round(floating * f.free_ratio[stocks], -2)
    return total, floating, free


def daily_bars(market: Market, d: NDArray[np.int64], s: NDArray[np.int64]) -> Bars:
    """Bars at tape positions d (day) and stocks s; the pairs must be trading days."""
    tape, seed = market.tape, market.seed
    day = tape.days[d]
    pre_c = tape.pre[d, s].astype(np.int64)
    close_c = tape.close[d, s].astype(np.int64)
    up_c, down_c = tape.limits(d, s)
    pre, close, up, down = pre_c / 100, close_c / 100, up_c / 100, down_c / 100
    move = close / pre - 1
    sigma = tape.sigma[s]
    first_day = tape.up_pct[d, s] == 44
    sealed = ((close_c == up_c) | (close_c == down_c)) & (
        (noise.uniform(seed, "sealed", s, day) < 0.3) | first_day
    )
    open_ = np.clip(
        np.round(pre * (1 + 0.35 * move + 0.4 * sigma * noise.normal(seed, "open", s, day)), 2),
        down,
        up,
    )
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = np.clip(
        np.round(top * (1 + 0.5 * sigma * np.abs(noise.normal(seed, "high", s, day))), 2), top, up
    )
    low = np.clip(
        np.round(bottom * (1 - 0.5 * sigma * np.abs(noise.normal(seed, "low", s, day))), 2),
        down,
        bottom,
    )
    open_ = np.where(sealed, close, open_)
    high = np.where(sealed, close, high)
    low = np.where(sealed, close, low)
    _, floating, _ = float_shares(market, s, day)
    turnover = (
        tape.turnover[s]
        * np.exp(0.35 * noise.normal(seed, "volume", s, day))
        * (1 + 6 * np.abs(move))
    )
    turnover = np.where(sealed, turnover * 0.15, turnover)
    turnover = np.where(
        first_day, 0.05 + 0.02 * noise.uniform(seed, "ipo_volume", s, day), turnover
    )
    vol = np.round(turnover * floating / 100, 2)
    vwap = (open_ + high + low + close) / 4 * (1 + 0.002 * noise.normal(seed, "vwap", s, day))
    vwap = np.clip(vwap, low, high)
    change = np.round(close - pre, 2)
    return {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "pre_close": pre,
        "change": change,
        "pct_chg": np.round(change / pre * 100, 4),
        "vol": vol,
        "amount": np.round(vol * vwap / 10, 3),  # lots * 100 shares * price / 1000 = thousand yuan
        "up_limit": up,
        "down_limit": down,
        "float_share": floating,
    }
