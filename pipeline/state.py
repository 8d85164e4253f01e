"""`ah state show` and `ah state reset`: the stored state of sync tasks, read and forgotten
through the configured backend (`pipeline.backends`)."""

from __future__ import annotations

from typing import Any

from foundation.config import Settings
from pipeline.backends import open_locks, open_state
from pipeline.sync.tasks import task as task_spec

SHOWN = ("task", "status", "reason", "started", "finished", "units_done", "units_total",
         "rows_fetched", "rows_saved", "calls", "retries", "last_unit", "last_success",
         "committed", "errors")  # fmt: skip


def state_documents(settings: Settings, task: str | None = None) -> list[dict[str, Any]]:
    """The stored state of one task, or of every task that has one, as documents
    (`ah state show --json`)."""
    store = open_state(settings)
    try:
        names = [task_spec(task).name] if task else store.tasks()
        return [store.load(name).summary() for name in names]
    finally:
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
