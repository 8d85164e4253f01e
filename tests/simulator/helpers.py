"""Shared helpers of the simulator tests: the small market, a fake clock, request bodies."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx

from pipeline.sources.simulator import SimulatorConfig

# 120 stocks over 5.5 years: every board, all three financial templates (banks at
# indexes 7, 57, 107; brokers 13, 113; an insurer at 29), delistings and late filers.
SMALL = SimulatorConfig(stocks=120, start=dt.date(2019, 1, 1), today=dt.date(2024, 6, 28), seed=11)


class FakeClock:
    """A clock tests move by hand (seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(
    api: str, params: dict[str, Any] | None = None, fields: Any = "", token: str = SMALL.token
) -> bytes:
    """A request body as the SDK sends it."""
    return json.dumps(
        {"api_name": api, "token": token, "params": params or {}, "fields": fields}
    ).encode()


def call(
    client: httpx.Client,
    api: str,
    params: dict[str, Any] | None = None,
    fields: Any = "",
    **kw: Any,
) -> dict[str, Any]:
    """POST one request and return the decoded answer (asserting HTTP 200)."""
    response = client.post("/dataapi", content=body(api, params, fields, **kw))
    assert response.status_code == 200, response.text
    return response.json()
