"""Which file of a raw dataset holds each row, and the closing of a year (DESIGN section 4).

A dataset's `DatasetSpec.partitioning` says how its rows split into files:
- `single`: one file, `data.parquet`;
- `year`: one file per year of the date column, `<yyyy>.parquet`;
- `year_open_month` (the daily market datasets): one file per closed year,
  `<yyyy>.parquet`, and one per month of the open year, `<yyyy>/<yyyy>-<mm>.parquet`.
  A year is open until the dataset holds a later year's rows; then `close_years`
  compacts its monthly files into the yearly file. One stock's history thus reads a few
  row groups of ~16 files instead of ~180 monthly ones, while the evening's commit
  still rewrites one small monthly file. A year that has its yearly file takes every
  later row of that year (a refetched December day in January goes there).
Rows with no date go to `undated.parquet`.

Closing a year is crash-safe: the yearly file is written whole and renamed into place
before the first monthly file is deleted, so a kill at any instant loses nothing. Monthly
files left beside a yearly file by such a kill are wholly contained in it (once the
yearly file exists, no commit writes a monthly file of that year), and the next
`close_years` deletes them. A cache written with monthly files for every year (the
layout before 0.4) is a valid state of this layout: closing its years migrates it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from cache.atomic import atomic_path, remove_atomic, remove_temporary_files, write_parquet_file
from cache.catalogue.datasets import DatasetSpec
from cache.layout import CacheLayout
from foundation.errors import InternalError
from foundation.logs import get_logger

__all__ = [
    "SINGLE_FILE",
    "UNDATED_FILE",
    "close_years",
    "closed_years",
    "partition_expr",
    "partition_span",
    "unfinished_closings",
]

SINGLE_FILE = "data.parquet"
UNDATED_FILE = "undated.parquet"

_YEAR_FILE = re.compile(r"(\d{4})\.parquet")
_YEAR_DIR = re.compile(r"\d{4}")

log = get_logger("cache")


def closed_years(folder: Path) -> frozenset[int]:
    """The years of a dataset folder that have their yearly file."""
    if not folder.is_dir():
        return frozenset()
    found = (_YEAR_FILE.fullmatch(p.name) for p in folder.iterdir())
    return frozenset(int(m.group(1)) for m in found if m)


def partition_expr(spec: DatasetSpec, closed: frozenset[int] = frozenset()) -> pl.Expr:
    """The relative file of each row of a raw dataset, from its date column; `closed`
    are the years that have their yearly file (`closed_years`), for `year_open_month`."""
    if spec.partitioning == "stock_bucket":
        msg = f"{spec.qualified} is written by the PIT build, not committed by the store"
        raise InternalError(msg)
    if spec.partitioning == "single" or spec.date_field is None:
        return pl.lit(SINGLE_FILE)
    date = pl.col(spec.date_field)
    yearly = date.dt.strftime("%Y.parquet")
    if spec.partitioning == "year_open_month":
        monthly = date.dt.strftime("%Y/%Y-%m.parquet")
        in_closed = date.dt.year().is_in(sorted(closed))
        return pl.when(in_closed).then(yearly).otherwise(monthly).fill_null(UNDATED_FILE)
    return yearly.fill_null(UNDATED_FILE)


def partition_span(partition: str) -> tuple[dt.date, dt.date] | None:
    """The first and last day a dated partition file holds, from its name relative to the
    dataset folder (`2024/2024-05.parquet`, `2024.parquet`); None when its name tells no
    span (a single or undated file, a stock bucket)."""
    stem = partition.rsplit("/", 1)[-1].removesuffix(".parquet")
    with contextlib.suppress(ValueError):
        if len(stem) == len("2024-05") and stem[4] == "-":
            first = dt.date(int(stem[:4]), int(stem[5:7]), 1)
            following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return first, following - dt.timedelta(days=1)
        if len(stem) == len("2024") and stem.isdigit():
            return dt.date(int(stem), 1, 1), dt.date(int(stem), 12, 31)
    return None


def _monthly_files(folder: Path) -> dict[int, list[Path]]:
    """Each year folder's monthly files (years without any are left out)."""
    found: dict[int, list[Path]] = {}
    if not folder.is_dir():
        return found
    for sub in folder.iterdir():
        if sub.is_dir() and _YEAR_DIR.fullmatch(sub.name):
            files = sorted(sub.glob("*.parquet"))
            if files:
                found[int(sub.name)] = files
    return found


def unfinished_closings(layout: CacheLayout, name: str) -> list[int]:
    """Years of a raw dataset with monthly files left beside the yearly file (a killed
    closing: their rows read twice until the dataset's next sync deletes them)."""
    folder = layout.dataset_dir("raw", name)
    return sorted(set(_monthly_files(folder)) & closed_years(folder))


def _compact(spec: DatasetSpec, months: list[Path], target: Path) -> bool:
    """Write the rows of `months` as the one file `target`; False (nothing written) when a
    month lacks a column of the dataset (an older file: the commit reports it)."""
    columns = list(spec.stored_schema())
    frames = []
    for path in months:
        frame = pl.read_parquet(path)
        if any(c not in frame.columns for c in columns):
            log.warning("%s: %s lacks a column; its year stays in monthly files", spec.name, path)
            return False
        frames.append(frame.select(columns))
    merged = pl.concat(frames, how="vertical_relaxed").sort(
        [*spec.sort_by, *spec.key], nulls_last=False, maintain_order=True
    )
    with atomic_path(target) as tmp:
        write_parquet_file(merged, tmp)
    return True


def close_years(
    layout: CacheLayout, spec: DatasetSpec, checkpoint: Callable[[str], None] | None = None
) -> list[int]:
    """Compact the monthly files of every closed year of a `year_open_month` dataset into
    its yearly file, and delete monthly files a killed compaction left beside one; the
    years compacted. The caller holds the dataset's lock (the sync's task lock).

    `checkpoint("compact")` is called after a yearly file is in place and before its
    monthly files go (the crash tests hook in there). Other partitionings: nothing.
    """
    if spec.layer != "raw" or spec.partitioning != "year_open_month":
        return []
    folder = layout.dataset_dir("raw", spec.name)
    monthly = _monthly_files(folder)
    if not monthly:
        return []
    closed = closed_years(folder)
    newest = max(closed | set(monthly))
    done = []
    for year, months in sorted(monthly.items()):
        target = folder / f"{year}.parquet"
        if year not in closed:
            if year == newest or not _compact(spec, months, target):
                continue
            done.append(year)
            if checkpoint:
                checkpoint("compact")
        for path in months:
            remove_atomic(path)
        with contextlib.suppress(OSError):  # a stray file keeps the folder: harmless
            remove_temporary_files(folder / str(year))
            (folder / str(year)).rmdir()
    if done:
        log.info("%s: closed year(s) %s into yearly files", spec.name, ", ".join(map(str, done)))
    return done
