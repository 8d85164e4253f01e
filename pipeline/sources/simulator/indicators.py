"""fina_indicator: ratios computed from the statements of the same report version.

One row per income-statement version (report_type 1), with its ann_date and
update_flag. Figures of the current period come from that version; comparisons (the
same period a year earlier, the previous quarter, the start of the year) use the
original reports. Ratios are percentages where Tushare's are, rounded to 4 decimals;
a ratio whose denominator is zero or missing is null. A few fields that depend on data
the simulated market does not keep (e.g. roe_avg, the weighted-average ROE for share
issues) stay null.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
from numpy.typing import NDArray

from pipeline.sources.simulator import frames, noise
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.periods import end_days
from pipeline.sources.simulator.query import Query
from pipeline.sources.simulator.statements import (
    DUPLICATE_SHARE,
    Versions,
    balance_lines,
    flow_lines,
    newest_first,
    period_param,
    versions,
)
from pipeline.sources.simulator.templates import Lines

A = NDArray[np.float64]


def _div(a: A, b: A, scale: float = 1.0) -> A:
    """a / b * scale, null where b is zero or null, rounded to 4 decimals."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: A = np.where((b != 0) & np.isfinite(b), a / np.where(b == 0, 1.0, b) * scale, np.nan)
    return np.round(out, 4)


def _growth(now: A, before: A) -> A:
    """Growth in percent against the absolute base."""
    return _div(now - before, np.abs(before), 100.0)


def _get(lines: Lines, name: str, n: int) -> A:
    """A line, zeros where the company type lacks it."""
    return np.nan_to_num(lines.get(name, np.zeros(n)))


def _batched(compute: Callable[..., Lines], batches: list[tuple[NDArray, ...]]) -> list[Lines]:
    """One template pass over several batches of equal length, split back per batch
    (each pass has a fixed cost, so one big pass beats several small ones)."""
    n = len(batches[0][0])
    joined = compute(*(np.concatenate(column) for column in zip(*batches, strict=True)))
    return [
        {name: values[k * n : (k + 1) * n] for name, values in joined.items()}
        for k in range(len(batches))
    ]


class _Inputs:
    """The statements one indicator row draws on."""

    def __init__(self, market: Market, v: Versions) -> None:
        revised = v.version == 1
        original = np.zeros(len(v), dtype=bool)
        s, p = v.stock, v.pid
        self.n = len(v)
        self.shares = market.fundamentals.shares[market.fundamentals.row(p), s]
        yes, no = np.ones(len(v), dtype=bool), original
        income = _batched(
            lambda *a: flow_lines(market, "income", *a),
            [(s, p, revised, no), (s, p, revised, yes), (s, p - 1, original, yes),
             (s, p - 4, original, yes), (s, p - 4, original, no)],
        )  # fmt: skip
        self.ytd, self.quarter, self.prev_quarter, self.quarter_year_ago, self.ytd_year_ago = income
        self.cash, self.cash_year_ago, self.quarter_cash = _batched(
            lambda *a: flow_lines(market, "cashflow", *a),
            [(s, p, revised, no), (s, p - 4, original, no), (s, p, revised, yes)],
        )
        self.balance, self.opening, self.balance_year_ago = _batched(
            lambda *a: balance_lines(market, *a),
            [(s, p, revised), (s, p - p % 4 - 1, original), (s, p - 4, original)],
        )
        self.days = (p % 4 + 1) * 91.25
        self.annualise = 4.0 / (p % 4 + 1)

    def i(self, name: str) -> A:
        return _get(self.ytd, name, self.n)

    def b(self, name: str) -> A:
        return _get(self.balance, name, self.n)

    def c(self, name: str) -> A:
        return _get(self.cash, name, self.n)


