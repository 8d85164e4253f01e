"""Income statements, balance sheets and cash-flow statements, version by version.

Each announced report is a row with `update_flag` '0'; a restated report adds a second
row with `update_flag` '1', a later f_ann_date (and sometimes a later ann_date) and
revised figures (revenue, margin and costs of the whole fiscal year so far, assets and
equity), while the original row stays. About 30% of companies also publish
single-quarter rows (report_type '2') next to the cumulative ones (report_type '1');
about 0.5% of rows are published twice, identical. Income and cash-flow figures are
year-to-date sums of the single quarters (see templates.py). A row exists from the
later of its ann_date and f_ann_date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from pipeline.sources.simulator import frames, noise
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.periods import end_days
from pipeline.sources.simulator.query import Query
from pipeline.sources.simulator.templates import (
    BALANCE,
    CASHFLOW,
    INCOME,
    Lines,
    Rows,
    Template,
    cash_of,
    cents,
    evaluate,
)

SINGLE_QUARTER_PUBLISHERS = 0.3
DUPLICATE_SHARE = 0.005
FLOWS: dict[str, Mapping[int, Template]] = {"income": INCOME, "cashflow": CASHFLOW}


@dataclass(frozen=True)
class Versions:
    """Announced report versions: one entry per (stock, period, version)."""

    stock: NDArray[np.int64]
    pid: NDArray[np.int64]
    version: NDArray[np.int64]  # 0 original, 1 restated
    ann: NDArray[np.int64]
    f_ann: NDArray[np.int64]

    def take(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> Versions:
        """A subset (mask or positions)."""
        return Versions(
            self.stock[keep], self.pid[keep], self.version[keep], self.ann[keep], self.f_ann[keep]
        )

    def __len__(self) -> int:
        return len(self.stock)


def period_param(q: Query, name: str = "period") -> int | None:
    """The period id named by a parameter (a quarter end), -1 when it is not a quarter end."""
    day = q.day(name)
    if day is None:
        return None
    date = dt.date.fromordinal(day)
    if (date.month, date.day) not in ((3, 31), (6, 30), (9, 30), (12, 31)):
        return -1
    return date.year * 4 + (date.month - 1) // 3


def versions(market: Market, stocks: NDArray[np.int64], pid: int | None, today: int) -> Versions:
    """Report versions of the stocks (one period or all) visible by today."""
    sched = market.schedule
    rows = np.arange(len(sched.pids)) if pid is None else np.array([sched.row(pid)])
    rows = rows[(rows >= 0) & (rows < len(sched.pids))]
    grid_rows, grid_stocks = np.meshgrid(rows, stocks, indexing="ij")
    r, s = grid_rows.ravel(), grid_stocks.ravel()
    have = sched.reported[r, s]
    r, s = r[have], s[have]
    revised = sched.restated[r, s]
    rr, rs = r[revised], s[revised]
    out = Versions(
        stock=np.concatenate([s, rs]),
        pid=np.concatenate([sched.pids[r], sched.pids[rr]]),
        version=np.concatenate(
            [np.zeros(len(s), dtype=np.int64), np.ones(len(rs), dtype=np.int64)]
        ),
        ann=np.concatenate([sched.ann[r, s], sched.rev_ann[rr, rs]]),
        f_ann=np.concatenate([sched.f_ann[r, s], sched.rev_f_ann[rr, rs]]),
    )
    return out.take(np.maximum(out.ann, out.f_ann) <= today)


def drivers(
    market: Market,
    stock: NDArray[np.int64],
    pid: NDArray[np.int64],
    revised: NDArray[np.bool_],
    reported: NDArray[np.int64],
) -> Rows:
    """Drivers of (stock, quarter) rows; `revised` rows carry the restatement of the
    report for period `reported` (keyed by it, so every quarter of a restated year moves
    the same way)."""
    f, seed = market.fundamentals, market.seed
    row = f.row(pid)
    d = {name: grid[row, stock] for name, grid in f.drivers.items()}

    def shift(tag: str, spread: float) -> NDArray[np.float64]:
        return np.where(revised, 1.0 + spread * noise.normal(seed, tag, stock, reported), 1.0)

    d["gm"] = np.clip(
        d["gm"] + np.where(revised, 0.01 * noise.normal(seed, "restate_gm", stock, reported), 0.0),
        0.02,
        0.9,
    )
    d["r_admin"] = d["r_admin"] * shift("restate_admin", 0.05)
    return Rows(
        seed,
        stock,
        pid,
        {
            **d,
            "rev": f.revenue[row, stock] * shift("restate_revenue", 0.03),
            "assets": f.assets[row, stock] * shift("restate_assets", 0.02),
            "equity": f.equity[row, stock] * shift("restate_equity", 0.03),
            "minority": f.minority[row, stock],
            "shares": f.shares[row, stock],
            "raised": f.raised[row, stock],
            "dividends": f.dividends_paid[row, stock],
        },
    )


def balance_lines(
    market: Market, stock: NDArray[np.int64], pid: NDArray[np.int64], revised: NDArray[np.bool_]
) -> Lines:
    """Balance-sheet lines at the end of each (stock, period)."""
    rows = drivers(market, stock, pid, revised, pid)
    return evaluate(BALANCE, rows, market.fundamentals.comp_type[stock])


def _year_so_far(
    pid: NDArray[np.int64], single: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """For each row, the quarters to add up (just its own for `single` rows).

    Returns (row of each part, period of each part, position of each row's first part).
    """
    counts = np.where(single, 1, pid % 4 + 1)
    owner = np.repeat(np.arange(len(pid)), counts)
    starts = np.cumsum(counts) - counts
    part = pid[owner] - counts[owner] + 1 + (np.arange(counts.sum()) - starts[owner])
    return owner, part, starts


def flow_lines(
    market: Market,
    statement: str,
    stock: NDArray[np.int64],
    pid: NDArray[np.int64],
    revised: NDArray[np.bool_],
    single: bool | NDArray[np.bool_],
) -> Lines:
    """Income or cash-flow lines of each (stock, period): year to date, or the quarter
    alone where `single` (one flag for all rows, or one per row)."""
    comp = market.fundamentals.comp_type
    single = np.broadcast_to(np.asarray(single, dtype=bool), pid.shape)
    owner, part, starts = _year_so_far(pid, single)
    s = stock[owner]
    rows = drivers(market, s, part, revised[owner], pid[owner])
    if statement == "cashflow":
        last = part == pid[owner]
        rows.d["cash_end"] = cash_of(comp[s], balance_lines(market, s, part, revised[owner] & last))
        rows.d["cash_start"] = cash_of(
            comp[s], balance_lines(market, s, part - 1, np.zeros(len(s), dtype=bool))
        )
    parts = evaluate(FLOWS[statement], rows, comp[s])
    out = {name: cents(np.add.reduceat(values, starts)) for name, values in parts.items()}
    if statement == "income":
        shares = market.fundamentals.shares[market.fundamentals.row(pid), stock]
        eps = np.round(out["n_income_attr_p"] / shares, 4)
        out["basic_eps"] = eps
        dilution = np.where(noise.uniform(market.seed, "dilutes", stock) < 0.2, 0.98, 1.0)
        out["diluted_eps"] = np.round(eps * dilution, 4)
    else:
        opening = pid - np.where(single, 0, pid % 4) - 1
        begin = cash_of(
            comp[stock], balance_lines(market, stock, opening, np.zeros(len(stock), dtype=bool))
        )
        out["c_cash_equ_beg_period"] = begin
        out["c_cash_equ_end_period"] = cents(begin + out["n_incr_cash_cash_equ"])
        out["beg_bal_cash"] = begin
        out["end_bal_cash"] = out["c_cash_equ_end_period"]
    return out


def _requested(q: Query, v: Versions, comp: NDArray[np.str_]) -> NDArray[np.bool_]:
    """Which versions the request's company type, announcement dates and announcement
    range (`start_date`/`end_date`) select."""
    keep = (
        q.matches("comp_type", comp)
        & q.day_matches("ann_date", v.ann)
        & q.day_matches("f_ann_date", v.f_ann)
    )
    lo, hi = q.day("start_date"), q.day("end_date")
    if lo is not None:
        keep &= v.ann >= lo
    if hi is not None:
        keep &= v.ann <= hi
    return keep


def _rows_to_emit(
    market: Market, api: str, v: Versions, q: Query
) -> tuple[Versions, NDArray[np.str_]]:
    """Versions expanded to published rows: report types, duplicates, filters applied."""
    seed = market.seed
    comp = market.fundamentals.comp_type[v.stock].astype(str)
    v = v.take(_requested(q, v, comp))
    kinds = [(v, np.full(len(v), "1"))]
    if api in FLOWS:
        publishes = noise.uniform(seed, "single_quarter", v.stock) < SINGLE_QUARTER_PUBLISHERS
        kinds.append((v.take(publishes), np.full(int(publishes.sum()), "2")))
    stock = np.concatenate([k[0].stock for k in kinds])
    out = Versions(
        stock,
        *(
            np.concatenate([getattr(k[0], f) for k in kinds])
            for f in ("pid", "version", "ann", "f_ann")
        ),
    )
    report_type = np.concatenate([k[1] for k in kinds])
    keep = q.matches("report_type", report_type)
    out, report_type = out.take(keep), report_type[keep]
    twice = (
        noise.uniform(
            seed, f"duplicate_{api}", out.stock, out.pid, out.version, report_type.astype(np.int64)
        )
        < DUPLICATE_SHARE
    )
    doubled = np.concatenate([np.arange(len(out)), np.flatnonzero(twice)])
    return out.take(doubled), report_type[doubled]


def newest_first(
    market: Market,
    stock: NDArray[np.int64],
    pid: NDArray[np.int64],
    ann: NDArray[np.int64],
    *more: NDArray,
) -> NDArray[np.int64]:
    """Row order: latest period, latest announcement, then ts_code and the extra keys."""
    keys = [*reversed(more), market.universe.code_rank[stock], -ann, -pid]
    return np.lexsort(keys)


def statement(market: Market, q: Query, api: str) -> pl.DataFrame:
    """Rows of income, balancesheet or cashflow for the request (plain or _vip).

    A request for one period is answered from that period's table, built once per
    market horizon with every version ever announced (`period_table`) and filtered here
    by today and the request's parameters; other requests (one stock's history) are
    built for the stocks they name.
    """
    u = market.universe
    pid = period_param(q)
    if pid == -1:
        return frames.empty(api)
    if pid is not None:
        return _from_table(market, q, period_table(market, api, pid))
    v, report_type = _rows_to_emit(
        market, api, versions(market, u.select(q.items("ts_code")), pid, q.today), q
    )
    order = newest_first(
        market, v.stock, v.pid, v.ann, -v.f_ann, report_type.astype(np.int64), v.version
    )
    order = order[q.window(len(order))]
    return _build(market, api, v.take(order), report_type[order])


def _build(market: Market, api: str, v: Versions, report_type: NDArray[np.str_]) -> pl.DataFrame:
    """The answer's rows for versions already expanded, filtered and ordered."""
    u = market.universe
    revised = v.version == 1
    lines: Lines = {}
    if len(v):
        if api == "balancesheet":
            lines = balance_lines(market, v.stock, v.pid, revised)
        else:
            lines = flow_lines(market, api, v.stock, v.pid, revised, report_type == "2")
    return frames.build(
        api,
        len(v),
        {
            **lines,
            "ts_code": u.ts_code[v.stock],
            "ann_date": v.ann,
            "f_ann_date": v.f_ann,
            "end_date": end_days(v.pid),
            "report_type": report_type,
            "comp_type": market.fundamentals.comp_type[v.stock].astype(str),
            "end_type": (v.pid % 4 + 1).astype(str),
            "update_flag": v.version.astype(str),
        },
    )


