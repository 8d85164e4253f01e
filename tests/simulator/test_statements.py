"""Financial statements: identities, year-to-date sums, templates, announcements, versions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cache.catalogue.apis import api_spec
from pipeline.sources.simulator import Simulator
from pipeline.sources.simulator.indicators import _derived, _field_formulas, _Inputs
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.periods import deadline_of, pid_of
from pipeline.sources.simulator.statements import Versions, drivers
from pipeline.sources.simulator.templates import BALANCE, CASHFLOW, INCOME, evaluate
from tests.simulator.helpers import SMALL

CENT = 0.011


@pytest.fixture(scope="module")
def income(sim: Simulator) -> pl.DataFrame:
    return sim.ground_truth("income")


@pytest.fixture(scope="module")
def balance(sim: Simulator) -> pl.DataFrame:
    return sim.ground_truth("balancesheet")


@pytest.fixture(scope="module")
def cashflow(sim: Simulator) -> pl.DataFrame:
    return sim.ground_truth("cashflow")


@pytest.fixture(scope="module")
def originals(income: pl.DataFrame) -> pl.DataFrame:
    """One row per announced report: report_type 1, update_flag 0."""
    return income.filter((pl.col("report_type") == "1") & (pl.col("update_flag") == "0")).unique(
        ["ts_code", "end_date"]
    )


def _close(a: pl.Series, b: pl.Series | float, tol: float = CENT) -> bool:
    return bool(((a - b).abs() <= tol).all())


def test_balance_sheets_balance(balance: pl.DataFrame) -> None:
    assert balance.height > 1500
    assert _close(
        balance["total_assets"], balance["total_liab"] + balance["total_hldr_eqy_inc_min_int"]
    )
    assert _close(balance["total_liab_hldr_eqy"], balance["total_assets"])
    assert _close(
        balance["total_hldr_eqy_inc_min_int"],
        balance["total_hldr_eqy_exc_min_int"] + balance["minority_int"],
    )
    general = balance.filter(pl.col("comp_type") == "1")
    assert _close(general["total_assets"], general["total_cur_assets"] + general["total_nca"])
    assert _close(general["total_liab"], general["total_cur_liab"] + general["total_ncl"])
    assert _close(
        general["accounts_receiv_bill"], general["notes_receiv"] + general["accounts_receiv"]
    )
    parts = ["total_share", "cap_rese", "surplus_rese", "undistr_porfit", "oth_comp_income"]
    assert _close(
        general["total_hldr_eqy_exc_min_int"], general.select(pl.sum_horizontal(parts)).to_series()
    )
    assert (general["total_assets"] > 0).all() and (general["total_liab"] > 0).all()


def test_income_statements_add_up(income: pl.DataFrame) -> None:
    assert _close(
        income["total_profit"],
        income["operate_profit"] + income["non_oper_income"] - income["non_oper_exp"],
    )
    assert _close(income["n_income"], income["total_profit"] - income["income_tax"])
    assert _close(income["n_income"], income["n_income_attr_p"] + income["minority_gain"])
    assert _close(income["t_compr_income"], income["n_income"] + income["oth_compr_income"])
    general = income.filter(pl.col("comp_type") == "1")
    assert _close(general["total_revenue"], general["revenue"])
    expected = (
        general["total_revenue"]
        - general["total_cogs"]
        + general["oth_income"]
        + general["invest_income"]
        + general["fv_value_chg_gain"]
        + general["asset_disp_income"]
    )
    assert _close(general["operate_profit"], expected, 0.05)
    financial = income.filter(pl.col("comp_type") != "1")
    assert _close(financial["operate_profit"], financial["revenue"] - financial["oper_exp"])
    losses = income.filter((pl.col("report_type") == "1") & (pl.col("end_date").dt.month() == 12))
    share_losing = (losses["n_income_attr_p"] < 0).mean()
    assert 0.05 < share_losing < 0.4


def test_cash_flow_statements_reconcile(
    cashflow: pl.DataFrame, income: pl.DataFrame, balance: pl.DataFrame
) -> None:
    assert _close(
        cashflow["c_cash_equ_end_period"],
        cashflow["c_cash_equ_beg_period"] + cashflow["n_incr_cash_cash_equ"],
    )
    flows = (
        cashflow["n_cashflow_act"]
        + cashflow["n_cashflow_inv_act"]
        + cashflow["n_cash_flows_fnc_act"]
        + cashflow["eff_fx_flu_cash"]
    )
    assert _close(cashflow["n_incr_cash_cash_equ"], flows, 0.05)
    assert _close(cashflow["im_net_cashflow_oper_act"], cashflow["n_cashflow_act"])
    keys = ["ts_code", "end_date", "report_type", "update_flag"]
    joined = cashflow.unique(keys).join(income.unique(keys), on=keys, suffix="_inc")
    assert joined.height > 1000 and _close(joined["net_profit"], joined["n_income"])
    ytd = cashflow.filter(
        (pl.col("report_type") == "1")
        & (pl.col("update_flag") == "0")
        & (pl.col("comp_type") == "1")
    )
    with_cash = ytd.join(
        balance.filter(pl.col("update_flag") == "0").unique(["ts_code", "end_date"]),
        on=["ts_code", "end_date"],
    )
    ratio = with_cash["c_cash_equ_end_period"] / with_cash["money_cap"]
    assert (
        (ratio > 0.999) & (ratio < 1.001)
    ).mean() > 0.99  # general companies hold their cash in money_cap


def test_cumulative_figures_are_year_to_date(income: pl.DataFrame, cashflow: pl.DataFrame) -> None:
    for table, field in (
        (income, "revenue"),
        (income, "n_income_attr_p"),
        (cashflow, "n_cashflow_act"),
    ):
        base = table.filter(pl.col("update_flag") == "0").unique(
            ["ts_code", "end_date", "report_type"]
        )
        ytd = base.filter(pl.col("report_type") == "1").select(
            "ts_code", "end_date", value=pl.col(field)
        )
        single = base.filter(pl.col("report_type") == "2").select(
            "ts_code", "end_date", single=pl.col(field)
        )
        assert single.height > 100
        prior = ytd.with_columns(
            pl.col("end_date").dt.offset_by("1q").dt.month_end().alias("end_date")
        ).rename({"value": "before"})
        checked = single.join(ytd, on=["ts_code", "end_date"]).join(
            prior, on=["ts_code", "end_date"], how="left"
        )
        first_quarter = checked.filter(pl.col("end_date").dt.month() == 3)
        assert _close(first_quarter["single"], first_quarter["value"])
        later = checked.filter(
            (pl.col("end_date").dt.month() != 3) & pl.col("before").is_not_null()
        )
        assert later.height > 50 and _close(later["single"], later["value"] - later["before"], 0.05)


def test_announcements_respect_the_statutory_windows(
    sim: Simulator, originals: pl.DataFrame
) -> None:
    listings = sim.ground_truth("stock_basic").select("ts_code", "list_date")
    listed = originals.join(listings, on="ts_code").filter(
        pl.col("ann_date") >= pl.col("list_date")
    )
    deadline = listed["end_date"].map_elements(
        lambda d: deadline_of(pid_of(d)), return_dtype=pl.Date
    )
    listed = listed.with_columns(deadline.alias("deadline"))
    assert (listed["ann_date"] > listed["end_date"]).all()
    inside = listed.filter(pl.col("ann_date") <= pl.col("deadline"))
    late = listed.filter(pl.col("ann_date") > pl.col("deadline"))
    assert inside.height / listed.height > 0.97 and late.height >= 3
    plans = sim.ground_truth("disclosure_date")
    flagged = late.join(plans, on=["ts_code", "end_date"], suffix="_plan")
    assert flagged.height == late.height and flagged["modify_date"].null_count() == 0
    annual = listed.filter(pl.col("end_date").dt.month() == 12).select(
        "ts_code", year=pl.col("end_date").dt.year() + 1, annual_ann=pl.col("ann_date")
    )
    first_quarters = listed.filter(pl.col("end_date").dt.month() == 3).with_columns(
        year=pl.col("end_date").dt.year()
    )
    paired = first_quarters.join(annual, on=["ts_code", "year"])
    assert (paired["ann_date"] >= paired["annual_ann"]).all()
    assert (paired["ann_date"] == paired["annual_ann"]).sum() > 10


def test_disclosure_plans_match_the_announcements(sim: Simulator, originals: pl.DataFrame) -> None:
    plans = sim.ground_truth("disclosure_date")
    joined = plans.join(
        originals.select("ts_code", "end_date", "ann_date"),
        on=["ts_code", "end_date"],
        suffix="_report",
    )
    announced = joined.filter(pl.col("actual_date").is_not_null())
    assert (
        announced.height > 1000 and (announced["actual_date"] == announced["ann_date_report"]).all()
    )
    assert (announced["pre_date"] == announced["actual_date"]).mean() > 0.85
    ahead = plans.filter(pl.col("pre_date") > SMALL.today)
    assert ahead.height > 50 and ahead["actual_date"].null_count() == ahead.height
    assert (plans["ann_date"] <= SMALL.today).all()
    missing = plans.filter(
        pl.col("actual_date").is_null() & (pl.col("pre_date") < dt.date(2024, 5, 1))
    )
    assert missing.height >= 3  # reports that never came (missing quarters)


def test_restatements_add_a_revised_row_and_keep_the_original(
    income: pl.DataFrame, balance: pl.DataFrame
) -> None:
    for table, field in ((income, "revenue"), (balance, "total_assets")):
        keys = ["ts_code", "end_date", "report_type"]
        revised = table.filter(pl.col("update_flag") == "1").unique(keys)
        original = table.filter(pl.col("update_flag") == "0").unique(keys)
        pairs = revised.join(original, on=keys, suffix="_orig")
        assert pairs.height == revised.height >= 30
        assert (pairs["f_ann_date"] > pairs["f_ann_date_orig"]).all()
        assert (pairs["ann_date"] >= pairs["ann_date_orig"]).all()
        assert (pairs["ann_date"] == pairs["ann_date_orig"]).any() and (
            pairs["ann_date"] > pairs["ann_date_orig"]
        ).any()
        assert (pairs[field] != pairs[f"{field}_orig"]).mean() > 0.9


def test_duplicates_and_shifted_actual_dates_occur(income: pl.DataFrame) -> None:
    assert income.height - income.unique().height >= 3
    formal = income.filter(pl.col("report_type") == "1")
    assert (formal["f_ann_date"] < formal["ann_date"]).sum() >= 3
    assert (formal["f_ann_date"] > formal["ann_date"]).sum() >= 3


def test_periods_before_listing_are_announced_late(sim: Simulator, originals: pl.DataFrame) -> None:
    listings = sim.ground_truth("stock_basic").select("ts_code", "list_date")
    old = originals.join(listings, on="ts_code").filter(pl.col("ann_date") < pl.col("list_date"))
    assert old.height >= 10
    assert (old["end_date"] < old["list_date"]).all()
    assert old.filter(pl.col("ann_date") - pl.col("end_date") > dt.timedelta(days=400)).height >= 3


def test_express_and_forecasts_come_before_the_report(
    sim: Simulator, originals: pl.DataFrame
) -> None:
    express = sim.ground_truth("express")
    joined = express.join(originals, on=["ts_code", "end_date"], suffix="_report")
    assert joined.height == express.height >= 20
    assert (joined["ann_date"] < joined["ann_date_report"]).all()
    assert ((joined["revenue"] / joined["revenue_report"] - 1).abs() < 0.03).all()
    forecasts = sim.ground_truth("forecast")
    paired = forecasts.join(originals, on=["ts_code", "end_date"], suffix="_report")
    assert paired.height >= 50
    pending = forecasts.join(originals, on=["ts_code", "end_date"], how="anti")
    plans = sim.ground_truth("disclosure_date").join(
        pending, on=["ts_code", "end_date"], how="semi"
    )
    assert plans.height == pending.height and plans["actual_date"].null_count() == plans.height
    assert (paired["ann_date"] < paired["ann_date_report"]).all()
    assert (paired["first_ann_date"] <= paired["ann_date"]).all() and (
        paired["first_ann_date"] < paired["ann_date"]
    ).any()
    assert set(forecasts["type"]) <= {
        "预增",
        "预减",
        "扭亏",
        "首亏",
        "续亏",
        "续盈",
        "略增",
        "略减",
    }
    assert len(set(forecasts["type"])) >= 5


def test_bank_insurer_and_broker_templates(income: pl.DataFrame, balance: pl.DataFrame) -> None:
    banks = income.filter(pl.col("comp_type") == "2")
    insurers = income.filter(pl.col("comp_type") == "3")
    brokers = income.filter(pl.col("comp_type") == "4")
    general = income.filter(pl.col("comp_type") == "1")
    assert banks.height and insurers.height and brokers.height
    for table in (banks, insurers, brokers):
        assert (
            table["oper_cost"].null_count() == table.height
            and table["sell_exp"].null_count() == table.height
        )
    assert general["oper_cost"].null_count() == 0
    assert banks["int_income"].null_count() == 0 and banks["n_commis_income"].null_count() == 0
    net_interest = banks["int_income"] - banks["int_exp"]
    assert ((net_interest / banks["revenue"]) > 0.5).all()
    assert (
        insurers["prem_earned"].null_count() == 0 and brokers["n_sec_tb_income"].null_count() == 0
    )
    bank_sheets = balance.filter(pl.col("comp_type") == "2")
    assert (
        bank_sheets["decr_in_disbur"].null_count() == 0 and bank_sheets["depos"].null_count() == 0
    )
    assert bank_sheets["total_cur_assets"].null_count() == bank_sheets.height
    assert ((bank_sheets["total_liab"] / bank_sheets["total_assets"]) > 0.88).all()
    assert balance.filter(pl.col("comp_type") == "3")["reser_lins_liab"].null_count() == 0
    assert balance.filter(pl.col("comp_type") == "4")["acting_trading_sec"].null_count() == 0


def test_indicators_follow_the_statements(
    sim: Simulator, income: pl.DataFrame, balance: pl.DataFrame
) -> None:
    indicators = sim.ground_truth("fina_indicator")
    keys = ["ts_code", "end_date", "update_flag"]
    formal = income.filter(pl.col("report_type") == "1").unique(keys)
    assert indicators.unique(keys).height == formal.height
    joined = (
        indicators.unique(keys)
        .join(formal, on=keys, suffix="_inc")
        .join(balance.unique(keys), on=keys, suffix="_bal")
    )
    assert (joined["eps"] == joined["basic_eps"]).all()
    roe = joined["n_income_attr_p"] / joined["total_hldr_eqy_exc_min_int"] * 100
    assert np.allclose(joined["roe"], roe, atol=1e-3)
    general = joined.filter(pl.col("comp_type") == "1")
    margin = (general["revenue"] - general["oper_cost"]) / general["revenue"] * 100
    assert np.allclose(general["grossprofit_margin"], margin, atol=1e-3)
    assert (
        joined.filter(pl.col("comp_type") != "1")["grossprofit_margin"].null_count()
        == joined.filter(pl.col("comp_type") != "1").height
    )
    assert np.allclose(
        joined["debt_to_assets"], joined["total_liab"] / joined["total_assets"] * 100, atol=1e-3
    )


def test_vip_and_plain_calls_agree_and_filters_apply(
    sim: Simulator, originals: pl.DataFrame
) -> None:
    code = originals["ts_code"][0]
    plain = sim.ground_truth("income", ts_code=code, period="20231231")
    vip = sim.ground_truth("income_vip", period="20231231").filter(pl.col("ts_code") == code)
    assert plain.height >= 1 and plain.equals(vip)
    window = sim.ground_truth("income", ts_code=code, start_date="20230101", end_date="20231231")
    assert (
        window.height
        and window["ann_date"].is_between(dt.date(2023, 1, 1), dt.date(2023, 12, 31)).all()
    )
    singles = sim.ground_truth("income_vip", period="20231231", report_type="2")
    assert singles.height and set(singles["report_type"]) == {"2"}
    banks = sim.ground_truth("balancesheet_vip", period="20231231", comp_type="2")
    assert banks.height and set(banks["comp_type"]) == {"2"}
    ratios = sim.ground_truth(
        "fina_indicator", ts_code=code, start_date="20220101", end_date="20221231"
    )
    assert ratios.height and ratios["end_date"].dt.year().unique().to_list() == [2022]
    assert sim.ground_truth("income_vip", period="20231115").height == 0


def test_main_business_splits_revenue(sim: Simulator, originals: pl.DataFrame) -> None:
    parts = sim.ground_truth("fina_mainbz_vip", period="20231231", type="P")
    totals = parts.group_by("ts_code", "end_date").agg(pl.col("bz_sales").sum())
    joined = totals.join(originals, on=["ts_code", "end_date"])
    assert joined.height > 50 and _close(joined["bz_sales"], joined["revenue"], 0.05)
    assert sim.ground_truth("fina_mainbz_vip", period="20230930").height == 0


def test_dividend_plans_progress_through_their_stages(sim: Simulator) -> None:
    plans = sim.ground_truth("dividend")
    done = plans.filter(pl.col("div_proc") == "实施")
    assert done.height > 30
    assert (done["ex_date"] > done["record_date"]).all() and (
        done["imp_ann_date"] < done["record_date"]
    ).all()
    assert (done["cash_div"] <= done["cash_div_tax"]).all()
    assert done.filter(pl.col("stk_div") > 0)["div_listdate"].null_count() == 0
    proposals = plans.filter(pl.col("div_proc") == "预案").select("ts_code", "end_date")
    assert (
        done.select("ts_code", "end_date")
        .join(proposals, on=["ts_code", "end_date"], how="anti")
        .height
        == 0
    )


def test_every_computed_line_is_a_documented_field() -> None:
    market = Market(SMALL)
    stocks = np.arange(market.universe.count)
    pids = np.full(len(stocks), pid_of(dt.date(2023, 12, 31)))
    no = np.zeros(len(stocks), dtype=bool)
    for api, table in (("income", INCOME), ("balancesheet", BALANCE), ("cashflow", CASHFLOW)):
        rows = drivers(market, stocks, pids, no, pids)
        rows.d["cash_end"] = rows.d["cash_start"] = np.zeros(len(stocks))
        lines = set(evaluate(table, rows, market.fundamentals.comp_type[stocks]))
        assert lines <= set(api_spec(api).field_names), lines - set(api_spec(api).field_names)
    x = _Inputs(
        market, Versions(stocks[:20], pids[:20], np.zeros(20, dtype=np.int64), pids[:20], pids[:20])
    )
    formulas = _field_formulas(x, _derived(x))
    assert set(formulas) <= set(api_spec("fina_indicator").field_names)
    assert len(formulas) > 150


@pytest.mark.parametrize(
    "api", ["income_vip", "balancesheet_vip", "cashflow_vip", "fina_indicator_vip"]
)
def test_a_period_answer_is_its_kept_table_filtered_by_today(fresh: Simulator, api: str) -> None:
    """A period is answered from one table kept per period (built here at a later today)
    and filtered at request time: the rows equal the whole-history answer's rows of
    that period as of the earlier today, newest announcement first, and the filters
    apply as they do to the history."""
    base = api.removesuffix("_vip")
    fresh.set_today(dt.date(2024, 6, 28))
    fresh.ground_truth(api, period="20231231")  # builds and keeps the period's table
    fresh.set_today(dt.date(2024, 4, 15))  # mid-season: some reports not out yet
    history = fresh.ground_truth(base).filter(pl.col("end_date") == dt.date(2023, 12, 31))
    answer = fresh.ground_truth(api, period="20231231")
    assert 0 < answer.height == history.height
    assert answer.sort(answer.columns).equals(history.sort(history.columns))
    assert answer["ann_date"].is_sorted(descending=True)
    assert answer["ann_date"].max() <= dt.date(2024, 4, 15)
    day = answer["ann_date"][answer.height // 2]
    one_day = fresh.ground_truth(api, period="20231231", ann_date=day.strftime("%Y%m%d"))
    expected = history.filter(pl.col("ann_date") == day)
    assert 0 < one_day.height == expected.height < answer.height
    assert one_day.sort(one_day.columns).equals(expected.sort(expected.columns))
