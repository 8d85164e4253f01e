"""Sync from one in-process simulator whose simulated day the harness moves.

`run_sync` opens its own source from the settings, and a `[simulator]` market is
anchored on its configured `today`: a different `today` is a different market, so
"one more simulated day" cannot be had through the settings. Within `sync_from(sim)`
every `run_sync` of this process fetches from `sim` as it is at that moment (source kind
`sim`, exactly what `open_source` builds for it), so the harness can sync day D, call
`sim.set_today(next_day)`, and sync again from the same market. Used only while the
harness prepares its cache, in its own child process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pipeline.sync.runner as sync_module
from foundation.config import Settings
from pipeline.sources import Source
from pipeline.sources.simulator import Simulator
from pipeline.sources.tushare.client import TushareClient
from pipeline.sources.tushare.limits import RateLimits

SIMULATOR_URL = "http://simulator.invalid/"


def simulator_source(simulator: Simulator, settings: Settings) -> Source:
    """A `sim` source answering from `simulator`, paced and retried as `settings` say."""
    sim = settings.simulator
    limits = RateLimits(sim.points, settings.tushare.limits, default=sim.limit_per_min or 0)
    client = TushareClient(
        SIMULATOR_URL,
        simulator.config.token,
        limits=limits,
        timeout_s=settings.tushare.timeout_s,
        max_retries=settings.run.max_retries,
        retry_delay_s=settings.run.retry_delay_s,
        transport=simulator.transport(),
    )
    label = f"simulator ({simulator.config.stocks} stocks, seed {simulator.config.seed})"
    return Source("sim", client, sim.points, label, simulator.config.start)


@contextlib.contextmanager
def sync_from(simulator: Simulator, waits: list[float] | None = None) -> Iterator[None]:
    """Within the block, `run_sync` fetches from `simulator` (whatever its settings say).

    When `waits` is given, the seconds each opened source's rate limiters slept are
    appended to it when the block ends.
    """
    original = sync_module.open_source
    sources: list[Source] = []

    def opened(settings: Settings, kind: str | None = None) -> Source:
        source = simulator_source(simulator, settings)
        sources.append(source)
        return source

    sync_module.open_source = opened  # type: ignore[assignment]
    try:
        yield
    finally:
        sync_module.open_source = original
        if waits is not None:
            waits += [api_waits(source) for source in sources]


def api_waits(source: Source) -> float:
    """The seconds a source's rate limiters have slept so far, over its APIs."""
    limits = source.client.limits
    return sum(limits.limiter(api).waited_s for api in source.client.stats.by_api("calls"))