def _derived(x: _Inputs) -> dict[str, A]:
    """Quantities several ratios share."""
    i, b, c = x.i, x.b, x.c
    tax = np.where(i("total_profit") > 0, _div(i("income_tax"), i("total_profit")), 0.0)
    extra = (
        i("non_oper_income")
        - i("non_oper_exp")
        + i("asset_disp_income")
        + i("fv_value_chg_gain")
        + i("oth_income") * 0.5
    )
    extra_attr = np.round(
        extra * (1 - np.nan_to_num(tax)) * _div(i("n_income_attr_p"), i("n_income")), 2
    )
    extra_attr = np.nan_to_num(extra_attr)
    daa = i("ebitda") - i("ebit")
    interest_debt = (
        b("st_borr")
        + b("lt_borr")
        + b("bond_payable")
        + b("non_cur_liab_due_1y")
        + b("st_fin_payable")
    )
    equity = b("total_hldr_eqy_exc_min_int")
    avg_equity = (equity + _get(x.opening, "total_hldr_eqy_exc_min_int", x.n)) / 2
    avg_assets = (b("total_assets") + _get(x.opening, "total_assets", x.n)) / 2
    capex = c("c_pay_acq_const_fiolta")
    after_tax_interest = i("fin_exp_int_exp") * (1 - np.nan_to_num(tax))
    fcff = c("n_cashflow_act") + after_tax_interest - capex
    tangible = equity - b("intan_assets") - b("goodwill")
    op_income = i("operate_profit") - i("invest_income") - i("fv_value_chg_gain")
    return {
        "tax": tax,
        "extra": extra_attr,
        "dedt": i("n_income_attr_p") - extra_attr,
        "daa": daa,
        "interestdebt": interest_debt,
        "equity": equity,
        "avg_equity": avg_equity,
        "avg_assets": avg_assets,
        "capex": capex,
        "fcff": fcff,
        "fcfe": fcff - after_tax_interest + c("c_recp_borrow") - c("c_prepay_amt_borr"),
        "tangible": tangible,
        "op_income": op_income,
        "invest_capital": b("total_hldr_eqy_inc_min_int") + interest_debt,
        "netdebt": interest_debt - b("money_cap"),
        "gross": i("revenue") - i("oper_cost"),
        "period_cost": i("sell_exp") + i("admin_exp") + i("fin_exp"),
    }


