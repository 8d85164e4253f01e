"""The catalogues of the cache: the Tushare APIs (`apis`) and the datasets (`datasets`)."""

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
