"""Task state after damage: which units the cache still holds, and which to fetch again.

Two kinds of damage reach the sync's task state:

- a task document that could not be read (`cache.state` quarantines it and starts the
  task afresh marked `rebuild`): its committed units are rebuilt from what raw/ holds,
  so the next sync fetches only what is missing, not the whole task again;
- a raw partition that could not be read (`cache.quarantine`): only the units whose
  rows lived in that file are planned again, not the whole task.

What raw/ proves, by unit kind:
- `trade_date` and `period`: a unit is held when a row carries its date. Where every
  unit has rows (density >= 1) that is exact and a unit without rows is fetched again;
  for sparse datasets (a suspension list) every unit up to the newest held one counts;
- `day` (report versions by the day they became visible): every day up to the newest
  day a stored row became visible, and the days the newest saved sync report in which
  the task succeeded planned (a day without announcements has no row to show);
  datasets without such a date (`fina_mainbz`, `dividend`) are fetched again whole;
- `snapshot` and `code` tasks are fetched whole every run; `month` tasks again whole.

A partition file names the span of its date column (`2024/2024-05.parquet` a month,
`2024.parquet` a year): units inside the span are planned again. A `day` task's file
holds report periods, whose versions become visible from the year before the period
on (forecasts come early), so its days are planned again from then. When the name
tells no span (one file for the whole dataset) the committed units are rebuilt from
what the other files hold, as for a lost document.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from cache.layout import CacheLayout
from cache.partitions import partition_span
from cache.quarantine import QuarantineEntry, quarantined, sweep_unreadable
from cache.read import scan_dataset
from cache.state import StateStore, TaskState
from foundation.logs import get_logger
from pipeline.sync.plan import unit_date, unit_key
from pipeline.sync.tasks import TaskSpec, task

__all__ = [
    "held_units",
    "quarantine_unreadable",
    "recover_task_states",
    "reported_span",
    "reported_start",
]

log = get_logger("sync")

RAW_PREFIX = "raw."
EARLY_REPORTS = dt.timedelta(days=366)  # versions of a period visible before it begins


def _days(first: dt.date, last: dt.date) -> set[str]:
    return {unit_key(first + dt.timedelta(days=i)) for i in range((last - first).days + 1)}


def held_units(layout: CacheLayout, spec: TaskSpec) -> set[str] | None:
    """The units of `spec` that the readable raw files prove committed (see the module
    docstring); None when raw/ cannot tell (the task is then fetched again whole)."""
    scan = scan_dataset(layout, spec.name)
    if scan is None or spec.date_field is None or spec.unit in ("snapshot", "code", "month"):
        return None
    names = scan.collect_schema().names()
    if spec.unit == "day":
        visible = [c for c in spec.visible if c in names]
        if not visible:
            return None
        shown = scan.select(pl.max_horizontal(*visible).alias("d"))
        bounds = shown.select(pl.col("d").min().alias("lo"), pl.col("d").max().alias("hi"))
        lo, hi = bounds.collect().row(0)
        if not isinstance(lo, dt.date) or not isinstance(hi, dt.date):
            return None
        start = min(lo, spec.start) if spec.start else lo
        held = _days(dt.date(start.year - spec.lead_years, 1, 1), hi)
        span = reported_span(layout, spec)
        return held | (_days(*span) if span else set())
    if spec.date_field not in names:
        return None
    dates = scan.select(pl.col(spec.date_field).unique()).collect().to_series().drop_nulls()
    held = {unit_key(d) for d in dates.to_list()}
    if spec.density >= 1 or not held:
        return held
    newest = unit_date(max(held))
    first = min(unit_date(u) for u in held)
    start = min(first, spec.start) if spec.start else first
    return _days(start, newest)


def _last_success(layout: CacheLayout, name: str) -> dict[str, Any] | None:
    """The newest saved sync report (not a dry run) in which task `name` succeeded."""
    folder = layout.reports_dir
    for path in sorted(folder.glob("sync-*.json"), reverse=True) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text("utf-8"))
            done = any(
                t.get("task") == name and t.get("status") in ("success", "no_data")
                for t in doc.get("tasks", [])
            )
        except (ValueError, TypeError, AttributeError, OSError):
            continue
        if done and not doc.get("dry_run") and doc.get("source_as_of"):
            return doc
    return None


def _date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def reported_start(layout: CacheLayout, name: str) -> dt.date | None:
    """The `--start` of the newest sync in which task `name` succeeded (None: none was
    given, or no such report): what a repair asks from, as the cache was filled."""
    doc = _last_success(layout, name)
    return None if doc is None else _date((doc.get("arguments") or {}).get("start"))


def reported_span(layout: CacheLayout, spec: TaskSpec) -> tuple[dt.date, dt.date] | None:
    """The days the newest saved sync report in which `spec` succeeded planned: from its
    start (less the task's lead years) to the source's as-of date (or its end). A day
    task's quiet days after its newest row are committed too, once a report says so."""
    doc = _last_success(layout, spec.name)
    if doc is None:
        return None
    arguments = doc.get("arguments") or {}
    hi = _date(doc.get("source_as_of"))
    end = _date(arguments.get("end"))
    first = max(filter(None, (_date(arguments.get("start")), spec.start)), default=None)
    if first is None or hi is None:
        return None
    return dt.date(first.year - spec.lead_years, 1, 1), min(filter(None, (hi, end)))


def _forget(state: TaskState, units: set[str] | None) -> None:
    """Drop `units` (all when None) from the committed ones; the plan in progress is
    dropped too, so the next plan covers them."""
    if units is None:
        state.committed.clear()
    else:
        state.committed -= units
    state.plan_done.clear()
    state.plan_id = None


def _lost_units(
    layout: CacheLayout, spec: TaskSpec, state: TaskState, entries: Sequence[QuarantineEntry]
) -> set[str] | None:
    """The committed units whose rows lived in the quarantined files (None: all)."""
    lost: set[str] = set()
    for entry in entries:
        span = partition_span(entry.partition)
        if span is None or spec.unit not in ("trade_date", "period", "day"):
            held = held_units(layout, spec)
            return None if held is None else state.committed - held
        first, last = span
        if spec.unit == "day":
            lost |= {u for u in state.committed if unit_date(u) >= first - EARLY_REPORTS}
        else:
            lost |= {u for u in state.committed if first <= unit_date(u) <= last}
    return lost


def quarantine_unreadable(layout: CacheLayout, name: str) -> list[QuarantineEntry]:
    """After a task failed: quarantine the files of its dataset that cannot be read to
    the last page (a page that does not decode passes the footer check made before
    planning, and fails the commit that reads it); the next sync re-plans their units."""
    moved = sweep_unreadable(layout, ("raw",), (name,), deep=True)
    for entry in moved:
        log.warning("quarantined %s", entry.line())
    return moved


def recover_task_states(layout: CacheLayout, store: StateStore, names: Sequence[str]) -> set[str]:
    """Before planning: quarantine the raw files that cannot be read, plan again the
    units whose rows lived in a quarantined file, and rebuild from raw/ the committed
    units of tasks whose document was lost. Returns the tasks with a quarantined file
    (the sync clears their records once they succeed)."""
    for entry in sweep_unreadable(layout, ("raw",)):
        log.warning("quarantined %s", entry.line())
    by_task: dict[str, list[QuarantineEntry]] = {}
    for entry in quarantined(layout):
        if entry.dataset.startswith(RAW_PREFIX):
            by_task.setdefault(entry.dataset.removeprefix(RAW_PREFIX), []).append(entry)
    hit = set(by_task) & set(names)
    for name in names:
        state = store.load(name)
        if not state.rebuild and name not in hit:
            continue
        spec = task(name)
        if state.rebuild:
            held = held_units(layout, spec)
            _forget(state, None)
            state.committed = held or set()
            state.rebuild = False
            log.warning(
                "%s: state rebuilt from the cache: %d units held", name, len(state.committed)
            )
        if name in hit:
            lost = _lost_units(layout, spec, state, by_task[name])
            _forget(state, lost)
            count = "every" if lost is None else str(len(lost))
            log.warning("%s: a partition was quarantined; %s unit(s) planned again", name, count)
        store.save(state)
    return hit
