"""Indexes: the main A-share indexes computed from the simulated stocks, and SW codes.

Each index holds the largest eligible stocks by total market value (the composite
holds all its exchange's stocks), reviewed on the first trading day of June and
December (every month for the composite), with constituent counts scaled to the size
of the simulated market (real count x stocks / 5000, at least 5). Levels move with
the cap-weighted return of the members; open/high/low and volume are derived from
the day's move. Shenwan industry indexes are listed in index_basic (market SW) but,
as on the real service, their quotes are not served by index_daily.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from pipeline.sources.simulator import frames, noise
from pipeline.sources.simulator.industries import tree
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.prices import NOT_LISTED, TRADING
from pipeline.sources.simulator.query import Query
from pipeline.sources.simulator.universe import BJ, CHINEXT, SH_MAIN, STAR, SZ_MAIN

_SW_BASE_DAY, _SW_BASE_POINT, _SW_LIST_DAY = dt.date(1999, 12, 30), 1000.0, dt.date(2021, 7, 30)


@dataclass(frozen=True)
class IndexSpec:
    """One index of the simulated market."""

    code: str
    name: str
    fullname: str
    market: str
    publisher: str
    category: str
    base_date: str
    base_point: float
    list_date: str
    boards: tuple[int, ...]
    size: int | None  # real constituent count; None: every eligible stock
    skip: int  # largest stocks left to a sister index (中证500 after 沪深300)
    level: float  # level on the first day of the simulated history
    monthly: bool  # reviewed every month (composite) instead of every half-year


INDEXES = (
    IndexSpec(
        "000001.SH",
        "上证指数",
        "上证综合指数",
        "SSE",
        "中证指数有限公司",
        "综合指数",
        "19901219",
        100.0,
        "19910715",
        (SH_MAIN, STAR),
        None,
        0,
        3000.0,
        True,
    ),
    IndexSpec(
        "000016.SH",
        "上证50",
        "上证50指数",
        "SSE",
        "中证指数有限公司",
        "规模指数",
        "20031231",
        1000.0,
        "20040102",
        (SH_MAIN, STAR),
        50,
        0,
        2500.0,
        False,
    ),
    IndexSpec(
        "000300.SH",
        "沪深300",
        "沪深300指数",
        "SSE",
        "中证指数有限公司",
        "规模指数",
        "20041231",
        1000.0,
        "20050408",
        (SH_MAIN, STAR, SZ_MAIN, CHINEXT),
        300,
        0,
        3500.0,
        False,
    ),
    IndexSpec(
        "000905.SH",
        "中证500",
        "中证小盘500指数",
        "SSE",
        "中证指数有限公司",
        "规模指数",
        "20041231",
        1000.0,
        "20070115",
        (SH_MAIN, STAR, SZ_MAIN, CHINEXT),
        500,
        300,
        5500.0,
        False,
    ),
    IndexSpec(
        "000688.SH",
        "科创50",
        "上证科创板50成份指数",
        "SSE",
        "中证指数有限公司",
        "规模指数",
        "20191231",
        1000.0,
        "20200723",
        (STAR,),
        50,
        0,
        1000.0,
        False,
    ),
    IndexSpec(
        "399001.SZ",
        "深证成指",
        "深证成份指数",
        "SZSE",
        "深圳证券信息有限公司",
        "规模指数",
        "19940720",
        1000.0,
        "19950123",
        (SZ_MAIN, CHINEXT),
        500,
        0,
        10000.0,
        False,
    ),
    IndexSpec(
        "399006.SZ",
        "创业板指",
        "创业板指数",
        "SZSE",
        "深圳证券信息有限公司",
        "规模指数",
        "20100531",
        1000.0,
        "20100601",
        (CHINEXT,),
        100,
        0,
        2000.0,
        False,
    ),
    IndexSpec(
        "899050.BJ",
        "北证50",
        "北证50成份指数",
        "BSE",
        "北京证券交易所",
        "规模指数",
        "20220429",
        1000.0,
        "20221121",
        (BJ,),
        50,
        0,
        1000.0,
        False,
    ),
)


@dataclass(frozen=True)
class IndexHistory:
    """Levels and constituents of one index over the tape."""

    spec: IndexSpec
    first: int  # tape position of the first level
    close: NDArray[np.float64]  # levels from `first`
    turnover: NDArray[np.float64]  # member volume (lots) and amount (thousand yuan) per day
    amount: NDArray[np.float64]
    reviews: NDArray[np.int64]  # tape positions where the members were chosen
    members: tuple[NDArray[np.int64], ...]  # stocks chosen at each review


def _scaled(size: int, stocks: int) -> int:
    return max(5, round(size * stocks / 5000))


def _review_positions(days: NDArray[np.int64], first: int, monthly: bool) -> NDArray[np.int64]:
    months = (days - 719163).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    if not monthly:
        starts = starts[np.isin(months[starts] % 12, [5, 11])]  # June and December
    return np.unique(np.r_[first, starts[starts > first]])


def _history(market: Market, spec: IndexSpec) -> IndexHistory | None:
    tape, u, f = market.tape, market.universe, market.fundamentals
    days = tape.days
    base = dt.date(
        int(spec.base_date[:4]), int(spec.base_date[4:6]), int(spec.base_date[6:])
    ).toordinal()
    first = int(np.searchsorted(days, base, side="right"))
    if first >= len(days):
        return None
    size = None if spec.size is None else _scaled(spec.size, market.config.stocks)
    skip = _scaled(spec.skip, market.config.stocks) if spec.skip else 0
    on_board = np.flatnonzero(np.isin(u.board, spec.boards))
    reviews = _review_positions(days, first, spec.monthly)
    level = spec.level if days[0] > base else spec.base_point
    closes = np.zeros(len(days) - first)
    volume = np.zeros(len(days) - first)
    amount = np.zeros(len(days) - first)
    chosen: list[NDArray[np.int64]] = []
    kept_reviews: list[int] = []
    bounds = [*reviews.tolist(), len(days)]
    for k, start in enumerate(bounds[:-1]):
        stop = bounds[k + 1]
        seasoned = tape.status[max(start - 20, 0), on_board] != NOT_LISTED
        eligible = on_board[seasoned & (tape.status[start, on_board] != NOT_LISTED)]
        if size is not None:
            eligible = eligible[~u.is_st_at(eligible, np.full(len(eligible), days[start]))]
            value = tape.pre[start, eligible] * f.total_shares.at(
                "shares", eligible, np.full(len(eligible), days[start]), 0.0
            )
            eligible = eligible[np.argsort(-value, kind="stable")][skip : skip + size]
        chosen.append(np.sort(eligible))
        kept_reviews.append(start)
        span = np.arange(start, stop)
        if len(eligible) == 0:
            closes[span - first] = level
            continue
        grid_d, grid_s = np.meshgrid(span, eligible, indexing="ij")
        shares = f.total_shares.at("shares", grid_s, days[grid_d], 0.0)
        listed = tape.status[grid_d, grid_s] != NOT_LISTED
        now = np.where(listed, tape.close[grid_d, grid_s] * shares, 0.0).sum(axis=1)
        before = np.where(listed, tape.pre[grid_d, grid_s] * shares, 0.0).sum(axis=1)
        growth = np.where(before > 0, now / np.where(before > 0, before, 1.0), 1.0)
        if start == first:
            growth[0] = 1.0
        path = level * np.cumprod(growth)
        closes[span - first] = path
        level = float(path[-1])
        trading = tape.status[grid_d, grid_s] == TRADING
        lots = np.where(trading, shares * tape.turnover[grid_s] / 100, 0.0).sum(axis=1) * (
            1 + 6 * np.abs(growth - 1)
        )
        volume[span - first] = lots
        amount[span - first] = (
            np.where(
                trading, shares * tape.turnover[grid_s] * tape.close[grid_d, grid_s] / 100, 0.0
            ).sum(axis=1)
            / 1000
        )
    return IndexHistory(
        spec,
        first,
        np.round(closes, 4),
        np.round(volume, 0),
        np.round(amount, 3),
        np.array(kept_reviews),
        tuple(chosen),
    )


def histories(market: Market) -> dict[str, IndexHistory]:
    """Every computed index by code (indexes starting after the horizon are absent)."""

    def build() -> dict[str, IndexHistory]:
        out = {}
        for spec in INDEXES:
            history = _history(market, spec) if spec.market in market.config.exchanges else None
            if history is not None:
                out[spec.code] = history
        return out

    return market.part("indexes", build)


def index_basic(market: Market, q: Query) -> pl.DataFrame:
    """The computed indexes and the SW industry indexes."""
    specs = [s for s in INDEXES if s.code in histories(market)]
    sw = tree().classes
    categories = {"L1": "一级行业指数", "L2": "二级行业指数", "L3": "三级行业指数"}
    frame = frames.build(
        "index_basic",
        len(specs) + len(sw),
        {
            "ts_code": [s.code for s in specs] + [c.index_code for c in sw],
            "name": [s.name for s in specs] + [c.name for c in sw],
            "fullname": [s.fullname for s in specs] + [f"申万{c.name}行业指数" for c in sw],
            "market": [s.market for s in specs] + ["SW"] * len(sw),
            "publisher": [s.publisher for s in specs] + ["申万宏源研究"] * len(sw),
            "index_type": [s.category for s in specs] + ["申万行业指数"] * len(sw),
            "category": [s.category for s in specs] + [categories[c.level] for c in sw],
            "base_date": [
                dt.date(
                    int(s.base_date[:4]), int(s.base_date[4:6]), int(s.base_date[6:])
                ).toordinal()
                for s in specs
            ]
            + [_SW_BASE_DAY.toordinal()] * len(sw),
            "base_point": [s.base_point for s in specs] + [_SW_BASE_POINT] * len(sw),
            "list_date": [
                dt.date(
                    int(s.list_date[:4]), int(s.list_date[4:6]), int(s.list_date[6:])
                ).toordinal()
                for s in specs
            ]
            + [_SW_LIST_DAY.toordinal()] * len(sw),
            "weight_rule": ["总市值加权"] * (len(specs) + len(sw)),
            "desc": [f"{s.fullname}由{s.publisher}编制" for s in specs]
            + [f"申万{c.level}行业{c.name}" for c in sw],
        },
    )
    keep = np.ones(frame.height, dtype=bool)
    for name in ("ts_code", "name", "market", "publisher", "category"):
        keep &= q.matches(name, frame[name].to_numpy())
    return frame.filter(pl.Series(keep))


def index_daily(market: Market, q: Query) -> pl.DataFrame:
    """Daily levels of the computed indexes, newest first."""
    tape, seed = market.tape, market.seed
    lo, hi = q.day_range("trade_date")
    out = []
    for code in q.items("ts_code") or sorted(histories(market)):
        h = histories(market).get(code)
        if h is None:
            continue
        pos = np.arange(h.first, h.first + len(h.close))
        pos = pos[(tape.days[pos] >= lo) & (tape.days[pos] <= hi)][::-1]
        if not len(pos):
            continue
        close = h.close[pos - h.first]
        pre = np.where(pos > h.first, h.close[np.maximum(pos - h.first - 1, 0)], close)
        move = close / pre - 1
        k = np.full(len(pos), int(code[:6]))
        open_ = np.round(pre * (1 + 0.3 * move + 0.002 * noise.normal(seed, "idx_open", k, pos)), 4)
        high = np.round(
            np.maximum(open_, close) * (1 + 0.004 * np.abs(noise.normal(seed, "idx_high", k, pos))),
            4,
        )
        low = np.round(
            np.minimum(open_, close) * (1 - 0.004 * np.abs(noise.normal(seed, "idx_low", k, pos))),
            4,
        )
        change = np.round(close - pre, 4)
        out.append(
            frames.build(
                "index_daily",
                len(pos),
                {
                    "ts_code": code,
                    "trade_date": tape.days[pos],
                    "close": close,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "pre_close": pre,
                    "change": change,
                    "pct_chg": np.round(change / pre * 100, 4),
                    "vol": h.turnover[pos - h.first],
                    "amount": h.amount[pos - h.first],
                },
            )
        )
    frame = frames.concat(out, "index_daily")
    return frame.sort(["trade_date", "ts_code"], descending=[True, False], maintain_order=True)


def index_weight(market: Market, q: Query) -> pl.DataFrame:
    """Month-end constituent weights (percent of the members' total market value)."""
    tape, u, f = market.tape, market.universe, market.fundamentals
    lo, hi = q.day_range("trade_date")
    months = (tape.days - 719163).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    month_ends = np.flatnonzero(np.r_[months[1:] != months[:-1], True])
    out = []
    for code in q.items("index_code") or sorted(histories(market)):
        h = histories(market).get(code)
        if h is None:
            continue
        pos = month_ends[
            (month_ends >= h.first) & (tape.days[month_ends] >= lo) & (tape.days[month_ends] <= hi)
        ][::-1]
        for d in pos:
            members = h.members[int(np.searchsorted(h.reviews, d, side="right")) - 1]
            members = members[tape.status[d, members] != NOT_LISTED]
            if not len(members):
                continue
            value = tape.close[d, members] * f.total_shares.at(
                "shares", members, np.full(len(members), tape.days[d]), 0.0
            )
            order = np.argsort(u.ts_code[members], kind="stable")
            members, value = members[order], value[order]
            out.append(
                frames.build(
                    "index_weight",
                    len(members),
                    {
                        "index_code": code,
                        "con_code": u.ts_code[members],
                        "trade_date": np.full(len(members), tape.days[d]),
                        "weight": np.round(value / value.sum() * 100, 4),
                    },
                )
            )
    frame = frames.concat(out, "index_weight")
    return frame.sort(["trade_date", "index_code"], descending=[True, False], maintain_order=True)
