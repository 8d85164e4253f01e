"""Statement lines per company type: how each line follows from a company's drivers.

`TEMPLATES[(statement, comp_type)]` computes, for a batch of rows (one stock and one
quarter each), the lines that company type reports; lines a type does not report
stay absent (null). Income and cash-flow lines are single-quarter amounts (the
statements module sums them into year-to-date figures); balance-sheet lines are
period-end levels. Every amount is rounded to the cent first and subtotals are sums
of rounded parts, so the accounting identities hold exactly:
total_cur_assets + total_nca = total_assets = total_liab + total_hldr_eqy_inc_min_int,
operate_profit + non_oper_income - non_oper_exp = total_profit, and so on.

Drivers (`Rows.d`, one value per row): `rev` (single-quarter revenue), ratio drivers
(`gm`, `r_sell`, ...; see fundamentals.DRIVERS), the balance-sheet levels `assets`,
`equity`, `minority`, `shares`, and for cash flows the cash at the quarter's end and
start (`cash_end`, `cash_start`), IPO proceeds `raised` and dividends `dividends`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator import noise

Lines = dict[str, NDArray[np.float64]]


@dataclass(frozen=True)
class Rows:
    """A batch of (stock, quarter) rows and their drivers."""

    seed: int
    stock: NDArray[np.int64]
    pid: NDArray[np.int64]
    d: Lines


Template = Callable[[Rows], Lines]  # the lines one company type reports of a statement


def cents(x: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Amounts rounded to the cent."""
    amounts = np.asarray(x, dtype=np.float64)
    return np.round(amounts, 2)


def add(v: Lines, *parts: str, minus: tuple[str, ...] = ()) -> NDArray[np.float64]:
    """The sum of lines already computed (minus others), rounded to the cent."""
    return cents(sum(v[p] for p in parts) - sum((v[m] for m in minus), np.float64(0.0)))


def split(
    r: Rows, v: Lines, total: NDArray[np.float64], weights: Mapping[str, float], tag: str
) -> None:
    """Share `total` among lines: stable per-stock mix, slight per-quarter drift.

    The last line takes the remainder, so the parts add up to the total to the cent.
    """
    names = list(weights)
    k = np.arange(len(names))
    base = np.array([weights[n] for n in names])
    mix = base * (0.5 + noise.uniform(r.seed, tag, r.stock[:, None], k[None, :]))
    mix *= 0.9 + 0.2 * noise.uniform(
        r.seed, tag + "_q", r.stock[:, None], r.pid[:, None], k[None, :]
    )
    mix /= mix.sum(axis=1, keepdims=True)
    parts = cents(total[:, None] * mix)
    for i, name in enumerate(names[:-1]):
        v[name] = parts[:, i]
    v[names[-1]] = cents(total - parts[:, :-1].sum(axis=1))


def _wiggle(r: Rows, tag: str, spread: float) -> NDArray[np.float64]:
    return 1.0 + spread * noise.normal(r.seed, tag, r.stock, r.pid)


# ---------------------------------------------------------------- income statements


def _profit_after_operations(r: Rows, v: Lines) -> None:
    """From operate_profit down to comprehensive income: shared by every template."""
    d, rev = r.d, r.d["rev"]
    v["non_oper_income"] = cents(rev * d["r_nonop_in"])
    v["non_oper_exp"] = cents(rev * d["r_nonop_out"])
    v["nca_disploss"] = cents(v["non_oper_exp"] * 0.3)
    v["total_profit"] = add(v, "operate_profit", "non_oper_income", minus=("non_oper_exp",))
    tp = v["total_profit"]
    v["income_tax"] = cents(np.where(tp > 0, tp * d["tax_rate"], tp * d["tax_rate"] * 0.3))
    v["n_income"] = add(v, "total_profit", minus=("income_tax",))
    v["continued_net_profit"] = v["n_income"]
    v["minority_gain"] = cents(v["n_income"] * d["mino"])
    v["n_income_attr_p"] = add(v, "n_income", minus=("minority_gain",))
    v["oth_compr_income"] = cents(rev * d["r_oci"])
    v["t_compr_income"] = add(v, "n_income", "oth_compr_income")
    v["compr_inc_attr_p"] = cents(v["n_income_attr_p"] + v["oth_compr_income"] * (1 - d["mino"]))
    v["compr_inc_attr_m_s"] = add(v, "t_compr_income", minus=("compr_inc_attr_p",))
    v["fin_exp_int_exp"] = v.get("fin_exp_int_exp", cents(rev * 0.002))
    v["ebit"] = add(v, "total_profit", "fin_exp_int_exp")
    v["ebitda"] = cents(v["ebit"] + rev * d["r_da"])


