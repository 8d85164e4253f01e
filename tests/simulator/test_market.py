"""The market a quant would recognise: calendar, codes, boards, bands, halts, adjustments."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import numpy as np
import polars as pl
import pytest

from pipeline.sources.simulator import Simulator, SimulatorConfig
from pipeline.sources.simulator.calendar import TradingCalendar, holidays, spring_festival
from pipeline.sources.simulator.config import SimulatorConfigError
from pipeline.sources.simulator.universe import build_universe
from tests.simulator.helpers import SMALL

CODE_PATTERNS = {
    ("SSE", "主板"): r"^60[0-5]\d{3}\.SH$",
    ("SSE", "科创板"): r"^688\d{3}\.SH$",
    ("SZSE", "主板"): r"^00[0-3]\d{3}\.SZ$",
    ("SZSE", "创业板"): r"^30[01]\d{3}\.SZ$",
    ("BSE", "北交所"): r"^(43|83|87|920)\d{3,4}\.BJ$",
}
BOARD_OPENS = {
    "科创板": dt.date(2019, 7, 22),
    "创业板": dt.date(2009, 10, 30),
    "北交所": dt.date(2020, 7, 27),
}


def test_calendar_closes_weekends_and_chinese_holidays(sim: Simulator) -> None:
    cal = sim.ground_truth("trade_cal", exchange="SSE", start_date="20150101")
    days = cal.with_columns(pl.col("cal_date").dt.weekday().alias("weekday"))
    assert days.filter(pl.col("weekday") >= 6)["is_open"].unique().to_list() == ["0"]
    for year in range(2015, 2025):
        closed = set(days.filter(pl.col("is_open") == "0")["cal_date"].to_list())
        assert {dt.date(year, 10, d) for d in range(1, 8)} <= closed
        festival = spring_festival(year)
        assert {festival + dt.timedelta(days=k) for k in range(-1, 6)} <= closed
        opened = days.filter(
            (pl.col("is_open") == "1") & (pl.col("cal_date").dt.year() == year)
        ).height
        assert 235 <= opened <= 250, (year, opened)
    assert dt.date(2024, 5, 1) in holidays(2024) and dt.date(2024, 1, 1) in holidays(2024)


def test_pretrade_date_is_the_previous_open_day(sim: Simulator) -> None:
    cal = sim.ground_truth("trade_cal", exchange="SSE", start_date="20230101").sort("cal_date")
    open_days = cal.filter(pl.col("is_open") == "1")["cal_date"].to_list()
    for row in cal.iter_rows(named=True):
        earlier = [d for d in open_days if d < row["cal_date"]]
        if earlier:
            assert row["pretrade_date"] == earlier[-1]
        else:
            assert row["pretrade_date"] < dt.date(2023, 1, 1)


def test_calendar_is_published_to_the_end_of_todays_year_for_every_exchange(sim: Simulator) -> None:
    cal = sim.ground_truth("trade_cal")
    assert cal["cal_date"].max() == dt.date(2024, 12, 31)
    assert set(cal["exchange"]) == {"SSE", "SZSE", "BSE"}
    per_exchange = cal.group_by("exchange").agg(pl.col("is_open").sort_by("cal_date"))
    assert len({tuple(x) for x in per_exchange["is_open"].to_list()}) == 1


def test_codes_boards_and_listing_dates(sim: Simulator) -> None:
    stocks = sim.ground_truth("stock_basic")
    assert stocks["ts_code"].n_unique() == stocks.height == SMALL.stocks
    for row in stocks.iter_rows(named=True):
        assert re.match(CODE_PATTERNS[(row["exchange"], row["market"])], row["ts_code"]), row
        assert row["symbol"] == row["ts_code"][:6]
        opens = BOARD_OPENS.get(row["market"])
        assert opens is None or row["list_date"] >= opens
    assert stocks.filter(pl.col("list_date") < SMALL.start).height > 20
    assert stocks.filter(pl.col("list_date") > dt.date(2021, 1, 1)).height > 10
    assert {"L", "D"} <= set(stocks["list_status"])
    listed = sim.ground_truth("stock_basic", list_status="L")
    assert set(listed["list_status"]) == {"L"} and listed.height < stocks.height


def test_names_pinyin_and_controllers_look_real(sim: Simulator) -> None:
    stocks = sim.ground_truth("stock_basic")
    row = stocks.row(0, named=True)
    assert len(row["cnspell"]) == 4 and row["cnspell"].isupper()
    assert row["fullname"].endswith("股份有限公司") and row["enname"].endswith("Co., Ltd.")
    assert set(stocks["curr_type"]) == {"CNY"}
    assert stocks["act_ent_type"].n_unique() >= 3


def test_delisted_stocks_stop_trading_before_their_delist_date(sim: Simulator) -> None:
    gone = sim.ground_truth("stock_basic", list_status="D")
    assert gone.height >= 1
    for row in gone.iter_rows(named=True):
        assert row["delist_date"] <= SMALL.today
        bars = sim.ground_truth("daily", ts_code=row["ts_code"])
        assert bars.height == 0 or bars["trade_date"].max() < row["delist_date"]


def test_closes_stay_inside_the_limit_bands(sim: Simulator) -> None:
    bars = sim.ground_truth("daily", start_date="20230101")
    limits = sim.ground_truth("stk_limit", start_date="20230101")
    joined = bars.join(limits, on=["ts_code", "trade_date"], suffix="_limit")
    assert joined.height == bars.height
    assert (joined["pre_close"] == joined["pre_close_limit"]).all()
    assert (
        (joined["close"] <= joined["up_limit"] + 1e-9)
        & (joined["close"] >= joined["down_limit"] - 1e-9)
    ).all()
    assert (
        (joined["high"] <= joined["up_limit"] + 1e-9)
        & (joined["low"] >= joined["down_limit"] - 1e-9)
    ).all()
    assert (joined["high"] >= joined[["open", "close"]].max_horizontal()).all()
    assert (joined["low"] <= joined[["open", "close"]].min_horizontal()).all()
    at_limit = joined.filter((pl.col("close") - pl.col("up_limit")).abs() < 1e-9)
    assert at_limit.height > 20
    assert np.allclose(joined["change"], joined["close"] - joined["pre_close"], atol=1e-6)


def test_band_widths_follow_board_and_st_rules(sim: Simulator) -> None:
    stocks = sim.ground_truth("stock_basic")
    limits = sim.ground_truth("stk_limit", trade_date="20240628").join(
        stocks.select("ts_code", "market"), on="ts_code"
    )
    names = sim.ground_truth("daily", trade_date="20240628")
    assert names.height > 0
    band = limits.with_columns(
        (pl.col("up_limit") / pl.col("pre_close") - 1).round(2).alias("band")
    )
    st_codes = set(_st_on(sim, dt.date(2024, 6, 28)))
    expected = {"主板": 0.10, "创业板": 0.20, "科创板": 0.20, "北交所": 0.30}
    for row in band.iter_rows(named=True):
        want = (
            0.05
            if row["ts_code"] in st_codes and row["market"] == "主板"
            else expected[row["market"]]
        )
        assert abs(row["band"] - want) <= 0.011, row
    old = sim.ground_truth("stk_limit", trade_date="20200601").join(
        stocks.select("ts_code", "market"), on="ts_code"
    )
    chinext = old.filter(pl.col("market") == "创业板")
    assert (
        chinext.height and ((chinext["up_limit"] / chinext["pre_close"] - 1).round(2) <= 0.11).all()
    )


def _st_on(sim: Simulator, day: dt.date) -> list[str]:
    names = sim.ground_truth("namechange")
    current = names.filter(
        (pl.col("start_date") <= day) & (pl.col("end_date").is_null() | (pl.col("end_date") >= day))
    )
    return current.filter(pl.col("name").str.contains("ST"))["ts_code"].to_list()


def test_st_stocks_trade_in_a_five_percent_band() -> None:
    sim = Simulator(dataclasses.replace(SMALL, stocks=400))
    names = sim.ground_truth("namechange").filter(
        pl.col("name").str.starts_with("*ST") | pl.col("name").str.starts_with("ST")
    )
    stocks = sim.ground_truth("stock_basic").select("ts_code", "market")
    checked = 0
    for row in (
        names.join(stocks, on="ts_code").filter(pl.col("market") == "主板").iter_rows(named=True)
    ):
        end = row["end_date"] or SMALL.today
        limits = sim.ground_truth(
            "stk_limit", ts_code=row["ts_code"], start_date=row["start_date"], end_date=end
        )
        if limits.height:
            ratio = (limits["up_limit"] / limits["pre_close"] - 1).round(2)
            assert (ratio <= 0.06).all()
            checked += limits.height
    assert checked > 50


def test_suspended_days_have_no_bar_and_resumptions_do(sim: Simulator) -> None:
    halts = sim.ground_truth("suspend_d", start_date="20190101")
    assert set(halts["suspend_type"]) == {"S", "R"}
    bars = sim.ground_truth("daily", start_date="20190101").select("ts_code", "trade_date")
    suspended = halts.filter(pl.col("suspend_type") == "S").select("ts_code", "trade_date")
    resumed = halts.filter(pl.col("suspend_type") == "R").select("ts_code", "trade_date")
    assert suspended.join(bars, on=["ts_code", "trade_date"]).height == 0
    assert resumed.join(bars, on=["ts_code", "trade_date"]).height == resumed.height
    factors = sim.ground_truth("adj_factor", ts_code=suspended["ts_code"][0])
    assert (
        suspended.filter(pl.col("ts_code") == suspended["ts_code"][0])
        .join(factors, on=["ts_code", "trade_date"])
        .height
        > 0
    )


def test_adj_factor_moves_only_on_ex_dates(sim: Simulator) -> None:
    done = sim.ground_truth("dividend").filter(
        (pl.col("div_proc") == "实施") & (pl.col("ex_date") >= dt.date(2019, 2, 1))
    )
    assert done.height > 30
    checked = 0
    for code in done["ts_code"].unique().to_list()[:15]:
        factors = sim.ground_truth("adj_factor", ts_code=code).sort("trade_date")
        bars = sim.ground_truth("daily", ts_code=code).sort("trade_date")
        ex_dates = set(done.filter(pl.col("ts_code") == code)["ex_date"].to_list())
        steps = factors.with_columns(
            (pl.col("adj_factor") / pl.col("adj_factor").shift(1)).alias("step")
        ).drop_nulls("step")
        moved = set(steps.filter((pl.col("step") - 1).abs() > 1e-9)["trade_date"].to_list())
        assert moved <= ex_dates, code
        for ex in ex_dates & set(bars["trade_date"].to_list()):
            position = bars["trade_date"].to_list().index(ex)
            if position == 0:
                continue
            before = bars.row(position - 1, named=True)["close"]
            reference = bars.row(position, named=True)["pre_close"]
            step = steps.filter(pl.col("trade_date") == ex)["step"][0]
            assert reference <= before and abs(step - before / reference) < 2e-3 * step
            checked += 1
    assert checked > 10


def test_daily_basic_is_consistent_with_prices_shares_and_reports(sim: Simulator) -> None:
    day = dt.date(2024, 6, 28)
    basics = sim.ground_truth("daily_basic", trade_date="20240628")
    bars = sim.ground_truth("daily", trade_date="20240628")
    joined = basics.join(bars, on=["ts_code", "trade_date"], suffix="_bar")
    assert joined.height == bars.height > 50
    assert np.allclose(joined["total_mv"], joined["close"] * joined["total_share"], rtol=1e-6)
    assert np.allclose(joined["circ_mv"], joined["close"] * joined["float_share"], rtol=1e-6)
    assert np.allclose(
        joined["turnover_rate"],
        joined["vol"] * 100 / (joined["float_share"] * 1e4) * 100,
        rtol=1e-3,
    )
    assert (joined["free_share"] <= joined["float_share"] + 1e-6).all() and (
        joined["float_share"] <= joined["total_share"] + 1e-6
    ).all()
    reports = (
        sim.ground_truth("income")
        .filter(
            (pl.col("report_type") == "1")
            & (pl.col("update_flag") == "0")
            & (pl.max_horizontal("ann_date", "f_ann_date") <= day)
        )
        .unique(["ts_code", "end_date"])
    )
    ttm = _ttm(reports)
    compared = 0
    for row in joined.iter_rows(named=True):
        profit = ttm.get(row["ts_code"])
        if profit is None:
            continue
        expected = row["total_mv"] * 1e4 / profit if profit > 0 else None
        if expected is None:
            assert row["pe_ttm"] is None
        else:
            assert row["pe_ttm"] == pytest.approx(expected, rel=1e-3)
            compared += 1
    assert compared > 40


def _ttm(reports: pl.DataFrame) -> dict[str, float]:
    """TTM attributable net income of each stock's latest report (reference version)."""
    out = {}
    for code, group in reports.group_by("ts_code"):
        ytd = dict(
            zip(group["end_date"].to_list(), group["n_income_attr_p"].to_list(), strict=True)
        )
        latest = max(ytd)
        if latest.month == 12:
            out[code[0]] = ytd[latest]
            continue
        year_ago = dt.date(latest.year - 1, latest.month, latest.day)
        annual = dt.date(latest.year - 1, 12, 31)
        if year_ago in ytd and annual in ytd:
            out[code[0]] = ytd[latest] + ytd[annual] - ytd[year_ago]
    return out


