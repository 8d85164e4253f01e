"""The reference for the sync tests, written from DESIGN 4/5 in plain Python loops: which
rows of the source a full sync must hold, and what an incremental day must ask."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.sources.simulator import Simulator

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Dataset:
    """What the tests expect of one synced dataset (DESIGN 4), stated here rather than
    read from the product's task catalogue: `dated` is the column whose value decides
    whether a row is in range (None for snapshots, kept whole), `reports` whether the
    range starts two years early (report periods), `key` the natural key and `storage`
    one row per key (`latest`) or every version (`versions`), `types` the values of the
    `type` parameter it is asked by, one request each."""

    dated: str | None
    key: tuple[str, ...]
    storage: Literal["latest", "versions"] = "latest"
    reports: bool = False
    types: tuple[str, ...] = ()


_TRADE = Dataset("trade_date", ("ts_code", "trade_date"))
_STATEMENT = ("ts_code", "ann_date", "f_ann_date", "end_date", "report_type", "update_flag")

DATASETS: dict[str, Dataset] = {
    "stock_basic": Dataset(None, ("ts_code",)),
    "trade_cal": Dataset(None, ("exchange", "cal_date")),
    "namechange": Dataset(None, ("ts_code", "start_date")),
    **dict.fromkeys(
        (
            "daily",
            "weekly",
            "monthly",
            "adj_factor",
            "daily_basic",
            "suspend_d",
            "stk_limit",
            "moneyflow",
            "limit_list_d",
            "index_daily",
        ),
        _TRADE,
    ),
    "income": Dataset("end_date", _STATEMENT, "versions", reports=True),
    "balancesheet": Dataset("end_date", _STATEMENT, "versions", reports=True),
    "cashflow": Dataset("end_date", _STATEMENT, "versions", reports=True),
    "fina_indicator": Dataset(
        "end_date", ("ts_code", "ann_date", "end_date", "update_flag"), "versions", reports=True
    ),
    "express": Dataset("end_date", ("ts_code", "ann_date", "end_date"), "versions", reports=True),
    "forecast": Dataset("end_date", ("ts_code", "ann_date", "end_date"), "versions", reports=True),
    "fina_mainbz": Dataset(
        "end_date", ("ts_code", "end_date", "bz_item", "type"), reports=True, types=("P", "D", "I")
    ),
    "dividend": Dataset("end_date", ("ts_code", "end_date", "ann_date", "div_proc"), reports=True),
    "disclosure_date": Dataset("end_date", ("ts_code", "end_date"), reports=True),
    "index_basic": Dataset(None, ("ts_code",)),
    "index_classify": Dataset(None, ("index_code",)),
    "index_member_all": Dataset(None, ("ts_code", "l3_code", "in_date")),
    "index_weight": Dataset("trade_date", ("index_code", "con_code", "trade_date")),
}


def first_date(name: str, start: dt.date) -> dt.date:
    """A dataset's first date: the start, or two years before it for report data."""
    return dt.date(start.year - 2, 1, 1) if DATASETS[name].reports else start


def truth_rows(sim: Simulator, name: str, start: dt.date) -> set[Row]:
    """Every row the source has for the dataset as of today, from its first date on
    (the unit date for market data, the report period for reports), columns sorted.
    A dataset asked once per `type` stores the type in a column of that name."""
    wanted = DATASETS[name]
    dated = wanted.dated
    if wanted.types:
        frame = pl.concat(
            sim.ground_truth(name, type=t).with_columns(type=pl.lit(t)) for t in wanted.types
        )
    else:
        frame = sim.ground_truth(name)
    names = sorted(frame.columns)
    keep: set[Row] = set()
    for row in frame.iter_rows(named=True):
        if dated is not None:
            value = row[dated]
            if value is None or value < first_date(name, start):
                continue
        keep.add(tuple(row[n] for n in names))
    return keep


def duplicate_keys(root: Path, name: str) -> int:
    """Rows sharing a natural key (latest datasets) or repeated whole (version logs)."""
    dataset = DATASETS[name]
    frame = pl.read_parquet(str(root / "raw" / name / "**" / "*.parquet"))
    frame = frame.drop("_fetched_at")
    seen: set[Row] = set()
    dups = 0
    columns = list(dataset.key) if dataset.storage == "latest" else frame.columns
    for row in frame.select(columns).iter_rows():
        dups += row in seen
        seen.add(row)
    return dups


def calendar_days(after: dt.date, through: dt.date) -> list[dt.date]:
    """Days d with after < d <= through."""
    return [after + dt.timedelta(days=i) for i in range(1, (through - after).days + 1)]


def income_pairs(
    sim: Simulator, days: list[dt.date], start: dt.date, *, late: bool
) -> set[tuple[str, dt.date]]:
    """(stock, period) of income versions that became visible (max of ann_date and
    f_ann_date) on one of `days`: announced on another day (`late`), or originals of
    half-year and annual reports (for fina_mainbz)."""
    lo = dt.date(start.year - 2, 1, 1)
    pairs = set()
    for row in sim.ground_truth("income").iter_rows(named=True):
        visible = max(d for d in (row["ann_date"], row["f_ann_date"]) if d is not None)
        if visible not in days or row["end_date"] < lo:
            continue
        if late and row["ann_date"] not in days:
            pairs.add((row["ts_code"], row["end_date"]))
        if not late and row["update_flag"] == "0" and row["end_date"].month in (6, 12):
            pairs.add((row["ts_code"], row["end_date"]))
    return pairs


def open_plan_days(root: Path, today: dt.date, asked: list[dt.date]) -> set[dt.date]:
    """Announcement days of stored dividend plans without a 实施 row, announced within
    400 days and not among the days asked anyway."""
    frame = pl.read_parquet(str(root / "raw" / "dividend" / "**" / "*.parquet"))
    done: dict[tuple[Any, ...], bool] = {}
    for row in frame.iter_rows(named=True):
        plan = (row["ts_code"], row["end_date"], row["ann_date"])
        done[plan] = done.get(plan, False) or row["div_proc"] == "实施"
    return {
        plan[2]
        for plan, finished in done.items()
        if not finished and plan[2] >= today - dt.timedelta(days=400) and plan[2] not in asked
    }