def income_general(r: Rows) -> Lines:
    """General business (comp_type 1): revenue, cost of sales, period expenses."""
    d, rev = r.d, r.d["rev"]
    v: Lines = {"revenue": cents(rev)}
    v["total_revenue"] = v["revenue"]
    v["oper_cost"] = cents(rev * (1 - d["gm"]))
    v["biz_tax_surchg"] = cents(rev * d["r_tax"])
    v["sell_exp"] = cents(rev * d["r_sell"])
    v["admin_exp"] = cents(rev * d["r_admin"])
    v["rd_exp"] = cents(rev * d["r_rd"])
    v["fin_exp"] = cents(rev * d["r_fin"])
    v["fin_exp_int_exp"] = cents(rev * (np.maximum(d["r_fin"], 0) * 1.3 + 0.001))
    v["fin_exp_int_inc"] = add(v, "fin_exp_int_exp", minus=("fin_exp",))
    v["assets_impair_loss"] = cents(rev * d["r_imp"])
    v["credit_impa_loss"] = cents(rev * d["r_credit"])
    v["total_cogs"] = add(
        v,
        "oper_cost",
        "biz_tax_surchg",
        "sell_exp",
        "admin_exp",
        "rd_exp",
        "fin_exp",
        "assets_impair_loss",
        "credit_impa_loss",
    )
    v["total_opcost"] = v["total_cogs"]
    v["oth_income"] = cents(rev * d["r_oi"])
    v["invest_income"] = cents(rev * d["r_inv"])
    v["ass_invest_income"] = cents(v["invest_income"] * 0.4)
    v["fv_value_chg_gain"] = cents(rev * d["r_fv"])
    v["asset_disp_income"] = cents(rev * d["r_disp"])
    v["operate_profit"] = add(
        v,
        "total_revenue",
        "oth_income",
        "invest_income",
        "fv_value_chg_gain",
        "asset_disp_income",
        minus=("total_cogs",),
    )
    _profit_after_operations(r, v)
    return v


def income_bank(r: Rows) -> Lines:
    """Banks (comp_type 2): interest and fee income, no cost of sales."""
    d, rev = r.d, r.d["rev"]
    v: Lines = {}
    v["int_income"] = cents(rev * d["r_core"] * 2.1)
    v["int_exp"] = cents(v["int_income"] - rev * d["r_core"])
    v["comm_income"] = cents(rev * d["r_fee"] * 1.12)
    v["comm_exp"] = cents(v["comm_income"] - rev * d["r_fee"])
    v["n_commis_income"] = add(v, "comm_income", minus=("comm_exp",))
    v["invest_income"] = cents(rev * d["r_inv"])
    v["fv_value_chg_gain"] = cents(rev * d["r_fv"])
    v["forex_gain"] = cents(rev * 0.004)
    v["oth_income"] = cents(rev * d["r_oi"])
    v["revenue"] = cents(rev)
    v["oth_b_income"] = cents(
        rev
        - (v["int_income"] - v["int_exp"])
        - v["n_commis_income"]
        - v["invest_income"]
        - v["fv_value_chg_gain"]
        - v["forex_gain"]
        - v["oth_income"]
    )
    v["total_revenue"] = v["revenue"]
    v["biz_tax_surchg"] = cents(rev * d["r_tax"])
    v["admin_exp"] = cents(rev * d["r_admin"])
    v["credit_impa_loss"] = cents(rev * d["r_credit"])
    v["oth_impair_loss_assets"] = cents(rev * d["r_imp"])
    v["other_bus_cost"] = cents(rev * 0.01)
    v["oper_exp"] = add(
        v,
        "biz_tax_surchg",
        "admin_exp",
        "credit_impa_loss",
        "oth_impair_loss_assets",
        "other_bus_cost",
    )
    v["operate_profit"] = add(v, "total_revenue", minus=("oper_exp",))
    _profit_after_operations(r, v)
    return v


