"""A slow, plain-Python reference of DESIGN section 6, written from its text.

Rows are dicts (column -> value, None for null); each dataset comes with its column
order, which breaks the last ties. Nothing here calls or copies `pipeline.pit.maths`: every
value is derived by loops over the raw rows, one date at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl

Row = dict[str, Any]

QUARTER_ENDS = {(3, 31), (6, 30), (9, 30), (12, 31)}
FORMAL = ("income", "balancesheet", "cashflow")
FLOWS = ("revenue", "oper_cost", "operate_profit", "n_income", "n_income_attr_p")

# pit.indicators as DESIGN 6 states it (columns, order, types), written here rather than
# read from the product: the compared columns and the schema check must not share its errors.
INDICATOR_CONTRACT = pl.Schema(
    {
        "ts_code": pl.String,
        "knowledge_date": pl.Date,
        "end_date": pl.Date,
        "bs_end_date": pl.Date,
        "vis_date": pl.Date,
        "comp_type": pl.String,
        "revenue_ttm": pl.Float64,
        "oper_cost_ttm": pl.Float64,
        "n_income_attr_p_ttm": pl.Float64,
        "total_assets": pl.Float64,
        "total_hldr_eqy_exc_min_int": pl.Float64,
        "gpa": pl.Float64,
        "roe": pl.Float64,
        "roa": pl.Float64,
        "revenue_q": pl.Float64,
        "revenue_q_ly": pl.Float64,
        "revenue_yoy": pl.Float64,
        "n_income_attr_p_q": pl.Float64,
        "n_income_attr_p_q_ly": pl.Float64,
        "profit_yoy": pl.Float64,
        "ttm_vis_date": pl.Date,
        "yoy_vis_date": pl.Date,
        "bs_vis_date": pl.Date,
        "ann_date": pl.Date,
    }
)
INDICATOR_VALUES = [c for c in INDICATOR_CONTRACT if c not in ("ts_code", "knowledge_date")]


def is_quarter_end(day: dt.date | None) -> bool:
    return day is not None and (day.month, day.day) in QUARTER_ENDS


def vis_date(row: Row) -> dt.date | None:
    """max(ann_date, f_ann_date) ignoring a null one; None when both are null."""
    known = [d for d in (row.get("ann_date"), row.get("f_ann_date")) if d is not None]
    return max(known) if known else None


def flag(row: Row) -> str:
    return "0" if row.get("update_flag") is None else row["update_flag"]


def nulls_first(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)


def row_order(row: Row, columns: Sequence[str]) -> tuple[tuple[int, Any], ...]:
    """The row as a tuple that sorts by all its columns in dataset order, nulls first."""
    return tuple(nulls_first(row.get(c)) for c in columns)


def usable(row: Row, source: str) -> bool:
    """Formal statements need report_type '1'; every row needs a quarter-end end_date."""
    if source in FORMAL and row.get("report_type") != "1":
        return False
    return row.get("ts_code") is not None and is_quarter_end(row.get("end_date"))


def preference(row: Row, columns: Sequence[str]) -> tuple[Any, ...]:
    """(vis_date, update_flag, _fetched_at, all columns): the greatest is V_t."""
    return (
        vis_date(row),
        flag(row),
        nulls_first(row.get("_fetched_at")),
        row_order(row, columns),
    )


class Reference:
    """The PIT tables of one set of raw datasets, evaluated at any date."""

    def __init__(self, raw: dict[str, tuple[list[str], list[Row]]]) -> None:
        # raw[name] = (column order, rows)
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, list[Row]] = {}
        self._memo: dict[tuple[Any, ...], Row | None] = {}
        for name, (columns, rows) in raw.items():
            self.columns[name] = list(columns)
            self.rows[name] = [
                r
                for r in rows
                if name == "index_member_all" or (usable(r, name) and vis_date(r) is not None)
            ]

    # --- statement versions -------------------------------------------------------

    def versions(self, source: str) -> list[Row]:
        """One winner per (ts_code, end_date, vis_date, update_flag)."""
        groups: dict[tuple[Any, ...], list[Row]] = {}
        for r in self.rows.get(source, []):
            key = (r["ts_code"], r["end_date"], vis_date(r), flag(r))
            groups.setdefault(key, []).append(r)
        columns = self.columns[source]
        out = []
        for key, rows in groups.items():
            best = rows[0]
            for r in rows[1:]:
                if preference(r, columns) > preference(best, columns):
                    best = r
            out.append({"key": key, "row": best})
        return out

    def version_at(self, source: str, code: str, period: dt.date, t: dt.date) -> Row | None:
        """V_t(p): the visible row with the greatest (vis_date, flag, fetched, columns)."""
        memo_key = (source, code, period, t)
        if memo_key not in self._memo:
            self._memo[memo_key] = self._version_at(source, code, period, t)
        return self._memo[memo_key]

    def _version_at(self, source: str, code: str, period: dt.date, t: dt.date) -> Row | None:
        columns = self.columns.get(source, [])
        best = None
        for r in self.rows.get(source, []):
            if r["ts_code"] != code or r["end_date"] != period:
                continue
            if vis_date(r) > t:
                continue
            if best is None or preference(r, columns) > preference(best, columns):
                best = r
        return best

    def latest_period(self, source: str, code: str, t: dt.date) -> dt.date | None:
        """L(t) (or Lb(t)): the latest period with a visible version."""
        latest = None
        for r in self.rows.get(source, []):
            if (
                r["ts_code"] == code
                and vis_date(r) <= t
                and (latest is None or r["end_date"] > latest)
            ):
                latest = r["end_date"]
        return latest

    # --- single quarters and TTM ------------------------------------------------------

    def quarter(self, code: str, period: dt.date, t: dt.date, field: str) -> float | None:
        """q_t(p)."""
        current = self.version_at("income", code, period, t)
        if current is None or current.get(field) is None:
            return None
        if period.month == 3:
            return current[field]
        previous = self.version_at("income", code, previous_period(period, 1), t)
        if previous is None or previous.get(field) is None:
            return None
        return current[field] - previous[field]

    def ttm(self, code: str, period: dt.date, t: dt.date, field: str) -> float | None:
        """TTM_t(p) = q_t(p) + q_t(p-1) + q_t(p-2) + q_t(p-3), null unless all exist."""
        total = None
        for back in range(4):
            q = self.quarter(code, previous_period(period, back), t, field)
            if q is None:
                return None
            total = q if total is None else total + q
        return total

    def income_quarterly_at(self, code: str, period: dt.date, t: dt.date) -> Row | None:
        """The pit.income_quarterly values of (code, period) as known at t."""
        current = self.version_at("income", code, period, t)
        if current is None:
            return None
        row: Row = {"vis_date": vis_date(current), "comp_type": current.get("comp_type")}
        for f in FLOWS:
            row[f"{f}_q"] = self.quarter(code, period, t, f)
            row[f"{f}_ttm"] = self.ttm(code, period, t, f)
        return row

    # --- balance --------------------------------------------------------------------

    def balance_rows(self) -> list[Row]:
        """Versions that are V_t(p) from their own vis_date on."""
        out = []
        for v in self.versions("balancesheet"):
            code, period, vis, _ = v["key"]
            winner = self.version_at("balancesheet", code, period, vis)
            columns = self.columns["balancesheet"]
            if preference(winner, columns) == preference(v["row"], columns):
                out.append({"ts_code": code, "end_date": period, "vis_date": vis, "row": v["row"]})
        return out

    # --- indicators -----------------------------------------------------------------

    def indicators_at(self, code: str, t: dt.date) -> Row | None:
        """The pit.indicators row in force at t, or None before L(t) exists."""
        latest = self.latest_period("income", code, t)
        if latest is None:
            return None
        latest_bs = self.latest_period("balancesheet", code, t)
        current = self.version_at("income", code, latest, t)
        sheet = None if latest_bs is None else self.version_at("balancesheet", code, latest_bs, t)
        row: Row = {
            "end_date": latest,
            "bs_end_date": latest_bs,
            "vis_date": vis_date(current),
            "comp_type": current.get("comp_type"),
            "revenue_ttm": self.ttm(code, latest, t, "revenue"),
            "oper_cost_ttm": self.ttm(code, latest, t, "oper_cost"),
            "n_income_attr_p_ttm": self.ttm(code, latest, t, "n_income_attr_p"),
            "total_assets": None if sheet is None else sheet.get("total_assets"),
            "total_hldr_eqy_exc_min_int": None
            if sheet is None
            else sheet.get("total_hldr_eqy_exc_min_int"),
        }
        rev, cost = row["revenue_ttm"], row["oper_cost_ttm"]
        profit, equity, assets = (
            row["n_income_attr_p_ttm"],
            row["total_hldr_eqy_exc_min_int"],
            row["total_assets"],
        )
        row["gpa"] = None
        if rev is not None and cost is not None and rev > 0:
            row["gpa"] = (rev - cost) / rev * 100
        row["roe"] = None
        if profit is not None and equity is not None and equity > 0:
            row["roe"] = profit / equity * 100
        row["roa"] = None
        if profit is not None and assets is not None and assets > 0:
            row["roa"] = profit / assets * 100
        year_ago = previous_period(latest, 4)
        row["revenue_q"] = self.quarter(code, latest, t, "revenue")
        row["revenue_q_ly"] = self.quarter(code, year_ago, t, "revenue")
        row["revenue_yoy"] = None
        now, base = row["revenue_q"], row["revenue_q_ly"]
        if now is not None and base is not None and base > 0:
            row["revenue_yoy"] = (now - base) / base * 100
        row["n_income_attr_p_q"] = self.quarter(code, latest, t, "n_income_attr_p")
        row["n_income_attr_p_q_ly"] = self.quarter(code, year_ago, t, "n_income_attr_p")
        row["profit_yoy"] = None
        now, base = row["n_income_attr_p_q"], row["n_income_attr_p_q_ly"]
        if now is not None and base is not None and base != 0:
            row["profit_yoy"] = (now - base) / abs(base) * 100
        ttm_reads = [
            p for back in range(4) for p in self.quarter_reads(previous_period(latest, back))
        ]
        yoy_reads = self.quarter_reads(latest) + self.quarter_reads(year_ago)
        row["ttm_vis_date"] = self.latest_vis(code, ttm_reads, t)
        row["yoy_vis_date"] = self.latest_vis(code, yoy_reads, t)
        row["bs_vis_date"] = None if sheet is None else vis_date(sheet)
        lineage = [row["ttm_vis_date"], row["yoy_vis_date"], row["bs_vis_date"]]
        row["ann_date"] = max(d for d in lineage if d is not None)
        return row

    @staticmethod
    def quarter_reads(period: dt.date) -> list[dt.date]:
        """The income periods q_t(period) reads: itself, and the one before unless a Q1."""
        if period.month == 3:
            return [period]
        return [period, previous_period(period, 1)]

    def latest_vis(self, code: str, periods: list[dt.date], t: dt.date) -> dt.date | None:
        """The latest vis_date of the income versions V_t(p), p in `periods`, that exist."""
        found = None
        for period in periods:
            v = self.version_at("income", code, period, t)
            if v is not None and (found is None or vis_date(v) > found):
                found = vis_date(v)
        return found

    # --- industry ---------------------------------------------------------------

    def industry_at(self, code: str, t: dt.date) -> Row | None:
        """The membership of `code` at t: latest in_date wins, then the last row sorted."""
        names = ["l1_code", "l1_name", "l2_code", "l2_name", "l3_code", "l3_name", "out_date"]
        best = None
        best_key = None
        for r in self.rows.get("index_member_all", []):
            if r["ts_code"] != code:
                continue
            if r["in_date"] is not None and r["in_date"] > t:
                continue
            if r["out_date"] is not None and not t < r["out_date"]:
                continue
            key = (nulls_first(r["in_date"]), *(nulls_first(r[n]) for n in names))
            if best_key is None or key > best_key:
                best, best_key = r, key
        return best

    def codes(self) -> list[str]:
        return sorted({r["ts_code"] for rows in self.rows.values() for r in rows if r["ts_code"]})

    def event_dates(self) -> list[dt.date]:
        """Every date on which anything can change: vis, in and out dates."""
        dates = set()
        for name, rows in self.rows.items():
            for r in rows:
                if name == "index_member_all":
                    dates.update(d for d in (r["in_date"], r["out_date"]) if d is not None)
                else:
                    dates.add(vis_date(r))
        return sorted(dates)


def previous_period(period: dt.date, back: int) -> dt.date:
    """The quarter end `back` quarters before `period`."""
    index = period.year * 4 + period.month // 3 - 1 - back
    year, quarter = divmod(index, 4)
    month = 3 * (quarter + 1)
    day = 31 if month in (3, 12) else 30
    return dt.date(year, month, day)
