"""Fixtures of the simulator tests: a small market, shared where tests only read it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pipeline.sources.simulator import Simulator
from tests.simulator.helpers import SMALL


@pytest.fixture(scope="session")
def sim() -> Simulator:
    """A shared simulator: tests using it must not move today or rely on counters."""
    return Simulator(SMALL)


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    """An httpx client answered in-process by the shared simulator."""
    with httpx.Client(transport=sim.transport(), base_url="http://simulator") as c:
        yield c


@pytest.fixture
def fresh() -> Simulator:
    """A simulator of its own (for tests that move today, count calls or hit limits)."""
    return Simulator(SMALL)


@pytest.fixture(scope="session")
def listed(sim: Simulator) -> list[str]:
    """ts_codes listed (status L) at the shared simulator's today, sorted."""
    return sim.ground_truth("stock_basic", list_status="L")["ts_code"].to_list()
