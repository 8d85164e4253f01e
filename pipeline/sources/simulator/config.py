"""The settings of one simulated market and of the service that answers for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from foundation.errors import UsageError

EXCHANGES = ("SSE", "SZSE", "BSE")
MAX_STOCKS = 8000  # the real code ranges of the smallest boards hold no more at this board mix
FIRST_START = dt.date(1995, 1, 1)
# The day on which a market holds `stocks` listed companies (a year after `start` when
# that is later). Fixed, so the market never depends on `today`.
REFERENCE_DAY = dt.date(2024, 6, 28)


class SimulatorConfigError(UsageError):
    """A setting the simulated market cannot take: a config value or a new today."""


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated market looks like and how its service behaves.

    The market (listings, prices, statements) depends on `stocks`, `start`, `seed`
    and `exchanges` only: `stocks` companies are listed on its `anchor` day and about
    2% more list in every year after it. `today` (and `Simulator.set_today` later)
    only decides what is visible: a later today shows the same market further on,
    with the same codes and history up to the earlier one. The other fields shape the
    protocol: points, limits, faults (random ones by `fault_rate`, fixed refusals of
    whole APIs by `api_errors`).
    """

    stocks: int = 300
    start: dt.date = dt.date(2015, 1, 1)
    today: dt.date = dt.date(2024, 6, 28)
    seed: int = 7
    points: int = 5000
    limit_per_min: int | None = None
    api_limits: Mapping[str, int] = field(default_factory=dict, hash=False)
    daily_quota: int | None = None
    fault_rate: float = 0.0
    slow_response_s: float = 5.0
    # Every call of these APIs is refused with this (code, message): a source that is
    # rate limited forever, or that sends an unusual code or a huge message.
    api_errors: Mapping[str, tuple[int, str]] = field(default_factory=dict, hash=False)
    token: str = "alphahome-sim"
    exchanges: tuple[str, ...] = EXCHANGES

    @property
    def anchor(self) -> dt.date:
        """The day on which `stocks` companies are listed: `REFERENCE_DAY`, or a year
        after `start` when that is later."""
        return max(REFERENCE_DAY, self.start + dt.timedelta(days=365))

    def __post_init__(self) -> None:
        if not 1 <= self.stocks <= MAX_STOCKS:
            msg = f"stocks must be between 1 and {MAX_STOCKS}, got {self.stocks}"
            raise SimulatorConfigError(msg)
        if not FIRST_START <= self.start < self.today:
            msg = f"start must be on or after {FIRST_START} and before today, got {self.start}"
            raise SimulatorConfigError(msg)
        if not 0.0 <= self.fault_rate <= 1.0:
            msg = f"fault_rate must be between 0 and 1, got {self.fault_rate}"
            raise SimulatorConfigError(msg)
        if self.slow_response_s < 0:
            msg = f"slow_response_s must be >= 0, got {self.slow_response_s}"
            raise SimulatorConfigError(msg)
        for name, value in (
            ("limit_per_min", self.limit_per_min),
            ("daily_quota", self.daily_quota),
        ):
            if value is not None and value < 0:
                msg = f"{name} must be >= 0 or None, got {value}"
                raise SimulatorConfigError(msg)
        bad = [e for e in self.exchanges if e not in EXCHANGES]
        if bad or not self.exchanges:
            msg = f"exchanges must be a non-empty subset of {EXCHANGES}, got {self.exchanges}"
            raise SimulatorConfigError(msg)
