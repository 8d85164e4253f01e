"""Which dates a rebuilt PIT table reads differently at: pure frames in, intervals out.

The factor step reads pit.indicators as of each calc date (the row with the latest
knowledge_date <= t) and pit.industry by membership (in_date <= t < out_date). When
an incremental PIT build replaces some stocks' rows, these functions say at which
dates t what a reader sees may differ, as half-open intervals [start, end) (end None:
no end), so the factor step recomputes exactly those calc dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

Interval = tuple[dt.date, dt.date | None]
KNOWLEDGE = "knowledge_date"


def _only_in(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """Rows of `left` that have no identical row in `right` (nulls compare equal)."""
    return left.join(right, on=left.columns, how="anti", nulls_equal=True)


def as_of_changes(old: pl.DataFrame, new: pl.DataFrame, by: str = "ts_code") -> list[Interval]:
    """The intervals of dates at which the as-of row (by `by`, on knowledge_date) differs.

    Per stock, the as-of rows of `old` and `new` at t differ exactly when one of them is
    not a row of the other table (the key (by, knowledge_date) is unique), so a changed
    row changes what is read from its knowledge_date to the next knowledge_date of that
    stock in either table.
    """
    changed = pl.concat(
        [_only_in(old, new).select(by, KNOWLEDGE), _only_in(new, old).select(by, KNOWLEDGE)]
    ).unique()
    if changed.is_empty():
        return []
    dates = (
        pl.concat([old.select(by, KNOWLEDGE), new.select(by, KNOWLEDGE)])
        .unique()
        .sort(by, KNOWLEDGE)
        .with_columns(pl.col(KNOWLEDGE).shift(-1).over(by).alias("_next"))
    )
    spans = dates.join(changed, on=[by, KNOWLEDGE], how="semi")
    return merge_intervals((row[KNOWLEDGE], row["_next"]) for row in spans.iter_rows(named=True))


MEMBERSHIP_DATES = ("in_date", "out_date")


def _winner(
    rows: list[dict[str, Any]], day: dt.date, order: Sequence[str]
) -> tuple[Any, ...] | None:
    """What a reader of a membership table takes at `day` from one stock's rows: None
    when no row holds, else the winning row's columns other than in_date and out_date.

    A row holds when in_date <= day < out_date (null: no bound); the winner is the last
    by `order` (the table's columns, in_date first, nulls first), the industry rule."""
    live = [
        r
        for r in rows
        if (r["in_date"] is None or r["in_date"] <= day)
        and (r["out_date"] is None or day < r["out_date"])
    ]
    if not live:
        return None
    best = max(live, key=lambda r: tuple((r[c] is not None, r[c]) for c in order))
    return tuple(v for c, v in best.items() if c not in MEMBERSHIP_DATES)


def membership_changes(old: pl.DataFrame, new: pl.DataFrame) -> list[Interval]:
    """The intervals of dates at which a membership table (in_date, out_date) reads
    differently: per stock whose rows changed, between consecutive in and out dates of
    its rows in either table, whether some row holds and which row wins (in_date
    latest, then the other columns in order; `factors.industry`).

    So an out_date set today on a years-old membership changes the dates from today,
    not from its in_date.
    """
    changed = pl.concat([_only_in(old, new), _only_in(new, old)])
    if changed.is_empty():
        return []
    codes = changed.get_column("ts_code").unique().implode()
    order = ["in_date", *(c for c in old.columns if c not in (*MEMBERSHIP_DATES, "ts_code"))]
    order.append("out_date")
    found: list[Interval] = []
    before = old.filter(pl.col("ts_code").is_in(codes)).partition_by("ts_code", as_dict=True)
    after = new.filter(pl.col("ts_code").is_in(codes)).partition_by("ts_code", as_dict=True)
    for key in set(before) | set(after):
        rows = {
            side: (frames[key].rows(named=True) if key in frames else [])
            for side, frames in (("old", before), ("new", after))
        }
        every = rows["old"] + rows["new"]
        points = sorted({r[c] for r in every for c in MEMBERSHIP_DATES if r[c] is not None})
        starts = [dt.date.min, *points]
        for lo, hi in zip(starts, [*points, None], strict=True):
            if _winner(rows["old"], lo, order) != _winner(rows["new"], lo, order):
                found.append((lo, hi))
    return merge_intervals(found)


def merge_intervals(intervals: Iterable[tuple[dt.date, dt.date | None]]) -> list[Interval]:
    """The union of half-open intervals as sorted, disjoint intervals."""
    merged: list[Interval] = []
    for start, end in sorted(intervals, key=lambda i: (i[0], i[1] or dt.date.max)):
        if end is not None and end <= start:
            continue
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None or start <= last_end:
                if last_end is not None and (end is None or end > last_end):
                    merged[-1] = (last_start, end)
                continue
        merged.append((start, end))
    return merged


def covers(intervals: Sequence[Interval], day: dt.date) -> bool:
    """Whether `day` lies in one of the intervals."""
    return any(start <= day and (end is None or day < end) for start, end in intervals)
