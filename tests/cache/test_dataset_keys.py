"""One key per dataset: the simulator serves unique rows on it, the synced cache holds
them unique on it, and PostgreSQL tables get it as their primary key (DESIGN 4, 8)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from cache.catalogue import UnknownDatasetError, dataset, datasets, raw_dataset
from cache.layout import CacheLayout
from foundation.errors import UsageError
from pipeline.factor_step import compute_factors
from pipeline.load import load_datasets
from pipeline.pit.step import build_pit
from pipeline.sources.simulator import Simulator, SimulatorConfig
from pipeline.sync.tasks import ALL_TASKS, TASKS, task
from sinks.ddl import table_spec
from tests.sinks.helpers import fetch
from tests.sync.conftest import MARKET, START, synced
from tests.sync.reference import first_date

__all__ = ["synced"]  # the session's synced cache (tests/sync/conftest.py)

# The default set's datasets (the others: tests/cache/test_coverage.py).
RAW = [t.name for t in TASKS]
LATEST = [t.name for t in TASKS if t.storage == "latest"]

# Written out on purpose: these must not move when the catalogue is edited by mistake.
EXPECTED_KEYS = {
    "raw.daily": ("ts_code", "trade_date"),
    "raw.trade_cal": ("cal_date", "exchange"),
    "raw.fina_mainbz": ("ts_code", "end_date", "bz_item", "type"),
    "raw.dividend": ("ts_code", "end_date", "ann_date", "div_proc"),
    "raw.index_weight": ("index_code", "con_code", "trade_date"),
    "pit.income_quarterly": ("ts_code", "end_date", "knowledge_date"),
    "factors.p": ("calc_date", "ts_code"),
}
EXPECTED_PG_KEYS = {
    "raw.daily": ("trade_date", "ts_code"),
    "raw.fina_mainbz": ("end_date", "ts_code", "bz_item", "type"),
    "raw.dividend": ("end_date", "ts_code", "ann_date", "div_proc"),
    "raw.income": ("end_date", "ts_code", "row_hash"),
    "pit.industry": ("ts_code", "l3_code", "in_date"),
    "factors.g": ("calc_date", "ts_code"),
}


def served(sim: Simulator, name: str) -> pl.DataFrame:
    """Every row the simulator serves for a raw dataset, with the request columns the
    sync adds (one request per `type` for fina_mainbz)."""
    spec = task(name)
    if not spec.types:
        return sim.ground_truth(name)
    frames = [
        spec.dataset.with_request_columns(sim.ground_truth(name, type=t), {"type": t})
        for t in spec.types
    ]
    return pl.concat(frames)


def read_raw(root: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(CacheLayout(root).glob("raw", name))


def key_count(frame: pl.DataFrame, key: tuple[str, ...]) -> int:
    return frame.select(key).unique().height


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    """The market the session's cache was synced from (deterministic: same config)."""
    return Simulator(SimulatorConfig(**MARKET))  # type: ignore[arg-type]


def test_every_task_has_one_dataset_and_takes_its_key_from_it() -> None:
    assert sorted(t.name for t in ALL_TASKS) == sorted(s.name for s in datasets("raw"))
    for t in ALL_TASKS:
        spec = raw_dataset(t.name)
        assert (t.key, t.storage, t.partitioning) == (spec.key, spec.storage, spec.partitioning)
        assert (t.date_field, t.sort_by, t.columns) == (spec.date_field, spec.sort_by, spec.columns)
    for qualified, key in EXPECTED_KEYS.items():
        assert dataset(*qualified.split(".")).key == key, qualified
    assert dataset("raw", "fina_mainbz").schema["type"] == pl.String


def test_unknown_datasets_are_usage_errors_naming_the_known_ones() -> None:
    with pytest.raises(UnknownDatasetError, match=r"'nosuch'.*daily.*fina_mainbz") as caught:
        raw_dataset("nosuch")
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    with pytest.raises(UnknownDatasetError, match=r"'income'.*statement_versions"):
        dataset("pit", "income")
    with pytest.raises(UnknownDatasetError, match="'stage'"):
        dataset("stage", "daily")


@pytest.mark.parametrize("name", LATEST)
def test_what_the_simulator_serves_is_unique_on_the_key(simulator: Simulator, name: str) -> None:
    frame = served(simulator, name)
    assert frame.height > 0, name
    assert key_count(frame, raw_dataset(name).key) == frame.height, name


