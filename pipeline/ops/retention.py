"""Retention of what runs leave behind: run reports and rotated log files.

- Reports (`<cache>/reports/`: JSON, HTML) older than `run.keep_reports_days` are
  deleted; `latest.*` is always kept.
- Rotated logs (`<cache>/logs/*.log.N`, left by the rotating handlers) are gzip-
  compressed into `<name>.<YYYYmmddTHHMMSS>.gz` (their last write time) and the
  compressed ones older than `run.keep_logs_days` are deleted (the usual rule: 30).

A 0 keeps everything. Every `ah run` (and every recorded command) applies it; it
never touches the live log files.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cache.layout import CacheLayout
from foundation.logs import get_logger

log = get_logger("retention")

DAY_S = 86400
_ROTATED = re.compile(r".+\.log\.\d+$")


@dataclass
class RetentionResult:
    """What one pass did: reports deleted, logs compressed, compressed logs deleted."""

    reports_deleted: list[Path] = field(default_factory=list)
    logs_compressed: list[Path] = field(default_factory=list)
    logs_deleted: list[Path] = field(default_factory=list)


def _older_than(path: Path, days: int, now: float) -> bool:
    return days > 0 and now - path.stat().st_mtime > days * DAY_S


def prune_reports(reports_dir: Path, keep_days: int, now: float) -> list[Path]:
    """Delete report files older than `keep_days` (never `latest.*`); the deleted paths."""
    if keep_days <= 0 or not reports_dir.is_dir():
        return []
    deleted = []
    for path in sorted(reports_dir.iterdir()):
        if path.stem == "latest" or not path.is_file() or path.is_symlink():
            continue
        if _older_than(path, keep_days, now):
            path.unlink(missing_ok=True)
            deleted.append(path)
    return deleted


def compress_rotated_logs(logs_dir: Path) -> list[Path]:
    """Gzip each rotated `*.log.N` into `*.log.<stamp>.gz` (its mtime kept); the new files."""
    if not logs_dir.is_dir():
        return []
    made = []
    for path in sorted(logs_dir.iterdir()):
        if not _ROTATED.fullmatch(path.name) or not path.is_file():
            continue
        mtime = path.stat().st_mtime
        stamp = dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y%m%dT%H%M%S")
        base = path.name.rsplit(".", 1)[0]
        target = logs_dir / f"{base}.{stamp}.gz"
        n = 1
        while target.exists():
            target = logs_dir / f"{base}.{stamp}-{n}.gz"
            n += 1
        partial = target.with_name(target.name + ".tmp")
        with path.open("rb") as src, gzip.open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.utime(partial, (mtime, mtime))
        partial.replace(target)
        path.unlink()
        made.append(target)
    return made


def prune_logs(logs_dir: Path, keep_days: int, now: float) -> list[Path]:
    """Delete compressed logs (`*.gz`) older than `keep_days`; the deleted paths."""
    if keep_days <= 0 or not logs_dir.is_dir():
        return []
    deleted = []
    for path in sorted(logs_dir.glob("*.gz")):
        if _older_than(path, keep_days, now):
            path.unlink(missing_ok=True)
            deleted.append(path)
    return deleted


def apply_retention(
    layout: CacheLayout, keep_reports_days: int, keep_logs_days: int, now: float | None = None
) -> RetentionResult:
    """One retention pass over the cache's reports and logs (failures are logged only)."""
    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    result = RetentionResult()
    try:
        result.reports_deleted = prune_reports(layout.reports_dir, keep_reports_days, now)
        result.logs_compressed = compress_rotated_logs(layout.logs_dir)
        result.logs_deleted = prune_logs(layout.logs_dir, keep_logs_days, now)
    except OSError as exc:
        log.warning("retention of reports and logs stopped: %s", exc)
    if result.reports_deleted or result.logs_deleted:
        log.info(
            "retention: %d reports and %d compressed logs deleted",
            len(result.reports_deleted), len(result.logs_deleted),
        )  # fmt: skip
    return result
