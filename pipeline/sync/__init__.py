"""Sync: from the API to raw/ (DESIGN section 5): task specs, the planner, the runner."""

from foundation.exports import lazy_exports

_EXPORTS = {
    "run_sync": "pipeline.sync.runner",
    "SyncRequest": "pipeline.sync.runner",
    "list_tasks": "pipeline.sync.listing",
    "TaskSpec": "pipeline.sync.tasks",
    "TASKS": "pipeline.sync.tasks",
    "task": "pipeline.sync.tasks",
    "select_tasks": "pipeline.sync.tasks",
    "plan_task": "pipeline.sync.plan",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
