"""Moving a running simulator's today from another process (`ah sim advance`).

A served simulator (`ah sim serve`) answers `POST /_sim/today` from loopback clients:
`{"today": "YYYYMMDD"}` sets the day, `{"advance": N}` moves it N open days forward,
an empty body only reports it; the answer is `{"today": "YYYYMMDD"}`. Moving today
forward extends the same market, so a cache synced before the move stays valid and the
next sync fetches only the new days.
"""

from __future__ import annotations

import datetime as dt
import json

import httpx

from foundation.errors import AlphahomeError
from pipeline.sources.simulator.config import SimulatorConfigError

ADMIN_PATH = "/_sim/today"


class SimulatorUnreachableError(AlphahomeError):
    """No simulator answered the admin request at the given address."""


def move_today(
    url: str, *, to: dt.date | None = None, days: int | None = None, timeout_s: float = 30.0
) -> dt.date:
    """Set (`to`) or advance (`days` open days) the today of the simulator serving at
    `url`, or only read it when neither is given; the simulator's today afterwards."""
    if to is not None and days is not None:
        msg = f"give a day or a number of days, not both (got {to} and {days})"
        raise SimulatorConfigError(msg)
    request: dict[str, object] = {}
    if to is not None:
        request["today"] = to.strftime("%Y%m%d")
    elif days is not None:
        request["advance"] = days
    address = url.rstrip("/").removesuffix("/dataapi") + ADMIN_PATH
    try:
        reply = httpx.post(address, json=request, timeout=timeout_s)
    except httpx.HTTPError as problem:
        msg = f"no simulator answered at {url}: {type(problem).__name__}"
        raise SimulatorUnreachableError(msg) from None
    try:
        answer = json.loads(reply.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        answer = None
    if not isinstance(answer, dict):
        msg = f"{url} is not a simulator: HTTP {reply.status_code} to {ADMIN_PATH}"
        raise SimulatorUnreachableError(msg)
    if reply.status_code == 400:
        msg = f"the simulator refused the move: {answer.get('error')}"
        raise SimulatorConfigError(msg)
    if reply.status_code != 200 or "today" not in answer:
        msg = f"the simulator at {url} answered HTTP {reply.status_code}: {answer.get('error')}"
        raise SimulatorUnreachableError(msg)
    text = str(answer["today"])
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
