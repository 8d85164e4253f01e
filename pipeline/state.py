"""`ah state show` and `ah state reset`: the stored state of sync tasks, read and forgotten
through the configured backend (`pipeline.backends`)."""

from __future__ import annotations

from typing import Any

from cache.locks import LockHeld, TaskLocks
from foundation.config import Settings
from pipeline.backends import open_locks, open_state
from pipeline.sync.tasks import task as task_spec

SHOWN = ("task", "status", "reason", "started", "finished", "units_done", "units_total",
         "rows_fetched", "rows_saved", "calls", "retries", "last_unit", "last_success",
         "committed", "errors")  # fmt: skip


def _holder_gone(locks: TaskLocks, task: str) -> bool:
    """True when nobody holds the task's lock (so a `running` state is a dead run's)."""
    try:
        locks.check([task])
    except LockHeld:
        return False
    return True


def mark_interrupted(doc: dict[str, Any]) -> dict[str, Any]:
    """A `running` summary whose process is gone, shown as `interrupted`: when it
    started and where it ran."""
    where = f"pid {doc.get('pid')} on {doc.get('host')}" if doc.get("pid") else "a process"
    reason = f"{where} stopped without finishing (started {doc.get('started')})"
    return {**doc, "status": "interrupted", "reason": reason}


def state_documents(settings: Settings, task: str | None = None) -> list[dict[str, Any]]:
    """The stored state of one task, or of every task that has one, as documents
    (`ah state show --json`). A task stored as `running` whose lock nobody holds is
    shown as `interrupted`, with when it started and which process on which host ran it.
    """
    store = open_state(settings)
    locks = open_locks(settings)
    try:
        names = [task_spec(task).name] if task else store.tasks()
        docs = [store.load(name).summary() for name in names]
        return [
            mark_interrupted(d)
            if d["status"] == "running" and _holder_gone(locks, d["task"])
            else d
            for d in docs
        ]
    finally:
        locks.release()
        store.close()


def show_state(settings: Settings, task: str | None = None) -> str:
    """The stored state of one task, or of every task that has one (`ah state show`)."""
    docs = state_documents(settings, task)
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
    locks = open_locks(settings)
    try:
        locks.acquire([name])
        try:
            existed = store.reset(name)
        finally:
            locks.release()
    finally:
        store.close()
    return f"state of {name} reset" if existed else f"{name} had no state"
