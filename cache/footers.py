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
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import pyarrow.parquet as pq

T = TypeVar("T")


class PerFileVersion(Generic[T]):
    """What `read` makes of a file, remembered per file version: (device, inode, size,
    modification time) names one version, since the cache replaces files by rename.

    A value is remembered only when the file was not replaced while it was read; an
    unreadable file (`read` raises) is never remembered. Thread-safe.
    """

    def __init__(self, read: Callable[[Path], T]) -> None:
        self._read = read
        self._known: dict[str, tuple[tuple[int, int, int, int], T]] = {}
        self._guard = threading.Lock()

    def get(self, path: Path) -> T:
        """The value for the file's current version (`FileNotFoundError` when it is gone)."""
        key = os.fspath(path)
        version = _version(os.stat(key))
        with self._guard:
            known = self._known.get(key)
        if known is not None and known[0] == version:
            return known[1]
        value = self._read(path)
        if _version(os.stat(key)) == version:  # not replaced while it was read
            with self._guard:
                self._known[key] = (version, value)
        return value


def _version(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


_FOOTERS: PerFileVersion[pq.FileMetaData] = PerFileVersion(pq.read_metadata)


def footer(path: Path) -> pq.FileMetaData:
    """The file's Parquet metadata (row groups, statistics, schema).

    Raises what `pyarrow.parquet.read_metadata` raises for an unreadable file
    (`FileNotFoundError` when it is gone); an unreadable file is never remembered.
    """
    return _FOOTERS.get(path)
