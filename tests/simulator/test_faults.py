"""Injected faults: gateway errors, internal errors, slow and truncated answers."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import anyio
import httpx
import pytest

from pipeline.sources.simulator import Simulator, SimulatorConfig
from tests.simulator.helpers import SMALL, body

TINY = dataclasses.replace(SMALL, stocks=20, limit_per_min=0)


def _kind(status: int, reply: bytes) -> str:
    if status in (502, 504):
        assert b"nginx" in reply and b"<html>" in reply
        return f"http_{status}"
    try:
        answer = json.loads(reply)
    except json.JSONDecodeError:
        return "truncated"
    if answer["code"] == 50101:
        assert answer["msg"] == "系统内部错误"
        return "internal"
    assert answer["code"] == 0
    return "ok"


def _request(day: int) -> bytes:
    return body("trade_cal", {"start_date": f"202401{day:02d}", "end_date": "20240131"})


def test_every_fault_kind_occurs_at_full_rate() -> None:
    sim = Simulator(dataclasses.replace(TINY, fault_rate=1.0, slow_response_s=0.0))
    kinds = Counter(
        _kind(*(sim.handle("/", _request(d))[0::2])) for d in range(1, 29) for _ in range(3)
    )
    assert set(kinds) == {
        "http_502",
        "http_504",
        "internal",
        "truncated",
        "ok",
    }  # ok = slow ones (no stall here)
    assert (
        sum(n for (_, outcome), n in sim.outcomes.items() if outcome.endswith("slow"))
        == kinds["ok"]
    )


def test_no_faults_at_rate_zero() -> None:
    sim = Simulator(TINY)
    assert all(_kind(*(sim.handle("/", _request(d))[0::2])) == "ok" for d in range(1, 29))


def test_faults_are_deterministic_and_retries_can_succeed() -> None:
    config = dataclasses.replace(TINY, fault_rate=0.5, slow_response_s=0.0)
    first, second = Simulator(config), Simulator(config)
    fates_a = [_kind(*(first.handle("/", _request(d % 7 + 1))[0::2])) for d in range(84)]
    fates_b = [_kind(*(second.handle("/", _request(d % 7 + 1))[0::2])) for d in range(84)]
    assert fates_a == fates_b
    assert 20 < sum(f != "ok" for f in fates_a) < 64
    for day in range(1, 8):
        fates = [f for d, f in enumerate(fates_a) if d % 7 + 1 == day]
        assert "ok" in fates  # some retry of each request got through
    other_seed = Simulator(dataclasses.replace(config, seed=12))
    assert [
        _kind(*(other_seed.handle("/", _request(d % 7 + 1))[0::2])) for d in range(84)
    ] != fates_a


def _first_slow_request(config: SimulatorConfig) -> bytes:
    """A request whose first sending meets the slow fault (found on a twin that does not stall)."""
    twin = Simulator(dataclasses.replace(config, slow_response_s=0.0))
    for day in range(1, 29):
        twin.handle("/", _request(day))
        if twin.outcomes[("trade_cal", "ok+slow")]:
            return _request(day)
    msg = "no slow request found"
    raise AssertionError(msg)


def test_slow_answers_time_out_sync_and_async_clients() -> None:
    config = dataclasses.replace(TINY, fault_rate=1.0, slow_response_s=0.3)
    slow = _first_slow_request(config)
    timeout = httpx.Timeout(5.0, read=0.05)
    sim = Simulator(config)
    with (
        httpx.Client(transport=sim.transport(), timeout=timeout) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("http://s/dataapi", content=slow)

    async def fetch() -> None:
        async with httpx.AsyncClient(
            transport=Simulator(config).transport(), timeout=timeout
        ) as client:
            await client.post("http://s/dataapi", content=slow)

    with pytest.raises(httpx.ReadTimeout):
        anyio.run(fetch)


def test_a_patient_client_gets_the_slow_answer() -> None:
    config = dataclasses.replace(TINY, fault_rate=1.0, slow_response_s=0.1)
    slow = _first_slow_request(config)
    status, _, reply = Simulator(config).handle("/", slow)
    assert status == 200 and json.loads(reply)["code"] == 0
