"""The companies behind the statements: revenue paths, ratios, equity, shares, dividends.

Each stock gets a market value, a price and price-to-sales / price-to-book ratios when
it enters the simulated history (at `start`, or at its IPO), and its revenue and
equity are scaled to match, so valuations start sensible. Revenue follows a seasonal
path with persistent growth shocks; the ratio drivers (margins, expense ratios,
leverage, ...) are per-stock levels with a quarterly wiggle. Equity rolls forward
with net income, other comprehensive income, IPO proceeds and cash dividends. Annual
reports bring a dividend plan (~75% of profitable companies): cash per share from a
payout ratio, sometimes bonus shares, carried out after the shareholders' meeting;
the ex-dates move prices, share counts and adj_factor. Grids are [period, stock].
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator import noise
from pipeline.sources.simulator.calendar import TradingCalendar
from pipeline.sources.simulator.industries import tree
from pipeline.sources.simulator.periods import end_days
from pipeline.sources.simulator.schedule import Schedule, quarter_of
from pipeline.sources.simulator.steps import StepSeries, running_product
from pipeline.sources.simulator.templates import INCOME, Rows, evaluate
from pipeline.sources.simulator.universe import BJ, CHINEXT, NEVER, STAR, Universe

# Ratio drivers: per-stock level drawn uniformly in the range of the company type
# (general, bank, insurer, broker; None = unused) and a multiplicative quarterly wiggle.
DRIVERS: dict[str, tuple[tuple[tuple[float, float] | None, ...], float]] = {
    "r_tax": (((0.004, 0.012), (0.008, 0.012), (0.004, 0.006), (0.005, 0.008)), 0.05),
    "r_sell": (((0.02, 0.12), None, None, None), 0.08),
    "r_admin": (((0.03, 0.09), (0.26, 0.34), (0.09, 0.12), (0.42, 0.52)), 0.05),
    "r_rd": (((0.0, 0.07), None, None, None), 0.10),
    "r_fin": (((-0.005, 0.03), None, None, None), 0.15),
    "r_imp": (((0.0, 0.006), (0.0, 0.004), None, None), 0.5),
    "r_credit": (((0.0, 0.006), (0.16, 0.30), (0.005, 0.015), (0.01, 0.05)), 0.3),
    "r_oi": (((0.0, 0.01), (0.0, 0.005), None, None), 0.3),
    "r_inv": (((-0.005, 0.025), (0.03, 0.10), (0.14, 0.20), (0.22, 0.32)), 0.3),
    "r_fv": (((-0.005, 0.005), (-0.01, 0.02), (-0.02, 0.03), (-0.03, 0.05)), 1.0),
    "r_disp": (((-0.001, 0.002), None, None, None), 0.5),
    "r_nonop_in": (((0.0, 0.003), (0.0, 0.002), (0.0, 0.002), (0.0, 0.002)), 0.5),
    "r_nonop_out": (((0.0, 0.002), (0.0, 0.002), (0.0, 0.002), (0.0, 0.002)), 0.5),
    "r_oci": (((-0.003, 0.003), (-0.02, 0.02), (-0.03, 0.03), (-0.01, 0.01)), 1.0),
    "r_da": (((0.02, 0.08), (0.01, 0.02), (0.01, 0.02), (0.01, 0.02)), 0.05),
    "r_empl": (((0.05, 0.12), None, None, None), 0.05),
    "r_capex": (((0.03, 0.12), (0.01, 0.02), (0.01, 0.02), (0.01, 0.03)), 0.3),
    "r_core": ((None, (0.62, 0.78), (0.82, 0.90), (0.18, 0.28)), 0.03),
    "r_fee": ((None, (0.12, 0.24), None, None), 0.05),
    "r_claims": ((None, None, (0.30, 0.36), None), 0.05),
    "mino": (((0.0, 0.12), (0.0, 0.03), (0.0, 0.03), (0.0, 0.05)), 0.0),
    "ca_ratio": (((0.30, 0.75), None, None, None), 0.03),
    "cl_ratio": (((0.55, 0.90), None, None, None), 0.03),
    "cap_ratio": (((0.10, 0.50), (0.10, 0.30), (0.10, 0.30), (0.20, 0.50)), 0.0),
    "cash_ratio": (((0.85, 0.98), None, None, None), 0.0),
}
# Market value, price-to-sales, price-to-book and leverage, by company type.
_PS = (2.5, 2.2, 1.0, 4.0)
_PB = (2.5, 0.7, 1.3, 1.6)
_LEVERAGE = ((0.20, 0.70), (0.915, 0.935), (0.88, 0.90), (0.75, 0.80))
_SEASON = np.array([0.22, 0.25, 0.25, 0.28])
_DIVIDEND_PAYERS = 0.75
_BONUS_SHARE_PAYERS = 0.08
_PRICE_GROWTH = 0.06  # yearly drift of the price anchor (prices.py)
_MAX_YIELD = 0.05  # cash per share stays under 5% of the anchor price


@dataclass(frozen=True)
class DividendPlans:
    """One row per annual dividend plan; day ordinals, 0 / NEVER when a step never happens."""

    stock: NDArray[np.int64]
    pid: NDArray[np.int64]
    ann: NDArray[np.int64]
    agm: NDArray[np.int64]
    imp_ann: NDArray[np.int64]
    record: NDArray[np.int64]
    ex: NDArray[np.int64]
    pay: NDArray[np.int64]
    list_day: NDArray[np.int64]  # bonus shares tradable (0 when no bonus shares)
    cash_tax: NDArray[np.float64]  # yuan per share before tax
    bonus: NDArray[np.float64]  # 送股 per share
    conversion: NDArray[np.float64]  # 转增 per share
    base_shares: NDArray[np.float64]  # shares at the record date

    @property
    def carried_out(self) -> NDArray[np.bool_]:
        """Plans that reached their ex-date (the company still trades then)."""
        return self.ex < NEVER


@dataclass(frozen=True)
class Fundamentals:
    """Company-level quantities behind the statements and the share counts."""

    first_pid: int
    comp_type: NDArray[np.int64]
    revenue: NDArray[np.float64]  # [period, stock], single quarter
    net_income: NDArray[
        np.float64
    ]  # [period, stock], single quarter, attributable, as first reported
    equity: NDArray[np.float64]  # [period, stock], attributable, period end
    minority: NDArray[np.float64]
    assets: NDArray[np.float64]
    shares: NDArray[np.float64]  # [period, stock], total shares at period end
    raised: NDArray[np.float64]  # [period, stock], IPO proceeds
    dividends_paid: NDArray[np.float64]  # [period, stock]
    price0: NDArray[np.float64]  # per stock: first price of the simulated history
    drivers: dict[str, NDArray[np.float64]]  # [period, stock] ratio drivers (see DRIVERS)
    total_shares: StepSeries  # column shares
    float_shares: StepSeries  # column ratio (float / total), free_ratio constant per stock
    free_ratio: NDArray[np.float64]
    dividends: DividendPlans

    def row(self, pid: NDArray[np.int64] | int) -> NDArray[np.int64]:
        """Grid rows of period ids."""
        return np.asarray(pid) - self.first_pid


def _ratio_drivers(
    seed: int,
    comp_type: NDArray[np.int64],
    stock: NDArray[np.int64],
    pid: NDArray[np.int64],
    margin: NDArray[np.float64],
) -> dict[str, NDArray[np.float64]]:
    """The ratio drivers of (stock, quarter) rows (see DRIVERS).

    `margin`: the typical gross margin of each row's industry.
    """
    out: dict[str, NDArray[np.float64]] = {}
    kind = comp_type - 1
    for name, (ranges, wiggle) in DRIVERS.items():
        lo = np.array([r[0] if r else 0.0 for r in ranges])[kind]
        hi = np.array([r[1] if r else 0.0 for r in ranges])[kind]
        level = noise.between(seed, f"drv_{name}", lo, hi, stock)
        out[name] = (
            level * (1.0 + wiggle * noise.normal(seed, f"drv_{name}_q", stock, pid))
            if wiggle
            else level
        )
    out["r_imp"] = np.where(
        pid % 4 == 3, out["r_imp"] * 3.0, out["r_imp"]
    )  # impairment tests at year end
    out["gm"] = np.clip(
        margin
        + 0.07 * noise.normal(seed, "drv_gm", stock)
        + 0.02 * noise.normal(seed, "drv_gm_q", stock, pid),
        0.04,
        0.85,
    )
    out["tax_rate"] = np.where(
        comp_type > 1, 0.2, np.where(noise.uniform(seed, "drv_tax", stock) < 0.4, 0.15, 0.25)
    )
    return out


def _anchors(seed: int, universe: Universe) -> tuple[NDArray[np.float64], ...]:
    """Price, market value, ps and pb when each stock enters the history; IPO share."""
    idx = np.arange(universe.count)
    kind = universe.comp_type - 1
    board_size = np.ones(universe.count)
    board_size[universe.board == STAR] = 1.5
    board_size[universe.board == CHINEXT] = 0.8
    board_size[universe.board == BJ] = 0.3
    board_size[universe.comp_type > 1] = 12.0
    mcap = np.clip(
        np.exp(np.log(4e9) + 0.9 * noise.normal(seed, "mcap", idx)) * board_size, 3e8, 3e12
    )
    price = np.clip(np.exp(np.log(12.0) + 0.55 * noise.normal(seed, "price0", idx)), 2.5, 150.0)
    price = np.round(price, 2)
    ps = np.array(_PS)[kind] * np.exp(0.5 * noise.normal(seed, "ps", idx))
    pb = np.array(_PB)[kind] * np.exp(0.35 * noise.normal(seed, "pb", idx))
    return price, mcap, ps, pb


def build_fundamentals(
    seed: int,
    start: dt.date,
    calendar: TradingCalendar,
    universe: Universe,
    schedule: Schedule,
    first_pid: int,
) -> Fundamentals:
    """Company fundamentals for periods first_pid .. the schedule's last period."""
    m = universe.count
    idx = np.arange(m)
    last_pid = int(schedule.pids[-1])
    pids = np.arange(first_pid, last_pid + 1)
    n_periods = len(pids)
    comp_type = universe.comp_type
    kind = comp_type - 1
    price0, mcap0, ps0, pb0 = _anchors(seed, universe)
    enters = np.maximum(universe.list_day, start.toordinal())
    calib = np.clip(quarter_of(enters) - first_pid, 0, n_periods - 1)
    ipo = universe.list_day >= start.toordinal()
    shares0 = np.maximum(np.round(mcap0 / price0, -4), 1e6)
    issue_share = np.where(shares0 < 4e8, 0.25, 0.10)

    # revenue: seasonal path with persistent growth shocks, scaled to mcap / ps at entry
    s, p = np.meshgrid(idx, pids)
    growth = noise.normal(seed, "growth", idx) * 0.06 + 0.06
    shocks = 0.05 * noise.normal(seed, "growth_q", s, p)
    drift = np.zeros_like(shocks)
    for i in range(1, n_periods):
        drift[i] = 0.6 * drift[i - 1] + shocks[i]
    log_level = np.cumsum(growth[None, :] / 4 + drift, axis=0)
    season = _SEASON[None, :] + 0.02 * noise.normal(
        seed, "season", idx[:, None], np.arange(4)[None, :]
    )
    season = np.where((comp_type == 2)[:, None], 0.25, season)
    season = season / season.sum(axis=1, keepdims=True) * 4
    scale = (mcap0 / ps0) / 4 / np.exp(log_level[calib, idx])
    revenue = np.round(np.exp(log_level) * scale[None, :] * season[idx[None, :], (p % 4)], 2)

    margin = np.array([c.gross_margin for c in tree().l3])[universe.first_l3]
    drivers = _ratio_drivers(seed, comp_type[s.ravel()], s.ravel(), p.ravel(), margin[s.ravel()])
    rows = Rows(seed, s.ravel(), p.ravel(), {"rev": revenue.ravel(), **drivers})
    income = evaluate(INCOME, rows, comp_type[s.ravel()])
    ni_attr = income["n_income_attr_p"].reshape(n_periods, m)
    oci_attr = (income["compr_inc_attr_p"] - income["n_income_attr_p"]).reshape(n_periods, m)
    minority_flow = (income["t_compr_income"] - income["compr_inc_attr_p"]).reshape(n_periods, m)

    # shares: pre-IPO count, IPO, then bonus shares at ex-dates (filled year by year)
    pre_ipo = np.where(ipo, np.round(shares0 * (1 - issue_share), -4), shares0)
    dividends, events = _dividends(
        seed, start, calendar, universe, schedule, pids, ni_attr, shares0, pre_ipo, price0
    )
    share_days = np.concatenate([np.zeros(m, dtype=np.int64), universe.list_day[ipo], events[1]])
    share_stocks = np.concatenate([idx, idx[ipo], events[0]])
    multipliers = np.concatenate([pre_ipo, (shares0 / pre_ipo)[ipo], events[2]])
    order = np.lexsort((share_days, share_stocks))
    cumulative = running_product(share_stocks[order], multipliers[order])
    total_shares = StepSeries(
        share_stocks[order], share_days[order], {"shares": np.round(cumulative)}
    )
    shares = total_shares.at("shares", s, end_days(pids)[:, None] + 0 * s, 0.0)

    raised = np.zeros((n_periods, m))
    ipo_row = quarter_of(universe.list_day) - first_pid
    inside = ipo & (ipo_row >= 0) & (ipo_row < n_periods)
    raised[ipo_row[inside], idx[inside]] = np.round((shares0 - pre_ipo)[inside] * price0[inside], 2)
    paid = np.zeros((n_periods, m))
    done = dividends.carried_out
    pay_row = quarter_of(dividends.pay) - first_pid
    ok = done & (pay_row >= 0) & (pay_row < n_periods)
    np.add.at(
        paid,
        (pay_row[ok], dividends.stock[ok]),
        np.round(dividends.cash_tax * dividends.base_shares, 2)[ok],
    )

    flow = ni_attr + oci_attr + raised - paid
    cumulative_flow = np.cumsum(flow, axis=0)
    target = mcap0 / pb0
    equity0 = np.maximum(target - cumulative_flow[calib, idx], 0.3 * target)
    equity = equity0[None, :] + cumulative_flow
    mino_share = drivers["mino"].reshape(n_periods, m)[0]
    minority = equity0[None, :] * mino_share * 1.5 + np.cumsum(minority_flow, axis=0)
    lo, hi = np.array(_LEVERAGE)[kind].T
    leverage = (lo + (hi - lo) * noise.uniform(seed, "leverage", idx))[None, :] * (
        1 + 0.02 * noise.normal(seed, "leverage_q", s, p)
    )
    leverage = np.minimum(leverage, 0.95)
    book = equity + minority
    annual_revenue = revenue * 4
    assets = np.where(book > 0, book / (1 - leverage), np.abs(book) * 1.5 + 0.6 * annual_revenue)
    assets = np.maximum(assets, book + 0.3 * annual_revenue)
    return Fundamentals(
        first_pid=first_pid,
        comp_type=comp_type,
        revenue=revenue,
        net_income=ni_attr,
        equity=equity,
        minority=minority,
        assets=assets,
        shares=shares,
        raised=raised,
        dividends_paid=paid,
        price0=price0,
        drivers={name: values.reshape(n_periods, m) for name, values in drivers.items()},
        total_shares=total_shares,
        float_shares=_float_ratio(seed, universe, ipo, issue_share),
        free_ratio=0.35 + 0.5 * noise.uniform(seed, "free_float", idx),
        dividends=dividends,
    )