def test_shenwan_2021_tree(sim: Simulator) -> None:
    tree = sim.ground_truth("index_classify")
    l1 = tree.filter(pl.col("level") == "L1")
    assert l1.height == 31 and {"银行", "非银金融", "食品饮料"} <= set(l1["industry_name"])
    assert (l1["parent_code"] == "0").all()
    assert all(re.match(r"^8\d{5}\.SI$", code) for code in tree["index_code"])
    codes = set(tree["industry_code"])
    assert set(tree.filter(pl.col("level") != "L1")["parent_code"]) <= codes
    assert (
        tree.filter(pl.col("level") == "L2").height > 100
        and tree.filter(pl.col("level") == "L3").height > 150
    )
    assert l1.filter(pl.col("industry_name") == "银行")["index_code"][0] == "801780.SI"


def test_industry_membership_history(sim: Simulator) -> None:
    current = sim.ground_truth("index_member_all", is_new="Y")
    past = sim.ground_truth("index_member_all", is_new="N")
    everything = sim.ground_truth("index_member_all")
    assert everything.height == current.height + past.height
    assert current["out_date"].null_count() == current.height and past["out_date"].null_count() == 0
    listed = sim.ground_truth("stock_basic", list_status="L")
    assert (
        set(current["ts_code"]) == set(listed["ts_code"])
        and current["ts_code"].n_unique() == current.height
    )
    moved = past.join(
        everything, left_on=["ts_code", "out_date"], right_on=["ts_code", "in_date"], suffix="_next"
    )
    assert moved.height >= 3
    assert (moved["l3_code"] != moved["l3_code_next"]).all()


