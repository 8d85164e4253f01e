"""Refusals of the disk at the atomic-write boundary, with real OS errors: one line
naming the path (`StorageError`), the old file intact, no temporary file left."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from cache.atomic import write_bytes_atomic, write_parquet_atomic
from cache.layout import CacheLayout
from cache.views import rebuild_catalog
from foundation.errors import StorageError


@contextlib.contextmanager
def file_size_limit(max_bytes: int) -> Iterator[None]:
    """Writes past `max_bytes` fail with EFBIG (Python ignores SIGXFSZ), as a full disk
    fails them with ENOSPC; restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def big_frame(rows: int = 50_000) -> pl.DataFrame:
    return pl.DataFrame({"a": range(rows), "b": [f"row-{i}" for i in range(rows)]})


def test_a_file_where_a_folder_should_be(tmp_path: Path) -> None:
    blocker = tmp_path / "raw"
    blocker.write_text("not a folder")
    target = blocker / "daily" / "part.parquet"
    with pytest.raises(StorageError) as err:
        write_parquet_atomic(big_frame(10), target)
    assert str(err.value).startswith(f"cannot write {target}: a file stands where a folder")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("writer", ["parquet", "bytes"])
def test_a_refused_write_keeps_the_old_file(tmp_path: Path, writer: str) -> None:
    target = tmp_path / "data" / "part.parquet"
    old = big_frame(100)
    write_parquet_atomic(old, target)
    before = target.read_bytes()
    with pytest.raises(StorageError) as err, file_size_limit(16 * 1024):
        if writer == "parquet":
            write_parquet_atomic(big_frame(), target)
        else:
            write_bytes_atomic(b"x" * 100_000, target)
    message = str(err.value)
    assert message.startswith(f"cannot write {target}: the file size limit is reached")
    assert "\n" not in message
    assert target.read_bytes() == before and pl.read_parquet(target).equals(old)
    assert sorted(p.name for p in target.parent.iterdir()) == ["part.parquet"]


def test_the_views_file_refused(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    write_parquet_atomic(big_frame(), layout.dataset_dir("raw", "daily") / "p.parquet")
    rebuild_catalog(layout, materialize=False)
    before = layout.duckdb_path.read_bytes()
    with (
        pytest.raises(StorageError, match=r"cannot write .*alphahome\.duckdb"),
        file_size_limit(4096),
    ):
        rebuild_catalog(layout, materialize=True)
    assert layout.duckdb_path.read_bytes() == before
