"""Answers for the long tail: every catalogued API beyond the 26 with detailed generators.

Rows are made from the API's coverage (`cache.catalogue.coverage`: unit, date
parameter, key) and its documented field names and types:

- one row per (date, code, k): dates are the unit's (open days of the SSE calendar,
  report periods, months; today for snapshots and per-code APIs), codes the area's
  universe (`listings`; the simulated A-shares listed on the date for stock APIs),
  and k numbers the rows a key tells apart beyond date and code (holders, brokers,
  minutes), so every row is unique on the key by construction;
- values depend on the row's identity only (date, code, k, field), never on the
  request, so ranges, single days and pages agree; a parameter named like a field
  sets that field (fut_basic's exchange, stk_weekly_monthly's freq);
- rows come newest first, and a request with a row budget stops once it is met.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from cache.catalogue.coverage import Coverage, coverage
from pipeline.sources.simulator import frames
from pipeline.sources.simulator.listings import FUTURES_EXCHANGE, codes_for
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.query import Query

EXTRA_ROWS = 3  # rows per (date, code) told apart by the rest of the key
SNAPSHOT_ROWS = 8  # rows of a list without codes (film records, GDP quarters)
MONTHS_BACK = 24
QUARTERS_BACK = 8
NULL_DATES = frozenset({"delist_date", "out_date"})
PAST_DATES = frozenset({"list_date", "setup_date", "found_date", "issue_date", "base_date"})
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def answer(market: Market, q: Query, api: str) -> pl.DataFrame:
    """The rows of `api` for the request (see the module docstring)."""
    c = coverage(api)
    codes = _codes(market, c, q)
    days = _days(market, c, q)
    extras = _extra_key(c, q)
    per = (SNAPSHOT_ROWS if codes is None and c.unit == "snapshot" else EXTRA_ROWS) if extras else 1
    n_codes = 1 if codes is None else len(codes)
    step = len(days) if q.budget is None else max(1, q.budget // max(n_codes * per, 1) + 1)
    out: list[pl.DataFrame] = []
    total = 0
    for i in range(0, len(days), max(step, 1)):
        frame = _rows(market, c, q, days[i : i + step], codes, per, set(extras))
        out.append(frame)
        total += frame.height
        if q.budget is not None and total >= q.budget:
            break
    return frames.concat(out, api)


# ------------------------------------------------------------------ dimensions


def _codes(market: Market, c: Coverage, q: Query) -> NDArray[np.str_] | None:
    """The codes rows are made for (sorted), None when the API has no ts_code field."""
    if "ts_code" not in c.spec.field_names:
        return None
    fixed = codes_for(c.api, c.area, q.text("market"))
    pool = market.universe.ts_code if fixed is None else np.array(fixed)
    wanted = q.items("ts_code")
    if wanted is not None:
        pool = pool[np.isin(pool, wanted)]
    exchange = q.text("exchange")
    if exchange is not None and c.area == "futures":
        pool = np.array([x for x in pool.tolist() if _exchange(x) == exchange], dtype=str)
    return np.sort(pool)


def _days(market: Market, c: Coverage, q: Query) -> NDArray[np.int64]:
    """The dates rows are made for, newest first (ordinals)."""
    today = market.today_ordinal
    if c.unit == "trade_date" and c.date_param:
        lo, hi = q.day_range(c.date_param)
        first = max(lo, market.config.start.toordinal())
        return market.calendar.open_between(first, min(hi, today))[::-1]
    if c.unit == "period" and c.date_param:
        exact = q.day(c.date_param)
        ends = _quarter_ends(market.today)
        return np.array([d for d in ends if exact is None or d == exact], dtype=np.int64)
    if c.unit == "month" and c.date_param:
        return _months(market.today, q, c.date_param)
    return np.array([today], dtype=np.int64)


def _quarter_ends(today: dt.date) -> list[int]:
    out = []
    year, quarter = today.year, (today.month - 1) // 3  # the last quarter ended before today
    for _ in range(QUARTERS_BACK):
        if quarter == 0:
            year, quarter = year - 1, 4
        month = 3 * quarter
        end = dt.date(year, month, 31 if month in (3, 12) else 30)
        out.append(end.toordinal())
        quarter -= 1
    return out


def _months(today: dt.date, q: Query, param: str) -> NDArray[np.int64]:
    """First days of the asked months up to today's, newest first."""
    months = []
    y, m = today.year, today.month
    for _ in range(MONTHS_BACK):
        months.append(dt.date(y, m, 1))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    exact = q.text(param)
    first, last = q.text(f"start_{param}"), q.text(f"end_{param}")
    keep = [
        d
        for d in months
        if (exact is None or d.strftime("%Y%m") == exact[:6])
        and (first is None or d.strftime("%Y%m") >= first[:6])
        and (last is None or d.strftime("%Y%m") <= last[:6])
    ]
    return np.array([d.toordinal() for d in keep], dtype=np.int64)


def _unit_columns(c: Coverage) -> set[str]:
    """Key columns the date dimension fills."""
    if c.unit in ("trade_date", "period") and c.date_field:
        return {c.date_field}
    if c.unit == "month":
        return {"month"}
    return set()


def _extra_key(c: Coverage, q: Query) -> list[str]:
    """Key columns beyond date and code that no parameter fixes: k tells rows apart."""
    fixed = _unit_columns(c) | {"ts_code"} | set(q.params)
    return [k for k in c.key if k not in fixed]


