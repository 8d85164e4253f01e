"""The request/response protocol of PROTOCOL.md, through the in-process transport."""

from __future__ import annotations

import dataclasses
import json
import uuid

import httpx
import pytest

from cache.catalogue.apis import api_spec, to_frame
from pipeline.sources.simulator import Simulator, SimulatorConfig
from pipeline.sources.simulator.apis import HANDLERS
from tests.simulator.helpers import SMALL, body, call


@pytest.mark.parametrize("path", ["/", "/dataapi", "/dataapi/", "/dataapi/trade_cal"])
def test_every_endpoint_answers_and_trusts_the_body(client: httpx.Client, path: str) -> None:
    answer = client.post(
        path, content=body("trade_cal", {"start_date": "20240101", "end_date": "20240110"})
    ).json()
    assert answer["code"] == 0
    assert answer["data"]["fields"] == ["exchange", "cal_date", "is_open", "pretrade_date"]
    assert len(answer["data"]["items"]) == 10


def test_path_api_is_used_only_when_the_body_has_none(client: httpx.Client) -> None:
    payload = json.dumps(
        {"token": SMALL.token, "params": {"start_date": "20240102", "end_date": "20240102"}}
    )
    answer = client.post("/dataapi/trade_cal", content=payload).json()
    assert answer["code"] == 0 and len(answer["data"]["items"]) == 1
    mismatch = client.post(
        "/dataapi/daily",
        content=body("trade_cal", {"start_date": "20240102", "end_date": "20240102"}),
    )
    assert mismatch.json()["data"]["fields"][0] == "exchange"


def test_unknown_path_is_a_404(client: httpx.Client) -> None:
    assert client.post("/nowhere", content=body("trade_cal")).status_code == 404


def test_response_shape_and_fresh_request_ids(client: httpx.Client) -> None:
    first = call(client, "trade_cal", {"start_date": "20240102", "end_date": "20240105"})
    second = call(client, "trade_cal", {"start_date": "20240102", "end_date": "20240105"})
    assert set(first) == {"request_id", "code", "msg", "data"}
    assert set(first["data"]) == {"fields", "items", "has_more", "count"}
    assert first["msg"] == "" and first["data"]["has_more"] is False
    assert uuid.UUID(first["request_id"]) != uuid.UUID(second["request_id"])
    assert first["data"]["items"] == second["data"]["items"]


def test_bad_token_gets_the_exact_message(client: httpx.Client) -> None:
    answer = call(client, "daily", {"trade_date": "20240628"}, token="wrong")
    assert (answer["code"], answer["msg"]) == (40101, "您的token不对，请确认。")


def test_unknown_api_and_unknown_field(client: httpx.Client) -> None:
    assert call(client, "fund_minute")["msg"] == "请指定正确的接口名"
    answer = call(client, "trade_cal", fields="exchange,exchange_id")
    assert (answer["code"], answer["msg"]) == (-2001, "接口trade_cal不包含字段exchange_id")


def test_default_fields_leave_out_default_n_columns(client: httpx.Client) -> None:
    spec = api_spec("fina_indicator")
    answer = call(client, "fina_indicator_vip", {"period": "20231231"})
    assert answer["data"]["fields"] == list(spec.default_field_names)
    assert (
        "update_flag" not in answer["data"]["fields"] and "roe_avg" not in answer["data"]["fields"]
    )
    named = call(
        client, "fina_indicator_vip", {"period": "20231231"}, fields="ts_code,end_date,update_flag"
    )
    assert named["data"]["fields"] == ["ts_code", "end_date", "update_flag"]
    assert {row[2] for row in named["data"]["items"]} <= {"0", "1"}
    income = call(client, "income_vip", {"period": "20231231"})["data"]["fields"]
    assert "net_after_nr_lp_correct" not in income and "total_opcost" not in income


def test_fields_as_comma_string_or_list_select_in_the_order_given(client: httpx.Client) -> None:
    params = {"trade_date": "20240628"}
    as_text = call(client, "daily", params, fields=" close , ts_code ")
    as_list = call(client, "daily", params, fields=["close", "ts_code"])
    assert as_text["data"]["fields"] == as_list["data"]["fields"] == ["close", "ts_code"]
    assert as_text["data"]["items"] == as_list["data"]["items"]


def test_null_and_empty_params_mean_not_given_and_unknown_params_are_ignored(
    client: httpx.Client,
) -> None:
    plain = call(client, "daily", {"trade_date": "20240628"})
    noisy = call(
        client,
        "daily",
        {
            "trade_date": "20240628",
            "ts_code": "",
            "start_date": None,
            "ts_type_name": "http://x/dataapi",
            "whatever": 3,
        },
    )
    assert plain["data"]["items"] == noisy["data"]["items"]
    numeric = call(client, "daily", {"trade_date": 20240628})
    assert numeric["data"]["items"] == plain["data"]["items"]


