"""Sinks: where the load step puts the cache's datasets, behind one seam (`sinks.base`).

`open_sink(settings)` is the one place that chooses: PostgreSQL when a database URL is
configured (`sinks.postgres_sink`), else the embedded DuckDB catalogue
(`sinks.duckdb_sink`). Only this package connects to PostgreSQL.
"""

from __future__ import annotations

from cache.layout import CacheLayout
from foundation.config import Settings
from sinks.base import LoadResult, Sink, SinkCapabilities, TableLoad

__all__ = ["LoadResult", "Sink", "SinkCapabilities", "TableLoad", "open_sink"]


def open_sink(settings: Settings) -> Sink:
    """The sink the settings configure: `[database] url` (or DATABASE_URL) set means
    PostgreSQL, none means the DuckDB catalogue of the cache."""
    url = settings.database.url
    if url is None:
        from sinks.duckdb_sink import DuckDBSink

        return DuckDBSink(settings)
    from sinks.postgres_sink import PostgresSink

    return PostgresSink(url, CacheLayout(settings.cache.dir), settings.database.load_streams)