def test_financial_templates_sit_in_financial_industries(sim: Simulator) -> None:
    members = sim.ground_truth("index_member_all", is_new="Y")
    types = (
        sim.ground_truth("income_vip", period="20231231").select("ts_code", "comp_type").unique()
    )
    joined = types.join(members, on="ts_code")
    by_type = {t: set(joined.filter(pl.col("comp_type") == t)["l2_name"]) for t in ("2", "3", "4")}
    assert by_type["2"] and by_type["2"] <= {"国有大型银行Ⅱ", "股份制银行Ⅱ", "城商行Ⅱ", "农商行Ⅱ"}
    assert by_type["3"] == {"保险Ⅱ"} and by_type["4"] == {"证券Ⅱ"}
    assert set(joined.filter(pl.col("comp_type") == "2")["l1_name"]) == {"银行"}


def test_indexes_and_weights(sim: Simulator) -> None:
    basic = sim.ground_truth("index_basic", market="SSE")
    assert {"000001.SH", "000300.SH", "000905.SH"} <= set(basic["ts_code"])
    assert (
        sim.ground_truth("index_basic", market="SW").height
        == sim.ground_truth("index_classify").height
    )
    levels = sim.ground_truth("index_daily", ts_code="000300.SH").sort("trade_date")
    assert levels.height > 1000 and levels["trade_date"].max() == SMALL.today
    assert np.allclose(
        levels["pct_chg"], (levels["close"] / levels["pre_close"] - 1) * 100, atol=1e-3
    )
    assert np.allclose(levels["pre_close"][1:], levels["close"][:-1])
    weights = sim.ground_truth("index_weight", index_code="000300.SH", start_date="20230101")
    sums = weights.group_by("trade_date").agg(pl.col("weight").sum())
    assert sums.height >= 17 and np.allclose(sums["weight"], 100, atol=0.01)
    assert sim.ground_truth("index_daily", ts_code="801780.SI").height == 0


