"""Durable spill files: fetched rows kept on disk until they are merged into the cache.

A sync task does not merge every answer into its partition files as it arrives (each
merge reads, sorts, compresses and rewrites whole files); it writes each fetched page
to a spill file of its own and merges the spilled pages into the dataset in large
batches in a worker thread, while the fetchers go on at the quota. A spill file is an
Arrow IPC file under `raw/<name>/.spill/` (a folder no `*.parquet` glob reads), written
atomically and fsynced; its schema metadata says what it completes: the work items it
finishes, the units whose every item is now fetched, the plan, the commit mode and when
its rows were fetched.

So a page that was answered is never asked again: a run killed before a merge leaves
the spill files, and the next run merges them into the dataset and records their units
(`recover`) before it plans. Merging is idempotent (cache/store.py), so a spill merged
once already (killed before its file was deleted) changes nothing when merged again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc

from cache.atomic import atomic_path, write_bytes_atomic
from cache.layout import CacheLayout
from cache.state import StateStore
from cache.store import AppendConflict, Mode, commit
from foundation.crashpoints import crash_point
from foundation.logs import get_logger
from pipeline.sync.tasks import TaskSpec

log = get_logger("sync")

SPILL_DIR = ".spill"
SPILL_SUFFIX = ".arrow"
FETCHING_SUFFIX = ".fetching"  # a sync fetching the dataset now (`mark_fetching`)
_META_KEY = b"alphahome.spill"
# what reading a damaged spill file or marker raises
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, pa.ArrowException)
_sequence = itertools.count()


@dataclass(frozen=True)
class Spilled:
    """One spilled page: its file, rows, what it completes, and when it was fetched."""

    path: Path
    frame: pl.DataFrame
    fetched_at: dt.datetime
    item: str  # the work item the page answers
    last: bool  # the item's last page: the item is finished
    units: tuple[str, ...]  # units complete once this page is merged
    plan_id: str | None
    mode: Mode


def spill_dir(layout: CacheLayout, name: str) -> Path:
    """Where a dataset's spill files wait for their merge."""
    return layout.dataset_dir("raw", name) / SPILL_DIR


