"""The embedded sink: the cache's DuckDB catalogue (`<cache>/alphahome.duckdb`).

Loading rebuilds the catalogue through `cache.views.refresh_catalog`, the one place that
decides views or native tables (`[sinks.duckdb] materialize`), so `ah load`, `ah run`,
the sync and `ah pit`/`ah factors` all leave the same kind of file. It covers every
dataset of the cache, whichever were named: views need no key and no migration.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from cache.layout import CacheLayout
from cache.views import catalog_materialized, open_catalog, refresh_catalog
from foundation.config import Settings
from sinks.base import Dataset, LoadResult, ProgressCallback, SinkCapabilities
from sinks.ddl import quote_ident


class DuckDBSink:
    """The catalogue file of the cache named by `settings`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path = CacheLayout(settings.cache.dir).duckdb_path
        self._materialized = catalog_materialized(settings)

    @property
    def capabilities(self) -> SinkCapabilities:
        """Rebuilt whole; a copy of the rows only when materialized."""
        return SinkCapabilities(
            name="duckdb",
            supports_upsert=False,
            supports_schemas=True,
            durable=self._materialized,
            needs_keys=False,
        )

    @property
    def target(self) -> str:
        """The catalogue file."""
        return str(self._path)

    def migrate(self) -> list[str]:
        """Nothing to migrate: the catalogue is rebuilt from the cache."""
        return []

    def load(
        self, datasets: Sequence[Dataset], full: bool, on_progress: ProgressCallback | None = None
    ) -> LoadResult:
        """Rebuild the catalogue of every cached dataset (`datasets` and `full` change
        nothing: it is always complete)."""
        start = time.perf_counter()
        built = refresh_catalog(self._settings) or {}
        count = sum(len(names) for names in built.values())
        kind = "tables" if self._materialized else "views over the Parquet files"
        headline = (
            f"no database configured: rebuilt the DuckDB catalogue {self.target} "
            f"({count} datasets as {kind})"
        )
        return LoadResult(
            self.capabilities.name,
            self.target,
            headline=headline,
            catalogue=built,
            seconds=time.perf_counter() - start,
        )

    def counts(self, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """count(*) of each (schema, table) in the catalogue; None when it is not there."""
        if not self._path.exists():
            return dict.fromkeys(tables)
        counts: dict[tuple[str, str], int | None] = {}
        with open_catalog(self._path) as con:
            present = {
                (s, n)
                for s, n in con.execute(
                    "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
                    "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal"
                ).fetchall()
            }
            for schema, name in tables:
                if (schema, name) not in present:
                    counts[(schema, name)] = None
                    continue
                quoted = f"{quote_ident(schema)}.{quote_ident(name)}"
                row = con.execute(f"SELECT count(*) FROM {quoted}").fetchone()
                counts[(schema, name)] = int(row[0]) if row else 0
        return counts
