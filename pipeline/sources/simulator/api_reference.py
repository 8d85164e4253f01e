"""Reference data: stock list, trading calendar, name changes, Shenwan industries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from pipeline.sources.simulator import frames
from pipeline.sources.simulator.calendar import FIRST_DAY
from pipeline.sources.simulator.industries import tree
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.query import Query
from pipeline.sources.simulator.universe import NEVER


def list_status(market: Market, stocks: np.ndarray, today: int) -> np.ndarray:
    """L (listed), P (listing paused) or D (delisted) as of today."""
    u = market.universe
    delisted = u.delist_day[stocks] <= today
    paused = ~delisted & (u.pause_day[stocks] <= today)
    return np.where(delisted, "D", np.where(paused, "P", "L"))


def industry_label(market: Market, stocks: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The stock_basic-style industry: the SW L2 name without its level mark."""
    sw = tree()
    names = np.array([sw.l2[p].name.removesuffix("Ⅱ") for p in sw.l3_parent])
    return names[market.universe.l3_at(stocks, days)]


def l1_name(market: Market, stocks: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The SW L1 name of each stock on each day."""
    sw = tree()
    names = np.array([sw.l1[c.l1].name for c in sw.l3])
    return names[market.universe.l3_at(stocks, days)]


def stock_basic(market: Market, q: Query) -> pl.DataFrame:
    """Stocks listed by today, with today's name and status."""
    u = market.universe
    stocks = u.select(q.items("ts_code"))
    stocks = stocks[u.list_day[stocks] <= q.today]
    now = np.full(len(stocks), q.today)
    end = np.minimum(now, u.delist_day[stocks] - 1)
    status = list_status(market, stocks, q.today)
    name = u.names_at(stocks, end)
    keep = (
        q.matches("name", name)
        & q.matches("market", u.market(stocks))
        & q.matches("list_status", status)
        & q.matches("exchange", u.exchange(stocks))
        & q.matches("is_hs", u.is_hs[stocks])
    )
    stocks, status, name, end = stocks[keep], status[keep], name[keep], end[keep]
    order = np.argsort(u.ts_code[stocks], kind="stable")
    stocks, status, name, end = stocks[order], status[order], name[order], end[order]
    return frames.build(
        "stock_basic",
        len(stocks),
        {
            "ts_code": u.ts_code[stocks],
            "symbol": u.symbol[stocks],
            "name": name,
            "area": u.area[stocks],
            "industry": industry_label(market, stocks, end),
            "fullname": u.fullname[stocks],
            "enname": u.enname[stocks],
            "cnspell": u.cnspell[stocks],
            "market": u.market(stocks),
            "exchange": u.exchange(stocks),
            "curr_type": "CNY",
            "list_status": status,
            "list_date": u.list_day[stocks],
            "delist_date": np.where(status == "D", u.delist_day[stocks], 0),
            "is_hs": u.is_hs[stocks],
            "act_name": u.act_name[stocks],
            "act_ent_type": u.act_ent_type[stocks],
        },
    )


def trade_cal(market: Market, q: Query) -> pl.DataFrame:
    """Every calendar day through the end of today's year, newest first."""
    cal = market.calendar
    year_end = dt.date(
        dt.date.fromordinal(q.today).year, 12, 31
    ).toordinal()  # published ahead of today
    first = max(q.day("start_date") or 0, FIRST_DAY.toordinal())
    last = min(q.day("end_date") or year_end, year_end)
    pick = (cal.days >= first) & (cal.days <= last)
    days, is_open = cal.days[pick][::-1], cal.is_open[pick][::-1]
    flag = np.where(is_open, "1", "0")
    keep = q.matches("is_open", flag)
    days, flag = days[keep], flag[keep]
    exchanges = [e for e in market.config.exchanges if q.matches("exchange", np.array([e]))[0]]
    n = len(days)
    return frames.build(
        "trade_cal",
        n * len(exchanges),
        {
            "exchange": np.repeat(np.array(exchanges, dtype=object), n)
            if exchanges
            else np.array([], dtype=object),
            "cal_date": np.tile(days, len(exchanges)),
            "is_open": np.tile(flag, len(exchanges)),
            "pretrade_date": np.tile(cal.pretrade(days), len(exchanges)),
        },
    ).sort(["cal_date", "exchange"], descending=[True, False], maintain_order=True)


def namechange(market: Market, q: Query) -> pl.DataFrame:
    """Names and their periods, for changes announced by today (start/end filter ann_date)."""
    u = market.universe
    stocks = u.select(q.items("ts_code"))
    lo, hi = q.day_range("ann_date")
    rows: list[tuple[int, int, int, int, str, str | None]] = []
    for s in stocks.tolist():
        segments = [g for g in u.name_segments[s] if g.ann <= q.today]
        for g, nxt in zip(segments, [*segments[1:], None], strict=False):
            if lo <= g.ann <= hi:
                rows.append((s, g.ann, g.start, nxt.start - 1 if nxt else 0, g.name, g.reason))
    rows.sort(key=lambda r: (-r[1], u.ts_code[r[0]], -r[2]))
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return frames.build(
        "namechange",
        len(rows),
        {
            "ts_code": u.ts_code[np.array(cols[0], dtype=np.int64)],
            "name": list(cols[4]),
            "start_date": cols[2],
            "end_date": cols[3],
            "ann_date": cols[1],
            "change_reason": list(cols[5]),
        },
    )


def index_classify(market: Market, q: Query) -> pl.DataFrame:
    """The SW2021 tree (the only classification the simulated market keeps)."""
    del market
    classes = tree().classes
    frame = frames.build(
        "index_classify",
        len(classes),
        {
            "index_code": [c.index_code for c in classes],
            "industry_name": [c.name for c in classes],
            "parent_code": [c.parent_code for c in classes],
            "level": [c.level for c in classes],
            "industry_code": [c.industry_code for c in classes],
            "is_pub": "1",
            "src": "SW2021",
        },
    )
    keep = np.ones(frame.height, dtype=bool)
    for name in ("index_code", "level", "parent_code", "src"):
        keep &= q.matches(name, frame[name].to_numpy())
    return frame.filter(pl.Series(keep))


def index_member_all(market: Market, q: Query) -> pl.DataFrame:
    """Stock-to-industry memberships that began by today; is_new Y = current, N = past."""
    u, sw = market.universe, tree()
    rows = np.array(u.membership_rows, dtype=np.int64).reshape(-1, 4)
    stock, l3, in_day, out_day = rows.T
    seen = in_day <= q.today
    stock, l3, in_day, out_day = stock[seen], l3[seen], in_day[seen], out_day[seen]
    out_day = np.where(out_day <= q.today, out_day, NEVER)
    is_new = np.where(out_day == NEVER, "Y", "N")
    l2 = np.array(sw.l3_parent)[l3]
    l1 = np.array([c.l1 for c in sw.l3])[l3]
    l1_code = np.array([c.index_code for c in sw.l1])[l1]
    l2_code = np.array([c.index_code for c in sw.l2])[l2]
    l3_code = np.array([c.index_code for c in sw.l3])[l3]
    keep = (
        q.matches("l1_code", l1_code)
        & q.matches("l2_code", l2_code)
        & q.matches("l3_code", l3_code)
        & q.matches("ts_code", u.ts_code[stock])
        & q.matches("is_new", is_new)
    )
    order = np.lexsort((u.code_rank[stock], -in_day))
    order = order[keep[order]]
    today = np.minimum(np.full(len(order), q.today), u.delist_day[stock[order]] - 1)
    return frames.build(
        "index_member_all",
        len(order),
        {
            "l1_code": l1_code[order],
            "l1_name": np.array([c.name for c in sw.l1])[l1[order]],
            "l2_code": l2_code[order],
            "l2_name": np.array([c.name for c in sw.l2])[l2[order]],
            "l3_code": l3_code[order],
            "l3_name": np.array([c.name for c in sw.l3])[l3[order]],
            "ts_code": u.ts_code[stock[order]],
            "name": u.names_at(stock[order], today),
            "in_date": in_day[order],
            "out_date": out_day[order],
            "is_new": is_new[order],
        },
    )
