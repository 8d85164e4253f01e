"""The parameters of one request, normalised, and the selections they describe.

Values arrive as strings, numbers or null; null and "" mean "not given", numbers are
read as their text, lists as comma-separated text. Unknown parameters are kept but no
handler reads them, which is how the service ignores them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from foundation.errors import UsageError

_DATE = re.compile(r"^\d{8}$")


class ParamError(UsageError):
    """A parameter the service cannot use (bad date, missing required one)."""


def normalise(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Given parameters as text; null and empty ones dropped."""
    out: dict[str, str] = {}
    for name, value in (params or {}).items():
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value if v is not None and v != "")
        elif isinstance(value, dt.date):
            text = value.strftime("%Y%m%d")
        elif isinstance(value, bool):
            text = str(int(value))
        else:
            text = str(value).strip()
        if text:
            out[str(name)] = text
    return out


@dataclass(frozen=True)
class Query:
    """What one request asks for, as of the market's today.

    `budget`: the most rows the caller will keep (offset + row cap + 1); handlers that
    scan newest-first may stop once they have that many. None: every row. `offset`:
    the first rows the caller skips; handlers that page themselves (ApiHandler
    `pages_itself`) return only rows offset .. budget.
    """

    params: Mapping[str, str]
    today: int
    budget: int | None = None
    offset: int = 0

    def window(self, rows: int) -> slice:
        """The rows a self-paging handler returns, out of `rows` in order."""
        return slice(
            min(self.offset, rows), rows if self.budget is None else min(self.budget, rows)
        )

    def text(self, name: str) -> str | None:
        """A parameter's text, None when not given."""
        return self.params.get(name)

    def items(self, name: str) -> list[str] | None:
        """A comma-separated parameter as its items, None when not given."""
        value = self.params.get(name)
        return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

    def day(self, name: str) -> int | None:
        """A YYYYMMDD parameter as a day ordinal, None when not given."""
        value = self.params.get(name)
        if value is None:
            return None
        if not _DATE.match(value):
            msg = f"参数{name}格式错误，应为YYYYMMDD：{value}"
            raise ParamError(msg)
        try:
            return dt.date(int(value[:4]), int(value[4:6]), int(value[6:])).toordinal()
        except ValueError:
            msg = f"参数{name}不是有效日期：{value}"
            raise ParamError(msg) from None

    def day_range(
        self, exact: str, first: str = "start_date", last: str = "end_date"
    ) -> tuple[int, int]:
        """[first, last] ordinals from an exact day or a start/end pair, capped at today."""
        day = self.day(exact)
        if day is not None:
            return day, min(day, self.today)
        lo = self.day(first)
        hi = self.day(last)
        return (lo if lo is not None else 0), min(hi if hi is not None else self.today, self.today)

    def matches(self, name: str, values: NDArray[Any]) -> NDArray[np.bool_]:
        """Rows whose value is one of the parameter's items (all rows when not given)."""
        wanted = self.items(name)
        if wanted is None:
            return np.ones(len(values), dtype=bool)
        return np.isin(np.asarray(values).astype(str), wanted)

    def day_matches(self, name: str, days: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Rows whose day ordinal equals the parameter (all rows when not given)."""
        wanted = self.day(name)
        return np.ones(len(days), dtype=bool) if wanted is None else days == wanted