def test_rows_come_newest_first(client: httpx.Client, listed: list[str]) -> None:
    codes = f"{listed[-1]},{listed[0]}"
    items = call(client, "daily", {"ts_code": codes, "start_date": "20240101"})["data"]["items"]
    assert {row[0] for row in items} == {listed[0], listed[-1]}
    keys = [(row[1], row[0]) for row in items]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    for date in {k[0] for k in keys}:
        codes = [k[1] for k in keys if k[0] == date]
        assert codes == sorted(codes)
    cal = call(client, "trade_cal", {"start_date": "20240101"})["data"]["items"]
    assert cal[0][1] == "20241231" and cal[-1][1] == "20240101"


def test_row_cap_keeps_the_newest_rows_and_sets_has_more(
    sim: Simulator, client: httpx.Client
) -> None:
    answer = call(client, "daily", {"start_date": "20230101"})
    data = answer["data"]
    assert len(data["items"]) == 6000 and data["has_more"] is True
    everything = sim.ground_truth("daily", start_date="20230101")
    assert everything.height > 6000
    newest = everything.head(6000)
    assert [row[0] for row in data["items"]] == newest["ts_code"].to_list()
    assert data["items"][0][1] == "20240628"
    complete = call(client, "daily", {"trade_date": "20240628"})["data"]
    assert complete["has_more"] is False


def test_offset_and_limit_page_through_the_rows(client: httpx.Client) -> None:
    whole = call(client, "stock_basic", {"list_status": "L"})["data"]["items"]
    pages = [
        call(client, "stock_basic", {"list_status": "L", "offset": k, "limit": 40})["data"]
        for k in (0, 40, 80)
    ]
    assert [r for p in pages for r in p["items"]] == whole[:120]
    assert pages[0]["has_more"] is True
    last = call(client, "stock_basic", {"list_status": "L", "offset": len(whole) - 5, "limit": 40})[
        "data"
    ]
    assert len(last["items"]) == 5 and last["has_more"] is False
    assert call(client, "stock_basic", {"limit": "x"})["code"] == -2001


@pytest.mark.parametrize(
    ("api", "params"),
    [
        ("income", {"ts_code": "<stock>"}),
        ("balancesheet", {"ts_code": "<stock>"}),
        ("cashflow", {"ts_code": "<stock>"}),
        ("fina_indicator_vip", {"period": "20231231"}),
        ("express_vip", {"start_date": "20220101"}),
        ("forecast_vip", {"start_date": "20230101"}),
        ("dividend", {"ts_code": "<stock>"}),
        ("disclosure_date", {"end_date": "20231231"}),
        ("fina_mainbz", {"ts_code": "<stock>"}),
        ("stock_basic", {"list_status": "D"}),
        ("namechange", {}),
        ("trade_cal", {"start_date": "20240101"}),
        ("daily", {"trade_date": "20240628"}),
        ("weekly", {"ts_code": "<stock>"}),
        ("daily_basic", {"ts_code": "<stock>", "start_date": "20240101"}),
        ("adj_factor", {"ts_code": "<stock>"}),
        ("stk_limit", {"trade_date": "20240628"}),
        ("suspend_d", {"start_date": "20230101"}),
        ("moneyflow", {"trade_date": "20240628"}),
        ("limit_list_d", {"start_date": "20240101"}),
        ("index_basic", {"market": "SW"}),
        ("index_daily", {"ts_code": "000300.SH", "start_date": "20240101"}),
        ("index_weight", {"index_code": "000905.SH", "trade_date": "20240628"}),
        ("index_classify", {}),
        ("index_member_all", {"is_new": "N"}),
    ],
)
def test_wire_rows_match_the_ground_truth(
    sim: Simulator, client: httpx.Client, listed: list[str], api: str, params: dict[str, str]
) -> None:
    params = {k: listed[3] if v == "<stock>" else v for k, v in params.items()}
    spec = api_spec(api)
    data = call(client, api, params, fields=",".join(spec.field_names))["data"]
    truth = sim.ground_truth(api, **params)
    assert truth.height > 0
    assert to_frame(api, data["fields"], data["items"]).equals(truth.head(len(data["items"])))
    assert data["has_more"] == (truth.height > len(data["items"]))


def test_is_open_arrives_as_a_number_like_the_real_service(client: httpx.Client) -> None:
    items = call(client, "trade_cal", {"start_date": "20240105", "end_date": "20240106"})["data"][
        "items"
    ]
    assert [row[2] for row in items] == [0, 1]


@pytest.mark.parametrize(
    ("api", "params"),
    [
        ("income", {}),
        ("forecast", {"period": "20231231"}),
        ("dividend", {}),
        ("index_daily", {}),
        ("moneyflow", {}),
    ],
)
def test_required_parameters(client: httpx.Client, api: str, params: dict[str, str]) -> None:
    answer = call(client, api, params)
    assert answer["code"] == -2001
    assert answer["msg"].startswith("必填参数")


def test_bad_dates_are_refused(client: httpx.Client) -> None:
    answer = call(client, "daily", {"trade_date": "2024-06-28"})
    assert answer["code"] == -2001 and "trade_date" in answer["msg"]


