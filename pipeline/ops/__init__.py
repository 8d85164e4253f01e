"""Operations tools: health, verify, stats, backup and restore, schedule, SQL on the catalogue."""

from foundation.exports import lazy_exports

_EXPORTS = {
    "check_health": "pipeline.ops.health",
    "verify_cache": "pipeline.ops.verify",
    "repair_cache": "pipeline.ops.repair",
    "collect_stats": "pipeline.ops.stats",
    "create_backup": "pipeline.ops.backup",
    "restore_backup": "pipeline.ops.backup",
    "list_backups": "pipeline.ops.backup",
    "render_schedule": "pipeline.ops.schedule",
    "run_sql": "pipeline.ops.sql",
    "shell": "pipeline.ops.sql",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
