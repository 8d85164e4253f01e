"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary sibling (not matching `*.parquet`, so globs never see
it), is flushed to disk, and is renamed over the target; the folder is synced so the
rename itself survives a crash. In a pool worker whose parent is gone the rename is
refused (`foundation.lifeline`): a killed run writes nothing after its death.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from foundation.lifeline import check_parent

TMP_SUFFIX = ".tmp"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        check_parent(target)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet_atomic(frame: pl.DataFrame, target: Path) -> Path:
    """Write `frame` as one Parquet file at `target`, atomically (zstd, statistics on)."""
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True, row_group_size=128_000)
    return Path(target)


def write_bytes_atomic(data: bytes, target: Path, mode: int | None = None) -> Path:
    """Write bytes to `target` atomically, optionally with file permissions `mode`."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            os.chmod(tmp, mode)
    return Path(target)


def remove_atomic(target: Path) -> None:
    """Delete a file if present and sync its folder."""
    target = Path(target)
    check_parent(target)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
        _fsync_dir(target.parent)