def test_weekly_and_monthly_bars_aggregate_the_daily_ones(
    sim: Simulator, listed: list[str]
) -> None:
    code = listed[5]
    days = sim.ground_truth("daily", ts_code=code, start_date="20240601").sort("trade_date")
    week = sim.ground_truth("weekly", ts_code=code, trade_date="20240628").row(0, named=True)
    this_week = days.filter(pl.col("trade_date") >= dt.date(2024, 6, 24))
    assert week["close"] == this_week["close"][-1] and week["open"] == this_week["open"][0]
    assert week["high"] == this_week["high"].max() and week["low"] == this_week["low"].min()
    assert week["vol"] == pytest.approx(this_week["vol"].sum())
    month = sim.ground_truth("monthly", ts_code=code, trade_date="20240628").row(0, named=True)
    assert month["close"] == days["close"][-1] and month["vol"] == pytest.approx(days["vol"].sum())
    weeks = sim.ground_truth("weekly", trade_date="20240621")
    assert set(weeks["trade_date"]) == {dt.date(2024, 6, 21)} and weeks.height > 50


def test_moneyflow_and_limit_list(sim: Simulator) -> None:
    flows = sim.ground_truth("moneyflow", trade_date="20240628")
    bars = sim.ground_truth("daily", trade_date="20240628")
    assert flows.height == bars.height
    buys = flows.select(
        pl.sum_horizontal(pl.col(f"buy_{k}_vol") for k in ("sm", "md", "lg", "elg"))
    )
    sells = flows.select(
        pl.sum_horizontal(pl.col(f"sell_{k}_vol") for k in ("sm", "md", "lg", "elg"))
    )
    assert (flows["net_mf_vol"] == (buys.to_series() - sells.to_series())).all()
    hits = sim.ground_truth("limit_list_d", start_date="20230101")
    assert {"U", "D"} <= set(hits["limit"])
    ups = hits.filter(pl.col("limit") == "U")
    assert (ups["limit_times"] >= 1).all() and not any(
        n.startswith(("ST", "*ST")) for n in hits["name"]
    )
    assert sim.ground_truth("limit_list_d", end_date="20191231").height == 0


def test_the_largest_configuration_fits_the_real_code_ranges() -> None:
    config = SimulatorConfig(stocks=8000, start=dt.date(2010, 1, 1))
    universe = build_universe(config, TradingCalendar(2027), 2024)
    assert len(set(universe.ts_code.tolist())) == universe.count > 8000
    later = build_universe(config, TradingCalendar(2037), 2034)  # ten years of listings on
    assert len(set(later.ts_code.tolist())) == later.count > universe.count + 1000
    assert (later.ts_code[: universe.count] == universe.ts_code).all()
    assert (later.list_day[: universe.count] == universe.list_day).all()
    with pytest.raises(SimulatorConfigError, match="stocks must be between"):
        SimulatorConfig(stocks=9000)
