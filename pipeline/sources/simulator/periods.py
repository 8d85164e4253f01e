"""Report periods: quarter ids, their end dates and statutory announcement deadlines.

A period id is `year * 4 + quarter - 1` (2024Q2 -> 8097), so consecutive quarters
are consecutive integers and `pid - 4` is the same quarter a year earlier.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from numpy.typing import NDArray

from foundation.errors import InternalError

_ENDS = ((3, 31), (6, 30), (9, 30), (12, 31))
# Deadlines: Q1 by 30 Apr, H1 by 31 Aug, Q3 by 31 Oct, annual by 30 Apr of the next year.
_DEADLINES = ((0, 4, 30), (0, 8, 31), (0, 10, 31), (1, 4, 30))


def pid_of(day: dt.date) -> int:
    """The id of the period that ends on `day` (which must be a quarter end)."""
    if (day.month, day.day) not in _ENDS:
        msg = f"{day} is not a quarter end"
        raise InternalError(msg)
    return day.year * 4 + (day.month - 1) // 3


def end_of(pid: int) -> dt.date:
    """The last day of a period."""
    year, q = divmod(pid, 4)
    month, day = _ENDS[q]
    return dt.date(year, month, day)


def deadline_of(pid: int) -> dt.date:
    """The last day the report of a period may be announced."""
    year, q = divmod(pid, 4)
    offset, month, day = _DEADLINES[q]
    return dt.date(year + offset, month, day)


def end_days(pids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Ordinals of the period ends."""
    unique, inverse = np.unique(np.asarray(pids, dtype=np.int64), return_inverse=True)
    return np.array([end_of(int(p)).toordinal() for p in unique], dtype=np.int64)[inverse].reshape(
        np.shape(pids)
    )


def deadline_days(pids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Ordinals of the announcement deadlines."""
    unique, inverse = np.unique(np.asarray(pids, dtype=np.int64), return_inverse=True)
    return np.array([deadline_of(int(p)).toordinal() for p in unique], dtype=np.int64)[
        inverse
    ].reshape(np.shape(pids))
