"""Reading datasets of the cache as one table each (DESIGN section 4)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from cache.layout import CacheLayout, Layer


def has_files(layout: CacheLayout, name: str, layer: Layer = "raw") -> bool:
    """Whether the dataset holds at least one Parquet file."""
    folder = layout.dataset_dir(layer, name)
    return folder.is_dir() and any(folder.rglob("*.parquet"))


def scan_dataset(layout: CacheLayout, name: str, layer: Layer = "raw") -> pl.LazyFrame | None:
    """The dataset as one lazy table (the contract's glob), or None when it has no file."""
    if not has_files(layout, name, layer):
        return None
    return pl.scan_parquet(layout.glob(layer, name), hive_partitioning=False)


def read_dataset(
    layout: CacheLayout, name: str, layer: Layer = "raw", columns: list[str] | None = None
) -> pl.DataFrame | None:
    """The dataset (or some of its columns) in memory, or None when it has no file."""
    lazy = scan_dataset(layout, name, layer)
    if lazy is None:
        return None
    return (lazy.select(columns) if columns else lazy).collect()


@dataclass(frozen=True)
class DatasetSummary:
    """Rows and date span of a dataset, for `ah tasks`."""

    rows: int
    first: dt.date | None
    last: dt.date | None


def summarize(
    layout: CacheLayout, name: str, date_field: str | None, layer: Layer = "raw"
) -> DatasetSummary:
    """Row count and first/last value of `date_field` (None when the dataset is empty)."""
    lazy = scan_dataset(layout, name, layer)
    if lazy is None:
        return DatasetSummary(0, None, None)
    if date_field is None:
        return DatasetSummary(lazy.select(pl.len()).collect().item(), None, None)
    row = lazy.select(
        pl.len().alias("rows"),
        pl.col(date_field).min().alias("first"),
        pl.col(date_field).max().alias("last"),
    ).collect()
    return DatasetSummary(row["rows"][0], row["first"][0], row["last"][0])
