"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary sibling (not matching `*.parquet`, so globs never see
it), is flushed to disk, and is renamed over the target; the folder is synced so the
rename itself survives a crash. In a pool worker whose parent is gone the rename is
refused (`foundation.lifeline`): a killed run writes nothing after its death.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from foundation.errors import StorageError
from foundation.lifeline import check_parent

TMP_SUFFIX = ".tmp"

ROW_GROUP_ROWS = 16_384
"""Rows per Parquet row group. Every cache file is sorted by its key (ts_code first),
so small groups let a reader skip all but one stock's groups by their min/max
statistics: one stock's history reads a few groups instead of the whole file, for a few
per cent more bytes."""


def sync_folder(path: Path) -> None:
    """Make the renames and removals done in a folder durable (fsync of the folder): what
    writers that pass `sync_dir=False` for a batch of files call once at its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# The operating system's words for the refusals a library may report only as text.
_OS_TEXTS = {
    os.strerror(code): code
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EFBIG)
}


def _os_error_in(exc: Exception) -> OSError | None:
    """The operating-system error a library write failed on, told only in its message
    (Polars: "... (os error 28)"; DuckDB: "... No space left on device"), if any."""
    text = str(exc)
    found = _OS_ERROR.search(text)
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    for words, code in _OS_TEXTS.items():
        if words in text:
            return OSError(code, words)
    return None


@contextlib.contextmanager
def atomic_path(target: Path, sync_dir: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target` atomically.

    The file is synced before the rename; `sync_dir` False leaves syncing the folder to
    the caller (`sync_folder` once after a batch of files, not once per file).

    A refusal of the disk (full, read-only, no permission, a file where a folder should
    be) becomes a `StorageError` naming `target`; the old file stays as it was.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        check_parent(target)
        os.replace(tmp, target)
        if sync_dir:
            sync_folder(target.parent)
    except OSError as exc:
        raise StorageError.from_os_error(exc, target) from None
    except StorageError:
        raise
    except Exception as exc:  # Polars and DuckDB report a refused write in words
        cause = _os_error_in(exc)
        if cause is None:
            raise
        raise StorageError.from_os_error(cause, target) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


FAST_ZSTD_LEVEL = 1
"""The zstd level of files rewritten on every run (the PIT buckets, the open year's factor
files): about three times faster to write than the default level, for files a few per
cent larger."""


def write_parquet_file(frame: pl.DataFrame, path: Path, level: int | None = None) -> None:
    """Write `frame` to `path` as the cache writes every Parquet file: zstd (at `level`,
    None: the library's default), statistics on, row groups of `ROW_GROUP_ROWS` rows
    (the one place that sets them)."""
    frame.write_parquet(
        path,
        compression="zstd",
        compression_level=level,
        statistics=True,
        row_group_size=ROW_GROUP_ROWS,
    )


def write_parquet_atomic(
    frame: pl.DataFrame, target: Path, sync_dir: bool = True, level: int | None = None
) -> Path:
    """Write `frame` as one Parquet file at `target`, atomically (`write_parquet_file`,
    zstd at `level`; `sync_dir` as in `atomic_path`)."""
    with atomic_path(target, sync_dir) as tmp:
        write_parquet_file(frame, tmp, level)
    return Path(target)


def write_bytes_atomic(data: bytes, target: Path, mode: int | None = None) -> Path:
    """Write bytes to `target` atomically, optionally with file permissions `mode`."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            os.chmod(tmp, mode)
    return Path(target)


def remove_temporary_files(folder: Path, pattern: str = f".*{TMP_SUFFIX}") -> int:
    """Delete the files under `folder` matching `pattern`, by default the temporary
    files `atomic_path` writes, which a killed writer leaves behind (each as big as the
    file it was replacing); how many. The caller holds the lock of whatever writes
    there, so no live writer owns them."""
    removed = 0
    for tmp in list(folder.rglob(pattern)) if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    return removed


def remove_atomic(target: Path, sync_dir: bool = True) -> None:
    """Delete a file if present and sync its folder (unless `sync_dir` is False)."""
    target = Path(target)
    check_parent(target)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
        if sync_dir:
            sync_folder(target.parent)


def write_json_atomic(doc: dict[str, Any], target: Path) -> Path:
    """Write a JSON document atomically (indented, keys sorted), e.g. a stage's state."""
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return write_bytes_atomic(text.encode("utf-8"), target)


def read_json_document(path: Path) -> dict[str, Any]:
    """A JSON document written by `write_json_atomic`; empty when the file is missing or
    unreadable, so a caller starts afresh rather than fails."""
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text("utf-8"))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