def income_insurer(r: Rows) -> Lines:
    """Insurers (comp_type 3): premiums earned, claims and reserves."""
    d, rev = r.d, r.d["rev"]
    v: Lines = {}
    v["prem_income"] = cents(rev * d["r_core"])
    v["reins_income"] = cents(v["prem_income"] * 0.01)
    v["out_prem"] = cents(v["prem_income"] * 0.06)
    v["une_prem_reser"] = cents(v["prem_income"] * 0.02)
    v["prem_earned"] = add(v, "prem_income", minus=("out_prem", "une_prem_reser"))
    v["invest_income"] = cents(rev * d["r_inv"])
    v["fv_value_chg_gain"] = cents(rev * d["r_fv"])
    v["revenue"] = cents(rev)
    v["oth_b_income"] = add(
        v, "revenue", minus=("prem_earned", "invest_income", "fv_value_chg_gain")
    )
    v["total_revenue"] = v["revenue"]
    v["prem_refund"] = cents(rev * 0.05)
    v["compens_payout"] = cents(rev * d["r_claims"])
    v["compens_payout_refu"] = cents(v["compens_payout"] * 0.05)
    v["reser_insur_liab"] = cents(rev * 0.30)
    v["insur_reser_refu"] = cents(v["reser_insur_liab"] * 0.02)
    v["div_payt"] = cents(rev * 0.03)
    v["reins_exp"] = cents(rev * 0.004)
    v["reins_cost_refund"] = cents(v["out_prem"] * 0.3)
    v["insurance_exp"] = add(
        v,
        "prem_refund",
        "compens_payout",
        "reser_insur_liab",
        "div_payt",
        minus=("compens_payout_refu", "insur_reser_refu"),
    )
    v["biz_tax_surchg"] = cents(rev * d["r_tax"])
    v["comm_exp"] = cents(rev * 0.07)
    v["admin_exp"] = cents(rev * d["r_admin"])
    v["other_bus_cost"] = cents(rev * 0.02)
    v["credit_impa_loss"] = cents(rev * d["r_credit"])
    v["oper_exp"] = add(
        v,
        "insurance_exp",
        "reins_exp",
        "biz_tax_surchg",
        "comm_exp",
        "admin_exp",
        "other_bus_cost",
        "credit_impa_loss",
        minus=("reins_cost_refund",),
    )
    v["operate_profit"] = add(v, "total_revenue", minus=("oper_exp",))
    _profit_after_operations(r, v)
    return v


def income_broker(r: Rows) -> Lines:
    """Securities firms (comp_type 4): brokerage, underwriting, asset management, trading."""
    d, rev = r.d, r.d["rev"]
    v: Lines = {}
    v["n_sec_tb_income"] = cents(rev * d["r_core"])
    v["n_sec_uw_income"] = cents(rev * 0.07)
    v["n_asset_mg_income"] = cents(rev * 0.05)
    v["n_commis_income"] = cents(
        v["n_sec_tb_income"] + v["n_sec_uw_income"] + v["n_asset_mg_income"] + rev * 0.04
    )
    v["comm_income"] = cents(v["n_commis_income"] * 1.15)
    v["comm_exp"] = add(v, "comm_income", minus=("n_commis_income",))
    v["int_income"] = cents(rev * 0.35)
    v["int_exp"] = cents(rev * 0.25)
    v["invest_income"] = cents(rev * d["r_inv"])
    v["fv_value_chg_gain"] = cents(rev * d["r_fv"])
    v["revenue"] = cents(rev)
    v["oth_b_income"] = cents(
        rev
        - v["n_commis_income"]
        - (v["int_income"] - v["int_exp"])
        - v["invest_income"]
        - v["fv_value_chg_gain"]
    )
    v["total_revenue"] = v["revenue"]
    v["biz_tax_surchg"] = cents(rev * d["r_tax"])
    v["admin_exp"] = cents(rev * d["r_admin"])
    v["credit_impa_loss"] = cents(rev * d["r_credit"])
    v["other_bus_cost"] = cents(rev * 0.04)
    v["oper_exp"] = add(v, "biz_tax_surchg", "admin_exp", "credit_impa_loss", "other_bus_cost")
    v["operate_profit"] = add(v, "total_revenue", minus=("oper_exp",))
    _profit_after_operations(r, v)
    return v


# ---------------------------------------------------------------- balance sheets


def _equity(r: Rows, v: Lines, reserves: Mapping[str, float]) -> None:
    """Equity lines: share capital, reserves, retained earnings as the remainder."""
    d = r.d
    equity, positive = cents(d["equity"]), np.maximum(d["equity"], 0.0)
    v["total_share"] = cents(d["shares"])
    v["cap_rese"] = cents(positive * d["cap_ratio"])
    v["surplus_rese"] = cents(positive * 0.08)
    v["oth_comp_income"] = cents(equity * 0.01)
    for name, share in reserves.items():
        v[name] = cents(positive * share)
    v["undistr_porfit"] = cents(
        equity
        - v["total_share"]
        - v["cap_rese"]
        - v["surplus_rese"]
        - v["oth_comp_income"]
        - sum((v[n] for n in reserves), np.float64(0.0))
    )
    v["total_hldr_eqy_exc_min_int"] = equity
    v["minority_int"] = cents(d["minority"])
    v["total_hldr_eqy_inc_min_int"] = add(v, "total_hldr_eqy_exc_min_int", "minority_int")
    v["total_liab"] = cents(cents(d["assets"]) - v["total_hldr_eqy_inc_min_int"])


