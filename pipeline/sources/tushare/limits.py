"""Per-API rate limits: one pacer per API, shared by every task of a run.

The service counts calls per token and API in a sliding window (60 s for the
per-minute limit). A pacer spaces its calls evenly, `(window + jitter) / limit` apart,
so any window of the server's length sees fewer calls than the limit even when requests
arrive up to `ARRIVAL_JITTER_S` late or early. When the server still answers "limit reached" (the
configured limit was too high), the pacer learns the limit from the message, slows to
it, and holds further calls until the server's window has room again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import anyio

from cache.catalogue.apis import base_api

# Calls per minute by account points (PROTOCOL.md, Limits): defaults, never a substitute
# for `[tushare.limits]`, which wins for every API it names.
POINT_TIERS: tuple[tuple[int, int], ...] = ((10000, 1000), (5000, 500), (2000, 200), (0, 50))
# Documented per-API exceptions (same source), again only defaults.
API_TIERS: dict[str, tuple[tuple[int, int], ...]] = {
    "limit_list_d": ((8000, 500), (0, 200)),
}
ARRIVAL_JITTER_S = 0.6  # how far a request's arrival may drift from its slot (seconds)
# The server's per-minute window, in seconds of our clock. Tests against a simulator
# running on a sped-up clock shrink it; nothing else should change it.
WINDOW_S = 60.0


def margin_for(window_s: float) -> float:
    """The pacing margin, as a share of the window, that absorbs `ARRIVAL_JITTER_S`: 1% of
    the service's minute; more of a shorter window (a simulator on a sped-up clock), whose
    requests drift by as many real seconds."""
    return ARRIVAL_JITTER_S / window_s


def default_per_minute(api: str, points: int) -> int:
    """The documented calls per minute of `api` for an account with `points`."""
    for floor, per_minute in API_TIERS.get(base_api(api), POINT_TIERS):
        if points >= floor:
            return per_minute
    return POINT_TIERS[-1][1]


def per_minute_for(api: str, points: int, configured: Mapping[str, int]) -> int | None:
    """Calls per minute for `api`: `[tushare.limits]` (by exact or base name), else the
    default for the points; None (or a configured 0) means unlimited."""
    for name in (api, base_api(api)):
        if name in configured:
            return configured[name] or None
    return default_per_minute(api, points)


class RateLimiter:
    """Paces the calls of one API: evenly spaced slots plus learned window limits.

    `clock` and `sleep` are injectable so the pacing itself can be tested without
    waiting a real minute.
    """

    def __init__(
        self,
        per_minute: int | None,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.margin = margin_for(window_s)
        self._clock = clock
        self._sleep = sleep
        self._interval = window_s / per_minute * (1 + self.margin) if per_minute else 0.0
        self._next = float("-inf")
        self._sent: deque[float] = deque()
        self._learned: dict[float, int] = {}
        self._lock = anyio.Lock()
        self.waited_s = 0.0

    async def acquire(self) -> float:
        """Wait for this API's next free slot; returns the seconds waited."""
        async with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            for window, limit in self._learned.items():
                inside = [t for t in self._sent if t > slot - window]
                if len(inside) >= limit:
                    slot = max(slot, inside[-limit] + window)
            self._next = slot + self._interval
            self._sent.append(slot)
            horizon = max([self.window_s, *self._learned])
            while self._sent and self._sent[0] <= slot - horizon:
                self._sent.popleft()
        wait = slot - now
        if wait > 0:
            self.waited_s += wait
            await self._sleep(wait)
        return max(wait, 0.0)

    def learn(self, limit: int | None, per: str = "minute") -> None:
        """The server refused a call: at most `limit` calls per minute (or hour) from now.

        Calls already sent (the refused ones included) count towards the window, so the
        next slot is when the oldest of the last `limit` sends leaves it.
        """
        window_s = self.window_s * (60 if per == "hour" else 1)
        if not limit:
            limit = max(1, len([t for t in self._sent if t > self._clock() - window_s]) - 1)
        allowed = max(1, int(limit * (1 - self.margin)))
        self._learned[window_s] = min(self._learned.get(window_s, allowed), allowed)
        self._interval = max(self._interval, window_s / allowed)


class RateLimits:
    """The pacers of a run, one per API called, created on first use from the settings."""

    def __init__(
        self,
        points: int,
        configured: Mapping[str, int] | None = None,
        *,
        default: int | None = None,
        window_s: float | None = None,
    ) -> None:
        """`default` replaces the points tiers for APIs not configured (0 = unlimited);
        `window_s` defaults to `WINDOW_S`."""
        self.points = points
        self.configured = dict(configured or {})
        self.default = default
        self.window_s = WINDOW_S if window_s is None else window_s
        self._limiters: dict[str, RateLimiter] = {}

    def per_minute(self, api: str) -> int | None:
        """The configured calls per minute of `api` (None = unlimited)."""
        unconfigured = api not in self.configured and base_api(api) not in self.configured
        if self.default is not None and unconfigured:
            return self.default or None
        return per_minute_for(api, self.points, self.configured)

    def limiter(self, api: str) -> RateLimiter:
        """The one pacer of `api` for this run."""
        if api not in self._limiters:
            self._limiters[api] = RateLimiter(self.per_minute(api), window_s=self.window_s)
        return self._limiters[api]

    def seconds_for(self, api: str, calls: int) -> float:
        """How long `calls` calls to `api` take at its configured pace (for plan estimates)."""
        per_minute = self.per_minute(api)
        margin = margin_for(self.window_s)
        return 0.0 if not per_minute else calls * self.window_s / per_minute * (1 + margin)