def write_spill(
    layout: CacheLayout,
    name: str,
    run_id: str,
    frame: pl.DataFrame,
    fetched_at: dt.datetime,
    *,
    item: str,
    last: bool,
    units: Sequence[str],
    plan_id: str | None,
    mode: Mode,
) -> Spilled:
    """Write one fetched page to its own spill file, durably (fsynced, then renamed)."""
    path = spill_dir(layout, name) / f"{run_id}-{os.getpid()}-{next(_sequence):09d}{SPILL_SUFFIX}"
    meta = {
        "fetched_at": fetched_at.isoformat(),
        "item": item,
        "last": last,
        "units": list(units),
        "plan_id": plan_id,
        "mode": mode,
    }
    table = frame.to_arrow()
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode("utf-8")})
    with (
        atomic_path(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    crash_point("spill")
    return Spilled(path, frame, fetched_at, item, last, tuple(units), plan_id, mode)


def _meta(schema: pa.Schema) -> dict[str, Any]:
    """What a spill file's schema says of its page (`write_spill`)."""
    meta: dict[str, Any] = json.loads((schema.metadata or {})[_META_KEY])
    return meta


def read_spill(path: Path) -> Spilled:
    """A spill file back: its rows and what it completes."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        table = reader.read_all()
        meta = _meta(reader.schema)
    frame = pl.from_arrow(table.replace_schema_metadata(None))
    assert isinstance(frame, pl.DataFrame)
    return Spilled(
        path,
        frame,
        dt.datetime.fromisoformat(meta["fetched_at"]),
        meta["item"],
        meta["last"],
        tuple(meta["units"]),
        meta["plan_id"],
        meta["mode"],
    )


def remove_spills(spilled: Iterable[Spilled]) -> None:
    """Delete spill files whose rows are merged and recorded."""
    for done in spilled:
        with contextlib.suppress(FileNotFoundError):
            done.path.unlink()
        crash_point("unspill")


def leftover(layout: CacheLayout, name: str) -> list[Path]:
    """A dataset's spill files left by a killed run, oldest first."""
    folder = spill_dir(layout, name)
    return sorted(folder.glob(f"*{SPILL_SUFFIX}")) if folder.is_dir() else []


def mark_fetching(layout: CacheLayout, name: str, run_id: str, since: dt.datetime) -> Path:
    """Say in the dataset's spill folder that a sync fetches it since `since`.

    A fetched page is held in memory a moment before its spill file is written, and
    every page is merged with its fetch time, possibly after rows fetched later: while
    the marker is there, a PIT build keeps its watermark before `since`
    (`oldest_unmerged`). The task removes it when it ends (`unmark_fetching`); a killed
    run's marker stays until the task's next run ends.
    """
    path = spill_dir(layout, name) / f"{run_id}-{os.getpid()}{FETCHING_SUFFIX}"
    return write_bytes_atomic(json.dumps({"since": since.isoformat()}).encode("utf-8"), path)


def unmark_fetching(layout: CacheLayout, name: str) -> None:
    """Remove the dataset's fetching markers, a killed run's too (the caller holds the
    task's lock: no other sync of it runs)."""
    for path in _markers(layout, name):
        path.unlink(missing_ok=True)


def _markers(layout: CacheLayout, name: str) -> list[Path]:
    """A dataset's fetching markers (`mark_fetching`)."""
    folder = spill_dir(layout, name)
    return sorted(folder.glob(f"*{FETCHING_SUFFIX}")) if folder.is_dir() else []


def _utc(moment: dt.datetime) -> dt.datetime:
    """A time as written by this module (UTC); one without a zone is read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def oldest_unmerged(layout: CacheLayout, name: str) -> dt.datetime | None:
    """The fetch time of the oldest rows of a dataset that a sync may still merge, None
    when there are none: the oldest page waiting in its spill files (a running sync's,
    or a killed one's until the next sync merges them) and the start of every sync
    fetching it (`mark_fetching`). Such rows reach the dataset with that time, after
    rows fetched later. Reads the files' schemas only; an unreadable file is skipped
    (the next sync drops it and fetches its units again)."""
    times = []
    for path in leftover(layout, name):
        try:
            with pa.OSFile(str(path), "rb") as source:
                meta = _meta(pa.ipc.open_file(source).schema)
            times.append(_utc(dt.datetime.fromisoformat(meta["fetched_at"])))
        except _UNREADABLE:
            continue
    for path in _markers(layout, name):
        try:
            times.append(_utc(dt.datetime.fromisoformat(json.loads(path.read_bytes())["since"])))
        except _UNREADABLE:
            continue
    return min(times, default=None)


def tidy(layout: CacheLayout, name: str) -> None:
    """Remove a dataset's spill folder once it is empty."""
    with contextlib.suppress(OSError):
        spill_dir(layout, name).rmdir()


def recover(layout: CacheLayout, store: StateStore, spec: TaskSpec) -> int:
    """Merge the spill files a killed run left for a task into its dataset and record
    their units as committed (the caller holds the task's lock); returns how many
    spilled pages were merged. Spill files that cannot be read (a disk fault) are
    dropped: their units were never recorded, so the sync fetches them again."""
    name = spec.name
    paths = leftover(layout, name)
    if not paths:
        tidy(layout, name)
        return 0
    spilled: list[Spilled] = []
    for path in paths:
        try:
            spilled.append(read_spill(path))
        except _UNREADABLE as exc:
            log.warning("%s: dropping unreadable spill file %s (%s)", name, path.name, exc)
            path.unlink(missing_ok=True)
    state = store.load(name)
    mode = spilled[0].mode if spilled else "upsert"
    if spilled:
        rows = pl.concat([s.frame for s in spilled], how="diagonal_relaxed")
        try:
            commit(
                layout,
                spec.dataset,
                rows,
                min(s.fetched_at for s in spilled),
                mode,
                checkpoint=crash_point,
            )
        except AppendConflict as exc:
            log.warning("%s: spilled pages not merged (%s); they are fetched again", name, exc)
            remove_spills(spilled)
            tidy(layout, name)
            return 0
        crash_point("merge")
        state.committed.update(u for s in spilled for u in s.units)
        if state.plan_id is not None:
            state.plan_done.update(s.item for s in spilled if s.last and s.plan_id == state.plan_id)
        store.save(state)
        log.info("%s: merged %d page(s) fetched by an interrupted run", name, len(spilled))
    remove_spills(spilled)
    tidy(layout, name)
    return len(spilled)