def _field_formulas(x: _Inputs, d: dict[str, A]) -> dict[str, Callable[[], A]]:
    """Every computed fina_indicator field, as a formula over the inputs."""
    i, b, c = x.i, x.b, x.c
    q, q1, q4 = x.quarter, x.prev_quarter, x.quarter_year_ago
    n = x.n

    def qv(lines: Lines, name: str) -> A:
        return _get(lines, name, n)

    y = x.ytd_year_ago
    financial_margin = np.isnan(x.ytd.get("oper_cost", np.full(n, np.nan)))
    gross: A = np.where(financial_margin, np.nan, d["gross"])
    q_gross: A = np.where(financial_margin, np.nan, qv(q, "revenue") - qv(q, "oper_cost"))
    q_dedt = qv(q, "n_income_attr_p") - d["extra"] / (x.days / 91.25)
    return {
        "eps": lambda: i("basic_eps"),
        "dt_eps": lambda: i("diluted_eps"),
        "total_revenue_ps": lambda: _div(i("total_revenue"), x.shares),
        "revenue_ps": lambda: _div(i("revenue"), x.shares),
        "capital_rese_ps": lambda: _div(b("cap_rese"), x.shares),
        "surplus_rese_ps": lambda: _div(b("surplus_rese"), x.shares),
        "undist_profit_ps": lambda: _div(b("undistr_porfit"), x.shares),
        "extra_item": lambda: d["extra"],
        "profit_dedt": lambda: np.round(d["dedt"], 2),
        "gross_margin": lambda: np.round(gross, 2),
        "current_ratio": lambda: _div(
            b("total_cur_assets"), x.balance.get("total_cur_liab", np.full(n, np.nan))
        ),
        "quick_ratio": lambda: _div(
            b("total_cur_assets") - b("inventories"),
            x.balance.get("total_cur_liab", np.full(n, np.nan)),
        ),
        "cash_ratio": lambda: _div(
            b("money_cap") + b("trad_asset") + b("notes_receiv"),
            x.balance.get("total_cur_liab", np.full(n, np.nan)),
        ),
        "invturn_days": lambda: _div(
            np.full(n, 1.0) * x.days, _div(i("oper_cost"), b("inventories"))
        ),
        "arturn_days": lambda: _div(
            np.full(n, 1.0) * x.days, _div(i("revenue"), b("accounts_receiv"))
        ),
        "inv_turn": lambda: _div(i("oper_cost"), b("inventories")),
        "ar_turn": lambda: _div(i("revenue"), b("accounts_receiv")),
        "ca_turn": lambda: _div(i("revenue"), b("total_cur_assets")),
        "fa_turn": lambda: _div(i("revenue"), b("fix_assets")),
        "assets_turn": lambda: _div(i("revenue"), d["avg_assets"]),
        "op_income": lambda: np.round(d["op_income"], 2),
        "valuechange_income": lambda: i("fv_value_chg_gain") + i("invest_income"),
        "interst_income": lambda: i("fin_exp_int_exp"),
        "daa": lambda: np.round(d["daa"], 2),
        "ebit": lambda: i("ebit"),
        "ebitda": lambda: i("ebitda"),
        "fcff": lambda: np.round(d["fcff"], 2),
        "fcfe": lambda: np.round(d["fcfe"], 2),
        "current_exint": lambda: b("total_cur_liab") - b("st_borr") - b("non_cur_liab_due_1y"),
        "noncurrent_exint": lambda: b("total_ncl") - b("lt_borr") - b("bond_payable"),
        "interestdebt": lambda: np.round(d["interestdebt"], 2),
        "netdebt": lambda: np.round(d["netdebt"], 2),
        "tangible_asset": lambda: np.round(d["tangible"], 2),
        "working_capital": lambda: b("total_cur_assets") - b("total_cur_liab"),
        "networking_capital": lambda: (
            (b("total_cur_assets") - b("money_cap")) - (b("total_cur_liab") - b("st_borr"))
        ),
        "invest_capital": lambda: np.round(d["invest_capital"], 2),
        "retained_earnings": lambda: b("surplus_rese") + b("undistr_porfit"),
        "diluted2_eps": lambda: _div(i("n_income_attr_p"), x.shares),
        "bps": lambda: _div(d["equity"], x.shares),
        "ocfps": lambda: _div(c("n_cashflow_act"), x.shares),
        "retainedps": lambda: _div(b("surplus_rese") + b("undistr_porfit"), x.shares),
        "cfps": lambda: _div(c("n_incr_cash_cash_equ"), x.shares),
        "ebit_ps": lambda: _div(i("ebit"), x.shares),
        "fcff_ps": lambda: _div(d["fcff"], x.shares),
        "fcfe_ps": lambda: _div(d["fcfe"], x.shares),
        "netprofit_margin": lambda: _div(i("n_income"), i("revenue"), 100),
        "grossprofit_margin": lambda: _div(gross, i("revenue"), 100),
        "cogs_of_sales": lambda: _div(
            np.where(financial_margin, np.nan, i("oper_cost")), i("revenue"), 100
        ),
        "expense_of_sales": lambda: _div(d["period_cost"], i("revenue"), 100),
        "profit_to_gr": lambda: _div(i("n_income"), i("total_revenue"), 100),
        "saleexp_to_gr": lambda: _div(i("sell_exp"), i("total_revenue"), 100),
        "adminexp_of_gr": lambda: _div(i("admin_exp"), i("total_revenue"), 100),
        "finaexp_of_gr": lambda: _div(i("fin_exp"), i("total_revenue"), 100),
        "impai_ttm": lambda: _div(i("assets_impair_loss"), i("total_revenue"), 100),
        "gc_of_gr": lambda: _div(i("total_cogs") + i("oper_exp"), i("total_revenue"), 100),
        "op_of_gr": lambda: _div(i("operate_profit"), i("total_revenue"), 100),
        "ebit_of_gr": lambda: _div(i("ebit"), i("total_revenue"), 100),
        "roe": lambda: _div(i("n_income_attr_p"), d["equity"], 100),
        "roe_waa": lambda: _div(i("n_income_attr_p"), d["avg_equity"], 100),
        "roe_dt": lambda: _div(d["dedt"], d["avg_equity"], 100),
        "roa": lambda: _div(i("total_profit") + i("fin_exp_int_exp"), d["avg_assets"], 100),
        "npta": lambda: _div(i("n_income"), d["avg_assets"], 100),
        "roic": lambda: _div(i("ebit") * (1 - d["tax"]), d["invest_capital"], 100),
        "roe_yearly": lambda: _div(i("n_income_attr_p") * x.annualise, d["avg_equity"], 100),
        "roa2_yearly": lambda: _div(
            (i("total_profit") + i("fin_exp_int_exp")) * x.annualise, d["avg_assets"], 100
        ),
        "opincome_of_ebt": lambda: _div(d["op_income"], i("total_profit"), 100),
        "investincome_of_ebt": lambda: _div(
            i("fv_value_chg_gain") + i("invest_income"), i("total_profit"), 100
        ),
        "n_op_profit_of_ebt": lambda: _div(
            i("non_oper_income") - i("non_oper_exp"), i("total_profit"), 100
        ),
        "tax_to_ebt": lambda: _div(i("income_tax"), i("total_profit"), 100),
        "dtprofit_to_profit": lambda: _div(d["dedt"], i("n_income_attr_p"), 100),
        "salescash_to_or": lambda: _div(c("c_fr_sale_sg"), i("revenue"), 100),
        "ocf_to_or": lambda: _div(c("n_cashflow_act"), i("revenue"), 100),
        "ocf_to_opincome": lambda: _div(c("n_cashflow_act"), d["op_income"], 100),
        "capitalized_to_da": lambda: _div(d["capex"], d["daa"], 100),
        "debt_to_assets": lambda: _div(b("total_liab"), b("total_assets"), 100),
        "assets_to_eqt": lambda: _div(b("total_assets"), b("total_hldr_eqy_inc_min_int")),
        "dp_assets_to_eqt": lambda: _div(b("total_assets"), d["equity"]),
        "ca_to_assets": lambda: _div(
            x.balance.get("total_cur_assets", np.full(n, np.nan)), b("total_assets"), 100
        ),
        "nca_to_assets": lambda: _div(
            x.balance.get("total_nca", np.full(n, np.nan)), b("total_assets"), 100
        ),
        "tbassets_to_totalassets": lambda: _div(d["tangible"], b("total_assets"), 100),
        "int_to_talcap": lambda: _div(d["interestdebt"], d["invest_capital"], 100),
        "eqt_to_talcapital": lambda: _div(d["equity"], d["invest_capital"], 100),
        "currentdebt_to_debt": lambda: _div(
            x.balance.get("total_cur_liab", np.full(n, np.nan)), b("total_liab"), 100
        ),
        "longdeb_to_debt": lambda: _div(
            x.balance.get("total_ncl", np.full(n, np.nan)), b("total_liab"), 100
        ),
        "ocf_to_shortdebt": lambda: _div(
            c("n_cashflow_act"), x.balance.get("total_cur_liab", np.full(n, np.nan))
        ),
        "debt_to_eqt": lambda: _div(b("total_liab"), b("total_hldr_eqy_inc_min_int")),
        "eqt_to_debt": lambda: _div(d["equity"], b("total_liab")),
        "eqt_to_interestdebt": lambda: _div(d["equity"], d["interestdebt"]),
        "tangibleasset_to_debt": lambda: _div(d["tangible"], b("total_liab")),
        "tangasset_to_intdebt": lambda: _div(d["tangible"], d["interestdebt"]),
        "tangibleasset_to_netdebt": lambda: _div(d["tangible"], d["netdebt"]),
        "ocf_to_debt": lambda: _div(c("n_cashflow_act"), b("total_liab")),
        "ocf_to_interestdebt": lambda: _div(c("n_cashflow_act"), d["interestdebt"]),
        "ocf_to_netdebt": lambda: _div(c("n_cashflow_act"), d["netdebt"]),
        "ebit_to_interest": lambda: _div(i("ebit"), i("fin_exp_int_exp")),
        "longdebt_to_workingcapital": lambda: _div(
            b("lt_borr") + b("bond_payable"), b("total_cur_assets") - b("total_cur_liab")
        ),
        "ebitda_to_debt": lambda: _div(i("ebitda"), b("total_liab")),
        "turn_days": lambda: (
            _div(np.full(n, 1.0) * x.days, _div(i("oper_cost"), b("inventories")))
            + _div(np.full(n, 1.0) * x.days, _div(i("revenue"), b("accounts_receiv")))
        ),
        "roa_yearly": lambda: _div(i("n_income") * x.annualise, d["avg_assets"], 100),
        "roa_dp": lambda: _div(i("n_income"), b("total_assets"), 100),
        "fixed_assets": lambda: b("fix_assets_total"),
        "profit_prefin_exp": lambda: i("operate_profit") + i("fin_exp"),
        "non_op_profit": lambda: i("non_oper_income") - i("non_oper_exp"),
        "op_to_ebt": lambda: _div(i("operate_profit"), i("total_profit"), 100),
        "nop_to_ebt": lambda: _div(
            i("non_oper_income") - i("non_oper_exp"), i("total_profit"), 100
        ),
        "ocf_to_profit": lambda: _div(c("n_cashflow_act"), i("operate_profit"), 100),
        "cash_to_liqdebt": lambda: _div(
            b("money_cap"), x.balance.get("total_cur_liab", np.full(n, np.nan))
        ),
        "cash_to_liqdebt_withinterest": lambda: _div(
            b("money_cap"), b("st_borr") + b("non_cur_liab_due_1y")
        ),
        "op_to_liqdebt": lambda: _div(
            i("operate_profit"), x.balance.get("total_cur_liab", np.full(n, np.nan))
        ),
        "op_to_debt": lambda: _div(i("operate_profit"), b("total_liab")),
        "roic_yearly": lambda: _div(
            i("ebit") * (1 - d["tax"]) * x.annualise, d["invest_capital"], 100
        ),
        "total_fa_trun": lambda: _div(i("revenue"), b("fix_assets_total")),
        "profit_to_op": lambda: _div(i("total_profit"), i("revenue"), 100),
        "q_opincome": lambda: np.round(
            qv(q, "operate_profit") - qv(q, "invest_income") - qv(q, "fv_value_chg_gain"), 2
        ),
        "q_investincome": lambda: qv(q, "invest_income") + qv(q, "fv_value_chg_gain"),
        "q_dtprofit": lambda: np.round(q_dedt, 2),
        "q_eps": lambda: qv(q, "basic_eps"),
        "q_netprofit_margin": lambda: _div(qv(q, "n_income"), qv(q, "revenue"), 100),
        "q_gsprofit_margin": lambda: _div(q_gross, qv(q, "revenue"), 100),
        "q_exp_to_sales": lambda: _div(
            qv(q, "sell_exp") + qv(q, "admin_exp") + qv(q, "fin_exp"), qv(q, "revenue"), 100
        ),
        "q_profit_to_gr": lambda: _div(qv(q, "n_income"), qv(q, "total_revenue"), 100),
        "q_saleexp_to_gr": lambda: _div(qv(q, "sell_exp"), qv(q, "total_revenue"), 100),
        "q_adminexp_to_gr": lambda: _div(qv(q, "admin_exp"), qv(q, "total_revenue"), 100),
        "q_finaexp_to_gr": lambda: _div(qv(q, "fin_exp"), qv(q, "total_revenue"), 100),
        "q_impair_to_gr_ttm": lambda: _div(
            qv(q, "assets_impair_loss"), qv(q, "total_revenue"), 100
        ),
        "q_gc_to_gr": lambda: _div(
            qv(q, "total_cogs") + qv(q, "oper_exp"), qv(q, "total_revenue"), 100
        ),
        "q_op_to_gr": lambda: _div(qv(q, "operate_profit"), qv(q, "total_revenue"), 100),
        "q_roe": lambda: _div(qv(q, "n_income_attr_p"), d["equity"], 100),
        "q_dt_roe": lambda: _div(q_dedt, d["equity"], 100),
        "q_npta": lambda: _div(qv(q, "n_income"), b("total_assets"), 100),
        "q_opincome_to_ebt": lambda: _div(
            qv(q, "operate_profit") - qv(q, "invest_income") - qv(q, "fv_value_chg_gain"),
            qv(q, "total_profit"),
            100,
        ),
        "q_investincome_to_ebt": lambda: _div(
            qv(q, "invest_income") + qv(q, "fv_value_chg_gain"), qv(q, "total_profit"), 100
        ),
        "q_dtprofit_to_profit": lambda: _div(q_dedt, qv(q, "n_income_attr_p"), 100),
        "q_salescash_to_or": lambda: _div(
            _get(x.quarter_cash, "c_fr_sale_sg", n), qv(q, "revenue"), 100
        ),
        "q_ocf_to_sales": lambda: _div(
            _get(x.quarter_cash, "n_cashflow_act", n), qv(q, "revenue"), 100
        ),
        "q_ocf_to_or": lambda: _div(
            _get(x.quarter_cash, "n_cashflow_act", n),
            qv(q, "operate_profit") - qv(q, "invest_income"),
            100,
        ),
        "basic_eps_yoy": lambda: _growth(i("basic_eps"), qv(y, "basic_eps")),
        "dt_eps_yoy": lambda: _growth(i("diluted_eps"), qv(y, "diluted_eps")),
        "cfps_yoy": lambda: _growth(
            c("n_cashflow_act"), _get(x.cash_year_ago, "n_cashflow_act", n)
        ),
        "op_yoy": lambda: _growth(i("operate_profit"), qv(y, "operate_profit")),
        "ebt_yoy": lambda: _growth(i("total_profit"), qv(y, "total_profit")),
        "netprofit_yoy": lambda: _growth(i("n_income_attr_p"), qv(y, "n_income_attr_p")),
        "dt_netprofit_yoy": lambda: _growth(d["dedt"], qv(y, "n_income_attr_p")),
        "ocf_yoy": lambda: _growth(c("n_cashflow_act"), _get(x.cash_year_ago, "n_cashflow_act", n)),
        "roe_yoy": lambda: _growth(
            _div(i("n_income_attr_p"), d["equity"]),
            _div(
                qv(y, "n_income_attr_p"), _get(x.balance_year_ago, "total_hldr_eqy_exc_min_int", n)
            ),
        ),
        "bps_yoy": lambda: _growth(d["equity"], _get(x.opening, "total_hldr_eqy_exc_min_int", n)),
        "assets_yoy": lambda: _growth(b("total_assets"), _get(x.opening, "total_assets", n)),
        "eqt_yoy": lambda: _growth(d["equity"], _get(x.opening, "total_hldr_eqy_exc_min_int", n)),
        "tr_yoy": lambda: _growth(i("total_revenue"), qv(y, "total_revenue")),
        "or_yoy": lambda: _growth(i("revenue"), qv(y, "revenue")),
        "q_gr_yoy": lambda: _growth(qv(q, "total_revenue"), qv(q4, "total_revenue")),
        "q_gr_qoq": lambda: _growth(qv(q, "total_revenue"), qv(q1, "total_revenue")),
        "q_sales_yoy": lambda: _growth(qv(q, "revenue"), qv(q4, "revenue")),
        "q_sales_qoq": lambda: _growth(qv(q, "revenue"), qv(q1, "revenue")),
        "q_op_yoy": lambda: _growth(qv(q, "operate_profit"), qv(q4, "operate_profit")),
        "q_op_qoq": lambda: _growth(qv(q, "operate_profit"), qv(q1, "operate_profit")),
        "q_profit_yoy": lambda: _growth(qv(q, "n_income"), qv(q4, "n_income")),
        "q_profit_qoq": lambda: _growth(qv(q, "n_income"), qv(q1, "n_income")),
        "q_netprofit_yoy": lambda: _growth(qv(q, "n_income_attr_p"), qv(q4, "n_income_attr_p")),
        "q_netprofit_qoq": lambda: _growth(qv(q, "n_income_attr_p"), qv(q1, "n_income_attr_p")),
        "equity_yoy": lambda: _growth(
            d["equity"], _get(x.balance_year_ago, "total_hldr_eqy_exc_min_int", n)
        ),
        "rd_exp": lambda: x.ytd.get("rd_exp", np.full(n, np.nan)),
    }


