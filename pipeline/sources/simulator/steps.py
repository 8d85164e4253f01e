"""Per-stock values that change on given days (shares, names, industry, known financials).

A `StepSeries` answers "what was the value for stock s on day d" for whole arrays of
(s, d) pairs with one binary search, so lookups vectorise across stocks and dates.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_DAY_BITS = 21  # day ordinals stay below 2**21 until the year 5700


class StepSeries:
    """Values per stock, each holding from its day until the stock's next change."""

    def __init__(self, stocks: ArrayLike, days: ArrayLike, columns: dict[str, ArrayLike]) -> None:
        s = np.asarray(stocks, dtype=np.int64)
        d = np.asarray(days, dtype=np.int64)
        order = np.lexsort((d, s))
        self._keys = (s[order] << _DAY_BITS) | d[order]
        self._stocks = s[order]
        self.columns = {name: np.asarray(v)[order] for name, v in columns.items()}

    def index_at(self, stocks: ArrayLike, days: ArrayLike) -> NDArray[np.int64]:
        """Row of the change in force for each (stock, day); -1 before the stock's first change."""
        s = np.asarray(stocks, dtype=np.int64)
        keys = (s << _DAY_BITS) | np.asarray(days, dtype=np.int64)
        i = np.searchsorted(self._keys, keys, side="right") - 1
        found = (i >= 0) & (self._stocks[np.maximum(i, 0)] == s)
        return np.where(found, i, -1)

    def at(self, name: str, stocks: ArrayLike, days: ArrayLike, default: ArrayLike) -> NDArray:
        """The value of column `name` in force for each (stock, day), `default` before any."""
        i = self.index_at(stocks, days)
        values = self.columns[name]
        picked = values[np.maximum(i, 0)] if len(values) else np.full(i.shape, default)
        return np.where(i >= 0, picked, default)


def running_product(stocks: NDArray[np.int64], factors: NDArray[np.float64]) -> NDArray[np.float64]:
    """Running product of factors within each stock (rows sorted by stock, then day)."""
    running = np.cumsum(np.log(factors))
    first = np.r_[True, stocks[1:] != stocks[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(stocks)), 0))
    return np.exp(running - np.r_[0.0, running][group_start])
