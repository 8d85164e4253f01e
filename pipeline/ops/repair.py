"""`ah repair [DATASET…]`: make a damaged cache whole again.

1. Unreadable Parquet files are quarantined (`cache.quarantine`): every page is read,
   so a file whose footer is whole but a page does not decode is found too.
2. Raw datasets with a quarantined partition, or with calendar gaps (expected dates
   without rows, as `ah verify` finds them), are synced again: a quarantined
   partition's units are planned again (`pipeline.sync.recover`), a gap's dates too; a
   task whose state document was lost has its committed units rebuilt from raw/.
3. The PIT tables are rebuilt where a file is missing or their raw input changed
   (an incremental build, which rebuilds missing buckets), and the factors are
   recomputed from the first re-fetched date on (every calc date when that date is not
   known), plus the missing ones.
4. Records of what was repaired are cleared; what is left is reported.

Takes the stage locks of PIT and factors, and the sync's task locks, like the stages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cache.layout import CacheLayout
from cache.partitions import partition_span
from cache.quarantine import (
    clear_restored,
    forget,
    quarantine_file,
    quarantined,
    sweep_unreadable,
    unreadable_state_files,
)
from cache.views import refresh_catalog
from foundation.config import Settings
from foundation.errors import UsageError
from pipeline.backends import open_state, stage_lock
from pipeline.factor_step import compute_factors, missing_factor_files
from pipeline.ops.stats import trade_calendar
from pipeline.ops.verify import calendar_gaps
from pipeline.pit.step import STATE_FILE as PIT_STATE
from pipeline.pit.step import build_pit, missing_parts, stray_files
from pipeline.sync.plan import unit_key
from pipeline.sync.recover import reported_start
from pipeline.sync.runner import SyncRequest, recorded_source, run_sync
from pipeline.sync.tasks import TASKS

__all__ = ["RepairResult", "repair_cache"]

RAW_PREFIX = "raw."


@dataclass
class RepairResult:
    """What the repair did, line by line, and what is still damaged (exit 1 if any)."""

    lines: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when nothing damaged is left, 1 otherwise."""
        return 1 if self.remaining else 0


def _chosen(datasets: Sequence[str]) -> set[str] | None:
    """The raw task names asked for (bare or `raw.`-prefixed); None for all."""
    if not datasets:
        return None
    known = {t.name for t in TASKS}
    names = {d.removeprefix(RAW_PREFIX) for d in datasets}
    unknown = sorted(n for n in names if n not in known and not n.startswith(("pit", "factors")))
    if unknown:
        msg = f"unknown dataset {unknown[0]!r} for ah repair; expected raw task names"
        raise UsageError(msg)
    return names


def partition_start(partition: str) -> dt.date | None:
    """The first day a dated partition file holds (`2024/2024-05.parquet`,
    `2024.parquet`); None for undated ones (a single file, a stock bucket)."""
    span = partition_span(partition)
    return None if span is None else span[0]


def _requeue_gaps(
    settings: Settings, layout: CacheLayout, names: set[str] | None
) -> dict[str, dt.date]:
    """Forget the committed units of calendar gaps; each task that has some, with its
    first gap."""
    calendar = trade_calendar(layout)
    store = open_state(settings)
    found: dict[str, dt.date] = {}
    try:
        for spec in TASKS:
            if spec.unit != "trade_date" or (names is not None and spec.name not in names):
                continue
            days = calendar_gaps(layout, spec.name, calendar)
            if not days:
                continue
            state = store.load(spec.name)
            state.committed -= {unit_key(d) for d in days}
            state.plan_done.clear()
            state.plan_id = None
            store.save(state)
            found[spec.name] = min(days)
    finally:
        store.close()
    return found