# ------------------------------------------------------------------ rows


def _rows(
    market: Market,
    c: Coverage,
    q: Query,
    days: NDArray[np.int64],
    codes: NDArray[np.str_] | None,
    per: int,
    extras: set[str],
) -> pl.DataFrame:
    n_codes = 1 if codes is None else len(codes)
    d = np.repeat(days, n_codes * per)
    code_idx = np.tile(np.repeat(np.arange(n_codes), per), len(days))
    k = np.tile(np.arange(per), len(days) * n_codes)
    code = None if codes is None else codes[code_idx]
    if code is not None and codes_for(c.api, c.area, q.text("market")) is None:
        u = market.universe
        at = np.array([u.index_of[x] for x in code.tolist()], dtype=np.int64)
        listed = (u.list_day[at] <= d) & (d < u.delist_day[at])
        d, k, code = d[listed], k[listed], code[listed]
    ident = _mix(d.astype(np.uint64) * np.uint64(1_000_003) + k.astype(np.uint64))
    if code is not None:
        ident ^= _mix(np.array([zlib.crc32(x.encode()) for x in code.tolist()], dtype=np.uint64))
    unit_cols = _unit_columns(c)
    columns: dict[str, Any] = {}
    for f in c.spec.fields:
        seed = np.uint64(zlib.crc32(f"{c.api}.{f.name}".encode()))
        v = _mix(ident ^ seed)
        if f.name == "ts_code" and code is not None:
            columns[f.name] = code.tolist()
        elif f.name in unit_cols:
            columns[f.name] = _date_value(f.name, f.type, d)
        elif f.name in extras:
            columns[f.name] = _extra_value(f.name, f.type, d, k)
        elif f.name in q.params and f.type == "str":
            columns[f.name] = [q.params[f.name]] * len(d)
        else:
            columns[f.name] = _value(market, f.name, f.type, d, v, code)
    return frames.build(c.api, len(d), columns)


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: a well-spread 64-bit hash of each value."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _date_value(name: str, kind: str, d: NDArray[np.int64]) -> Any:
    """A unit column: the row's date (or its month as YYYYMM)."""
    if kind == "date":
        return d
    return [_text_of_day(name, int(x)) for x in d]


def _text_of_day(name: str, ordinal: int) -> str:
    day = dt.date.fromordinal(ordinal)
    if name == "month":
        return day.strftime("%Y%m")
    if name == "quarter":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    if name == "year":
        return str(day.year)
    if name == "week":
        iso = day.isocalendar()
        return f"{iso[0]}{iso[1]:02d}"
    if "time" in name:
        return day.strftime("%Y-%m-%d 15:00:00")
    return day.strftime("%Y%m%d")


def _extra_value(name: str, kind: str, d: NDArray[np.int64], k: NDArray[np.int64]) -> Any:
    """A key column told apart by k: a different value for each k."""
    if kind == "date":
        return d - 91 * k
    if kind == "float":
        return 0.5 * (k + 1)
    if kind == "int":
        return k + 1
    if "time" in name:
        return [
            dt.date.fromordinal(int(x)).strftime("%Y-%m-%d ") + f"09:{30 + int(j):02d}:00"
            for x, j in zip(d, k, strict=True)
        ]
    if name in ("month", "quarter", "year", "week"):
        step = {"month": 31, "quarter": 92, "year": 366, "week": 7}[name]
        return [_text_of_day(name, int(x) - step * int(j)) for x, j in zip(d, k, strict=True)]
    return [f"{name}_{int(j) + 1}" for j in k]


def _value(
    market: Market,
    name: str,
    kind: str,
    d: NDArray[np.int64],
    v: NDArray[np.uint64],
    code: NDArray[np.str_] | None,
) -> Any:
    """Any other column: a deterministic value of the row's identity."""
    u = (v >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # uniform in [0, 1)
    if kind == "float":
        if "pct" in name or name in ("change", "chg"):
            return np.round((u - 0.5) * 20.0, 4)
        return np.round(1.0 + u * 100.0, 4)
    if kind == "int":
        return (v % np.uint64(1000)).astype(np.int64)
    if kind == "date":
        if name in NULL_DATES:
            return np.zeros(len(d), dtype=np.int64)
        if name in PAST_DATES:
            return market.config.start.toordinal() - 365 - (v % np.uint64(3000)).astype(np.int64)
        return d - (v % np.uint64(30)).astype(np.int64)
    return _text(market, name, d, v, code)


def _text(
    market: Market,
    name: str,
    d: NDArray[np.int64],
    v: NDArray[np.uint64],
    code: NDArray[np.str_] | None,
) -> Sequence[str | None]:
    if name == "exchange" and code is not None:
        return [_exchange(x) for x in code.tolist()]
    if name == "name" and code is not None:
        index = market.universe.index_of
        first = market.universe.first_name
        return [str(first[index[x]]) if x in index else f"{x} 名称" for x in code.tolist()]
    if name in ("month", "quarter", "year", "week") or "time" in name:
        return [_text_of_day(name, int(x)) for x in d]
    return [f"{name}{int(x) % 5}" for x in v]


def _exchange(code: str) -> str:
    suffix = code.rsplit(".", 1)[-1]
    return FUTURES_EXCHANGE.get(suffix) or {"SH": "SSE", "SZ": "SZSE", "BJ": "BSE"}.get(
        suffix, suffix
    )
