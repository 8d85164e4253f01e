"""`ah tasks`: each sync task with its dataset's rows, first/last date and last success.

Apart from the runner so listing does not import the HTTP client, the sources and the
report machinery: it reads the cache and the stored task states only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cache.layout import CacheLayout
from cache.read import summarize
from foundation.config import Settings
from pipeline.backends import open_state
from pipeline.sync.tasks import TASKS


@dataclass(frozen=True)
class DatasetRow:
    """One line of `ah tasks`."""

    task: str
    group: str
    unit: str
    rows: int
    first: dt.date | None
    last: dt.date | None
    status: str
    last_success: str | None


def render_tasks(rows: Sequence[DatasetRow]) -> str:
    """`ah tasks` as text: one line per task."""
    header = ("task", "group", "unit", "rows", "first", "last", "status", "last success")
    lines = [
        (r.task, r.group, r.unit, str(r.rows), str(r.first or "-"), str(r.last or "-"),
         r.status, r.last_success or "-")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x) for x in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )


def list_tasks(settings: Settings) -> list[DatasetRow]:
    """Every task with its dataset's rows, first/last date and last success (`ah tasks`)."""
    layout = CacheLayout(settings.cache.dir)
    store = open_state(settings)
    try:
        rows = []
        for spec in TASKS:
            summary = summarize(layout, spec.name, spec.date_field)
            state = store.load(spec.name)
            rows.append(
                DatasetRow(
                    spec.name,
                    spec.group,
                    spec.unit,
                    summary.rows,
                    summary.first,
                    summary.last,
                    state.status,
                    state.last_success,
                )
            )
        return rows
    finally:
        store.close()


def tasks_json(rows: Sequence[DatasetRow]) -> list[dict[str, Any]]:
    """`ah tasks --json`: one object per task, dates as ISO text (null when empty)."""
    out = []
    for row in rows:
        item = asdict(row)
        item["first"] = row.first.isoformat() if row.first else None
        item["last"] = row.last.isoformat() if row.last else None
        out.append(item)
    return out
