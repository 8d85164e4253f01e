"""The last backup and the last verify, recorded for `ah health` and the metrics.

`<cache>/state/ops/backup.json` (when, where, files, bytes) is written by `ah backup`;
`<cache>/state/ops/verify.json` (when, datasets checked, findings per check) by `ah
verify`. The backup root may be anywhere (`--dest`), so the cache keeps the record.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cache.atomic import write_bytes_atomic
from cache.layout import CacheLayout

OPS_SUBDIR = "ops"
PRIVATE_DIR_MODE = 0o700  # state is owner-only (ops/health.py checks it)
VERIFY_CHECKS = ("corrupt", "gaps", "duplicates", "pit", "ranges", "drift")


def _path(layout: CacheLayout, name: str) -> Path:
    return layout.state_dir / OPS_SUBDIR / f"{name}.json"


def _write(layout: CacheLayout, name: str, doc: dict[str, Any]) -> Path:
    layout.state_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    (layout.state_dir / OPS_SUBDIR).mkdir(exist_ok=True, mode=PRIVATE_DIR_MODE)
    text = json.dumps(doc, indent=1, default=str)
    return write_bytes_atomic(text.encode("utf-8"), _path(layout, name))


def _read(layout: CacheLayout, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(_path(layout, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def record_backup(
    layout: CacheLayout, snapshot: Path, created: dt.datetime, files: int, size: int
) -> Path:
    """Remember a verified snapshot: where, when (UTC), how many files and bytes."""
    doc = {"finished": created.isoformat(), "snapshot": str(snapshot), "files": files}
    return _write(layout, "backup", {**doc, "bytes": size})


def last_backup(layout: CacheLayout) -> tuple[dt.datetime, dict[str, Any]] | None:
    """When the last recorded backup finished, and its record; None when none is."""
    doc = _read(layout, "backup")
    if doc is None or "finished" not in doc:
        return None
    return dt.datetime.fromisoformat(str(doc["finished"])), doc


def record_verify(
    layout: CacheLayout, datasets: int, checks: Iterable[str], finished: dt.datetime
) -> Path:
    """Remember a verify: when, how many datasets, findings per check (every check named)."""
    counts = Counter(checks)
    findings = {c: counts.get(c, 0) for c in sorted({*VERIFY_CHECKS, *counts})}
    doc = {"finished": finished.isoformat(), "datasets": datasets, "findings": findings}
    return _write(layout, "verify", doc)


def last_verify(layout: CacheLayout) -> tuple[dt.datetime, dict[str, int]] | None:
    """When the last verify finished and its findings per check; None when none ran."""
    doc = _read(layout, "verify")
    if doc is None or "finished" not in doc:
        return None
    findings = {str(k): int(v) for k, v in dict(doc.get("findings") or {}).items()}
    return dt.datetime.fromisoformat(str(doc["finished"])), findings