def fina_indicator(market: Market, q: Query) -> pl.DataFrame:
    """Indicator rows (start_date / end_date filter the report period, as documented).

    A request for one period is answered from that period's rows, built once per market
    horizon with every version ever announced (`Market.memo`) and filtered here by
    today and the request's parameters.
    """
    u = market.universe
    pid = period_param(q)
    if pid == -1:
        return frames.empty("fina_indicator")
    if pid is not None:
        return _from_period(market, q, pid)
    v = versions(market, u.select(q.items("ts_code")), pid, q.today)
    v = _ordered(market, _filtered(v, q), q)
    return _build(market, v)


def _filtered(v: Versions, q: Query) -> Versions:
    """The versions an announcement day or a period range asks for."""
    end = end_days(v.pid) if len(v) else np.zeros(0, dtype=np.int64)
    keep = q.day_matches("ann_date", v.ann)
    lo, hi = q.day("start_date"), q.day("end_date")
    keep &= (end >= (lo or 0)) & (end <= (hi or 10**9))
    return v.take(keep)


def _ordered(market: Market, v: Versions, q: Query) -> Versions:
    """Versions with the published duplicates, newest first, cut to the request's window."""
    twice = (
        noise.uniform(market.seed, "duplicate_fina_indicator", v.stock, v.pid, v.version)
        < DUPLICATE_SHARE
    )
    v = v.take(np.concatenate([np.arange(len(v)), np.flatnonzero(twice)]))
    order = newest_first(market, v.stock, v.pid, v.ann, v.version)
    return v.take(order[q.window(len(order))])


