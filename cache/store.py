"""Committing fetched rows into a dataset's partition files (DESIGN section 4).

A dataset is a set of partition files (per year of its date column, per closed year and
per month of the open year, or a single file: `cache.partitions`). Committing rows
rewrites every partition they touch: read it, merge the new rows in, sort, write a
temporary file, rename it over the old one. A reader therefore sees each partition
either before or after the commit, never half of it and never a row twice, and a crash
at any instant leaves a readable dataset; re-committing the same rows changes nothing,
which is what makes resuming safe. A partition is always one file; the only compaction
is the closing of a year (`cache.partitions.close_years`). How a dataset is keyed,
stored and partitioned is its `DatasetSpec` in the dataset catalogue
(`cache.catalogue.datasets`).

Merging, by storage kind:
- `latest`: one row per natural key; a fetched row replaces the stored row with its
  key unless both are equal in every API column, in which case the stored row (and
  its `_fetched_at`) stays.
- `versions` (statements): a fetched row is added unless an identical row (all API
  columns) is stored; nothing is ever replaced.
In `append` mode a fetched key that is already stored fails the commit before any file
is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import polars as pl

from cache.atomic import TMP_SUFFIX, atomic_path, remove_temporary_files, write_parquet_file
from cache.catalogue.datasets import FETCHED_AT, FETCHED_AT_TYPE, DatasetSpec
from cache.layout import CacheLayout
from cache.partitions import SINGLE_FILE, closed_years, partition_expr
from foundation.errors import AlphahomeError, UsageError

Mode = Literal["upsert", "append"]

_PART = "__partition__"
COMMIT_THREADS = 4
"""Partitions of one commit read, merged and written at once: Polars and the disk work
without the interpreter lock, so a commit that touches several yearly files (the
statements' restated periods) takes about as long as its largest file, not their sum."""

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class AppendConflict(AlphahomeError):
    """Append mode met a key that is already stored; nothing was written."""


@dataclass(frozen=True)
class CommitResult:
    """What a commit did: rows offered, rows that were new or changed, files rewritten."""

    rows_in: int
    rows_saved: int
    files: tuple[Path, ...]


def merge(
    stored: pl.DataFrame, fetched: pl.DataFrame, spec: DatasetSpec, mode: Mode = "upsert"
) -> tuple[pl.DataFrame, int]:
    """Stored rows merged with fetched ones (both with `_fetched_at`); also the number of
    fetched rows that were new or changed. Pure: no I/O."""
    api_cols = list(spec.columns)
    key = list(spec.key)
    if spec.storage == "versions":
        fetched = fetched.unique(subset=api_cols, keep="first", maintain_order=True)
    else:
        fetched = fetched.unique(subset=key, keep="last", maintain_order=True)
    if mode == "append":
        clash = fetched.join(stored, on=key, how="semi", nulls_equal=True)
        if clash.height:
            first = {k: clash[k][0] for k in key}
            msg = (
                f"{spec.name}: append mode met {clash.height} key(s) already stored, "
                f"e.g. {first}; nothing written"
            )
            raise AppendConflict(msg)
    # only stored rows sharing a key with a fetched row can equal it in every column:
    # comparing those alone is the same answer for a fraction of the work
    near = stored.join(fetched.select(key).unique(), on=key, how="semi", nulls_equal=True)
    changed = fetched.join(near, on=api_cols, how="anti", nulls_equal=True)
    if spec.storage == "versions":
        kept = stored
    else:
        kept = stored.join(changed, on=key, how="anti", nulls_equal=True)
    merged = pl.concat([kept, changed.select(kept.columns)], how="vertical")
    return merged.sort([*spec.sort_by, *key], nulls_last=False, maintain_order=True), changed.height


class StaleLayoutError(UsageError):
    """A stored file predates a column the dataset now has (a contract change)."""


def _check_columns(
    path: Path, stored: pl.DataFrame, columns: list[str], spec: DatasetSpec, folder: Path
) -> None:
    missing = [c for c in columns if c not in stored.columns]
    if missing:
        msg = (
            f"{path} has no column {', '.join(missing)} (written by an older alphahome): "
            f"delete {folder}, run `ah state reset {spec.name}`, then `ah sync {spec.name}`"
        )
        raise StaleLayoutError(msg)


def sweep_temporary_files(layout: CacheLayout, name: str) -> int:
    """Delete temporary files a killed writer left in a dataset and beside its task state
    (`state/tasks/.<name>.json.<pid>.tmp`); the caller holds the dataset's lock, so no
    live writer owns them."""
    removed = remove_temporary_files(layout.dataset_dir("raw", name))
    return removed + remove_temporary_files(
        layout.state_dir / "tasks", f".{name}.json.*{TMP_SUFFIX}"
    )


def commit(
    layout: CacheLayout,
    spec: DatasetSpec,
    rows: pl.DataFrame,
    fetched_at: dt.datetime,
    mode: Mode = "upsert",
    checkpoint: Callable[[str], None] | None = None,
) -> CommitResult:
    """Merge `rows` (the API columns) into the dataset, one atomic rewrite per partition.

    `checkpoint(point)` is called after each temporary file is written ("write") and
    after each partition is replaced ("partition"): the crash tests hook in there.
    """
    folder = layout.dataset_dir("raw", spec.name)
    fetched = rows.select(spec.columns).with_columns(
        pl.lit(fetched_at, dtype=FETCHED_AT_TYPE).alias(FETCHED_AT)
    )
    fetched = fetched.with_columns(partition_expr(spec, closed_years(folder)).alias(_PART))
    groups = fetched.partition_by(_PART, as_dict=True, include_key=False)

    def merged_part(
        entry: tuple[tuple[object, ...], pl.DataFrame],
    ) -> tuple[Path, pl.DataFrame, int]:
        (relative,), part = entry
        path = folder / str(relative)
        stored = pl.read_parquet(path) if path.exists() else part.clear()
        _check_columns(path, stored, part.columns, spec, folder)
        merged, saved = merge(stored.select(part.columns), part, spec, mode)
        return path, merged, saved

    def write(entry: tuple[Path, pl.DataFrame, int]) -> Path | None:
        path, merged, saved = entry
        if saved == 0 and path.exists():
            return None
        with atomic_path(path) as tmp:
            write_parquet_file(merged, tmp)
            if checkpoint:
                checkpoint("write")
        if checkpoint:
            checkpoint("partition")
        return path

    # merge all first: an append conflict (or an unreadable file) writes nothing
    merged_parts = _each(merged_part, sorted(groups.items()))
    written = [path for path in _each(write, merged_parts) if path is not None]
    return CommitResult(rows.height, sum(s for _, _, s in merged_parts), tuple(written))


def _each(work: Callable[[_In], _Out], entries: Sequence[_In]) -> list[_Out]:
    """`work` of every entry, in order; several at once (`COMMIT_THREADS`) when there
    are several. The first error is raised once every entry has ended (each partition
    is replaced whole or left as it was, whatever the others do)."""
    if len(entries) <= 1:
        return [work(entry) for entry in entries]
    with ThreadPoolExecutor(min(len(entries), COMMIT_THREADS)) as pool:
        futures = [pool.submit(work, entry) for entry in entries]
    return [future.result() for future in futures]


def write_empty(layout: CacheLayout, spec: DatasetSpec) -> Path:
    """Give a dataset with no rows one empty file, so it still reads as a typed table."""
    path = layout.dataset_dir("raw", spec.name) / SINGLE_FILE
    with atomic_path(path) as tmp:
        write_parquet_file(spec.empty(), tmp)
    return path