def test_the_synced_cache_holds_every_served_row_once_on_its_key(
    synced: Path, simulator: Simulator
) -> None:
    root = synced / "data"
    for name in RAW:
        spec = raw_dataset(name)
        frame = read_raw(root, name)
        assert frame.columns == [*spec.columns, "_fetched_at"], name
        if spec.storage == "versions":  # a version log: no row twice
            assert frame.drop("_fetched_at").unique().height == frame.height, name
            continue
        assert key_count(frame, spec.key) == frame.height, name
        truth = served(simulator, name)
        if task(name).unit != "snapshot" and spec.date_field is not None:
            truth = truth.filter(pl.col(spec.date_field) >= first_date(name, START))
        assert frame.height == key_count(truth, spec.key), name


def test_fina_mainbz_keeps_the_type_it_was_asked_by(synced: Path, simulator: Simulator) -> None:
    frame = read_raw(synced / "data", "fina_mainbz")
    by_type = dict(frame.group_by("type").len().iter_rows())
    assert set(by_type) == {"P", "D", "I"}
    for kind, rows in by_type.items():
        truth = simulator.ground_truth("fina_mainbz", type=kind)
        truth = truth.filter(pl.col("end_date") >= first_date("fina_mainbz", START))
        assert rows == truth.height, kind


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="module")
def built(synced: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheLayout]:
    """A private copy of the synced cache with its PIT tables and factors built."""
    root = tmp_path_factory.mktemp("keys") / "data"
    shutil.copytree(synced / "data", root)
    layout = CacheLayout(root)
    build_pit(layout, executor="inline")
    compute_factors(layout, executor="inline")
    yield layout
    with contextlib.suppress(OSError):
        shutil.rmtree(root)


def table_key(url: str, schema: str, table: str) -> tuple[str, ...]:
    """The columns of a table's primary key or (nullable keys) unique index, in order."""
    rows = fetch(
        url,
        "SELECT a.attname, k.ord FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        f"WHERE n.nspname = '{schema}' AND c.relname = '{table}' AND i.indisunique "
        "ORDER BY i.indexrelid, k.ord",
    )
    return tuple(name for name, _ in rows)


@pytest.mark.postgres
def test_every_raw_pit_and_factor_table_loads_with_the_catalogue_key(
    built: CacheLayout, pg_url: str
) -> None:
    result = load_datasets(built, pg_url, raw_datasets=RAW)
    assert result.not_loaded == [], result.not_loaded
    for spec in datasets():
        if not built.datasets(spec.layer) or spec.name not in built.datasets(spec.layer):
            continue
        pg_key = table_key(pg_url, spec.layer, spec.name)
        assert pg_key == table_spec(spec.layer, spec.name).key, spec.qualified
        if spec.storage == "versions":
            assert pg_key == ("end_date", "ts_code", "row_hash"), spec.qualified
        else:
            assert sorted(pg_key) == sorted(spec.key), spec.qualified
        cached = pl.scan_parquet(built.glob(spec.layer, spec.name)).select(pl.len()).collect()
        (count,) = fetch(pg_url, f'SELECT count(*) FROM "{spec.layer}"."{spec.name}"')[0]
        assert count == cached.item(), spec.qualified
    for qualified, key in EXPECTED_PG_KEYS.items():
        assert table_key(pg_url, *qualified.split(".")) == key, qualified
    loaded = {f"{s}.{t}" for s, t in fetch(pg_url, _TABLES)}
    assert {f"raw.{n}" for n in RAW} <= loaded
    assert {"pit.statement_versions", "pit.indicators", "factors.p", "factors.g"} <= loaded


_TABLES = (
    "SELECT table_schema, table_name FROM information_schema.tables "
    "WHERE table_schema IN ('raw', 'pit', 'factors')"
)


@pytest.mark.postgres
def test_fina_mainbz_keeps_its_type_in_postgres(built: CacheLayout, pg_url: str) -> None:
    load_datasets(built, pg_url, ["raw.fina_mainbz"])
    cached = pl.read_parquet(built.glob("raw", "fina_mainbz"))
    expected = sorted(cached.group_by("type").len().iter_rows())
    rows = fetch(pg_url, "SELECT type, count(*) FROM raw.fina_mainbz GROUP BY type ORDER BY type")
    assert [(t, int(n)) for t, n in rows] == expected
    assert {t for t, _ in rows} == {"D", "I", "P"}
