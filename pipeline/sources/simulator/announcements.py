"""Announcements around the reports: express reports, forecasts, disclosure plans,
dividend plans and the main-business breakdown.

Express reports (业绩快报) repeat the coming report's key figures within half a percent
and precede it; forecasts (业绩预告) bracket the coming net profit and precede the
express report or the report, and ~15% are revised once with a narrower range (same
first_ann_date). Disclosure plans are published about a month before the period ends,
ahead of today, and show the actual date once the report is out. Dividend plans appear
as 预案 with the annual report, 股东大会通过 after the meeting and 实施 with the
record and ex-dates. The main-business breakdown comes with half-year and annual
reports, by product (P), region (D) and industry (I).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from numpy.typing import NDArray

from pipeline.sources.simulator import frames, noise
from pipeline.sources.simulator.industries import tree
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.periods import end_days
from pipeline.sources.simulator.query import Query
from pipeline.sources.simulator.statements import (
    balance_lines,
    flow_lines,
    newest_first,
    period_param,
)
from pipeline.sources.simulator.universe import NEVER

_REASONS = (
    "主营业务收入增长",
    "原材料价格波动",
    "产品销量变化",
    "计提资产减值准备",
    "投资收益变动",
    "市场需求变化",
)
_PRODUCTS = ("产品", "配套", "技术服务", "其他业务")
_FINANCIAL_LINES = {
    2: ("公司金融业务", "个人金融业务", "资金业务", "其他业务"),
    3: ("寿险业务", "财产险业务", "资产管理业务"),
    4: ("经纪业务", "投资银行业务", "资产管理业务", "自营业务", "信用业务"),
}
_BREAKDOWNS = ("P", "D", "I")  # by product, region, industry
_REGIONS = ("华东地区", "华南地区", "华北地区", "华中地区", "西南地区", "境外")


def _cells(
    market: Market, grid: NDArray[np.int64], q: Query, period: str = "period"
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(stock, period id, day) of the non-zero cells of a schedule grid, for the
    requested stocks and period (named by the `period` parameter), announced by today."""
    sched, u = market.schedule, market.universe
    stocks = u.select(q.items("ts_code"))
    pid = period_param(q, period)
    rows = np.arange(len(sched.pids)) if pid is None else np.array([sched.row(pid)])
    rows = rows[(rows >= 0) & (rows < len(sched.pids))]
    sub = grid[np.ix_(rows, stocks)]
    r, s = np.nonzero((sub > 0) & (sub <= q.today))
    return stocks[s], sched.pids[rows[r]], sub[r, s]


def _ann_window(q: Query, day: NDArray[np.int64]) -> NDArray[np.bool_]:
    keep = q.day_matches("ann_date", day)
    lo, hi = q.day("start_date"), q.day("end_date")
    if lo is not None:
        keep &= day >= lo
    if hi is not None:
        keep &= day <= hi
    return keep


