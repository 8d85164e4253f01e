"""The sink seam: what the load step needs of a sink, and what a sink says it can do.

A sink takes the cache's datasets somewhere analysts query them: PostgreSQL
(`sinks.postgres_sink.PostgresSink`) or the embedded DuckDB catalogue
(`sinks.duckdb_sink.DuckDBSink`). The load step calls only `migrate`, `load` and `counts`,
and asks `capabilities` instead of testing which sink it holds (as dlt's destinations
declare theirs). `sinks.open_sink(settings)` picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cache.layout import Layer

ProgressCallback = Callable[[int, int], None]  # (partitions read, partitions to read)
Dataset = tuple[Layer, str]  # (layer, name): ("raw", "daily"), ("factors", "p")


@dataclass(frozen=True)
class SinkCapabilities:
    """What a sink can do, so callers never branch on its name.

    `supports_upsert`: a load writes only the rows that changed, by key (else the whole
    target is rebuilt from the cache); `supports_schemas`: tables sit in the raw, pit
    and factors schemas; `durable`: the sink holds its own copy of the rows (else it
    reads the cache files, and cannot drift from them); `needs_keys`: a dataset loads
    only with a key defined (`sinks.ddl.table_spec`); `name`: for messages and reports.
    """

    name: str
    supports_upsert: bool
    supports_schemas: bool
    durable: bool
    needs_keys: bool


@dataclass
class TableLoad:
    """What one load did to one table."""

    table: str
    partitions: int = 0
    loaded: int = 0
    unchanged: int = 0
    forgotten: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    lock_waits: int = 0
    seconds: float = 0.0


@dataclass
class LoadResult:
    """The outcome of a load: which sink, where, what per table, how long.

    `headline` is the sink's one-line summary (written by the sink, which knows what
    it did); `catalogue` the names per schema of a rebuilt catalogue; `failed` the
    datasets that could not be loaded, with why (the others were loaded all the same).
    """

    sink: str
    target: str
    headline: str = ""
    tables: list[TableLoad] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)
    not_loaded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "layer.name: reason", one per dataset
    catalogue: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """A human summary: the headline, migrations, then one line per table."""
        out = [self.headline]
        if self.migrations_applied:
            out.append(f"  migrations applied: {', '.join(self.migrations_applied)}")
        for t in self.tables:
            out.append(
                f"  {t.table}: {t.partitions} partitions ({t.loaded} loaded, {t.unchanged} "
                f"unchanged, {t.forgotten} removed from the cache); rows +{t.inserted} new, "
                f"{t.updated} changed, {t.deleted} deleted; {t.seconds:.1f} s"
            )
        out.extend(f"  {name}: not loaded (no key defined)" for name in self.not_loaded)
        out.extend(f"  FAILED {failure}" for failure in self.failed)
        return out

    @property
    def ok(self) -> bool:
        """True when every dataset asked for was loaded (or has nothing to load)."""
        return not self.failed


class Sink(Protocol):
    """A place the load step writes the cache's datasets to."""

    @property
    def capabilities(self) -> SinkCapabilities:
        """What this sink can do."""
        ...

    @property
    def target(self) -> str:
        """Where it writes, for messages (`user@host:port/db`, a file path); no secret."""
        ...

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; `version name` of each one applied."""
        ...

    def load(
        self, datasets: Sequence[Dataset], full: bool, on_progress: ProgressCallback | None = None
    ) -> LoadResult:
        """Bring `datasets` up to date with the cache (every partition when `full`)."""
        ...

    def counts(self, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """Rows of each (schema, table) in the sink; None when it has no such table."""
        ...
