"""Market data by trading day: bars, adjustment factors, valuations, halts, limits, flows.

Rows come newest first, then by ts_code. A request over the whole market is answered
day by day from the newest, stopping once the caller's row budget is met, so an
unfiltered `daily` call costs a couple of days, not fifteen years.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import polars as pl
from numpy.typing import NDArray

from pipeline.sources.simulator import frames, noise
from pipeline.sources.simulator.api_reference import l1_name
from pipeline.sources.simulator.bars import daily_bars, float_shares
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.prices import NOT_LISTED, SUSPENDED, TRADING
from pipeline.sources.simulator.query import Query
from pipeline.sources.simulator.valuation import dividend_knowledge, financial_knowledge

Mask = Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.bool_]]
Maker = Callable[[NDArray[np.int64], NDArray[np.int64]], pl.DataFrame]
LIMIT_LIST_FROM = dt.date(2020, 1, 1).toordinal()


def positions(market: Market, q: Query, first: int = 0) -> NDArray[np.int64]:
    """Tape positions of the requested trading days (trade_date or start/end), newest first."""
    days = market.tape.days
    lo, hi = q.day_range("trade_date")
    a = np.searchsorted(days, max(lo, first), side="left")
    b = np.searchsorted(days, hi, side="right")
    return np.arange(a, b, dtype=np.int64)[::-1]


def scan(
    market: Market,
    q: Query,
    api: str,
    where: NDArray[np.int64],
    stocks: NDArray[np.int64],
    wanted: Mask,
    make: Maker,
) -> pl.DataFrame:
    """Rows for (day, stock) pairs passing `wanted`, newest day first, in blocks of days."""
    rank = market.universe.code_rank
    step = len(where) if q.budget is None else max(1, q.budget // max(len(stocks), 1) + 1)
    out: list[pl.DataFrame] = []
    total = 0
    for i in range(0, len(where), max(step, 1)):
        block = where[i : i + step]
        bi, si = np.nonzero(wanted(block, stocks))
        order = np.lexsort((rank[stocks[si]], bi))
        if len(order):
            frame = make(block[bi[order]], stocks[si[order]])
            out.append(frame)
            total += frame.height
        if q.budget is not None and total >= q.budget:
            break
    return frames.concat(out, api)


def _status_is(market: Market, *states: int) -> Mask:
    status = market.tape.status
    return lambda d, s: np.isin(status[np.ix_(d, s)], states)


def _stocks(market: Market, q: Query) -> NDArray[np.int64]:
    return market.universe.select(q.items("ts_code"))


def daily(market: Market, q: Query) -> pl.DataFrame:
    """Unadjusted daily bars (no row on a suspended day)."""
    tape, u = market.tape, market.universe

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        bars = daily_bars(market, d, s)
        return frames.build(
            "daily", len(d), {"ts_code": u.ts_code[s], "trade_date": tape.days[d], **bars}
        )

    return scan(
        market,
        q,
        "daily",
        positions(market, q),
        _stocks(market, q),
        _status_is(market, TRADING),
        make,
    )


def adj_factor(market: Market, q: Query) -> pl.DataFrame:
    """Adjustment factors of every listed day (suspended days included)."""
    tape, u = market.tape, market.universe

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        factor = tape.adj_factor.at("factor", s, tape.days[d], 1.0)
        return frames.build(
            "adj_factor",
            len(d),
            {"ts_code": u.ts_code[s], "trade_date": tape.days[d], "adj_factor": factor},
        )

    mask = _status_is(market, TRADING, SUSPENDED)
    return scan(market, q, "adj_factor", positions(market, q), _stocks(market, q), mask, make)


def stk_limit(market: Market, q: Query) -> pl.DataFrame:
    """Limit-up and limit-down prices of every listed stock, published before the open."""
    tape, u = market.tape, market.universe

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        up, down = tape.limits(d, s)
        return frames.build(
            "stk_limit",
            len(d),
            {
                "trade_date": tape.days[d],
                "ts_code": u.ts_code[s],
                "pre_close": tape.pre[d, s] / 100,
                "up_limit": up / 100,
                "down_limit": down / 100,
            },
        )

    mask = _status_is(market, TRADING, SUSPENDED)
    return scan(market, q, "stk_limit", positions(market, q), _stocks(market, q), mask, make)


def suspend_d(market: Market, q: Query) -> pl.DataFrame:
    """S on each suspended day, R on the day trading resumes."""
    tape, u = market.tape, market.universe
    status = tape.status
    kind = q.text("suspend_type")

    def wanted(d: NDArray[np.int64], s: NDArray[np.int64]) -> NDArray[np.bool_]:
        now = status[np.ix_(d, s)]
        before = status[np.ix_(np.maximum(d - 1, 0), s)]
        before[d == 0] = NOT_LISTED
        halted = now == SUSPENDED
        resumed = (now == TRADING) & (before == SUSPENDED)
        if kind is None:
            return halted | resumed
        return halted if kind == "S" else resumed if kind == "R" else np.zeros_like(halted)

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        label = np.where(status[d, s] == SUSPENDED, "S", "R")
        return frames.build(
            "suspend_d",
            len(d),
            {"ts_code": u.ts_code[s], "trade_date": tape.days[d], "suspend_type": label},
        )

    return scan(market, q, "suspend_d", positions(market, q), _stocks(market, q), wanted, make)


def daily_basic(market: Market, q: Query) -> pl.DataFrame:
    """Turnover, valuation ratios, share counts and market values of each trading day."""
    tape, u = market.tape, market.universe
    knowledge = financial_knowledge(market)
    plan, trailing = dividend_knowledge(market)

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        day = tape.days[d]
        bars = daily_bars(market, d, s)
        total, floating, free = float_shares(market, s, day)
        close = bars["close"]
        mv = close * total
        history = np.zeros(len(d))
        seen = np.zeros(len(d))
        for k in range(1, 6):
            back = d - k
            ok = (back >= 0) & (tape.status[np.maximum(back, 0), s] == TRADING)
            if ok.any():
                history[ok] += daily_bars(market, back[ok], s[ok])["vol"]
                seen[ok] += 1
        fin = {
            c: knowledge.at(c, s, day, np.nan)
            for c in ("ttm_np", "ttm_rev", "lyr_np", "lyr_rev", "equity")
        }

        def ratio(denominator: NDArray[np.float64], positive: bool = True) -> NDArray[np.float64]:
            ok = denominator > 0 if positive else denominator != 0
            return np.where(ok, np.round(mv / np.where(ok, denominator, 1.0), 4), np.nan)

        return frames.build(
            "daily_basic",
            len(d),
            {
                "ts_code": u.ts_code[s],
                "trade_date": day,
                "close": close,
                "turnover_rate": np.round(bars["vol"] * 100 / floating * 100, 4),
                "turnover_rate_f": np.round(bars["vol"] * 100 / free * 100, 4),
                "volume_ratio": np.where(
                    seen > 0,
                    np.round(bars["vol"] / np.maximum(history / np.maximum(seen, 1), 1e-9), 2),
                    np.nan,
                ),
                "pe": ratio(fin["lyr_np"]),
                "pe_ttm": ratio(fin["ttm_np"]),
                "pb": ratio(fin["equity"]),
                "ps": ratio(fin["lyr_rev"]),
                "ps_ttm": ratio(fin["ttm_rev"]),
                "dv_ratio": np.round(plan.at("cash", s, day, 0.0) / close * 100, 4),
                "dv_ttm": np.round(trailing.at("cash", s, day, 0.0) / close * 100, 4),
                "total_share": total / 1e4,
                "float_share": floating / 1e4,
                "free_share": free / 1e4,
                "total_mv": np.round(mv / 1e4, 4),
                "circ_mv": np.round(close * floating / 1e4, 4),
            },
        )

    return scan(
        market,
        q,
        "daily_basic",
        positions(market, q),
        _stocks(market, q),
        _status_is(market, TRADING),
        make,
    )


def moneyflow(market: Market, q: Query) -> pl.DataFrame:
    """Buy and sell volume and amount by order size (small, medium, large, extra large)."""
    tape, u, seed = market.tape, market.universe, market.seed

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        day = tape.days[d]
        bars = daily_bars(market, d, s)
        vol, price = (
            bars["vol"],
            np.where(
                bars["vol"] > 0, bars["amount"] * 10 / np.maximum(bars["vol"], 1e-9), bars["close"]
            ),
        )
        buying = np.clip(
            0.5 + 2.5 * bars["pct_chg"] / 100 + 0.05 * noise.normal(seed, "mf_side", s, day),
            0.1,
            0.9,
        )
        columns: dict[str, NDArray[np.float64]] = {}
        for side, share in (("buy", buying), ("sell", 1 - buying)):
            mix = np.array([0.35, 0.30, 0.22, 0.13])[None, :]
            mix = mix * (
                0.6
                + 0.8
                * noise.uniform(seed, f"mf_{side}", s[:, None], day[:, None], np.arange(4)[None, :])
            )
            mix /= mix.sum(axis=1, keepdims=True)
            lots = np.floor(vol[:, None] * share[:, None] * mix)
            for k, size in enumerate(("sm", "md", "lg", "elg")):
                columns[f"{side}_{size}_vol"] = lots[:, k]
                columns[f"{side}_{size}_amount"] = np.round(
                    lots[:, k] * price / 100, 2
                )  # lots * 100 * price / 1e4

        def total(side: str, what: str) -> NDArray[np.float64]:
            sm, md, lg, elg = (columns[f"{side}_{k}_{what}"] for k in ("sm", "md", "lg", "elg"))
            return sm + md + lg + elg

        buy_vol, sell_vol = total("buy", "vol"), total("sell", "vol")
        buy_amount, sell_amount = total("buy", "amount"), total("sell", "amount")
        ints = {k: v.astype(np.int64) for k, v in columns.items() if k.endswith("_vol")}
        return frames.build(
            "moneyflow",
            len(d),
            {
                "ts_code": u.ts_code[s],
                "trade_date": day,
                **columns,
                **ints,
                "net_mf_vol": (buy_vol - sell_vol).astype(np.int64),
                "net_mf_amount": np.round(buy_amount - sell_amount, 2),
            },
        )

    return scan(
        market,
        q,
        "moneyflow",
        positions(market, q),
        _stocks(market, q),
        _status_is(market, TRADING),
        make,
    )


def _session_times(share: NDArray[np.float64], sealed: NDArray[np.bool_]) -> list[str]:
    """Times in the continuous session (09:30-11:30, 13:00-15:00) as HHMMSS, from the share
    of the session elapsed; a board sealed from the open shows the call auction, 09:25:00."""
    seconds = (share * 14400).astype(np.int64)
    clock = np.where(seconds < 7200, 34200 + seconds, 46800 + seconds - 7200)
    clock = np.where(sealed, 33900, clock)
    return [f"{c // 3600:02d}{c // 60 % 60:02d}{c % 60:02d}" for c in clock.tolist()]


def _streak(
    market: Market, d: NDArray[np.int64], s: NDArray[np.int64], at_up: bool, depth: int
) -> NDArray[np.int64]:
    """Consecutive trading days ending at d closed at the limit-up (or limit-down) price."""
    tape = market.tape
    count = np.zeros(len(d), dtype=np.int64)
    alive = np.ones(len(d), dtype=bool)
    for k in range(depth):
        back = np.maximum(d - k, 0)
        up, down = tape.limits(back, s)
        hit = tape.close[back, s] == (up if at_up else down)
        alive &= (d - k >= 0) & (tape.status[back, s] == TRADING) & hit
        count += alive
    return count


def limit_list_d(market: Market, q: Query) -> pl.DataFrame:
    """Stocks that closed at the limit (U up, D down) or touched limit-up and fell back (Z)."""
    tape, u, seed = market.tape, market.universe, market.seed

    def wanted(d: NDArray[np.int64], s: NDArray[np.int64]) -> NDArray[np.bool_]:
        trading = tape.status[np.ix_(d, s)] == TRADING
        return (
            trading
            & (tape.up_pct[np.ix_(d, s)] != 5)
            & ~u.is_st_at(s[None, :], tape.days[d][:, None])
        )

    def make(d: NDArray[np.int64], s: NDArray[np.int64]) -> pl.DataFrame:
        bars = daily_bars(market, d, s)
        close_c, (up, down) = np.round(bars["close"] * 100), tape.limits(d, s)
        limit = np.where(
            close_c == up,
            "U",
            np.where(close_c == down, "D", np.where(np.round(bars["high"] * 100) == up, "Z", "")),
        )
        keep = (
            (limit != "")
            & q.matches("limit_type", limit)
            & q.matches("exchange", np.char.rpartition(u.ts_code[s].astype(str), ".")[:, 2])
        )
        d, s, limit = d[keep], s[keep], limit[keep]
        if not len(d):
            return frames.empty("limit_list_d")
        bars = {k: v[keep] for k, v in bars.items()}
        day = tape.days[d]
        total, floating, _ = float_shares(market, s, day)
        sealed = (bars["open"] == bars["close"]) & (bars["high"] == bars["low"])
        first = np.where(sealed, 0, noise.uniform(seed, "ll_first", s, day))
        last = np.where(
            limit == "Z", first, np.maximum(first, noise.uniform(seed, "ll_last", s, day))
        )
        streak_up = _streak(market, d, s, True, 20)
        streak_down = _streak(market, d, s, False, 20)
        ups_in_window = np.zeros(len(d), dtype=np.int64)
        for k in range(10):
            back = np.maximum(d - k, 0)
            ok = (d - k >= 0) & (tape.status[back, s] == TRADING)
            ups_in_window += ok & (tape.close[back, s] == tape.limits(back, s)[0])
        amount = bars["amount"] * 1000
        opens = np.floor(noise.uniform(seed, "ll_opens", s, day) * 4).astype(np.int64)
        return frames.build(
            "limit_list_d",
            len(d),
            {
                "trade_date": day,
                "ts_code": u.ts_code[s],
                "industry": l1_name(market, s, day),
                "name": u.names_at(s, day),
                "close": bars["close"],
                "pct_chg": bars["pct_chg"],
                "amount": amount,
                "limit_amount": np.where(limit == "D", np.round(amount * 0.3, 2), np.nan),
                "float_mv": np.round(bars["close"] * floating, 2),
                "total_mv": np.round(bars["close"] * total, 2),
                "turnover_ratio": np.round(bars["vol"] * 100 / floating * 100, 4),
                "fd_amount": np.where(
                    limit == "Z",
                    np.nan,
                    np.round(
                        bars["close"] * floating * 0.005 * noise.uniform(seed, "ll_fd", s, day), 2
                    ),
                ),
                "first_time": [
                    None if k == "D" else t
                    for k, t in zip(limit, _session_times(first, sealed), strict=True)
                ],
                "last_time": _session_times(last, sealed & (limit != "Z")),
                "open_times": np.where(limit == "Z", 1 + opens, np.where(sealed, 0, opens)),
                "up_stat": [
                    f"{n}/10" if k == "U" else None
                    for k, n in zip(limit, ups_in_window, strict=True)
                ],
                "limit_times": np.where(
                    limit == "U", streak_up, np.where(limit == "D", streak_down, 0)
                ),
                "limit": limit,
            },
        )

    where = positions(market, q, first=LIMIT_LIST_FROM)
    return scan(market, q, "limit_list_d", where, _stocks(market, q), wanted, make)


def _period_ends(market: Market, monthly: bool) -> NDArray[np.int64]:
    """The last open day of every week (Monday-Sunday) or month of the calendar."""
    days = market.calendar.open_days
    keys = _period_keys(days, monthly)
    return days[np.r_[keys[1:] != keys[:-1], True]]


def _period_keys(days: NDArray[np.int64], monthly: bool) -> NDArray[np.int64]:
    if monthly:
        return (days - 719163).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return days - (days - 1) % 7  # the Monday of the week


def _bars_over_periods(market: Market, q: Query, api: str, monthly: bool) -> pl.DataFrame:
    """Weekly or monthly bars, one row per stock that traded in the period."""
    tape, u = market.tape, market.universe
    ends = _period_ends(market, monthly)
    lo, hi = q.day_range("trade_date")
    ends = ends[(ends >= max(lo, tape.days[0])) & (ends <= hi)][::-1]
    stocks = _stocks(market, q)
    keys = _period_keys(tape.days, monthly)
    step = len(ends) if q.budget is None else max(1, q.budget // max(len(stocks), 1) + 1)
    out: list[pl.DataFrame] = []
    total = 0
    for i in range(0, len(ends), max(step, 1)):
        block = ends[i : i + step]
        block_keys = _period_keys(block, monthly)
        d = np.flatnonzero(np.isin(keys, block_keys))
        di, si = np.nonzero(tape.status[np.ix_(d, stocks)] == TRADING)
        dd, ss = d[di], stocks[si]
        if len(dd) == 0:
            continue
        bars = daily_bars(market, dd, ss)
        daily_frame = pl.DataFrame(
            {
                "end": block[np.searchsorted(-block_keys, -keys[dd])],
                "stock": ss,
                "rank": u.code_rank[ss],
                "pos": dd,
                "open": bars["open"],
                "high": bars["high"],
                "low": bars["low"],
                "close": bars["close"],
                "growth": bars["close"] / bars["pre_close"],
                "vol": bars["vol"],
                "amount": bars["amount"],
            }
        )
        agg = (
            daily_frame.sort("pos")
            .group_by(["end", "stock"])
            .agg(
                pl.col("rank").first(),
                pl.col("open").first(),
                pl.col("high").max(),
                pl.col("low").min(),
                pl.col("close").last(),
                pl.col("growth").product(),
                pl.col("vol").sum(),
                pl.col("amount").sum(),
            )
            .sort(["end", "rank"], descending=[True, False])
        )
        pre = (agg["close"] / agg["growth"]).round(2).to_numpy()
        close = agg["close"].to_numpy()
        change = np.round(close - pre, 2)
        out.append(
            frames.build(
                api,
                agg.height,
                {
                    "ts_code": u.ts_code[agg["stock"].to_numpy()],
                    "trade_date": agg["end"].to_numpy(),
                    "close": close,
                    "open": agg["open"].to_numpy(),
                    "high": agg["high"].to_numpy(),
                    "low": agg["low"].to_numpy(),
                    "pre_close": pre,
                    "change": change,
                    "pct_chg": np.round(change / pre * 100, 4),
                    "vol": np.round(agg["vol"].to_numpy(), 2),
                    "amount": np.round(agg["amount"].to_numpy(), 3),
                },
            )
        )
        total += agg.height
        if q.budget is not None and total >= q.budget:
            break
    return frames.concat(out, api)


def weekly(market: Market, q: Query) -> pl.DataFrame:
    """Weekly bars dated on each week's last trading day (complete weeks only)."""
    return _bars_over_periods(market, q, "weekly", monthly=False)


def monthly(market: Market, q: Query) -> pl.DataFrame:
    """Monthly bars dated on each month's last trading day (complete months only)."""
    return _bars_over_periods(market, q, "monthly", monthly=True)
