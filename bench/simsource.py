"""Sync from one in-process simulator whose simulated day the harness moves.

`run_sync` opens its own source from the settings and builds a new in-process market
each time; within `sync_from(sim)` every `run_sync` of this process fetches from `sim`
as it is at that moment (source kind `sim`, exactly what `open_source` builds for it),
so the market is built once and the harness can sync day D, call
`sim.set_today(next_day)`, and sync again from the same market. Used by the harness in
its own child processes only. `Waits` collects what the syncs spent waiting for the
source: the rate limiters' sleeps and the simulator's serving time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

import pipeline.sync.runner as sync_module
from foundation.config import Settings
from pipeline.sources import Source
from pipeline.sources.simulator import Simulator
from pipeline.sources.tushare.client import TushareClient
from pipeline.sources.tushare.limits import RateLimits

SIMULATOR_URL = "http://simulator.invalid/"


@dataclass
class Waits:
    """What the syncs waited for the source: rate limiter sleeps, simulator serving.

    The sync runs its calls concurrently, so serving time is the length of the union of
    the calls' serving intervals (wall time during which some call was being answered),
    not their sum.
    """

    limiter_s: float = 0.0
    intervals: list[tuple[float, float]] = field(default_factory=list)

    @property
    def serving_s(self) -> float:
        """Wall seconds during which at least one call was being served."""
        total, end = 0.0, float("-inf")
        for start, stop in sorted(self.intervals):
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total

    @property
    def total_s(self) -> float:
        """Both kinds of wait."""
        return self.limiter_s + self.serving_s


class TimedTransport(httpx.AsyncBaseTransport):
    """The simulator's in-process transport, adding each answer's serving time to `waits`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, waits: Waits) -> None:
        self.inner = inner
        self.waits = waits

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer through the simulator, timed."""
        started = time.perf_counter()
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.waits.intervals.append((started, time.perf_counter()))


def simulator_source(
    simulator: Simulator, settings: Settings, waits: Waits | None = None
) -> Source:
    """A `sim` source answering from `simulator`, paced and retried as `settings` say
    (its serving time added to `waits` when given)."""
    sim = settings.simulator
    limits = RateLimits(sim.points, settings.tushare.limits, default=sim.limit_per_min or 0)
    transport: httpx.AsyncBaseTransport = simulator.transport()
    if waits is not None:
        transport = TimedTransport(transport, waits)
    client = TushareClient(
        SIMULATOR_URL,
        simulator.config.token,
        limits=limits,
        timeout_s=settings.tushare.timeout_s,
        max_retries=settings.run.max_retries,
        retry_delay_s=settings.run.retry_delay_s,
        transport=transport,
    )
    label = f"simulator ({simulator.config.stocks} stocks, seed {simulator.config.seed})"
    return Source("sim", client, sim.points, label, simulator.config.start)


@contextlib.contextmanager
def sync_from(simulator: Simulator, waits: Waits | None = None) -> Iterator[None]:
    """Within the block, `run_sync` fetches from `simulator` (whatever its settings say).

    When `waits` is given, the simulator's serving time is added to it as it goes and
    the seconds each opened source's rate limiters slept when the block ends.
    """
    original = sync_module.open_source
    sources: list[Source] = []

    def opened(settings: Settings, kind: str | None = None) -> Source:
        source = simulator_source(simulator, settings, waits)
        sources.append(source)
        return source

    sync_module.open_source = opened  # type: ignore[assignment]
    try:
        yield
    finally:
        sync_module.open_source = original
        if waits is not None:
            waits.limiter_s += sum(api_waits(source) for source in sources)


def api_waits(source: Source) -> float:
    """The seconds a source's rate limiters have slept so far, over its APIs."""
    limits = source.client.limits
    return sum(limits.limiter(api).waited_s for api in source.client.stats.by_api("calls"))
