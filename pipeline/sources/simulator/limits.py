"""Call limits the service enforces: calls per minute (sliding 60 s window) and per day,
for each API and token.

Per-minute limits follow the account's points tier unless configured (PROTOCOL.md:
50/min below 2000 points, 200 from 2000, 500 from 5000, 1000 from 10000;
limit_list_d 200/min below 8000 points). Only admitted calls count.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable

from pipeline.sources.simulator.config import SimulatorConfig

TIERS = ((10000, 1000), (5000, 500), (2000, 200), (0, 50))
API_TIERS = {"limit_list_d": ((8000, 500), (0, 200))}
WINDOW_S = 60.0
BEIJING_OFFSET_S = 8 * 3600


def per_minute(config: SimulatorConfig, api: str) -> int | None:
    """Calls per minute allowed for `api`; None when unlimited."""
    if api in config.api_limits:
        limit = config.api_limits[api]
    elif config.limit_per_min is not None:
        limit = config.limit_per_min
    else:
        tiers = API_TIERS.get(api, TIERS)
        limit = next(n for floor, n in tiers if config.points >= floor)
    return limit or None


class CallLimiter:
    """Admits or refuses calls; thread-safe."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._daily: dict[tuple[str, str, int], int] = defaultdict(int)

    def admit(self, token: str, api: str) -> tuple[str, int] | None:
        """None when the call may proceed (and it is counted), else ("minute" | "day", limit)."""
        now = self._clock()
        minute = per_minute(self._config, api)
        quota = self._config.daily_quota or None
        day = int((now + BEIJING_OFFSET_S) // 86400)
        with self._lock:
            recent = self._recent[(token, api)]
            while recent and recent[0] <= now - WINDOW_S:
                recent.popleft()
            if minute is not None and len(recent) >= minute:
                return "minute", minute
            if quota is not None and self._daily[(token, api, day)] >= quota:
                return "day", quota
            recent.append(now)
            self._daily[(token, api, day)] += 1
        return None
