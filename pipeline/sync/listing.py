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
from pipeline.sync.tasks import ALL_TASKS, TASKS


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
    area: str = ""
    points: int = 0
    allowed: bool = True


def render_tasks(rows: Sequence[DatasetRow], *, coverage: bool = False) -> str:
    """`ah tasks` as text: one line per task; with `coverage`, also its doc area, the
    points it needs and whether the account's points allow it."""
    header: tuple[str, ...] = (
        "task", "group", "unit", "rows", "first", "last", "status", "last success"
    )  # fmt: skip
    lines: list[tuple[str, ...]] = [
        (r.task, r.group, r.unit, str(r.rows), str(r.first or "-"), str(r.last or "-"),
         r.status, r.last_success or "-")
        for r in rows
    ]  # fmt: skip
    if coverage:
        header = ("task", "area", "points", "allowed", *header[1:])
        lines = [
            (r.task, r.area, str(r.points), "yes" if r.allowed else "no", *line[1:])
            for r, line in zip(rows, lines, strict=True)
        ]
    widths = [max(len(x) for x in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )


def account_points(settings: Settings) -> int:
    """The points of the account the configured source answers for."""
    return settings.simulator.points if settings.source.kind == "sim" else settings.tushare.points


def list_tasks(settings: Settings, *, all_tasks: bool = False) -> list[DatasetRow]:
    """Every task of the default set (every catalogued API with `all_tasks`) with its
    dataset's rows, first/last date, last success, area and points (`ah tasks`)."""
    layout = CacheLayout(settings.cache.dir)
    store = open_state(settings)
    points = account_points(settings)
    try:
        rows = []
        for spec in ALL_TASKS if all_tasks else TASKS:
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
                    area=spec.area,
                    points=spec.min_points,
                    allowed=spec.min_points <= points,
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
