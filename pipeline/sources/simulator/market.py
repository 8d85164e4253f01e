"""The simulated market: its parts, built lazily on first use and kept.

The market depends on the configuration's `stocks`, `start`, `seed` and `exchanges`,
never on `today`. Its parts (the universe, the calendar, report schedules,
fundamentals, the price tape, indexes) are built up to the end of the horizon year
(the later of today's year and the year of the configuration's anchor day) and
rebuilt when `today` moves into a later year; the parts are deterministic and
prefix-stable, so a longer horizon never changes what an earlier one produced: moving
today forward extends the same market.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.sources.simulator.calendar import TradingCalendar
from pipeline.sources.simulator.config import SimulatorConfig, SimulatorConfigError
from pipeline.sources.simulator.fundamentals import Fundamentals, build_fundamentals
from pipeline.sources.simulator.prices import Tape, build_tape
from pipeline.sources.simulator.schedule import Schedule, build_schedule
from pipeline.sources.simulator.universe import Universe, build_universe

T = TypeVar("T")
_CALENDAR_MARGIN_YEARS = 3  # announcements, restatements and delistings reach this far ahead
MEMO_ENTRIES = 48  # answers kept by `Market.memo` (a full-market statement period: ~5 MB)


class Market:
    """One simulated market as of a movable `today`."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.seed = config.seed
        self._today = config.today
        self._lock = threading.RLock()
        self._parts: dict[tuple[str, int], Any] = {}
        self._memo: OrderedDict[tuple[str, int], Any] = OrderedDict()

    @property
    def today(self) -> dt.date:
        """The simulated today: nothing traded or announced after it exists."""
        return self._today

    @today.setter
    def today(self, day: dt.date) -> None:
        if day < self.config.start:
            msg = f"today must not be before the start of history {self.config.start}, got {day}"
            raise SimulatorConfigError(msg)
        with self._lock:
            self._today = day
            horizon = self.horizon_year
            self._parts = {k: v for k, v in self._parts.items() if k[1] == horizon}
            for key in [k for k in self._memo if k[1] != horizon]:
                del self._memo[key]

    def advance(self, sessions: int) -> dt.date:
        """Move today forward by `sessions` open days of the SSE calendar; the new today."""
        if sessions < 0:
            msg = f"can only advance by a non-negative number of trading days, got {sessions}"
            raise SimulatorConfigError(msg)
        calendar = TradingCalendar(self.horizon_year + _CALENDAR_MARGIN_YEARS + sessions // 200)
        later = calendar.open_days[calendar.open_days > self.today_ordinal]
        if sessions:
            self.today = dt.date.fromordinal(int(later[sessions - 1]))
        return self.today

    @property
    def today_ordinal(self) -> int:
        """Today as a day ordinal."""
        return self._today.toordinal()

    @property
    def horizon_year(self) -> int:
        """The last year the time-dependent parts cover."""
        return max(self._today.year, self.config.anchor.year)

    @property
    def first_pid(self) -> int:
        """The first report period with statements (Q1 two years before the start)."""
        return (self.config.start.year - 2) * 4

    def part(self, name: str, build: Callable[[], T]) -> T:
        """A part built once per horizon."""
        key = (name, self.horizon_year)
        with self._lock:
            if key not in self._parts:
                self._parts[key] = build()
            return self._parts[key]

    def memo(self, name: str, build: Callable[[], T]) -> T:
        """A derived table built once per horizon and kept while it is among the
        `MEMO_ENTRIES` most recently used (answers whose rows do not depend on today,
        filtered by today when asked)."""
        key = (name, self.horizon_year)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = build()  # outside the lock: other requests go on meanwhile
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return value

    @property
    def calendar(self) -> TradingCalendar:
        """Open days through the horizon plus a margin."""
        return self.part(
            "calendar", lambda: TradingCalendar(self.horizon_year + _CALENDAR_MARGIN_YEARS)
        )

    @property
    def universe(self) -> Universe:
        """Every stock listed by the end of the horizon (and a few after it)."""
        return self.part(
            "universe", lambda: build_universe(self.config, self.calendar, self.horizon_year)
        )

    @property
    def schedule(self) -> Schedule:
        """Report plans and announcement days."""
        last_pid = (self.horizon_year + 1) * 4 + 3  # covers every listing
        return self.part(
            "schedule",
            lambda: build_schedule(
                self.seed, self.calendar, self.universe, self.first_pid, last_pid
            ),
        )

    @property
    def fundamentals(self) -> Fundamentals:
        """Company fundamentals, shares and dividends."""
        return self.part(
            "fundamentals",
            lambda: build_fundamentals(
                self.seed,
                self.config.start,
                self.calendar,
                self.universe,
                self.schedule,
                self.first_pid - 4,
            ),
        )

    @property
    def tape(self) -> Tape:
        """Daily closes from the start of history to the end of the horizon year."""
        last = dt.date(self.horizon_year, 12, 31)
        return self.part(
            "tape",
            lambda: build_tape(
                self.seed, self.calendar, self.universe, self.fundamentals, self.config.start, last
            ),
        )