def _float_ratio(
    seed: int, universe: Universe, ipo: NDArray[np.bool_], issue_share: NDArray[np.float64]
) -> StepSeries:
    """Tradable share of the total: the IPO tranche, lock-up expiries after one and three years."""
    idx = np.arange(universe.count)
    final = 0.7 + 0.3 * noise.uniform(seed, "float_final", idx)
    first_year = np.minimum(issue_share + 0.45, final)
    days = np.concatenate(
        [
            np.zeros(universe.count, dtype=np.int64),
            universe.list_day[ipo] + 365,
            universe.list_day[ipo] + 3 * 365,
        ]
    )
    stocks = np.concatenate([idx, idx[ipo], idx[ipo]])
    ratio = np.concatenate([np.where(ipo, issue_share, final), first_year[ipo], final[ipo]])
    return StepSeries(stocks, days, {"ratio": ratio})


def _dividends(
    seed: int,
    start: dt.date,
    calendar: TradingCalendar,
    universe: Universe,
    schedule: Schedule,
    pids: NDArray[np.int64],
    ni_attr: NDArray[np.float64],
    shares0: NDArray[np.float64],
    pre_ipo: NDArray[np.float64],
    price0: NDArray[np.float64],
) -> tuple[DividendPlans, tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]]:
    """Annual dividend plans and the bonus-share events (stock, ex-day, multiplier)."""
    m = universe.count
    idx = np.arange(m)
    end_of_life = np.minimum(universe.delist_day, universe.pause_day)
    ev_stock: list[NDArray[np.int64]] = []
    ev_day: list[NDArray[np.int64]] = []
    ev_mult: list[NDArray[np.float64]] = []
    plans: dict[str, list[NDArray]] = {k: [] for k in DividendPlans.__dataclass_fields__}
    for pid in pids[pids % 4 == 3]:
        srow = schedule.row(int(pid))
        if srow < 0:
            continue
        grid_row = int(pid - pids[0])
        annual = ni_attr[grid_row - 3 : grid_row + 1].sum(axis=0) if grid_row >= 3 else np.zeros(m)
        ann = schedule.ann[srow]
        listed = ann >= universe.list_day
        payer = (
            schedule.reported[srow]
            & listed
            & (annual > 0)
            & (noise.uniform(seed, "div_payer", idx, pid) < _DIVIDEND_PAYERS)
        )
        period_end = int(end_days(np.array([pid]))[0])
        base = np.where(universe.list_day <= period_end, shares0, pre_ipo)
        mult_at_end = np.ones(m)
        if ev_stock:
            s, d, x = np.concatenate(ev_stock), np.concatenate(ev_day), np.concatenate(ev_mult)
            np.multiply.at(mult_at_end, s[d <= period_end], x[d <= period_end])
        shares = base * mult_at_end
        eps = annual / shares
        years = (period_end - np.maximum(universe.list_day, start.toordinal())) / 365.0
        price_level = price0 * np.exp(_PRICE_GROWTH * np.maximum(years, 0.0)) / mult_at_end
        payout = eps * noise.between(seed, "div_payout", 0.15, 0.5, idx, pid)
        cash_tax = np.round(np.minimum(payout, _MAX_YIELD * price_level), 3)
        bonus_payer = payer & (noise.uniform(seed, "div_bonus", idx, pid) < _BONUS_SHARE_PAYERS)
        bonus = np.where(
            bonus_payer,
            np.array([0.0, 0.1, 0.2, 0.3])[noise.choice(seed, "div_bo", (1, 1, 1, 1), idx, pid)],
            0.0,
        )
        conversion = np.where(
            bonus_payer,
            np.array([0.2, 0.3, 0.5, 1.0])[noise.choice(seed, "div_co", (1, 1, 1, 1), idx, pid)],
            0.0,
        )
        payer &= (cash_tax >= 0.001) | bonus_payer
        cash_tax = np.where(payer, np.maximum(cash_tax, 0.0), 0.0)
        agm = calendar.on_or_after(
            ann + 20 + (40 * noise.uniform(seed, "div_agm", idx, pid)).astype(np.int64)
        )
        imp_ann = calendar.on_or_after(
            agm + 10 + (30 * noise.uniform(seed, "div_imp", idx, pid)).astype(np.int64)
        )
        record = calendar.shift(imp_ann, 3)
        ex = calendar.shift(record, 1)
        keep = payer
        agm_ok = agm < end_of_life
        done = ex < end_of_life
        pick = np.flatnonzero(keep)
        plans["stock"].append(pick)
        plans["pid"].append(np.full(len(pick), pid))
        plans["ann"].append(ann[pick])
        plans["agm"].append(np.where(agm_ok, agm, NEVER)[pick])
        plans["imp_ann"].append(np.where(done, imp_ann, NEVER)[pick])
        plans["record"].append(np.where(done, record, NEVER)[pick])
        plans["ex"].append(np.where(done, ex, NEVER)[pick])
        plans["pay"].append(np.where(done, ex, NEVER)[pick])
        plans["list_day"].append(np.where(done & bonus_payer, calendar.shift(ex, 1), 0)[pick])
        plans["cash_tax"].append(cash_tax[pick])
        plans["bonus"].append(bonus[pick])
        plans["conversion"].append(conversion[pick])
        plans["base_shares"].append(shares[pick])
        split_done = np.flatnonzero(keep & done & bonus_payer)
        ev_stock.append(split_done)
        ev_day.append(ex[split_done])
        ev_mult.append(1.0 + bonus[split_done] + conversion[split_done])
    columns: dict[str, NDArray] = {
        k: np.concatenate(v) if v else np.zeros(0) for k, v in plans.items()
    }
    table = DividendPlans(**columns)
    events = (
        np.concatenate(ev_stock) if ev_stock else np.zeros(0, dtype=np.int64),
        np.concatenate(ev_day) if ev_day else np.zeros(0, dtype=np.int64),
        np.concatenate(ev_mult) if ev_mult else np.zeros(0),
    )
    return table, events