def _balance_totals(v: Lines) -> None:
    v["total_liab_hldr_eqy"] = add(v, "total_liab", "total_hldr_eqy_inc_min_int")


def balance_general(r: Rows) -> Lines:
    """General business: current / non-current split of assets and liabilities."""
    d = r.d
    v: Lines = {"total_assets": cents(d["assets"])}
    _equity(r, v, {})
    v["total_cur_assets"] = cents(v["total_assets"] * d["ca_ratio"])
    v["total_nca"] = add(v, "total_assets", minus=("total_cur_assets",))
    split(
        r,
        v,
        v["total_cur_assets"],
        {
            "money_cap": 0.25,
            "trad_asset": 0.03,
            "notes_receiv": 0.04,
            "accounts_receiv": 0.20,
            "receiv_financing": 0.02,
            "prepayment": 0.04,
            "oth_receiv": 0.03,
            "inventories": 0.22,
            "contract_assets": 0.02,
            "nca_within_1y": 0.01,
            "oth_cur_assets": 0.04,
        },
        "bs_ca",
    )
    split(
        r,
        v,
        v["total_nca"],
        {
            "lt_eqt_invest": 0.08,
            "oth_eq_invest": 0.02,
            "oth_illiq_fin_assets": 0.02,
            "invest_real_estate": 0.02,
            "fix_assets": 0.40,
            "cip": 0.08,
            "intan_assets": 0.10,
            "goodwill": 0.05,
            "use_right_assets": 0.02,
            "lt_amor_exp": 0.02,
            "defer_tax_assets": 0.03,
            "oth_nca": 0.04,
        },
        "bs_nca",
    )
    v["total_cur_liab"] = cents(v["total_liab"] * d["cl_ratio"])
    v["total_ncl"] = add(v, "total_liab", minus=("total_cur_liab",))
    split(
        r,
        v,
        v["total_cur_liab"],
        {
            "st_borr": 0.20,
            "notes_payable": 0.10,
            "acct_payable": 0.30,
            "contract_liab": 0.08,
            "adv_receipts": 0.02,
            "payroll_payable": 0.05,
            "taxes_payable": 0.04,
            "oth_payable": 0.06,
            "non_cur_liab_due_1y": 0.05,
            "oth_cur_liab": 0.04,
        },
        "bs_cl",
    )
    split(
        r,
        v,
        v["total_ncl"],
        {
            "lt_borr": 0.50,
            "bond_payable": 0.15,
            "lease_liab": 0.05,
            "lt_payable": 0.05,
            "estimated_liab": 0.03,
            "defer_tax_liab": 0.03,
            "defer_inc_non_cur_liab": 0.04,
            "oth_ncl": 0.05,
        },
        "bs_ncl",
    )
    v["accounts_receiv_bill"] = add(v, "notes_receiv", "accounts_receiv")
    v["accounts_pay"] = add(v, "notes_payable", "acct_payable")
    v["oth_rcv_total"] = v["oth_receiv"]
    v["fix_assets_total"] = v["fix_assets"]
    v["cip_total"] = v["cip"]
    v["oth_pay_total"] = v["oth_payable"]
    v["long_pay_total"] = v["lt_payable"]
    _balance_totals(v)
    return v


def balance_bank(r: Rows) -> Lines:
    """Banks: loans and deposits, no current / non-current split."""
    v: Lines = {"total_assets": cents(r.d["assets"])}
    _equity(r, v, {"ordin_risk_reser": 0.12, "oth_eqt_tools": 0.05})
    split(
        r,
        v,
        v["total_assets"],
        {
            "cash_reser_cb": 0.07,
            "depos_in_oth_bfi": 0.02,
            "prec_metals": 0.003,
            "loanto_oth_bank_fi": 0.03,
            "deriv_assets": 0.005,
            "pur_resale_fa": 0.02,
            "decr_in_disbur": 0.55,
            "trad_asset": 0.05,
            "debt_invest": 0.15,
            "oth_debt_invest": 0.05,
            "oth_eq_invest": 0.002,
            "lt_eqt_invest": 0.003,
            "fix_assets": 0.005,
            "cip": 0.001,
            "intan_assets": 0.001,
            "goodwill": 0.0005,
            "defer_tax_assets": 0.005,
            "oth_assets": 0.01,
        },
        "bs_bank_a",
    )
    split(
        r,
        v,
        v["total_liab"],
        {
            "cb_borr": 0.03,
            "depos_oth_bfi": 0.08,
            "loan_oth_bank": 0.02,
            "trading_fl": 0.005,
            "deriv_liab": 0.005,
            "sold_for_repur_fa": 0.02,
            "depos": 0.72,
            "payroll_payable": 0.003,
            "taxes_payable": 0.002,
            "estimated_liab": 0.001,
            "bond_payable": 0.10,
            "defer_tax_liab": 0.0005,
            "oth_liab": 0.01,
        },
        "bs_bank_l",
    )
    v["depos_ib_deposits"] = add(v, "depos", "depos_oth_bfi")
    v["fix_assets_total"] = v["fix_assets"]
    v["cip_total"] = v["cip"]
    _balance_totals(v)
    return v