def express(market: Market, q: Query) -> pl.DataFrame:
    """Preliminary results ahead of the report (start/end filter ann_date)."""
    u, seed = market.universe, market.seed
    s, p, day = _cells(market, market.schedule.express, q)
    keep = _ann_window(q, day)
    s, p, day = s[keep], p[keep], day[keep]
    order = newest_first(market, s, p, day)
    s, p, day = s[order], p[order], day[order]
    n = len(s)
    if not n:
        return frames.empty("express")
    original = np.zeros(n, dtype=bool)
    now = flow_lines(market, "income", s, p, original, single=False)
    before = flow_lines(market, "income", s, p - 4, original, single=False)
    bal = balance_lines(market, s, p, original)
    opening = balance_lines(market, s, p - p % 4 - 1, original)

    def early(values: NDArray[np.float64], tag: str) -> NDArray[np.float64]:
        return np.round(values * (1 + 0.005 * noise.normal(seed, f"express_{tag}", s, p)), 2)

    def growth(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio: NDArray[np.float64] = np.where(b != 0, (a - b) / np.abs(b) * 100, np.nan)
            return np.round(ratio, 4)

    shares = market.fundamentals.shares[market.fundamentals.row(p), s]
    revenue, op, tp = (
        early(now["revenue"], "rev"),
        early(now["operate_profit"], "op"),
        early(now["total_profit"], "tp"),
    )
    profit = early(now["n_income_attr_p"], "np")
    equity, assets = (
        early(bal["total_hldr_eqy_exc_min_int"], "eq"),
        early(bal["total_assets"], "ta"),
    )
    open_equity = opening["total_hldr_eqy_exc_min_int"]
    eps, eps_before = np.round(profit / shares, 4), before["basic_eps"]
    roe = np.round(profit / equity * 100, 4)
    roe_before = before["n_income_attr_p"] / np.where(open_equity != 0, open_equity, np.nan) * 100
    label = np.where(profit >= before["n_income_attr_p"], "增长", "下降")
    return frames.build(
        "express",
        n,
        {
            "ts_code": u.ts_code[s],
            "ann_date": day,
            "end_date": end_days(p),
            "revenue": revenue,
            "operate_profit": op,
            "total_profit": tp,
            "n_income": profit,
            "total_assets": assets,
            "total_hldr_eqy_exc_min_int": equity,
            "diluted_eps": eps,
            "diluted_roe": roe,
            "yoy_net_profit": before["n_income_attr_p"],
            "bps": np.round(equity / shares, 4),
            "yoy_sales": growth(revenue, before["revenue"]),
            "yoy_op": growth(op, before["operate_profit"]),
            "yoy_tp": growth(tp, before["total_profit"]),
            "yoy_dedu_np": growth(profit, before["n_income_attr_p"]),
            "yoy_eps": growth(eps, eps_before),
            "yoy_roe": np.round(roe - roe_before, 4),
            "growth_assets": growth(assets, opening["total_assets"]),
            "yoy_equity": growth(equity, open_equity),
            "growth_bps": growth(equity, open_equity),
            "or_last_year": before["revenue"],
            "op_last_year": before["operate_profit"],
            "tp_last_year": before["total_profit"],
            "np_last_year": before["n_income_attr_p"],
            "eps_last_year": eps_before,
            "open_net_assets": open_equity,
            "open_bps": np.round(open_equity / shares, 4),
            "perf_summary": [
                f"报告期内营业收入{r / 1e8:.2f}亿元，归属于上市公司股东的净利润同比{w}"
                for r, w in zip(revenue, label, strict=True)
            ],
            "is_audit": np.zeros(n, dtype=np.int64),
            "remark": None,
        },
    )


def _forecast_type(
    profit: NDArray[np.float64], last: NDArray[np.float64], change: NDArray[np.float64]
) -> NDArray[np.str_]:
    return np.select(
        [
            (last < 0) & (profit > 0),
            (last > 0) & (profit < 0),
            (last < 0) & (profit < 0),
            change >= 50,
            change <= -50,
            change >= 0,
        ],
        ["扭亏", "首亏", "续亏", "预增", "预减", "略增"],
        default="略减",
    )


def forecast(market: Market, q: Query) -> pl.DataFrame:
    """Earnings previews, a revised preview where one was issued (start/end filter ann_date)."""
    u, seed, sched = market.universe, market.seed, market.schedule
    first = _cells(market, sched.forecast, q)
    again = _cells(market, sched.forecast_revised, q)
    s = np.concatenate([first[0], again[0]])
    p = np.concatenate([first[1], again[1]])
    day = np.concatenate([first[2], again[2]])
    revised = np.r_[np.zeros(len(first[0]), dtype=bool), np.ones(len(again[0]), dtype=bool)]
    if not len(s):
        return frames.empty("forecast")
    original = np.zeros(len(s), dtype=bool)
    profit = flow_lines(market, "income", s, p, original, single=False)["n_income_attr_p"]
    last = flow_lines(market, "income", s, p - 4, original, single=False)["n_income_attr_p"]
    width = np.where(
        revised,
        0.03 + 0.07 * noise.uniform(seed, "fc_width2", s, p),
        0.1 + 0.2 * noise.uniform(seed, "fc_width", s, p),
    )
    centre = profit * (
        1 + np.where(revised, 0.02, 0.06) * noise.normal(seed, "fc_centre", s, p, revised)
    )
    low, high = np.sort(
        np.stack([centre - np.abs(centre) * width, centre + np.abs(centre) * width]), axis=0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(last != 0, (profit - last) / np.abs(last) * 100, np.nan)
        change_low = np.round(np.where(last > 0, (low - last) / np.abs(last) * 100, np.nan), 2)
        change_high = np.round(np.where(last > 0, (high - last) / np.abs(last) * 100, np.nan), 2)
    kind = _forecast_type(profit, last, change)
    first_day = sched.forecast[p - sched.first_pid, s]
    keep = _ann_window(q, day) & q.matches("type", kind)
    order = np.flatnonzero(keep)[newest_first(market, s[keep], p[keep], day[keep])]
    year = np.array([end.year for end in map(dt.date.fromordinal, end_days(p).tolist())])
    label = np.array(["一季度", "半年度", "前三季度", "年度"])[p % 4]
    summary = [
        f"预计{y}年{lb}归属于上市公司股东的净利润{lo / 1e4:.0f}万元至{hi / 1e4:.0f}万元"
        for y, lb, lo, hi in zip(year, label, low, high, strict=True)
    ]
    reason = np.array(_REASONS)[noise.choice(seed, "fc_reason", np.ones(len(_REASONS)), s, p)]
    return frames.build(
        "forecast",
        len(order),
        {
            "ts_code": u.ts_code[s[order]],
            "ann_date": day[order],
            "end_date": end_days(p[order]),
            "type": kind[order],
            "p_change_min": change_low[order],
            "p_change_max": change_high[order],
            "net_profit_min": np.round(low[order] / 1e4, 2),
            "net_profit_max": np.round(high[order] / 1e4, 2),
            "last_parent_net": np.round(last[order] / 1e4, 2),
            "first_ann_date": first_day[order],
            "summary": [summary[i] for i in order],
            "change_reason": reason[order],
        },
    )


def disclosure_date(market: Market, q: Query) -> pl.DataFrame:
    """Planned and actual report dates; plans are public before the period ends."""
    sched, u, today = market.schedule, market.universe, q.today
    s, p, pub = _cells(market, np.where(sched.planned, sched.pub, 0), q, period="end_date")
    r = p - sched.first_pid
    modify = sched.modify[r, s]
    modified = (modify > 0) & (modify <= today)
    pre = np.where(modified, sched.pre_final[r, s], sched.pre_first[r, s])
    actual = np.where(sched.reported[r, s] & (sched.ann[r, s] <= today), sched.ann[r, s], 0)
    latest = np.maximum(np.maximum(pub, np.where(modified, modify, 0)), actual)
    keep = q.day_matches("pre_date", pre) & q.day_matches("actual_date", actual)
    s, p, pre, actual, latest, modify = (
        s[keep],
        p[keep],
        pre[keep],
        actual[keep],
        latest[keep],
        np.where(modified, modify, 0)[keep],
    )
    order = newest_first(market, s, p, latest)
    return frames.build(
        "disclosure_date",
        len(order),
        {
            "ts_code": u.ts_code[s[order]],
            "ann_date": latest[order],
            "end_date": end_days(p[order]),
            "pre_date": pre[order],
            "actual_date": actual[order],
            "modify_date": modify[order],
        },
    )


def dividend(market: Market, q: Query) -> pl.DataFrame:
    """Dividend plans at each stage reached by today: 预案, 股东大会通过, 实施."""
    plans, u, today = market.fundamentals.dividends, market.universe, q.today
    stages = (("预案", plans.ann), ("股东大会通过", plans.agm), ("实施", plans.imp_ann))
    chosen = u.select(q.items("ts_code"))
    parts = []
    for level, (label, seen) in enumerate(stages):
        pick = np.flatnonzero((seen <= today) & np.isin(plans.stock, chosen))
        parts.append((pick, np.full(len(pick), label), np.full(len(pick), level)))
    pick = np.concatenate([x[0] for x in parts])
    stage = np.concatenate([x[1] for x in parts])
    rank = np.concatenate([x[2] for x in parts])
    done = stage == "实施"

    def when(days: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.where(done & (days[pick] < NEVER), days[pick], 0)

    record, ex, imp = when(plans.record), when(plans.ex), when(plans.imp_ann)
    keep = (
        q.day_matches("ann_date", plans.ann[pick])
        & q.day_matches("record_date", record)
        & q.day_matches("ex_date", ex)
        & q.day_matches("imp_ann_date", imp)
    )
    order = np.flatnonzero(keep)[
        newest_first(
            market,
            plans.stock[pick][keep],
            plans.pid[pick][keep],
            plans.ann[pick][keep],
            -rank[keep],
        )
    ]
    rows = pick[order]
    bonus, conversion = plans.bonus[rows], plans.conversion[rows]
    return frames.build(
        "dividend",
        len(rows),
        {
            "ts_code": u.ts_code[plans.stock[rows]],
            "end_date": end_days(plans.pid[rows]),
            "ann_date": plans.ann[rows],
            "div_proc": stage[order],
            "stk_div": np.round(bonus + conversion, 4),
            "stk_bo_rate": bonus,
            "stk_co_rate": conversion,
            "cash_div": np.round(plans.cash_tax[rows] * 0.9, 4),
            "cash_div_tax": plans.cash_tax[rows],
            "record_date": record[order],
            "ex_date": ex[order],
            "pay_date": ex[order],
            "div_listdate": np.where(done[order], plans.list_day[rows], 0),
            "imp_ann_date": imp[order],
            "base_date": np.where(done[order], record[order], end_days(plans.pid[rows])),
            "base_share": np.round(plans.base_shares[rows] / 1e4, 4),
        },
    )


def fina_mainbz(market: Market, q: Query) -> pl.DataFrame:
    """Revenue, cost and profit by product (P), region (D) or industry (I), for half-year
    and annual reports (start/end filter the report period). Pages itself: figures are
    computed for the requested window of rows only."""
    sched, u, seed = market.schedule, market.universe, market.seed
    s, p, _ = _cells(market, np.where(sched.reported, sched.visible, 0), q)
    end = end_days(p)
    lo, hi = q.day("start_date"), q.day("end_date")
    keep = np.isin(p % 4, [1, 3]) & (end >= (lo or 0)) & (end <= (hi or NEVER))
    s, p = s[keep], p[keep]
    order = newest_first(market, s, p, np.zeros(len(s), dtype=np.int64))
    s, p = s[order], p[order]
    kinds = [k for k in q.items("type") or _BREAKDOWNS if k in _BREAKDOWNS]
    row, kind, item = _business_items(market, s, p, kinds)
    position, size = _positions(row, kind)
    window = q.window(len(row))
    row, kind, item = row[window], kind[window], item[window]
    position, size = position[window], size[window]
    if not len(row):
        return frames.empty("fina_mainbz")
    needed, local = np.unique(row, return_inverse=True)
    lines = flow_lines(
        market, "income", s[needed], p[needed], np.zeros(len(needed), dtype=bool), False
    )
    revenue = lines["revenue"][local]
    cost = lines.get("oper_cost", np.full(len(needed), np.nan))[local]
    stock, pid = s[row], p[row]
    tag = np.array([ord(k) for k in kind])
    weight = 0.5 + noise.uniform(seed, "mainbz_share", stock, pid, tag, position)
    total = np.zeros(len(row))
    for k in range(int(size.max())):
        total += np.where(
            k < size, 0.5 + noise.uniform(seed, "mainbz_share", stock, pid, tag, k), 0.0
        )
    share = weight / total  # the items of one type add up to the revenue
    margin = np.clip(
        1 + 0.15 * noise.normal(seed, "mainbz_margin", stock, pid, tag, position), 0.5, 1.5
    )
    sales = np.round(revenue * share, 2)
    bz_cost = np.round(np.minimum(cost * share * margin, sales * 1.5), 2)
    return frames.build(
        "fina_mainbz",
        len(row),
        {
            "ts_code": u.ts_code[stock],
            "end_date": end_days(pid),
            "bz_item": item,
            "bz_sales": sales,
            "bz_profit": np.round(np.where(np.isnan(bz_cost), sales * 0.3, sales - bz_cost), 2),
            "bz_cost": bz_cost,
            "curr_type": "CNY",
            "update_flag": "0",
        },
    )


def _positions(
    row: NDArray[np.int64], kind: NDArray[np.str_]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Each item's position in its (report, type) group, and the group's size.

    Groups are contiguous runs of equal (row, kind)."""
    new_group = (
        np.r_[True, (row[1:] != row[:-1]) | (kind[1:] != kind[:-1])]
        if len(row)
        else np.zeros(0, dtype=bool)
    )
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    return np.arange(len(row)) - starts[group], np.bincount(group)[group]


def _business_items(
    market: Market, s: NDArray[np.int64], p: NDArray[np.int64], kinds: list[str]
) -> tuple[NDArray[np.int64], NDArray[np.str_], NDArray[np.str_]]:
    """(report row, type, item name) of every breakdown line, reports in order."""
    u, seed, sw = market.universe, market.seed, tree()
    comp = market.fundamentals.comp_type[s]
    l2_names = np.array([sw.l2[k].name.removesuffix("Ⅱ") for k in sw.l3_parent])[
        u.l3_at(s, end_days(p))
    ]
    first_region = (noise.uniform(seed, "mainbz_region", s) * len(_REGIONS)).astype(np.int64)
    regions = 2 + (noise.uniform(seed, "mainbz_regions", s) * 3).astype(np.int64)
    products = 2 + (noise.uniform(seed, "mainbz_products", s) * 3).astype(np.int64)
    trades = [name.removeprefix("*ST").removeprefix("ST")[2:] for name in u.first_name[s]]
    out_row: list[int] = []
    out_kind: list[str] = []
    out_item: list[str] = []
    for i in range(len(s)):
        for kind in kinds:
            if kind == "D":
                items = [_REGIONS[(first_region[i] + k) % len(_REGIONS)] for k in range(regions[i])]
            elif kind == "I":
                items = [l2_names[i], "其他"]
            elif comp[i] in _FINANCIAL_LINES:
                items = list(_FINANCIAL_LINES[int(comp[i])])
            else:
                items = [
                    f"{trades[i]}{w}" if k < 2 else w
                    for k, w in enumerate(_PRODUCTS[: products[i]])
                ]
            out_row += [i] * len(items)
            out_kind += [kind] * len(items)
            out_item += items
    return np.array(out_row, dtype=np.int64), np.array(out_kind), np.array(out_item)
