"""Per-minute limits (sliding window, per API and token) and per-day quotas."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline.sources.simulator import Simulator
from pipeline.sources.simulator.config import SimulatorConfig
from pipeline.sources.simulator.limits import per_minute
from tests.simulator.helpers import SMALL, FakeClock, body

TINY = dataclasses.replace(SMALL, stocks=20)
MINUTE_TEXT = "抱歉，您每分钟最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
DAY_TEXT = "抱歉，您每天最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"


def _code(sim: Simulator, api: str = "trade_cal") -> tuple[int, str]:
    answer = json.loads(
        sim.handle("/", body(api, {"start_date": "20240101", "end_date": "20240105"}))[2]
    )
    return answer["code"], answer["msg"]


def test_per_minute_limit_uses_a_sliding_window() -> None:
    clock = FakeClock()
    sim = Simulator(dataclasses.replace(TINY, limit_per_min=3), clock=clock)
    start = clock.now
    for second in (0, 10, 20):
        clock.now = start + second
        assert _code(sim)[0] == 0
    assert _code(sim) == (40203, MINUTE_TEXT.format(n=3))
    clock.now = start + 61  # the first call has left the 60 s window
    assert _code(sim)[0] == 0
    assert _code(sim)[0] == 40203
    assert sim.outcomes[("trade_cal", "rate_limited")] == 2
    assert sim.calls["trade_cal"] == 6


def test_sliding_window_frees_slots_one_by_one() -> None:
    clock = FakeClock()
    sim = Simulator(dataclasses.replace(TINY, limit_per_min=2), clock=clock)
    assert _code(sim)[0] == 0
    clock.now += 30
    assert _code(sim)[0] == 0
    clock.now += 29
    assert _code(sim)[0] == 40203
    clock.now += 1.5  # 60.5 s after the first call, 31.5 s after the second
    assert _code(sim)[0] == 0
    assert _code(sim)[0] == 40203


def test_limits_are_per_api_and_refused_calls_do_not_count() -> None:
    clock = FakeClock()
    sim = Simulator(dataclasses.replace(TINY, limit_per_min=1), clock=clock)
    assert _code(sim, "trade_cal")[0] == 0
    for _ in range(5):
        assert _code(sim, "trade_cal")[0] == 40203
    assert json.loads(sim.handle("/", body("daily", {"trade_date": "20240628"}))[2])["code"] == 0
    clock.now += 60
    assert _code(sim, "trade_cal")[0] == 0


def test_api_limits_override_the_general_limit() -> None:
    clock = FakeClock()
    sim = Simulator(
        dataclasses.replace(TINY, limit_per_min=0, api_limits={"trade_cal": 2}), clock=clock
    )
    assert [_code(sim)[0] for _ in range(3)] == [0, 0, 40203]
    daily = body("daily", {"trade_date": "20240628"})
    assert all(json.loads(sim.handle("/", daily)[2])["code"] == 0 for _ in range(30))


@pytest.mark.parametrize(
    ("points", "expected"), [(120, 50), (2000, 200), (5000, 500), (10000, 1000)]
)
def test_default_limits_follow_the_points_tier(points: int, expected: int) -> None:
    config = SimulatorConfig(stocks=5, start=SMALL.start, today=SMALL.today, points=points)
    assert per_minute(config, "daily") == expected
    assert per_minute(dataclasses.replace(config, limit_per_min=0), "daily") is None


def test_points_tier_is_enforced_by_the_server() -> None:
    clock = FakeClock()
    sim = Simulator(dataclasses.replace(TINY, points=120), clock=clock)
    daily = body("daily", {"trade_date": "20240628"})
    codes = [json.loads(sim.handle("/", daily)[2])["code"] for _ in range(51)]
    assert codes[:50] == [0] * 50 and codes[50] == 40203
    assert per_minute(dataclasses.replace(TINY, points=5000), "limit_list_d") == 200


def test_daily_quota_stops_the_api_until_the_next_day() -> None:
    clock = FakeClock(1_700_000_000.0)
    sim = Simulator(dataclasses.replace(TINY, limit_per_min=0, daily_quota=3), clock=clock)
    assert [_code(sim)[0] for _ in range(3)] == [0, 0, 0]
    assert _code(sim) == (40203, DAY_TEXT.format(n=3))
    clock.now += 3600
    assert _code(sim)[0] == 40203
    clock.now += 86400
    assert _code(sim)[0] == 0
    assert sim.outcomes[("trade_cal", "quota_exceeded")] == 2