def balance_insurer(r: Rows) -> Lines:
    """Insurers: investment assets, insurance contract reserves."""
    v: Lines = {"total_assets": cents(r.d["assets"])}
    _equity(r, v, {"ordin_risk_reser": 0.08})
    split(
        r,
        v,
        v["total_assets"],
        {
            "money_cap": 0.03,
            "trad_asset": 0.08,
            "deriv_assets": 0.001,
            "pur_resale_fa": 0.01,
            "premium_receiv": 0.01,
            "reinsur_receiv": 0.005,
            "reinsur_res_receiv": 0.005,
            "ph_pledge_loans": 0.03,
            "time_deposits": 0.08,
            "debt_invest": 0.30,
            "oth_debt_invest": 0.15,
            "oth_eq_invest": 0.05,
            "lt_eqt_invest": 0.05,
            "refund_cap_depos": 0.005,
            "invest_real_estate": 0.01,
            "fix_assets": 0.01,
            "intan_assets": 0.005,
            "defer_tax_assets": 0.005,
            "indep_acct_assets": 0.01,
            "oth_assets": 0.16,
        },
        "bs_ins_a",
    )
    split(
        r,
        v,
        v["total_liab"],
        {
            "st_borr": 0.005,
            "sold_for_repur_fa": 0.06,
            "prem_receiv_adva": 0.005,
            "comm_payable": 0.003,
            "payable_to_reinsurer": 0.003,
            "payroll_payable": 0.005,
            "taxes_payable": 0.002,
            "indem_payable": 0.02,
            "policy_div_payable": 0.02,
            "ph_invest": 0.08,
            "reser_une_prem": 0.03,
            "reser_outstd_claims": 0.03,
            "reser_lins_liab": 0.55,
            "reser_lthins_liab": 0.08,
            "bond_payable": 0.02,
            "indept_acc_liab": 0.01,
            "oth_liab": 0.05,
        },
        "bs_ins_l",
    )
    v["rsrv_insur_cont"] = add(
        v, "reser_une_prem", "reser_outstd_claims", "reser_lins_liab", "reser_lthins_liab"
    )
    v["fix_assets_total"] = v["fix_assets"]
    _balance_totals(v)
    return v


def balance_broker(r: Rows) -> Lines:
    """Securities firms: client funds, margin loans, trading assets."""
    v: Lines = {"total_assets": cents(r.d["assets"])}
    _equity(r, v, {"ordin_risk_reser": 0.10})
    split(
        r,
        v,
        v["total_assets"],
        {
            "money_cap": 0.20,
            "sett_rsrv": 0.04,
            "lending_funds": 0.12,
            "trad_asset": 0.25,
            "deriv_assets": 0.005,
            "pur_resale_fa": 0.08,
            "refund_depos": 0.03,
            "debt_invest": 0.03,
            "oth_debt_invest": 0.10,
            "oth_eq_invest": 0.02,
            "lt_eqt_invest": 0.03,
            "fix_assets": 0.005,
            "intan_assets": 0.003,
            "defer_tax_assets": 0.003,
            "oth_assets": 0.05,
        },
        "bs_brk_a",
    )
    v["client_depos"] = cents(v["money_cap"] * 0.75)
    v["client_prov"] = cents(v["sett_rsrv"] * 0.8)
    split(
        r,
        v,
        v["total_liab"],
        {
            "st_fin_payable": 0.05,
            "loan_oth_bank": 0.03,
            "trading_fl": 0.03,
            "deriv_liab": 0.005,
            "sold_for_repur_fa": 0.15,
            "acting_trading_sec": 0.30,
            "acting_uw_sec": 0.002,
            "payroll_payable": 0.02,
            "taxes_payable": 0.003,
            "bond_payable": 0.20,
            "lt_borr": 0.01,
            "oth_liab": 0.05,
        },
        "bs_brk_l",
    )
    v["fix_assets_total"] = v["fix_assets"]
    _balance_totals(v)
    return v


