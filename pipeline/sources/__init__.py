"""Data sources: the real Tushare Pro service, or the built-in simulator in process.

`open_source` builds the one client of a run. Simulated data must never pass for real:
the real source needs a token, and without one (and without an explicit `sim`) fetching
stops with a message pointing at `--source sim`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation.config import Settings, mask_url
from foundation.errors import UsageError
from foundation.logs import register_secrets
from pipeline.sources.tushare.client import TushareClient
from pipeline.sources.tushare.limits import RateLimits

if TYPE_CHECKING:
    from pipeline.sources.simulator import SimulatorConfig

__all__ = [
    "SOURCE_KINDS",
    "Source",
    "check_source_kind",
    "market_today",
    "open_source",
    "simulator_config",
]

SOURCE_KINDS = ("tushare", "sim")


@dataclass(frozen=True)
class Source:
    """The client of a run and what the run needs to know about its source."""

    kind: str
    client: TushareClient
    points: int
    label: str
    history_start: dt.date | None = None  # nothing older exists (the simulator's start)


def simulator_config(settings: Settings, **overrides: Any) -> SimulatorConfig:
    """The simulator's configuration from `[simulator]` (what `ah sim serve` serves)."""
    from pipeline.sources.simulator import SimulatorConfig

    sim = settings.simulator
    values: dict[str, Any] = {
        "stocks": sim.stocks,
        "start": sim.start,
        "today": sim.today,
        "seed": sim.seed,
        "points": sim.points,
        "limit_per_min": sim.limit_per_min,
        "fault_rate": sim.fault_rate,
    }
    return SimulatorConfig(**{**values, **overrides})


def check_source_kind(kind: str) -> None:
    """`UsageError` unless `kind` is a source alphahome has (`--source`, `source.kind`)."""
    if kind not in SOURCE_KINDS:
        msg = f"unknown source {kind!r}; expected one of {', '.join(SOURCE_KINDS)}"
        raise UsageError(msg)


def market_today(settings: Settings, kind: str | None = None) -> dt.date:
    """Today as the source sees it: the simulator's today, or the date in Shanghai."""
    if (kind or settings.source.kind) == "sim":
        return settings.simulator.today
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()


def open_source(settings: Settings, kind: str | None = None) -> Source:
    """The client for `kind` (default `[source] kind`): `tushare` or `sim`.

    `tushare` talks to `tushare.base_url` with the configured token, points and limits.
    `sim` answers from an in-process simulator built from `[simulator]`, with its token;
    without a configured per-minute limit it runs unthrottled.
    """
    kind = kind or settings.source.kind
    check_source_kind(kind)
    run = settings.run
    if kind == "sim":
        from pipeline.sources.simulator import Simulator

        sim_settings = settings.simulator
        # unset limit: the in-process market answers as fast as it can (0 = unlimited)
        simulator = Simulator(
            simulator_config(settings, limit_per_min=sim_settings.limit_per_min or 0)
        )
        limits = RateLimits(
            sim_settings.points,
            settings.tushare.limits,
            default=sim_settings.limit_per_min or 0,
        )
        client = TushareClient(
            "http://simulator.invalid/",
            simulator.config.token,
            limits=limits,
            timeout_s=settings.tushare.timeout_s,
            max_retries=run.max_retries,
            retry_delay_s=run.retry_delay_s,
            call_deadline_s=settings.tushare.call_deadline_s,
            transport=simulator.transport(),
        )
        label = f"simulator ({sim_settings.stocks} stocks, seed {sim_settings.seed})"
        return Source("sim", client, sim_settings.points, label, sim_settings.start)
    token = settings.tushare.token
    if not token:
        msg = (
            "no Tushare token: set TUSHARE_TOKEN or [tushare] token, "
            "or run with --source sim to use the built-in simulator"
        )
        raise UsageError(msg)
    register_secrets([token])
    client = TushareClient(
        settings.tushare.base_url,
        token,
        limits=RateLimits(settings.tushare.points, settings.tushare.limits),
        timeout_s=settings.tushare.timeout_s,
        max_retries=run.max_retries,
        retry_delay_s=run.retry_delay_s,
        call_deadline_s=settings.tushare.call_deadline_s,
    )
    label = mask_url(settings.tushare.base_url)
    return Source("tushare", client, settings.tushare.points, label)
