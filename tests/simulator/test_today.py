"""Today: nothing after it exists (but the calendar and plans), moving it, determinism,
and a market that is the same whatever today it was configured with."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import httpx
import polars as pl
import pytest

from cache.catalogue.apis import api_spec
from pipeline.sources.simulator import Simulator, SimulatorConfig
from pipeline.sources.simulator.config import SimulatorConfigError
from pipeline.sync.tasks import TASKS
from tests.simulator.helpers import SMALL, body

EARLY = dt.date(2022, 3, 15)


def _snapshot(sim: Simulator, codes: list[str]) -> dict[str, pl.DataFrame]:
    """Rows that must never change once they exist."""
    return {
        "daily": sim.ground_truth("daily", start_date="20211201"),
        "adj_factor": sim.ground_truth("adj_factor", ts_code=",".join(codes)),
        "daily_basic": sim.ground_truth("daily_basic", ts_code=",".join(codes)),
        "income": sim.ground_truth("income"),
        "balancesheet": sim.ground_truth("balancesheet_vip", period="20211231"),
        "cashflow": sim.ground_truth("cashflow_vip", period="20210930"),
        "fina_indicator": sim.ground_truth("fina_indicator"),
        "express": sim.ground_truth("express"),
        "forecast": sim.ground_truth("forecast"),
        "dividend": sim.ground_truth("dividend"),
        "index_daily": sim.ground_truth("index_daily", ts_code="000300.SH,399001.SZ"),
        "index_weight": sim.ground_truth("index_weight", index_code="000300.SH"),
        "limit_list_d": sim.ground_truth("limit_list_d"),
        "stk_limit": sim.ground_truth("stk_limit", start_date="20220101"),
        "weekly": sim.ground_truth("weekly", ts_code=",".join(codes)),
        "moneyflow": sim.ground_truth("moneyflow", ts_code=",".join(codes)),
        "suspend_d": sim.ground_truth("suspend_d"),
    }


def test_nothing_after_today_exists_but_the_calendar_and_plans(fresh: Simulator) -> None:
    fresh.set_today(EARLY)
    assert fresh.today == EARLY
    assert fresh.ground_truth("daily", start_date="20220101")["trade_date"].max() <= EARLY
    statements = fresh.ground_truth("income")
    assert statements.select(pl.max_horizontal("ann_date", "f_ann_date")).to_series().max() <= EARLY
    for api, column in (
        ("forecast", "ann_date"),
        ("express", "ann_date"),
        ("namechange", "ann_date"),
        ("index_member_all", "in_date"),
        ("stock_basic", "list_date"),
        ("fina_indicator", "ann_date"),
        ("index_daily", "trade_date"),
        ("dividend", "ann_date"),
        ("limit_list_d", "trade_date"),
    ):
        frame = fresh.ground_truth(api)
        assert frame.height and frame[column].max() <= EARLY, api
    done = fresh.ground_truth("dividend").filter(pl.col("div_proc") == "实施")
    assert done["imp_ann_date"].max() <= EARLY
    assert fresh.ground_truth("trade_cal")["cal_date"].max() == dt.date(2022, 12, 31)
    plans = fresh.ground_truth("disclosure_date")
    assert plans["ann_date"].max() <= EARLY and plans["pre_date"].max() > EARLY


def test_rows_never_change_once_they_exist(fresh: Simulator) -> None:
    fresh.set_today(EARLY)
    codes = fresh.ground_truth("stock_basic", list_status="L")["ts_code"].to_list()[:6]
    before = _snapshot(fresh, codes)
    fresh.set_today(dt.date(2025, 3, 31))  # a later horizon: every part is rebuilt
    after = _snapshot(fresh, codes)
    for name, old in before.items():
        assert old.height > 0, name
        kept = old.join(after[name], on=old.columns, how="semi", nulls_equal=True)
        assert kept.height == old.height, name
        assert after[name].height >= old.height, name
    later_income = after["income"]
    new_rows = later_income.join(
        before["income"], on=later_income.columns, how="anti", nulls_equal=True
    )
    assert (new_rows.select(pl.max_horizontal("ann_date", "f_ann_date")).to_series() > EARLY).all()
    assert (
        new_rows.filter(pl.col("end_date") <= dt.date(2021, 12, 31)).height > 0
    )  # restatements and late reports


def test_advance_moves_by_trading_days(fresh: Simulator) -> None:
    fresh.set_today(dt.date(2024, 9, 27))
    assert fresh.advance(0) == dt.date(2024, 9, 27)
    assert fresh.advance(1) == dt.date(2024, 9, 30)
    assert fresh.advance(1) == dt.date(2024, 10, 8)  # National Day week
    with pytest.raises(SimulatorConfigError, match="non-negative"):
        fresh.advance(-1)
    with pytest.raises(SimulatorConfigError, match="start of history"):
        fresh.set_today(dt.date(2010, 1, 1))


def test_advancing_brings_new_days_listings_and_reports(fresh: Simulator) -> None:
    before = {
        api: fresh.ground_truth(api).height for api in ("stock_basic", "income", "disclosure_date")
    }
    bars_before = fresh.ground_truth("daily", start_date="20240601")
    fresh.advance(250)
    assert fresh.today.year == 2025
    bars_after = fresh.ground_truth("daily", start_date="20240601")
    assert bars_after["trade_date"].max() == fresh.today and bars_after.height > bars_before.height
    for api, count in before.items():
        assert fresh.ground_truth(api).height > count, api
    assert fresh.ground_truth("stock_basic")["list_date"].max() > SMALL.today


def test_admin_endpoint_moves_today_for_clients(fresh: Simulator) -> None:
    with httpx.Client(transport=fresh.transport(), base_url="http://s") as client:
        moved = client.post("/_sim/today", json={"today": "20230630"}).json()
        assert moved == {"today": "20230630"}
        rows = client.post("/", content=body("daily", {"start_date": "20230601"})).json()["data"][
            "items"
        ]
        assert max(r[1] for r in rows) == "20230630"
        assert client.post("/_sim/today", json={"advance": 2}).json() == {"today": "20230704"}


def test_same_seed_same_answers_whatever_the_order(listed: list[str]) -> None:
    requests = [
        body("daily", {"trade_date": "20240628"}),
        body("income_vip", {"period": "20231231"}, fields="ts_code,ann_date,revenue,update_flag"),
        body("daily_basic", {"ts_code": listed[4]}),
        body("index_daily", {"ts_code": "000300.SH"}),
        body("stock_basic", {"list_status": "D"}),
        body("fina_indicator_vip", {"period": "20230630"}),
    ]
    first, second = Simulator(SMALL), Simulator(SMALL)
    answers_a = [json.loads(first.handle("/", r)[2])["data"] for r in requests]
    answers_b = [json.loads(second.handle("/", r)[2])["data"] for r in reversed(requests)][::-1]
    assert answers_a == answers_b
    assert json.loads(second.handle("/", requests[0])[2])["data"] == answers_a[0]
    other = Simulator(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert json.loads(other.handle("/", requests[0])[2])["data"] != answers_a[0]


def test_one_stock_is_the_same_alone_or_in_the_whole_market(
    sim: Simulator, listed: list[str]
) -> None:
    code = listed[7]
    alone = sim.ground_truth("daily", ts_code=code, start_date="20240101")
    market = sim.ground_truth("daily", start_date="20240101").filter(pl.col("ts_code") == code)
    assert alone.height > 50 and alone.equals(market)


def test_a_stock_does_not_depend_on_how_many_others_there_are(sim: Simulator) -> None:
    bigger = Simulator(dataclasses.replace(SMALL, stocks=SMALL.stocks + 40))
    small_list = sim.ground_truth("stock_basic").select("ts_code", "name", "list_date")
    big_list = bigger.ground_truth("stock_basic").select("ts_code", "name", "list_date")
    same = small_list.join(big_list, on=["name", "list_date"], suffix="_big")
    assert same.height > 100  # names and listing days are drawn per stock index
    for row in same.head(5).iter_rows(named=True):
        ours = sim.ground_truth("daily", ts_code=row["ts_code"], start_date="20230101")
        theirs = bigger.ground_truth("daily", ts_code=row["ts_code_big"], start_date="20230101")
        assert ours.drop("ts_code").equals(theirs.drop("ts_code"))


TODAY_1, TODAY_2 = dt.date(2020, 6, 30), dt.date(2021, 6, 30)
LATER = SimulatorConfig(stocks=40, start=dt.date(2017, 1, 1), today=TODAY_2, seed=5)


def _request(api: str, code: str, day: dt.date) -> bytes:
    """One request the service answers for `api`: by stock, index or day as it takes."""
    params = set(api_spec(api).param_names)
    if api.startswith("index_daily"):
        return body(api, {"ts_code": "000300.SH"})
    if "index_code" in params:
        return body(api, {"index_code": "000300.SH"})
    if api in ("daily", "limit_list_d", "suspend_d", "moneyflow", "stk_limit"):
        return body(api, {"trade_date": day.strftime("%Y%m%d")})
    if "ts_code" in params and api not in ("stock_basic", "namechange"):
        return body(api, {"ts_code": code})
    return body(api, {})


def test_a_later_configured_today_is_the_same_market_further_on() -> None:
    earlier = Simulator(dataclasses.replace(LATER, today=TODAY_1))
    later = Simulator(LATER)
    grown = {task.name: later.ground_truth(task.name).height for task in TASKS}
    later.set_today(TODAY_1)
    codes = earlier.ground_truth("stock_basic")["ts_code"].to_list()
    assert len(codes) > 20
    for task in TASKS:  # every row of every dataset, all versions and list statuses
        before = earlier.ground_truth(task.name)
        assert before.height > 0, task.name
        assert before.equals(later.ground_truth(task.name)), task.name
        if task.unit != "snapshot" or task.name in ("stock_basic", "namechange"):
            assert grown[task.name] > before.height, task.name
    for task in TASKS:  # and the same answers over the wire, capped and paged
        for code in (codes[3], codes[-1]):
            request = _request(task.api_for(5000), code, dt.date(2020, 6, 24))
            first, second = earlier.handle("/", request), later.handle("/", request)
            answers = [json.loads(reply[2]) for reply in (first, second)]
            assert first[0] == second[0] == 200 and answers[0]["code"] == 0, task.name
            assert answers[0]["data"] == answers[1]["data"], task.name


def test_moving_today_forward_lists_new_stocks_under_new_codes(fresh: Simulator) -> None:
    listed = fresh.ground_truth("stock_basic").select("ts_code", "symbol", "list_date")
    fresh.set_today(dt.date(2027, 12, 31))
    later = fresh.ground_truth("stock_basic").select("ts_code", "symbol", "list_date")
    assert later.join(listed, on=listed.columns, how="semi").height == listed.height
    new = later.join(listed, on="ts_code", how="anti")
    assert new.height >= 3 * (SMALL.stocks // 50)  # a batch in each year after the anchor
    assert new["list_date"].min() > SMALL.today and new["list_date"].max() <= fresh.today
