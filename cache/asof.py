"""The data's as-of date: the newest `trade_date` in raw/daily (DESIGN section 7).

This is the one home of that fact; the sync, the factor step, the alerts and the HTML
report all read it from here. It is computed from the Parquet footers of raw/daily
and persisted in `<cache>/state/asof.json` with a fingerprint of the files it came
from (path, size, modification time and inode of each). A reader trusts the file
only while the fingerprint still matches raw/daily, and recomputes and rewrites it
otherwise, so the date is right after any commit, after a kill -9 between a commit
and the write, and when the file is missing or corrupt. Every write is atomic
(cache/atomic.py).

It is not the market's today (what the source could have data for): that belongs to
the source, and staleness is the distance between the two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from cache.atomic import write_bytes_atomic
from cache.layout import CacheLayout
from foundation.errors import InternalError

AS_OF_FILE = "asof.json"
AS_OF_DATASET = "daily"
AS_OF_COLUMN = "trade_date"


def as_of_path(layout: CacheLayout) -> Path:
    """`<cache>/state/asof.json`."""
    return layout.state_dir / AS_OF_FILE


def _daily_files(layout: CacheLayout) -> list[Path]:
    folder = layout.dataset_dir("raw", AS_OF_DATASET)
    return sorted(folder.rglob("*.parquet")) if folder.is_dir() else []


def _fingerprint(layout: CacheLayout, files: list[Path]) -> str:
    """A digest of which raw/daily files exist and which version of each."""
    digest = hashlib.sha256()
    base = layout.dataset_dir("raw", AS_OF_DATASET)
    for path in files:
        st = path.stat()
        digest.update(
            f"{path.relative_to(base)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode()
        )
    return digest.hexdigest()


def _newest_in_file(path: Path) -> dt.date | None:
    """The largest trade_date of one Parquet file, from its footer when it has statistics."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if AS_OF_COLUMN not in names or meta.num_rows == 0:
        return None
    column = names.index(AS_OF_COLUMN)
    newest: dt.date | None = None
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max:
            values = pq.read_table(path, columns=[AS_OF_COLUMN]).column(0)
            found = max((v for v in values.to_pylist() if v is not None), default=None)
            return _as_date(found)
        value = _as_date(stats.max)
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest


def _as_date(value: object) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    msg = f"raw/{AS_OF_DATASET}.{AS_OF_COLUMN} holds {value!r}, not a date"
    raise InternalError(msg)


def _newest(files: list[Path]) -> dt.date | None:
    return max((d for d in map(_newest_in_file, files) if d is not None), default=None)


def compute_as_of(layout: CacheLayout) -> dt.date | None:
    """The newest trade_date in raw/daily, from the files (None: no daily bar at all)."""
    return _newest(_daily_files(layout))


def record_as_of(layout: CacheLayout) -> dt.date | None:
    """Compute the as-of date and persist it (the sync calls this after committing).

    The fingerprint is taken before the footers are read: a commit landing in between
    leaves a fingerprint that no longer matches, so the next reader recomputes.
    """
    files = _daily_files(layout)
    fingerprint = _fingerprint(layout, files)
    as_of = _newest(files)
    doc = {
        "as_of": as_of.isoformat() if as_of else None,
        "dataset": f"raw/{AS_OF_DATASET}",
        "column": AS_OF_COLUMN,
        "files": len(files),
        "fingerprint": fingerprint,
    }
    write_bytes_atomic(json.dumps(doc, indent=1).encode("utf-8"), as_of_path(layout))
    return as_of


def _persisted(layout: CacheLayout, fingerprint: str) -> tuple[bool, dt.date | None]:
    """(found, date) from asof.json when it is readable and matches `fingerprint`."""
    try:
        doc = json.loads(as_of_path(layout).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint:
            return False, None
        value = doc.get("as_of")
        return True, (dt.date.fromisoformat(value) if value is not None else None)
    except (OSError, ValueError, TypeError):
        return False, None


def data_as_of(layout: CacheLayout, remember: bool = True) -> dt.date | None:
    """The data's as-of date: the persisted one while raw/daily is unchanged, else computed
    afresh (and persisted again when the cache is writable and `remember`: a check that
    must write nothing, like a dry run's, passes False). None when raw/daily is empty."""
    files = _daily_files(layout)
    found, as_of = _persisted(layout, _fingerprint(layout, files))
    if found:
        return as_of
    if not files:
        return None
    if not remember:
        return compute_as_of(layout)
    try:
        return record_as_of(layout)
    except OSError:  # a read-only cache: the answer is still right, only not remembered
        return compute_as_of(layout)