def _lost_state_documents(layout: CacheLayout, result: RepairResult) -> dict[str, set[str]]:
    """The state files that cannot be read, by who rebuilds them: sync tasks (their
    committed units from raw/), the PIT build and the factor step (a full build of that
    stage, which quarantines the old file itself). The others are records their command
    writes again (the as-of date, the source, the last verify and backup): they are
    moved aside here and forgotten."""
    lost: dict[str, set[str]] = {"tasks": set(), "pit": set(), "factors": set()}
    for path, reason in unreadable_state_files(layout).items():
        relative = path.relative_to(layout.state_dir).as_posix()
        if relative.startswith("tasks/"):
            lost["tasks"].add(path.stem)
        elif relative == PIT_STATE:
            lost["pit"].add(relative)
        elif relative.startswith("factors"):
            lost["factors"].add(relative)
        else:
            entry = quarantine_file(layout, "state", path, reason)
            forget(layout, entry)
            result.lines.append(f"moved aside {entry.line()}; its command writes it again")
    return lost


def repair_cache(
    settings: Settings,
    datasets: Sequence[str] = (),
    executor: str = "process",
    source: str | None = None,
) -> RepairResult:
    """Re-fetch quarantined and missing raw units (from `source`, else the one that
    filled the cache), rebuild the PIT and factor files that depend on them; see the
    module docstring."""
    layout = CacheLayout(settings.cache.dir)
    result = RepairResult()
    names = _chosen(datasets)
    for entry in sweep_unreadable(layout, deep=True):
        result.lines.append(f"quarantined {entry.line()}")
    since: list[dt.date | None] = []
    tasks: set[str] = set()
    for entry in quarantined(layout):
        name = entry.dataset.removeprefix(RAW_PREFIX)
        if entry.dataset.startswith(RAW_PREFIX) and (names is None or name in names):
            tasks.add(name)
            since.append(partition_start(entry.partition))
    lost_states = _lost_state_documents(layout, result)
    tasks |= {n for n in lost_states["tasks"] if names is None or n in names}
    gaps = _requeue_gaps(settings, layout, names)
    tasks |= set(gaps)
    since += list(gaps.values())
    if tasks:
        kind = source or recorded_source(layout)
        starts = [reported_start(layout, name) for name in tasks]
        given = [d for d in starts if d is not None]
        start = min(given) if len(given) == len(starts) else None  # as it was filled
        request = SyncRequest(tasks=tuple(sorted(tasks)), source=kind, start=start, progress=False)
        report = run_sync(settings, request)
        for outcome in report.tasks:
            result.lines.append(f"re-fetched {outcome.task}: {outcome.status}")
    if tasks or lost_states["pit"] or missing_parts(layout) or stray_files(layout):
        with stage_lock(settings, "pit"):
            pit = build_pit(layout, ("all",), "incremental", executor, settings.run.workers)
        result.lines.append(f"rebuilt PIT: {pit.buckets_rebuilt} buckets")
    if tasks or lost_states["pit"] or lost_states["factors"] or missing_factor_files(layout):
        with stage_lock(settings, "factors"):
            known = [d for d in since if d is not None]
            factors = compute_factors(
                layout,
                "all",
                mode="backfill" if None in since else "incremental",
                recompute_since=min(known) if known and None not in since else None,
                executor=executor,
                workers=settings.run.workers,
            )
        done = ", ".join(f"{k} {v}" for k, v in factors.dates_computed.items())
        result.lines.append(f"recomputed factors: calc dates {done}")
    clear_restored(layout)
    refresh_catalog(settings)
    result.remaining = [e.line() for e in quarantined(layout)]
    result.remaining += [f"{p.relative_to(layout.root)} is missing" for p in missing_parts(layout)]
    result.remaining += [f"{p.relative_to(layout.root)} is stray" for p in stray_files(layout)]
    result.remaining += [
        f"{p.relative_to(layout.root)} is missing" for p in missing_factor_files(layout)
    ]
    result.lines += [f"still damaged: {line}" for line in result.remaining]
    result.lines.append("repair: " + ("incomplete" if result.remaining else "cache whole"))
    return result
