"""The fixed, seeded scenarios the harness runs: the market and the size of each stage.

`small` is the demo market (CI-scale, under two minutes in all); `full` the whole
market over fifteen years; `tiny` only keeps the harness from rotting (its test).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Bump when the prepared cache must be rebuilt for the same parameters (e.g. the
# datasets it holds change).
DATA_VERSION = 2

# The raw datasets the prepared cache holds: what PIT, P and G read, plus daily bars.
DATA_TASKS: tuple[str, ...] = (
    "trade_cal",
    "stock_basic",
    "daily",
    "income",
    "balancesheet",
    "cashflow",
    "express",
    "forecast",
    "index_classify",
    "index_member_all",
)

# The sync stage: whole-market APIs asked one trade date per call, so the calls (and
# so the minutes at the limit) depend on the window of dates, not on the market size.
SYNC_TASKS: tuple[str, ...] = ("trade_cal", "stock_basic", "adj_factor", "daily_basic")
SYNC_RATE_BOUND: tuple[str, ...] = ("adj_factor", "daily_basic")

# The simulated today of every scenario: a Thursday in the half-year reporting season,
# so the "one more day" of the incremental PIT build brings new statements from a few
# percent of the stocks, as a typical reporting-season day does.
TODAY = dt.date(2024, 8, 22)


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario.

    Market: `stocks`, `start`, `today`, `seed` of the simulator. `reps`: repetitions of
    each measured operation. `sync_limit_per_min` and `sync_trade_dates`: the server's
    per-minute limit and the window synced in stage 2 (about `sync_trade_dates /
    sync_limit_per_min` minutes of calls). `reference_dates`: calc dates the factor
    loop reference computes (then extrapolated); `to_sql_rows`: rows `to_sql` writes
    (extrapolated); `load_dataset`: the cache dataset loaded in stage 5.
    """

    name: str
    stocks: int
    start: dt.date
    today: dt.date
    seed: int
    reps: int
    workers: int
    sync_limit_per_min: int
    sync_trade_dates: int
    reference_dates: int
    to_sql_rows: int
    load_dataset: str = "raw.daily"

    @property
    def years(self) -> float:
        """Length of the simulated history."""
        return round((self.today - self.start).days / 365.25, 1)

    def market_key(self) -> dict[str, Any]:
        """What the prepared cache depends on."""
        return {
            "stocks": self.stocks,
            "start": self.start.isoformat(),
            "today": self.today.isoformat(),
            "seed": self.seed,
            "tasks": list(DATA_TASKS),
            "data_version": DATA_VERSION,
        }

    def fingerprint(self) -> str:
        """A short hash of `market_key`: equal fingerprints, reusable cache."""
        text = json.dumps(self.market_key(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The scenario as printed in the results."""
        doc = dataclasses.asdict(self)
        doc["start"] = self.start.isoformat()
        doc["today"] = self.today.isoformat()
        doc["years"] = self.years
        doc["fingerprint"] = self.fingerprint()
        return doc


SCENARIOS: dict[str, Scenario] = {
    "tiny": Scenario(
        name="tiny",
        stocks=30,
        start=dt.date(2023, 9, 1),
        today=TODAY,
        seed=7,
        reps=1,
        workers=2,
        sync_limit_per_min=600,
        sync_trade_dates=20,
        reference_dates=2,
        to_sql_rows=2_000,
    ),
    "small": Scenario(
        name="small",
        stocks=300,
        start=dt.date(2021, 3, 1),
        today=TODAY,
        seed=7,
        reps=3,
        workers=2,
        sync_limit_per_min=300,
        sync_trade_dates=150,
        reference_dates=2,
        to_sql_rows=10_000,
    ),
    "full": Scenario(
        name="full",
        stocks=5000,
        start=dt.date(2009, 9, 1),
        today=TODAY,
        seed=7,
        reps=3,
        workers=2,
        sync_limit_per_min=300,
        sync_trade_dates=300,
        reference_dates=3,
        to_sql_rows=50_000,
    ),
}


def scenario(name: str) -> Scenario:
    """The scenario called `name`."""
    if name not in SCENARIOS:
        msg = f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}"
        raise ValueError(msg)
    return SCENARIOS[name]
