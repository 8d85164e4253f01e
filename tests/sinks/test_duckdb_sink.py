"""The embedded sink: `<cache>/alphahome.duckdb` with every dataset, views or tables."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import polars as pl

from cache.layout import CacheLayout
from cache.views import open_catalog, rebuild_catalog, refresh_catalog
from pipeline.load import load_from_settings
from pipeline.sync.runner import SyncRequest, run_sync
from sinks import open_sink
from tests.ops.conftest import make_settings
from tests.sinks.helpers import codes, daily_frame, factor_frame, write_partition
from tests.sync.conftest import START, settings_for, start_simulator


def _cache(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame([dt.date(2020, 1, 3)], codes(4), 1)
    )
    write_partition(
        layout,
        "raw",
        "daily",
        "2024/2024-01.parquet",
        daily_frame([dt.date(2024, 1, 2)], codes(3), 2),
    )
    write_partition(
        layout, "pit", "indicators", "part-00.parquet", pl.DataFrame({"ts_code": ["1", "2"]})
    )
    return layout


def _objects(path: Path) -> dict[str, str]:
    with open_catalog(path) as con:
        rows = con.execute(
            "SELECT schema_name || '.' || table_name, 'table' "
            "FROM duckdb_tables() UNION ALL "
            "SELECT schema_name || '.' || view_name, 'view' FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    return {name: kind for name, kind in rows}


def test_a_file_replaced_while_the_catalogue_is_open_reads_anew(tmp_path: Path) -> None:
    layout = _cache(tmp_path)
    rebuild_catalog(layout)
    with open_catalog(layout.duckdb_path) as con:
        kept = con.execute("SELECT current_setting('parquet_metadata_cache')").fetchall()
        assert kept == [(True,)]
        assert con.execute("SELECT count(*) FROM raw.daily").fetchall() == [(3,)]
        days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
        bars = daily_frame(days, codes(5), 3)
        write_partition(layout, "raw", "daily", "2024/2024-01.parquet", bars)
        assert con.execute("SELECT count(*) FROM raw.daily").fetchall() == [(10,)]


def test_views_by_default_and_tables_when_materialized(tmp_path: Path) -> None:
    layout = _cache(tmp_path)
    built = rebuild_catalog(layout)
    assert built == {"raw": ["daily"], "pit": ["indicators"], "factors": ["p"]}
    assert _objects(layout.duckdb_path) == {
        "raw.daily": "view",
        "pit.indicators": "view",
        "factors.p": "view",
    }
    rebuild_catalog(layout, materialize=True)
    assert set(_objects(layout.duckdb_path).values()) == {"table"}
    with open_catalog(layout.duckdb_path) as con:
        assert con.execute("SELECT count(*) FROM factors.p").fetchone() == (4,)
        assert con.execute("SELECT count(*) FROM raw.daily").fetchone() == (3,)


def test_a_reader_of_the_old_file_is_never_blocked(tmp_path: Path) -> None:
    layout = _cache(tmp_path)
    rebuild_catalog(layout, materialize=True)
    reader = open_catalog(layout.duckdb_path)
    try:
        more = factor_frame([dt.date(2020, 1, 10)], codes(4), 2)
        write_partition(layout, "factors", "p", "2020-2.parquet", more)
        rebuild_catalog(layout, materialize=True)  # replaced while the reader holds the old one
        assert reader.execute("SELECT count(*) FROM factors.p").fetchone() == (4,)
    finally:
        reader.close()
    with open_catalog(layout.duckdb_path) as con:
        assert con.execute("SELECT count(*) FROM factors.p").fetchone() == (8,)


def test_load_without_a_database_rebuilds_the_catalogue(tmp_path: Path) -> None:
    layout = _cache(tmp_path)
    config = tmp_path / "alphahome.toml"
    config.write_text("[sinks.duckdb]\nmaterialize = true\n")
    settings = make_settings(layout.root, config)
    sink = open_sink(settings)
    assert sink.capabilities.name == "duckdb" and sink.capabilities.durable
    assert not sink.capabilities.supports_upsert
    result = load_from_settings(settings)
    assert result.sink == "duckdb" and result.target == str(layout.duckdb_path)
    assert result.catalogue["factors"] == ["p"]
    assert "3 datasets as tables" in result.lines()[0]
    assert set(_objects(layout.duckdb_path)) == {"raw.daily", "pit.indicators", "factors.p"}
    counts = sink.counts([("factors", "p"), ("raw", "daily"), ("raw", "nothing")])
    assert counts == {("factors", "p"): 4, ("raw", "daily"): 3, ("raw", "nothing"): None}


def test_views_sink_does_not_hold_a_copy(tmp_path: Path) -> None:
    layout = _cache(tmp_path)
    sink = open_sink(make_settings(layout.root))
    assert not sink.capabilities.durable
    assert "3 datasets as views" in load_from_settings(make_settings(layout.root)).lines()[0]
    assert set(_objects(layout.duckdb_path).values()) == {"view"}


def test_a_catalogue_of_views_is_rebuilt_only_when_its_datasets_or_columns_change(
    tmp_path: Path,
) -> None:
    layout = _cache(tmp_path)
    settings = make_settings(layout.root)
    refresh_catalog(settings)
    built = layout.duckdb_path.stat().st_ino
    more = daily_frame([dt.date(2024, 2, 1)], codes(3), 2)  # new rows: the views see them
    write_partition(layout, "raw", "daily", "2024/2024-02.parquet", more)
    assert refresh_catalog(settings) == {"raw": ["daily"], "pit": ["indicators"], "factors": ["p"]}
    assert layout.duckdb_path.stat().st_ino == built
    with open_catalog(layout.duckdb_path) as con:
        assert con.execute("SELECT count(*) FROM raw.daily").fetchone() == (6,)
    delta = pl.DataFrame({"ts_code": ["1"]})  # a PIT delta file: a stock spans two files
    write_partition(layout, "pit", "indicators", "delta-000001-00.parquet", delta)
    refresh_catalog(settings)
    assert layout.duckdb_path.stat().st_ino == built
    with open_catalog(layout.duckdb_path) as con:
        query = "SELECT count(*) FROM pit.indicators WHERE ts_code = '1'"
        assert con.execute(query).fetchone() == (2,)
    wider = pl.DataFrame({"ts_code": ["3"], "extra": [1.5]})  # a new column: rebuilt
    write_partition(layout, "pit", "indicators", "part-01.parquet", wider)
    refresh_catalog(settings)
    assert layout.duckdb_path.stat().st_ino != built
    with open_catalog(layout.duckdb_path) as con:
        assert con.execute("SELECT count(extra) FROM pit.indicators").fetchone() == (1,)
    layout.duckdb_path.unlink()  # a removed file is built again
    refresh_catalog(settings)
    assert _objects(layout.duckdb_path) == {
        "raw.daily": "view",
        "pit.indicators": "view",
        "factors.p": "view",
    }


def test_a_materialized_catalogue_stays_materialized_after_a_sync(tmp_path: Path) -> None:
    extra = "[sinks.duckdb]\nmaterialize = true\n"
    with contextlib.ExitStack() as stack:
        served = start_simulator(stack, stocks=5)
        settings = settings_for(tmp_path, served.url, extra=extra)
        layout = CacheLayout(settings.cache.dir)
        request = SyncRequest(tasks=("stock_basic", "trade_cal"), start=START, progress=False)
        assert run_sync(settings, request).exit_code == 0
        load_from_settings(settings)
        assert set(_objects(layout.duckdb_path).values()) == {"table"}
        request = SyncRequest(tasks=("daily",), start=START, progress=False)
        assert run_sync(settings, request).exit_code == 0
    objects = _objects(layout.duckdb_path)
    assert {"raw.stock_basic", "raw.trade_cal", "raw.daily"} <= set(objects)
    assert set(objects.values()) == {"table"}
    with open_catalog(layout.duckdb_path) as con:
        (rows,) = con.execute("SELECT count(*) FROM raw.daily").fetchone() or (0,)
    assert rows > 0
