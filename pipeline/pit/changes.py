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


def membership_changes(old: pl.DataFrame, new: pl.DataFrame) -> list[Interval]:
    """The intervals of dates at which a membership table (in_date, out_date) differs.

    A row in one table and not the other is read at in_date <= t < out_date (a null
    in_date: from the start; a null out_date: no end).
    """
    changed = pl.concat([_only_in(old, new), _only_in(new, old)])
    return merge_intervals(
        (row["in_date"] or dt.date.min, row["out_date"]) for row in changed.iter_rows(named=True)
    )


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