def cash_of(comp_type: NDArray[np.int64], balance: Lines) -> NDArray[np.float64]:
    """Cash and equivalents as the cash-flow statement sees them, from balance-sheet rows
    (as `evaluate` returns them: NaN where a company type lacks a line)."""

    def line(name: str) -> NDArray[np.float64]:
        return np.nan_to_num(balance.get(name, np.zeros(len(comp_type))))

    bank = line("cash_reser_cb") * 0.25 + line("depos_in_oth_bfi")
    broker = line("money_cap") + line("sett_rsrv")
    return cents(
        np.where(comp_type == 2, bank, np.where(comp_type == 4, broker, line("money_cap")))
    )


# ---------------------------------------------------------------- cash-flow statements


def _operating_general(r: Rows, v: Lines, inc: Lines) -> None:
    d, rev = r.d, r.d["rev"]
    v["c_fr_sale_sg"] = cents(inc["total_revenue"] * 1.1 * _wiggle(r, "cf_sales", 0.04))
    v["recp_tax_rends"] = cents(rev * 0.005)
    v["c_fr_oth_operate_a"] = cents(rev * 0.02)
    v["c_inf_fr_operate_a"] = add(v, "c_fr_sale_sg", "recp_tax_rends", "c_fr_oth_operate_a")
    v["c_paid_goods_s"] = cents(inc["oper_cost"] * 1.08 * _wiggle(r, "cf_goods", 0.05))
    v["c_paid_to_for_empl"] = cents(rev * d["r_empl"])
    v["c_paid_for_taxes"] = cents(
        np.maximum(inc["income_tax"], 0) + inc["biz_tax_surchg"] + rev * 0.05
    )
    v["oth_cash_pay_oper_act"] = cents((inc["sell_exp"] + inc["admin_exp"]) * 0.6)
    v["st_cash_out_act"] = add(
        v, "c_paid_goods_s", "c_paid_to_for_empl", "c_paid_for_taxes", "oth_cash_pay_oper_act"
    )


def _operating_bank(r: Rows, v: Lines, inc: Lines) -> None:
    rev = r.d["rev"]
    v["n_depos_incr_fi"] = cents(rev * 3.0 * _wiggle(r, "cf_deposits", 0.6))
    v["n_incr_loans_cb"] = cents(rev * 0.1 * _wiggle(r, "cf_cb", 1.0))
    v["n_inc_borr_oth_fi"] = cents(rev * 0.2 * _wiggle(r, "cf_interbank", 1.0))
    v["ifc_cash_incr"] = cents((inc["int_income"] + inc["comm_income"]) * 0.95)
    v["c_fr_oth_operate_a"] = cents(rev * 0.1)
    v["c_inf_fr_operate_a"] = add(
        v,
        "n_depos_incr_fi",
        "n_incr_loans_cb",
        "n_inc_borr_oth_fi",
        "ifc_cash_incr",
        "c_fr_oth_operate_a",
    )
    v["n_incr_clt_loan_adv"] = cents(rev * 2.5 * _wiggle(r, "cf_loans", 0.5))
    v["n_incr_dep_cbob"] = cents(rev * 0.1 * _wiggle(r, "cf_dep_cb", 1.0))
    v["pay_handling_chrg"] = cents((inc["int_exp"] + inc["comm_exp"]) * 0.9)
    v["c_paid_to_for_empl"] = cents(inc["admin_exp"] * 0.6)
    v["c_paid_for_taxes"] = cents(np.maximum(inc["income_tax"], 0) + inc["biz_tax_surchg"])
    v["oth_cash_pay_oper_act"] = cents(rev * 0.1)
    v["st_cash_out_act"] = add(
        v,
        "n_incr_clt_loan_adv",
        "n_incr_dep_cbob",
        "pay_handling_chrg",
        "c_paid_to_for_empl",
        "c_paid_for_taxes",
        "oth_cash_pay_oper_act",
    )


