"""Task state: what each sync task did last and which of its units are committed.

One JSON document per task, written atomically after every commit: the outcome fields
shown by `ah state show` (status, started/finished, units done/total, rows fetched and
saved, retries, errors, last unit), the committed units (what the planner subtracts),
and the journal of the plan in progress (work items already committed, so a killed run
resumes where it stopped). Documents live in `<cache>/state/tasks/` or, for several
hosts sharing one database, in PostgreSQL (`ops.sync_state`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cache.atomic import remove_atomic, write_bytes_atomic
from cache.layout import CacheLayout
from foundation.config import Settings
from foundation.errors import AlphahomeError, UsageError
from pipeline.locks import FileLocks, PostgresLocks, TaskLocks
from pipeline.sync.tasks import task as task_spec

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

    def to_json(self) -> str:
        """The document, sets as sorted lists."""
        doc: dict[str, Any] = dataclasses.asdict(self)
        doc["committed"] = sorted(self.committed)
        doc["plan_done"] = sorted(self.plan_done)
        return json.dumps(doc, ensure_ascii=False, indent=1)

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
    """Task documents as `<cache>/state/tasks/<task>.json`."""

    def __init__(self, layout: CacheLayout) -> None:
        self.folder = layout.state_dir / "tasks"

    def _path(self, task: str) -> Path:
        return self.folder / f"{task}.json"

    def load(self, task: str) -> TaskState:
        """The task's state (a fresh one when it has none)."""
        path = self._path(task)
        return TaskState.from_json(path.read_text("utf-8")) if path.exists() else TaskState(task)

    def save(self, state: TaskState) -> None:
        """Replace the task's document atomically."""
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


class PostgresStateStore:
    """Task documents in `ops.sync_state` of the configured PostgreSQL database."""

    DDL = (
        "CREATE SCHEMA IF NOT EXISTS ops",
        "CREATE TABLE IF NOT EXISTS ops.sync_state ("
        " task TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )

    def __init__(self, url: str) -> None:
        import adbc_driver_postgresql.dbapi as pgdb

        try:
            self._conn = pgdb.connect(url, autocommit=True)
        except Exception as exc:
            msg = f"state backend postgres: cannot connect ({type(exc).__name__})"
            raise AlphahomeError(msg) from None
        with self._conn.cursor() as cur:
            for statement in self.DDL:
                cur.execute(statement)

    def load(self, task: str) -> TaskState:
        """The task's state (a fresh one when it has none)."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT doc FROM ops.sync_state WHERE task = $1", (task,))
            row = cur.fetchone()
        return TaskState.from_json(row[0]) if row else TaskState(task)

    def save(self, state: TaskState) -> None:
        """Upsert the task's document (one statement, atomic)."""
        with self._conn.cursor() as cur:
            cur.execute(
                "INSERT INTO ops.sync_state (task, doc, updated_at) VALUES ($1, $2, now()) "
                "ON CONFLICT (task) DO UPDATE SET doc = EXCLUDED.doc, updated_at = now()",
                (state.task, state.to_json()),
            )

    def reset(self, task: str) -> bool:
        """Delete the task's row."""
        with self._conn.cursor() as cur:
            cur.execute("DELETE FROM ops.sync_state WHERE task = $1 RETURNING task", (task,))
            return cur.fetchone() is not None

    def tasks(self) -> list[str]:
        """Tasks with a row."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT task FROM ops.sync_state ORDER BY task")
            return [r[0] for r in cur.fetchall()]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @property
    def connection(self) -> Any:
        """The open connection (the advisory locks share it)."""
        return self._conn


def open_state(settings: Settings) -> StateStore:
    """The state store chosen by `[state] backend`."""
    if settings.state.backend == "postgres":
        if not settings.database.url:
            msg = "state.backend = 'postgres' needs database.url (or DATABASE_URL)"
            raise UsageError(msg)
        return PostgresStateStore(settings.database.url)
    return FileStateStore(CacheLayout(settings.cache.dir))


SHOWN = ("task", "status", "reason", "started", "finished", "units_done", "units_total",
         "rows_fetched", "rows_saved", "calls", "retries", "last_unit", "last_success",
         "committed", "errors")  # fmt: skip


def show_state(settings: Settings, task: str | None = None) -> str:
    """The stored state of one task, or of every task that has one (`ah state show`)."""
    store = open_state(settings)
    try:
        names = [task_spec(task).name] if task else store.tasks()
        docs = [store.load(name).summary() for name in names]
    finally:
        store.close()
    if not docs:
        return "no task state yet"
    lines = []
    for doc in docs:
        lines.append(f"[{doc['task']}]")
        for key in SHOWN[1:]:
            value = doc[key]
            if key == "committed":
                key, value = "units_committed", value
            if value not in (None, [], ""):
                lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def reset_state(settings: Settings, task: str) -> str:
    """Forget a task's state so its next sync plans it from scratch (`ah state reset`);
    refused while the task is being synced."""
    name = task_spec(task).name
    store = open_state(settings)
    locks: TaskLocks
    if isinstance(store, PostgresStateStore):
        assert settings.database.url is not None
        locks = PostgresLocks(settings.database.url)
    else:
        locks = FileLocks(CacheLayout(settings.cache.dir))
    try:
        locks.acquire([name])
        try:
            existed = store.reset(name)
        finally:
            locks.release()
    finally:
        store.close()
    return f"state of {name} reset" if existed else f"{name} had no state"
