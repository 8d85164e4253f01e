"""Task state: what each sync task did last and which of its units are committed.

One JSON document per task, written atomically after every commit: the outcome fields
shown by `ah state show` (status, started/finished, units done/total, rows fetched and
saved, retries, errors, last unit), the committed units (what the planner subtracts),
and the journal of the plan in progress (work items already committed, so a killed run
resumes where it stopped). Documents live in `<cache>/state/tasks/` (`FileStateStore`)
or, for several hosts sharing one database, in PostgreSQL (`sinks.pg_state.
PostgresStateStore`); `pipeline.backends.open_state` picks one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cache.atomic import remove_atomic, write_bytes_atomic
from cache.layout import CacheLayout, make_state_dir
from cache.quarantine import quarantine_file

STATUSES = ("never", "running", "success", "partial", "no_data", "skipped", "failed")


@dataclass
class TaskState:
    """The stored state of one task."""

    task: str
    status: str = "never"
    reason: str | None = None
    run_id: str | None = None
    started: str | None = None
    finished: str | None = None
    units_done: int = 0
    units_total: int = 0
    rows_fetched: int = 0
    rows_saved: int = 0
    calls: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    last_unit: str | None = None
    last_success: str | None = None
    committed: set[str] = field(default_factory=set)
    plan_id: str | None = None
    plan_done: set[str] = field(default_factory=set)
    pid: int | None = None  # the process that ran it last, and where
    host: str | None = None
    # The document was lost (unreadable): the next sync rebuilds `committed` from what
    # raw/ holds before planning (`pipeline.sync.recover`).
    rebuild: bool = False

    def to_json(self) -> str:
        """The document, sets as sorted lists (a shallow copy of the fields: the unit sets
        are large and written after every commit, `dataclasses.asdict` would deep-copy
        them first). One line, compact: with an indent `json` encodes in Python, and a
        daily task's decades of units made every commit cost milliseconds."""
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["errors"] = list(self.errors)
        doc["committed"] = sorted(self.committed)
        doc["plan_done"] = sorted(self.plan_done)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskState:
        """Parse a document written by `to_json` (unknown keys ignored)."""
        doc = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["committed"] = set(values.get("committed", ()))
        values["plan_done"] = set(values.get("plan_done", ()))
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The outcome fields, without the unit lists (for display)."""
        doc = dataclasses.asdict(self)
        doc["committed"] = len(self.committed)
        doc["plan_done"] = len(self.plan_done)
        return doc


class StateStore(Protocol):
    """Where task documents live."""

    def load(self, task: str) -> TaskState:
        """The task's state (a fresh one when it has none)."""
        ...

    def save(self, state: TaskState) -> None:
        """Replace the task's state atomically."""
        ...

    def reset(self, task: str) -> bool:
        """Forget the task's state; True when there was one."""
        ...

    def tasks(self) -> list[str]:
        """Tasks that have a stored state."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class FileStateStore:
    """Task documents as `<cache>/state/tasks/<task>.json`.

    A document that does not parse (truncated, overwritten) is moved to the quarantine
    (`cache.quarantine`, so health and verify report it) and the task's state starts
    afresh marked `rebuild` instead of stopping the sync: the next sync rebuilds its
    committed units from what raw/ holds (`pipeline.sync.recover`), so it fetches what
    is missing, not the whole task again.
    """

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout
        self.folder = layout.state_dir / "tasks"

    def _path(self, task: str) -> Path:
        return self.folder / f"{task}.json"

    def load(self, task: str) -> TaskState:
        """The task's state (a fresh one when it has none, a rebuilt one when it is
        unreadable)."""
        path = self._path(task)
        if not path.exists():
            return TaskState(task)
        try:
            return TaskState.from_json(path.read_text("utf-8"))
        except (ValueError, TypeError, AttributeError) as exc:
            reason = f"unreadable task state ({type(exc).__name__})"
            quarantine_file(self.layout, "state.tasks", path, reason)
        state = TaskState(task, reason=f"state rebuilt: {path.name} was unreadable", rebuild=True)
        self.save(state)
        return state

    def save(self, state: TaskState) -> None:
        """Replace the task's document atomically."""
        make_state_dir(self.layout)
        write_bytes_atomic(state.to_json().encode("utf-8"), self._path(state.task))

    def reset(self, task: str) -> bool:
        """Delete the task's document."""
        path = self._path(task)
        existed = path.exists()
        remove_atomic(path)
        return existed

    def tasks(self) -> list[str]:
        """Tasks with a document."""
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []

    def close(self) -> None:
        """Nothing to release."""
