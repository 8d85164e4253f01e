"""Parquet footers, read once per file version in a process.

Every cache file is replaced by an atomic rename (cache/atomic.py), never written in
place, so a file's (inode, size, modification time) names one version of it. One `ah
run` looks at every footer several times (the opening sweep for unreadable files, the
catalogue rebuilds after the sync and the load, the dataset statistics of the report);
`footer` reads each version once and answers the later looks from memory. A replaced
file has a new inode and is read again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow.parquet as pq

_Version = tuple[int, int, int, int]
_FOOTERS: dict[str, tuple[_Version, pq.FileMetaData]] = {}
_GUARD = threading.Lock()


def _version(info: os.stat_result) -> _Version:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def footer(path: Path) -> pq.FileMetaData:
    """The file's Parquet metadata (row groups, statistics, schema).

    Raises what `pyarrow.parquet.read_metadata` raises for an unreadable file
    (`FileNotFoundError` when it is gone); an unreadable file is never remembered.
    """
    key = os.fspath(path)
    version = _version(os.stat(key))
    with _GUARD:
        known = _FOOTERS.get(key)
    if known is not None and known[0] == version:
        return known[1]
    meta = pq.read_metadata(key)
    if _version(os.stat(key)) == version:  # not replaced while it was read
        with _GUARD:
            _FOOTERS[key] = (version, meta)
    return meta


def forget_footers() -> None:
    """Drop every remembered footer (a test that rewrites files in place)."""
    with _GUARD:
        _FOOTERS.clear()