def test_points_gate_apis_with_the_permission_text() -> None:
    sim = Simulator(SimulatorConfig(stocks=30, start=SMALL.start, today=SMALL.today, points=2000))
    with httpx.Client(transport=sim.transport(), base_url="http://s") as c:
        vip = call(c, "income_vip", {"period": "20231231"})
        assert vip["code"] == 40203
        assert (
            vip["msg"]
            == "抱歉，您没有接口(income_vip)访问权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
        )
        assert call(c, "limit_list_d", {"trade_date": "20240628"})["code"] == 40203
        assert call(c, "income", {"ts_code": "000001.SZ"})["code"] == 0
    assert sim.outcomes[("income_vip", "no_permission")] == 1


def test_admin_endpoints_answer_loopback_only(fresh: Simulator) -> None:
    status, _, reply = fresh.handle("/_sim/today", b'{"today": "20240101"}', client_host="10.1.2.3")
    assert status == 403
    assert fresh.today == SMALL.today
    status, _, reply = fresh.handle("/_sim/calls", b"", client_host="192.168.0.9")
    assert status == 403
    status, _, reply = fresh.handle("/_sim/today", b'{"advance": 1}', client_host="::1")
    assert status == 200 and json.loads(reply) == {"today": "20240701"}
    status, _, reply = fresh.handle("/_sim/today", b'{"today": "20240105"}')
    assert json.loads(reply) == {"today": "20240105"} and fresh.today.isoformat() == "2024-01-05"
    assert fresh.handle("/_sim/today", b'{"today": "soon"}')[0] == 400
    fresh.handle("/dataapi", body("trade_cal"))
    status, _, reply = fresh.handle("/_sim/calls", b"")
    assert json.loads(reply) == {"calls": {"trade_cal": 1}, "outcomes": {"trade_cal": {"ok": 1}}}


def test_calls_count_every_request_and_reset(fresh: Simulator) -> None:
    fresh.handle("/", body("daily", {"trade_date": "20240628"}))
    fresh.handle("/", body("daily", {"trade_date": "20240628"}, token="bad"))
    fresh.handle("/", body("nonsense"))
    assert fresh.calls == {"daily": 2, "nonsense": 1}
    assert (
        fresh.outcomes[("daily", "bad_token")] == 1
        and fresh.outcomes[("nonsense", "unknown_api")] == 1
    )
    fresh.reset_calls()
    assert not fresh.calls


def test_async_client_works_through_the_same_transport(sim: Simulator) -> None:
    import anyio

    async def fetch() -> dict:
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://s") as c:
            response = await c.post(
                "/dataapi/daily", content=body("daily", {"trade_date": "20240628"})
            )
            return response.json()

    answer = anyio.run(fetch)
    assert answer["code"] == 0 and len(answer["data"]["items"]) > 50


@pytest.mark.parametrize(
    ("api", "limit"), [("fina_indicator_vip", 100), ("fina_mainbz_vip", 100), ("income_vip", 70)]
)
def test_paging_statement_apis_yields_every_row_once(
    sim: Simulator, client: httpx.Client, api: str, limit: int
) -> None:
    spec = api_spec(api)
    truth = sim.ground_truth(api, period="20231231")
    assert truth.height > limit
    rows: list[list] = []
    offset = 0
    while True:
        params = {"period": "20231231", "offset": offset, "limit": limit}
        data = call(client, api, params, fields=",".join(spec.field_names))["data"]
        assert len(data["items"]) <= limit
        rows += data["items"]
        offset += len(data["items"])
        if not data["has_more"]:
            break
    assert to_frame(api, list(spec.field_names), rows).equals(truth)
    if spec.rows_per_call:
        capped = call(client, api, {"period": "20231231"})["data"]
        assert len(capped["items"]) == spec.rows_per_call and capped["has_more"] is True


def test_undocumented_parameters_are_ignored(client: httpx.Client) -> None:
    plain = call(client, "balancesheet_vip", {"period": "20231231"})["data"]["items"]
    extra = call(client, "balancesheet_vip", {"period": "20231231", "f_ann_date": "20000101"})[
        "data"
    ]["items"]
    assert plain == extra and plain


@pytest.mark.parametrize("exchanges", [("SSE",), ("SZSE", "BSE")])
def test_every_api_answers_in_a_partial_market(exchanges: tuple[str, ...]) -> None:
    sim = Simulator(
        dataclasses.replace(SMALL, stocks=40, exchanges=exchanges, limit_per_min=0, points=20000)
    )
    code = sim.ground_truth("stock_basic")["ts_code"][0]
    params = {"ts_code": code, "index_code": "000300.SH", "trade_date": "20240628"}
    for api in HANDLERS:
        documented = set(api_spec(api).param_names)
        given = {k: v for k, v in params.items() if k in documented}
        answer = json.loads(sim.handle("/", body(api, given))[2])
        assert answer["code"] == 0, (api, answer["msg"])
    assert not [k for k in sim.outcomes if k[1] != "ok"]
    assert set(sim.ground_truth("stock_basic")["exchange"]) == set(exchanges)