@dataclass(frozen=True)
class PeriodTable:
    """Every row a statement API ever publishes for one period, newest first, with the
    attributes requests filter on (one entry per row of `frame`)."""

    versions: Versions
    report_type: NDArray[np.str_]
    comp_type: NDArray[np.str_]
    frame: pl.DataFrame


_EVERY_DAY = np.iinfo(np.int64).max  # "today" that sees every version ever announced


def period_table(market: Market, api: str, pid: int) -> PeriodTable:
    """One period's table of `api` for the whole market, built on first use and kept
    (`Market.memo`): a period's rows never change, only which of them today shows."""

    def build() -> PeriodTable:
        every = versions(market, np.arange(market.universe.count, dtype=np.int64), pid, _EVERY_DAY)
        v, report_type = _rows_to_emit(market, api, every, Query({}, today=_EVERY_DAY))
        order = newest_first(
            market, v.stock, v.pid, v.ann, -v.f_ann, report_type.astype(np.int64), v.version
        )
        v, report_type = v.take(order), report_type[order]
        comp = market.fundamentals.comp_type[v.stock].astype(str)
        return PeriodTable(v, report_type, comp, _build(market, api, v, report_type))

    return market.memo(f"statement:{api}:{pid}", build)


def _from_table(market: Market, q: Query, table: PeriodTable) -> pl.DataFrame:
    """The rows of a period table the request asks for, as of its today."""
    v = table.versions
    keep = np.maximum(v.ann, v.f_ann) <= q.today
    codes = q.items("ts_code")
    if codes is not None:
        keep &= np.isin(v.stock, market.universe.select(codes))
    keep &= _requested(q, v, table.comp_type) & q.matches("report_type", table.report_type)
    rows = np.flatnonzero(keep)
    rows = rows[q.window(len(rows))]
    if len(rows) == len(v):
        return table.frame
    return table.frame.select(pl.all().gather(rows))
