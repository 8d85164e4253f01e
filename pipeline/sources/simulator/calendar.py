"""The trading calendar: weekends and Chinese public holidays (approximate, fixed per year).

Holidays follow simple rules that resemble the real schedule: New Year's Day, the
Spring Festival week (eve to the fifth day), Qingming, Labour Day (three days, five
from 2020), Dragon Boat and Mid-Autumn (lunar dates approximated from the Spring
Festival), National Day week. A one-day holiday on a weekend moves to the Monday.
SSE, SZSE and BSE share the calendar. Days are proleptic ordinals (`date.toordinal`).
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
from numpy.typing import NDArray

FIRST_DAY = dt.date(1990, 12, 19)  # first SSE trading day

# Spring Festival (lunar new year) dates; outside the table the 19-year Metonic cycle
# gives a date within a day or two.
_SPRING_FESTIVAL = {
    1990: (1, 27),
    1991: (2, 15),
    1992: (2, 4),
    1993: (1, 23),
    1994: (2, 10),
    1995: (1, 31),
    1996: (2, 19),
    1997: (2, 7),
    1998: (1, 28),
    1999: (2, 16),
    2000: (2, 5),
    2001: (1, 24),
    2002: (2, 12),
    2003: (2, 1),
    2004: (1, 22),
    2005: (2, 9),
    2006: (1, 29),
    2007: (2, 18),
    2008: (2, 7),
    2009: (1, 26),
    2010: (2, 14),
    2011: (2, 3),
    2012: (1, 23),
    2013: (2, 10),
    2014: (1, 31),
    2015: (2, 19),
    2016: (2, 8),
    2017: (1, 28),
    2018: (2, 16),
    2019: (2, 5),
    2020: (1, 25),
    2021: (2, 12),
    2022: (2, 1),
    2023: (1, 22),
    2024: (2, 10),
    2025: (1, 29),
    2026: (2, 17),
    2027: (2, 6),
    2028: (1, 26),
    2029: (2, 13),
    2030: (2, 3),
    2031: (1, 23),
    2032: (2, 11),
    2033: (1, 31),
    2034: (2, 19),
    2035: (2, 8),
}
_DRAGON_BOAT_AFTER_NEW_YEAR = 122  # days; lunar 5/5 is ~4 lunar months after 1/1
_MID_AUTUMN_AFTER_NEW_YEAR = 221  # days; lunar 8/15


def spring_festival(year: int) -> dt.date:
    """The lunar new year's day of `year` (table, else the 19-year cycle)."""
    if year in _SPRING_FESTIVAL:
        month, day = _SPRING_FESTIVAL[year]
        return dt.date(year, month, day)
    known = next(y for y in _SPRING_FESTIVAL if (y - year) % 19 == 0)
    month, day = _SPRING_FESTIVAL[known]
    return dt.date(year, month, day)


def _observed(day: dt.date) -> dt.date:
    """A one-day holiday on a weekend is taken on the following Monday."""
    return day + dt.timedelta(days=(7 - day.weekday()) % 7) if day.weekday() >= 5 else day


def _span(first: dt.date, days: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(days)]


@cache
def holidays(year: int) -> frozenset[dt.date]:
    """Market holidays of one year (weekdays and weekends alike)."""
    new_year = spring_festival(year)
    labour_days = 5 if year >= 2020 else 3
    qingming = dt.date(year, 4, 4 if year % 4 in (0, 1) else 5)
    days = {
        _observed(dt.date(year, 1, 1)),
        *_span(new_year - dt.timedelta(days=1), 7),
        _observed(qingming),
        *_span(dt.date(year, 5, 1), labour_days),
        _observed(new_year + dt.timedelta(days=_DRAGON_BOAT_AFTER_NEW_YEAR)),
        _observed(new_year + dt.timedelta(days=_MID_AUTUMN_AFTER_NEW_YEAR)),
        *_span(dt.date(year, 10, 1), 7),
    }
    return frozenset(days)


def is_open(day: dt.date) -> bool:
    """True on a trading day."""
    return day >= FIRST_DAY and day.weekday() < 5 and day not in holidays(day.year)


class TradingCalendar:
    """Open days from the first SSE session to the end of `last_year`, as ordinals."""

    def __init__(self, last_year: int) -> None:
        self.last_year = last_year
        first, last = FIRST_DAY.toordinal(), dt.date(last_year, 12, 31).toordinal()
        self.days = np.arange(first, last + 1, dtype=np.int64)
        self.is_open = np.array([is_open(dt.date.fromordinal(int(d))) for d in self.days])
        self.open_days: NDArray[np.int64] = self.days[self.is_open]

    def pretrade(self, days: NDArray[np.int64]) -> NDArray[np.int64]:
        """The last open day strictly before each day (0 when there is none)."""
        i = np.searchsorted(self.open_days, days, side="left") - 1
        return np.where(i >= 0, self.open_days[np.maximum(i, 0)], 0)

    def on_or_before(self, days: NDArray[np.int64]) -> NDArray[np.int64]:
        """Each day if open, else the open day before it."""
        i = np.searchsorted(self.open_days, days, side="right") - 1
        return self.open_days[np.maximum(i, 0)]

    def on_or_after(self, days: NDArray[np.int64]) -> NDArray[np.int64]:
        """Each day if open, else the open day after it (the last open day at the end)."""
        i = np.searchsorted(self.open_days, days, side="left")
        return self.open_days[np.minimum(i, len(self.open_days) - 1)]

    def shift(
        self, days: NDArray[np.int64], sessions: int | NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """The open day `sessions` sessions after each (open) day; clipped to the calendar."""
        i = np.searchsorted(self.open_days, days, side="left") + sessions
        return self.open_days[np.clip(i, 0, len(self.open_days) - 1)]

    def open_between(self, first: int, last: int) -> NDArray[np.int64]:
        """Open days with first <= day <= last."""
        lo = np.searchsorted(self.open_days, first, side="left")
        hi = np.searchsorted(self.open_days, last, side="right")
        return self.open_days[lo:hi]