def _operating_insurer(r: Rows, v: Lines, inc: Lines) -> None:
    rev = r.d["rev"]
    v["prem_fr_orig_contr"] = cents(inc["prem_income"] * _wiggle(r, "cf_prem", 0.03))
    v["n_reinsur_prem"] = cents(rev * 0.01)
    v["n_incr_insured_dep"] = cents(rev * 0.05 * _wiggle(r, "cf_insured", 0.5))
    v["c_fr_oth_operate_a"] = cents(rev * 0.03)
    v["c_inf_fr_operate_a"] = add(
        v, "prem_fr_orig_contr", "n_reinsur_prem", "n_incr_insured_dep", "c_fr_oth_operate_a"
    )
    v["c_pay_claims_orig_inco"] = cents(inc["compens_payout"] * 0.95)
    v["pay_handling_chrg"] = cents(inc["comm_exp"])
    v["pay_comm_insur_plcy"] = cents(inc["div_payt"] * 0.9)
    v["c_paid_to_for_empl"] = cents(inc["admin_exp"] * 0.5)
    v["c_paid_for_taxes"] = cents(np.maximum(inc["income_tax"], 0) + inc["biz_tax_surchg"])
    v["oth_cash_pay_oper_act"] = cents(rev * 0.05)
    v["st_cash_out_act"] = add(
        v,
        "c_pay_claims_orig_inco",
        "pay_handling_chrg",
        "pay_comm_insur_plcy",
        "c_paid_to_for_empl",
        "c_paid_for_taxes",
        "oth_cash_pay_oper_act",
    )


def _operating_broker(r: Rows, v: Lines, inc: Lines) -> None:
    rev = r.d["rev"]
    v["n_incr_disp_tfa"] = cents(rev * 0.5 * noise.normal(r.seed, "cf_tfa", r.stock, r.pid))
    v["ifc_cash_incr"] = cents((inc["int_income"] + inc["comm_income"]) * 0.97)
    v["n_incr_loans_oth_bank"] = cents(rev * 0.2 * _wiggle(r, "cf_interbank", 1.0))
    v["n_cap_incr_repur"] = cents(rev * 0.3 * noise.normal(r.seed, "cf_repo", r.stock, r.pid))
    v["net_cash_rece_sec"] = cents(rev * 1.0 * noise.normal(r.seed, "cf_clients", r.stock, r.pid))
    v["c_fr_oth_operate_a"] = cents(rev * 0.05)
    v["c_inf_fr_operate_a"] = add(
        v,
        "n_incr_disp_tfa",
        "ifc_cash_incr",
        "n_incr_loans_oth_bank",
        "n_cap_incr_repur",
        "net_cash_rece_sec",
        "c_fr_oth_operate_a",
    )
    v["pay_handling_chrg"] = cents((inc["int_exp"] + inc["comm_exp"]) * 0.9)
    v["c_paid_to_for_empl"] = cents(inc["admin_exp"] * 0.6)
    v["c_paid_for_taxes"] = cents(np.maximum(inc["income_tax"], 0) + inc["biz_tax_surchg"])
    v["oth_cash_pay_oper_act"] = cents(rev * 0.1)
    v["st_cash_out_act"] = add(
        v, "pay_handling_chrg", "c_paid_to_for_empl", "c_paid_for_taxes", "oth_cash_pay_oper_act"
    )


