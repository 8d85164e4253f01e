"""The files of a PIT stock table: bucket files, delta files, and what a new delta holds.

A stock table is the union of its files' rows. `part-bb.parquet` holds the rows of the
stocks of bucket bb as a full build (or a fold) wrote them; `delta-<build>-<job>-<n>.parquet`
holds the rows one incremental build's job added, for any stocks, sorted by ts_code.
No row is in two files. A delta is written once under a name no file had before (`n`
counts up past any delta a crashed run left at the same build and job), so a re-run
never overwrites rows it did not read.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

DELTA_PREFIX = "delta-"
FOLD_DELTAS = 32
"""A table with more delta files than this has them folded into its bucket files by
the next incremental build (a merge of every bucket they touch, once per this many
builds), so a reader's file count stays bounded."""

FILE_COLUMN = "_file"
_OCCURRENCE = "_occurrence"
_DELTA_NAME = re.compile(r"delta-(\d{6})-(\d{2})-(\d{2,})\.parquet")


def delta_files(folder: Path) -> list[Path]:
    """The delta files of a table's folder, oldest build first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{DELTA_PREFIX}*.parquet"))


def delta_build(path: Path) -> int | None:
    """The build that wrote a delta file, from its name (None: not a delta's name)."""
    found = _DELTA_NAME.fullmatch(path.name)
    return int(found.group(1)) if found else None


def new_delta_path(folder: Path, build: int, job: int) -> Path:
    """A delta name for `job` of `build` that no file of the folder has: the first one,
    or one past the last left by a crashed run of the same build."""
    taken = [
        int(found.group(3))
        for path in delta_files(folder)
        if (found := _DELTA_NAME.fullmatch(path.name))
        and (int(found.group(1)), int(found.group(2))) == (build, job)
    ]
    attempt = max(taken, default=-1) + 1
    return folder / f"{DELTA_PREFIX}{build:06d}-{job:02d}-{attempt:02d}.parquet"


def _numbered(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with each row's rank among the rows identical to it (a multiset as a set)."""
    return frame.with_columns(pl.int_range(pl.len()).over(frame.columns).alias(_OCCURRENCE))


def _only_in(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    return left.join(right, on=left.columns, how="anti", nulls_equal=True)


def split_stored(stored: pl.DataFrame, fresh: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """What a delta holds, and the stocks whose stored rows must go, from the stored and
    the freshly computed rows of the same stocks (same columns).

    Per stock, compared as multisets: when every stored row is among the fresh ones
    (counting repeats, so a row stored twice is not), only the fresh rows not stored are
    added; otherwise the stock is replaced: all its fresh rows are added and its stored
    rows are to be removed from the files holding them. A stock stored as computed adds
    nothing. The added rows are sorted by ts_code, each stock's in their fresh order.
    """
    old, new = _numbered(stored), _numbered(fresh)
    replaced = sorted(set(_only_in(old, new).get_column("ts_code").to_list()))
    gone = pl.col("ts_code").is_in(replaced)
    added = _only_in(new.filter(~gone), old).drop(_OCCURRENCE)
    rows = pl.concat([added, fresh.filter(gone)])
    return rows.sort("ts_code", maintain_order=True), replaced
