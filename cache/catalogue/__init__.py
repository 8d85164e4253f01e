"""The catalogues of the cache: the Tushare APIs (`apis`), the datasets (`datasets`), the
column dictionary (`columns`) and the "as known at t" macros (`asof_sql`)."""

from cache.catalogue.datasets import (
    DatasetSpec,
    Partitioning,
    Storage,
    UnknownDatasetError,
    dataset,
    datasets,
    raw_dataset,
)

__all__ = [
    "DatasetSpec",
    "Partitioning",
    "Storage",
    "UnknownDatasetError",
    "dataset",
    "datasets",
    "raw_dataset",
]