def _investing_financing_and_reconciliation(r: Rows, v: Lines, inc: Lines, scale: float) -> None:
    """Investing flows, financing flows (borrowing balances the cash), indirect method."""
    d, rev = r.d, r.d["rev"]
    v["n_cashflow_act"] = add(v, "c_inf_fr_operate_a", minus=("st_cash_out_act",))
    v["c_disp_withdrwl_invest"] = cents(rev * 0.05 * scale * _wiggle(r, "cf_disinvest", 0.3))
    v["c_recp_return_invest"] = cents(np.maximum(inc["invest_income"], 0) * 0.7)
    v["n_recp_disp_fiolta"] = cents(rev * 0.002)
    v["oth_recp_ral_inv_act"] = cents(rev * 0.005)
    v["stot_inflows_inv_act"] = add(
        v,
        "c_disp_withdrwl_invest",
        "c_recp_return_invest",
        "n_recp_disp_fiolta",
        "oth_recp_ral_inv_act",
    )
    v["c_pay_acq_const_fiolta"] = cents(rev * d["r_capex"] * _wiggle(r, "cf_capex", 0.3))
    v["c_paid_invest"] = cents(rev * 0.06 * scale * _wiggle(r, "cf_invest", 0.3))
    v["oth_pay_ral_inv_act"] = cents(rev * 0.003)
    v["stot_out_inv_act"] = add(v, "c_pay_acq_const_fiolta", "c_paid_invest", "oth_pay_ral_inv_act")
    v["n_cashflow_inv_act"] = add(v, "stot_inflows_inv_act", minus=("stot_out_inv_act",))
    v["eff_fx_flu_cash"] = cents(rev * 0.0005 * noise.normal(r.seed, "cf_fx", r.stock, r.pid))
    v["c_recp_cap_contrib"] = cents(d["raised"])
    v["c_pay_dist_dpcp_int_exp"] = cents(d["dividends"] + inc["fin_exp_int_exp"])
    change = cents(d["cash_end"] - d["cash_start"])
    gap = change - v["n_cashflow_act"] - v["n_cashflow_inv_act"] - v["eff_fx_flu_cash"]
    gap = gap - v["c_recp_cap_contrib"] + v["c_pay_dist_dpcp_int_exp"]
    routine = cents(rev * 0.3 * scale)
    v["c_recp_borrow"] = cents(routine + np.maximum(gap, 0))
    v["c_prepay_amt_borr"] = cents(routine + np.maximum(-gap, 0))
    v["stot_cash_in_fnc_act"] = add(v, "c_recp_cap_contrib", "c_recp_borrow")
    v["stot_cashout_fnc_act"] = add(v, "c_prepay_amt_borr", "c_pay_dist_dpcp_int_exp")
    v["n_cash_flows_fnc_act"] = add(v, "stot_cash_in_fnc_act", minus=("stot_cashout_fnc_act",))
    v["n_incr_cash_cash_equ"] = add(
        v, "n_cashflow_act", "n_cashflow_inv_act", "n_cash_flows_fnc_act", "eff_fx_flu_cash"
    )
    v["im_n_incr_cash_equ"] = v["n_incr_cash_cash_equ"]
    v["free_cashflow"] = add(v, "n_cashflow_act", minus=("c_pay_acq_const_fiolta",))
    v["net_profit"] = inc["n_income"]
    v["finan_exp"] = inc.get("fin_exp", inc["fin_exp_int_exp"])
    v["credit_impa_loss"] = inc["credit_impa_loss"]
    v["prov_depr_assets"] = inc.get("assets_impair_loss", cents(rev * 0.0))
    v["depr_fa_coga_dpba"] = cents(rev * d["r_da"] * 0.8)
    v["amort_intang_assets"] = cents(rev * d["r_da"] * 0.15)
    v["lt_amort_deferred_exp"] = cents(rev * d["r_da"] * 0.05)
    v["loss_fv_chg"] = cents(-inc["fv_value_chg_gain"])
    v["invest_loss"] = cents(-inc["invest_income"])
    v["decr_def_inc_tax_assets"] = cents(
        rev * 0.001 * noise.normal(r.seed, "cf_dta", r.stock, r.pid)
    )
    v["decr_inventories"] = cents(rev * 0.02 * noise.normal(r.seed, "cf_inventory", r.stock, r.pid))
    v["decr_oper_payable"] = cents(
        rev * 0.03 * noise.normal(r.seed, "cf_receivable", r.stock, r.pid)
    )
    v["im_net_cashflow_oper_act"] = v["n_cashflow_act"]
    v["others"] = add(
        v,
        "im_net_cashflow_oper_act",
        minus=(
            "net_profit",
            "finan_exp",
            "credit_impa_loss",
            "prov_depr_assets",
            "depr_fa_coga_dpba",
            "amort_intang_assets",
            "lt_amort_deferred_exp",
            "loss_fv_chg",
            "invest_loss",
            "decr_def_inc_tax_assets",
            "decr_inventories",
            "decr_oper_payable",
        ),
    )


def _cashflow(
    operating: Callable[[Rows, Lines, Lines], None], income: Template, scale: float
) -> Template:
    def build(r: Rows) -> Lines:
        inc = income(r)
        v: Lines = {}
        operating(r, v, inc)
        _investing_financing_and_reconciliation(r, v, inc, scale)
        return v

    build.__doc__ = f"Cash flows of a company using {income.__name__}'s income statement."
    return build


INCOME = {1: income_general, 2: income_bank, 3: income_insurer, 4: income_broker}
BALANCE = {1: balance_general, 2: balance_bank, 3: balance_insurer, 4: balance_broker}
CASHFLOW = {
    1: _cashflow(_operating_general, income_general, 1.0),
    2: _cashflow(_operating_bank, income_bank, 10.0),
    3: _cashflow(_operating_insurer, income_insurer, 10.0),
    4: _cashflow(_operating_broker, income_broker, 5.0),
}


def evaluate(
    table: Mapping[int, Callable[[Rows], Lines]], rows: Rows, comp_type: NDArray[np.int64]
) -> Lines:
    """Run each row through its company type's template; lines a type lacks are NaN."""
    out: Lines = {}
    n = len(rows.stock)
    for kind in np.unique(comp_type):
        pick = np.flatnonzero(comp_type == kind)
        subset = Rows(
            rows.seed, rows.stock[pick], rows.pid[pick], {k: v[pick] for k, v in rows.d.items()}
        )
        for name, values in table[int(kind)](subset).items():
            out.setdefault(name, np.full(n, np.nan))[pick] = values
    return out
