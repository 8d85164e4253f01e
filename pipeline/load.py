"""The load step (`ah load`, and the last step of `ah run`): cache datasets into the sink.

This module chooses what to load: by default the PIT and factor tables; raw datasets
when named or configured (`[sinks] raw_datasets`: dataset names, or `all`, `default`
or a doc area such as `fund` for every synced dataset of the group). How they get
there is the sink's business, behind the seam (`sinks.base.Sink`): PostgreSQL loads
each changed partition in its own transaction (a PIT stock table, whose stocks span
its bucket and delta files, all its changed files in one: `sinks.postgres_sink`), the
embedded DuckDB catalogue is rebuilt (`sinks.duckdb_sink`). `sinks.open_sink` picks the sink
from the settings. The cache is only read, never written.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from cache.catalogue.apis import catalogue
from cache.catalogue.coverage import AREAS, DEFAULT_APIS
from cache.catalogue.datasets import datasets
from cache.layout import LAYERS, CacheLayout, Layer
from foundation.config import Settings, did_you_mean
from foundation.errors import UsageError
from foundation.logs import get_logger
from sinks import open_sink
from sinks.base import LoadResult, ProgressCallback, Sink, TableLoad
from sinks.postgres_sink import PostgresSink

__all__ = [
    "LoadResult",
    "TableLoad",
    "load_datasets",
    "load_from_settings",
    "load_into",
    "resolve_datasets",
]

DEFAULT_LAYERS: tuple[Layer, ...] = ("pit", "factors")

log = get_logger("load")


# ------------------------------------------------------------------------------ datasets


def _split(name: str) -> tuple[Layer | None, str]:
    for layer in LAYERS:
        if name.startswith(layer + "."):
            return layer, name[len(layer) + 1 :]
    return None, name


def resolve_datasets(
    layout: CacheLayout, datasets: Sequence[str] | None, raw_datasets: Sequence[str] = ()
) -> list[tuple[Layer, str]]:
    """(layer, name) of every dataset to load, in order, without repeats.

    `datasets` None means every PIT and factor dataset in the cache plus `raw_datasets`.
    A name is `layer.name` or a bare name found in exactly one layer of the cache
    (`daily`, `indicators`); a named dataset that is not in the cache is a `UsageError`.
    """
    chosen: list[tuple[Layer, str]] = []
    if datasets is None:
        for layer in DEFAULT_LAYERS:
            chosen += [(layer, name) for name in layout.datasets(layer)]
        present = set(layout.datasets("raw"))
        for name in raw_datasets:
            group = raw_group(name)
            if group is not None:
                chosen += [("raw", n) for n in group if n in present]
                continue
            _, bare = _split(name)
            if bare in present:
                chosen.append(("raw", bare))
            else:
                log.warning("configured raw dataset %r is not in the cache yet", name)
    else:
        chosen = [_resolve_one(layout, name) for name in datasets]
    return list(dict.fromkeys(chosen))


def raw_group(name: str) -> tuple[str, ...] | None:
    """The raw datasets of a group name (`all`, `default`, an area such as `fund`), in
    catalogue order; None when `name` is not a group."""
    if name == "all":
        return tuple(catalogue())
    if name == "default":
        return DEFAULT_APIS
    return AREAS.get(name)  # type: ignore[call-overload]


_NAME = re.compile(r"[A-Za-z0-9_]+")


def _resolve_one(layout: CacheLayout, name: str) -> tuple[Layer, str]:
    layer, bare = _split(name)
    if not _NAME.fullmatch(bare):  # a path (../../etc) is never a dataset
        msg = f"unknown dataset {name!r}: a dataset is a name like daily or pit.indicators"
        raise UsageError(msg)
    layers = [lay for lay in LAYERS if layer in (None, lay)]
    found = [lay for lay in layers if bare in layout.datasets(lay)]
    if len(found) == 1:
        return found[0], bare
    if len(found) > 1:
        msg = f"dataset {name!r} is ambiguous: say {' or '.join(f'{f}.{bare}' for f in found)}"
        raise UsageError(msg)
    where = layout.root / (layer or "*") / bare
    names = [s.name for lay in layers for s in datasets(lay)]
    hint = "" if bare in names else did_you_mean(bare, names)
    msg = f"dataset {name!r}{hint} is not in the cache (no Parquet files under {where})"
    raise UsageError(msg)


# ------------------------------------------------------------------------------ entry points


def load_into(
    sink: Sink,
    layout: CacheLayout,
    datasets: Sequence[str] | None = None,
    full: bool = False,
    raw_datasets: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
) -> LoadResult:
    """Bring the sink up to date with the cache: pending migrations first, then the
    datasets (`resolve_datasets`), only partitions changed since their last load unless
    `full`. `on_progress(done, total)` is called after each partition read (as the PIT
    and factor steps report theirs). Raises `DatabaseUnavailableError` when the server
    is down or refuses the login, `LoadError` when data cannot be loaded (the
    partition's transaction is rolled back; earlier partitions stay).
    """
    start = time.perf_counter()
    targets = resolve_datasets(layout, datasets, raw_datasets)
    applied = sink.migrate()
    result = sink.load(targets, full=full, on_progress=on_progress)
    result.migrations_applied = applied
    result.seconds = time.perf_counter() - start
    return result


def load_datasets(
    layout: CacheLayout,
    url: str,
    datasets: Sequence[str] | None = None,
    full: bool = False,
    raw_datasets: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
    streams: int | None = None,
) -> LoadResult:
    """`load_into` the PostgreSQL database at `url` (tests, benchmarks); a new table in
    `streams` parallel COPY streams (None: the sink's default)."""
    sink = PostgresSink(url, layout, streams)
    return load_into(sink, layout, datasets, full, raw_datasets, on_progress)


def load_from_settings(
    settings: Settings,
    datasets: Sequence[str] | None = None,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
) -> LoadResult:
    """`load_into` the sink the settings configure (`sinks.open_sink`), with their raw
    datasets (for `ah load`, `ah run`)."""
    layout = CacheLayout(settings.cache.dir)
    return load_into(
        open_sink(settings), layout, datasets, full, settings.sinks.raw_datasets, on_progress
    )