_EVERY_DAY = np.iinfo(np.int64).max  # "today" that sees every version ever announced


def _from_period(market: Market, q: Query, pid: int) -> pl.DataFrame:
    """One period's rows as of the request's today, from the period's kept table."""

    def build() -> tuple[Versions, pl.DataFrame]:
        every = versions(market, np.arange(market.universe.count, dtype=np.int64), pid, _EVERY_DAY)
        v = _ordered(market, every, Query({}, today=_EVERY_DAY))
        return v, _build(market, v)

    v, frame = market.memo(f"fina_indicator:{pid}", build)
    keep = np.maximum(v.ann, v.f_ann) <= q.today
    codes = q.items("ts_code")
    if codes is not None:
        keep &= np.isin(v.stock, market.universe.select(codes))
    keep &= q.day_matches("ann_date", v.ann)
    lo, hi = q.day("start_date"), q.day("end_date")
    end = int(end_days(np.array([pid]))[0])
    if not (lo or 0) <= end <= (hi or 10**9):
        keep[:] = False
    rows = np.flatnonzero(keep)
    rows = rows[q.window(len(rows))]
    if len(rows) == len(v):
        return frame
    return frame.select(pl.all().gather(rows))


def _build(market: Market, v: Versions) -> pl.DataFrame:
    """The indicator rows of versions already filtered and ordered."""
    u = market.universe
    columns: dict[str, A] = {}
    if len(v):
        x = _Inputs(market, v)
        formulas = _field_formulas(x, _derived(x))
        financial = market.fundamentals.comp_type[v.stock] > 1
        general_only = {
            "current_ratio",
            "quick_ratio",
            "cash_ratio",
            "working_capital",
            "networking_capital",
            "current_exint",
            "noncurrent_exint",
            "invturn_days",
            "inv_turn",
            "turn_days",
        }
        for name, formula in formulas.items():
            values = np.asarray(formula(), dtype=np.float64)
            columns[name] = np.where(financial, np.nan, values) if name in general_only else values
    return frames.build(
        "fina_indicator",
        len(v),
        {
            **columns,
            "ts_code": u.ts_code[v.stock],
            "ann_date": v.ann,
            "end_date": end_days(v.pid) if len(v) else [],
            "update_flag": v.version.astype(str),
        },
    )
