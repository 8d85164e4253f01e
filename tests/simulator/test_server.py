"""The simulator over real HTTP on loopback, spoken to by the official tushare SDK."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cache.catalogue.apis import api_spec
from pipeline.sources.simulator import Simulator, SimulatorServer, move_today
from pipeline.sources.simulator.config import SimulatorConfigError
from tests.simulator.helpers import SMALL, body

pytest.importorskip("tushare")
from tushare.pro.client import DataApi


@pytest.fixture(scope="module")
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with sim.serve() as running:
        yield running


@pytest.fixture(scope="module")
def pro(sim: Simulator, server: SimulatorServer) -> DataApi:
    api = DataApi(sim.config.token, timeout=30)
    api._DataApi__http_url = f"{server.url}/dataapi"
    return api


def _requests(sim: Simulator) -> list[tuple[str, dict[str, Any]]]:
    stocks = sim.ground_truth("stock_basic", list_status="L")
    reporting = sim.ground_truth("income_vip", period="20231231")["ts_code"][0]
    payer = sim.ground_truth("dividend")["ts_code"][0]
    return [
        ("stock_basic", {}),
        ("trade_cal", {"start_date": "20240101"}),
        ("daily", {"trade_date": "20240628"}),
        ("weekly", {"trade_date": "20240628"}),
        ("monthly", {"trade_date": "20240628"}),
        ("adj_factor", {"trade_date": "20240628"}),
        ("daily_basic", {"trade_date": "20240628"}),
        ("suspend_d", {"start_date": "20240101"}),
        ("stk_limit", {"trade_date": "20240628"}),
        ("namechange", {}),
        ("income", {"ts_code": reporting}),
        ("balancesheet", {"ts_code": reporting}),
        ("cashflow", {"ts_code": reporting}),
        ("fina_indicator", {"ts_code": reporting}),
        ("income_vip", {"period": "20231231"}),
        ("balancesheet_vip", {"period": "20231231"}),
        ("cashflow_vip", {"period": "20231231"}),
        ("fina_indicator_vip", {"period": "20231231"}),
        ("express_vip", {"start_date": "20200101"}),
        ("forecast_vip", {"start_date": "20200101"}),
        ("disclosure_date", {"end_date": "20240630"}),
        ("dividend", {"ts_code": payer}),
        ("fina_mainbz", {"ts_code": reporting}),
        ("fina_mainbz_vip", {"period": "20231231"}),
        ("index_basic", {}),
        ("index_daily", {"ts_code": "000300.SH"}),
        ("index_weight", {"index_code": "000300.SH", "start_date": "20240101"}),
        ("index_classify", {"level": "L2"}),
        ("index_member_all", {"l1_code": "801780.SI"}),
        ("limit_list_d", {"start_date": "20240101"}),
        ("moneyflow", {"trade_date": "20240628", "ts_code": ",".join(stocks["ts_code"][:5])}),
    ]


def test_sdk_frames_have_the_documented_columns(sim: Simulator, pro: DataApi) -> None:
    covered = set()
    for api, params in _requests(sim):
        spec = api_spec(api)
        default = pro.query(api, **params)
        assert list(default.columns) == list(spec.default_field_names), api
        assert len(default) > 0, api
        full = pro.query(api, fields=",".join(spec.field_names), **params)
        assert list(full.columns) == list(spec.field_names), api
        assert len(full) == len(default), api
        covered.add(spec.name)
    from cache.catalogue.coverage import DEFAULT_APIS

    assert covered == set(DEFAULT_APIS)  # the others: tests/simulator/test_sdk_coverage.py


def test_sdk_raises_the_service_message(pro: DataApi) -> None:
    with pytest.raises(Exception, match="接口trade_cal不包含字段bogus"):
        pro.query("trade_cal", fields="bogus")


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def test_admin_endpoints_over_http(server: SimulatorServer, http: httpx.Client) -> None:
    calls = http.get(f"{server.url}/_sim/calls").json()
    assert set(calls) == {"calls", "outcomes"}
    assert http.post(f"{server.url}/_sim/today", content=b"").json() == {
        "today": SMALL.today.strftime("%Y%m%d")
    }


def test_gateway_faults_over_http_are_nginx_pages(http: httpx.Client) -> None:
    config = dataclasses.replace(SMALL, stocks=20, fault_rate=1.0, slow_response_s=0.0)
    statuses = []
    with Simulator(config).serve() as running:
        for day in range(1, 20):
            response = http.post(
                f"{running.url}/", content=body("trade_cal", {"start_date": f"202401{day:02d}"})
            )
            statuses.append(response.status_code)
            if response.status_code >= 500:
                assert response.headers["content-type"].startswith("text/html")
                assert b"nginx" in response.content
    assert {200, 502, 504} <= set(statuses)


def test_stop_releases_the_port(sim: Simulator, http: httpx.Client) -> None:
    running = sim.serve()
    port = running.port
    answer = http.post(f"{running.url}/", content=body("trade_cal", {"start_date": "20240102"}))
    assert json.loads(answer.text)["code"] == 0
    running.stop()
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(1)
        probe.connect(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("stop", "inherited_sigint"),
    [
        (signal.SIGINT, "default_int_handler"),  # Ctrl-C on a terminal
        (signal.SIGINT, "SIG_IGN"),  # started from a script or cron, which ignore SIGINT
        (signal.SIGTERM, "default_int_handler"),  # a service manager or `kill`
    ],
    ids=["ctrl-c", "ctrl-c-under-cron", "sigterm"],
)
def test_serve_forever_runs_in_the_foreground_until_ctrl_c_or_sigterm(
    http: httpx.Client, stop: signal.Signals, inherited_sigint: str
) -> None:
    script = (
        "import signal\n"
        f"signal.signal(signal.SIGINT, signal.{inherited_sigint})\n"
        "import datetime as dt\n"
        "from pipeline.sources.simulator import SimulatorConfig, serve_forever\n"
        "serve_forever(SimulatorConfig(stocks=20, start=dt.date(2019, 1, 1)), '127.0.0.1', 0)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://[\d.:]+", proc.stdout.readline())
        assert url is not None
        assert "token: alphahome-sim" in proc.stdout.readline()
        answer = http.post(
            f"{url.group(0)}/dataapi", content=body("trade_cal", {"start_date": "20240102"})
        )
        assert answer.json()["code"] == 0
        proc.send_signal(stop)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ah_sim_advance_moves_a_served_market(tmp_path: Path) -> None:
    from tests.cli_runner import ah

    fresh = Simulator(dataclasses.replace(SMALL, stocks=10))
    with fresh.serve() as running:
        moved = ah("sim", "advance", "--to", "2024-09-27", "--url", running.url, cwd=tmp_path)
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.strip() == "simulator today: 2024-09-27"
        assert fresh.today.isoformat() == "2024-09-27"
        daily = fresh.ground_truth("daily", start_date="20240901")
        assert daily["trade_date"].max() == fresh.today
        stepped = ah("sim", "advance", "--url", f"{running.url}/dataapi", cwd=tmp_path)
        assert stepped.stdout.strip() == "simulator today: 2024-09-30"  # one open day
        with pytest.raises(SimulatorConfigError, match="start of history"):
            move_today(running.url, to=dt.date(2001, 1, 1))
        assert move_today(running.url) == fresh.today == dt.date(2024, 9, 30)
    gone = ah("sim", "advance", "--days", "2", "--url", running.url, cwd=tmp_path)
    assert gone.returncode == 1 and "no simulator answered" in gone.stderr
    assert "Traceback" not in gone.stderr
