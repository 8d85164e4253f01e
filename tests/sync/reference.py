"""The reference for the sync tests, written from DESIGN 4/5 in plain Python loops: which
rows of the source a full sync must hold, and what an incremental day must ask."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.simulator import Simulator
from pipeline.sync.tasks import TaskSpec

Row = tuple[Any, ...]


def first_date(spec: TaskSpec, start: dt.date) -> dt.date:
    """A dataset's first date: the start, or two years before it for report data."""
    return dt.date(start.year - 2, 1, 1) if spec.group == "finance" else start


def truth_rows(sim: Simulator, spec: TaskSpec, start: dt.date) -> set[Row]:
    """Every row the source has for the dataset as of today, from its first date on
    (the unit date for market data, the report period for reports), columns sorted.
    A task asked once per `type` stores the type in a column of that name."""
    if spec.types:
        frame = pl.concat(
            sim.ground_truth(spec.name, type=t).with_columns(type=pl.lit(t)) for t in spec.types
        )
    else:
        frame = sim.ground_truth(spec.name)
    names = sorted(frame.columns)
    keep: set[Row] = set()
    for row in frame.iter_rows(named=True):
        if spec.unit != "snapshot" and spec.date_field is not None:
            value = row[spec.date_field]
            if value is None or value < first_date(spec, start):
                continue
        keep.add(tuple(row[n] for n in names))
    return keep


def duplicate_keys(root: Path, spec: TaskSpec) -> int:
    """Rows sharing a natural key (latest datasets) or repeated whole (version logs)."""
    frame = pl.read_parquet(str(root / "raw" / spec.name / "**" / "*.parquet"))
    frame = frame.drop("_fetched_at")
    seen: set[Row] = set()
    dups = 0
    columns = list(spec.key) if spec.storage == "latest" else frame.columns
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
