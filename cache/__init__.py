"""The cache the stages hand off through: only this package knows where a file lives.

The dataset catalogue (keys, storage, partitioning, schemas), the layout, atomic writes,
the store that commits units, readers, the view catalogue (`alphahome.duckdb`) and the
as-of date of the data.
"""

from foundation.exports import lazy_exports

_EXPORTS = {
    "CacheLayout": "cache.layout",
    "DatasetSpec": "cache.catalogue.datasets",
    "dataset": "cache.catalogue.datasets",
    "datasets": "cache.catalogue.datasets",
    "raw_dataset": "cache.catalogue.datasets",
    "write_parquet_atomic": "cache.atomic",
    "write_bytes_atomic": "cache.atomic",
    "remove_atomic": "cache.atomic",
    "commit": "cache.store",
    "CommitResult": "cache.store",
    "scan_dataset": "cache.read",
    "read_dataset": "cache.read",
    "rebuild_catalog": "cache.views",
    "data_as_of": "cache.asof",
    "record_as_of": "cache.asof",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
