"""Loading cache partitions into PostgreSQL: idempotence, upserts, scopes, fidelity, drift."""

from __future__ import annotations

import datetime as dt
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pytest

from cache.catalogue.datasets import raw_dataset
from cache.layout import CacheLayout
from cache.partitions import close_years
from cache.read import read_dataset
from cache.store import commit
from foundation.config import load_settings
from foundation.errors import UsageError
from pipeline.load import LoadResult, load_datasets, load_from_settings, resolve_datasets
from sinks import open_sink
from sinks.postgres import DatabaseUnavailableError
from tests.cli_runner import ROOT, ah, continue_after_crash, wait_stopped
from tests.postgres_server import PostgresServer
from tests.sinks.helpers import (
    assert_same_rows,
    checksum,
    codes,
    daily_frame,
    factor_frame,
    fetch,
    file_hashes,
    indicator_frame,
    table_frame,
    week_ends,
    write_partition,
)

pytestmark = pytest.mark.postgres

FRIDAY_2020 = dt.date(2020, 1, 3)
FRIDAY_2021 = dt.date(2021, 1, 1)


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    return CacheLayout(tmp_path / "cache")


def only_failure(result: LoadResult) -> str:
    """The one dataset a load reported failed (it does not raise: the others load)."""
    assert len(result.failed) == 1 and not result.ok, result.failed
    return result.failed[0]


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def _industry_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts_code": ["000001.SZ", "000001.SZ", "600000.SH"],
            "l1_code": ["801780.SI"] * 3,
            "l1_name": ["银行"] * 3,
            "l3_code": ["857831.SI", "857832.SI", "857831.SI"],
            "in_date": [None, dt.date(2021, 7, 1), dt.date(2014, 2, 21)],
            "out_date": [dt.date(2021, 7, 1), None, None],
        },
        schema_overrides={"in_date": pl.Date, "out_date": pl.Date},
    )


def test_loading_twice_changes_nothing(layout: CacheLayout, pg_url: str) -> None:
    stocks = codes(30)
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame(week_ends(FRIDAY_2020, 8), stocks, 1)
    )
    write_partition(
        layout, "factors", "p", "2021.parquet", factor_frame(week_ends(FRIDAY_2021, 8), stocks, 2)
    )
    write_partition(layout, "pit", "industry", "part-00.parquet", _industry_frame())
    days = [dt.date(2024, 1, d) for d in (2, 3, 4)]
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", daily_frame(days, stocks, 3))
    tables = {
        "factors.p": "calc_date, ts_code",
        "pit.industry": "ts_code, l3_code, in_date",
        "raw.daily": "trade_date, ts_code",
    }

    progress: list[tuple[int, int]] = []
    first = load_datasets(
        layout, pg_url, raw_datasets=["daily"], on_progress=lambda *p: progress.append(p)
    )
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {t.table: t.inserted for t in first.tables} == {
        "pit.industry": 3,
        "factors.p": 2 * 8 * 30,
        "raw.daily": 3 * 30,
    }
    sums = {t: checksum(pg_url, t, key) for t, key in tables.items()}

    second = load_datasets(
        layout, pg_url, raw_datasets=["raw.daily"], on_progress=lambda *p: progress.append(p)
    )
    assert len(progress) == 4  # nothing to read the second time
    assert all(t.loaded == 0 and t.unchanged == t.partitions for t in second.tables)
    full = load_datasets(layout, pg_url, raw_datasets=["daily"], full=True)
    assert all(t.loaded == t.partitions for t in full.tables)
    assert all(t.inserted == t.updated == t.deleted == 0 for t in full.tables)
    assert {t: checksum(pg_url, t, key) for t, key in tables.items()} == sums
    state = fetch(
        pg_url, "SELECT table_name, count(*), sum(row_count)::bigint FROM ops.load_state GROUP BY 1"
    )
    assert sorted(state) == [("factors.p", 2, 480), ("pit.industry", 1, 3), ("raw.daily", 1, 90)]


def test_touched_but_identical_partition_is_not_reloaded(layout: CacheLayout, pg_url: str) -> None:
    frame = factor_frame(week_ends(FRIDAY_2020, 4), codes(10), 1)
    path = write_partition(layout, "factors", "p", "2020.parquet", frame)
    load_datasets(layout, pg_url)
    write_partition(layout, "factors", "p", "2020.parquet", frame)  # same bytes, new mtime
    again = load_datasets(layout, pg_url)
    assert again.tables[0].unchanged == 1 and again.tables[0].loaded == 0
    recorded = fetch(pg_url, "SELECT file_mtime_ns FROM ops.load_state")
    assert recorded == [(path.stat().st_mtime_ns,)]


def test_raw_upsert_of_ten_percent_changed_rows(layout: CacheLayout, pg_url: str) -> None:
    stocks = codes(40)
    january = daily_frame([dt.date(2024, 1, d) for d in (2, 3, 4, 5)], stocks, 1)
    february = daily_frame([dt.date(2024, 2, d) for d in (1, 2)], stocks, 2)
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", january)
    write_partition(layout, "raw", "daily", "2024/2024-02.parquet", february)
    load_datasets(layout, pg_url, ["raw.daily"])

    # A revised January: 10% of the rows change, 5 rows are dropped (raw rows are never
    # deleted by a load), and one new trade date arrives.
    revised = january.with_row_index("i").with_columns(
        close=pl.when(pl.col("i") % 10 == 0).then(pl.col("close") * 1.01).otherwise("close"),
        vol=pl.when(pl.col("i") % 10 == 0).then(None).otherwise("vol"),
    )
    revised = revised.filter(pl.col("i") >= 5).drop("i")
    revised = pl.concat([revised, daily_frame([dt.date(2024, 1, 8)], stocks, 4)]).sort(
        "ts_code", "trade_date"
    )
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", revised)
    result = load_datasets(layout, pg_url, ["daily"])

    key = ("ts_code", "trade_date")
    expected: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in _rows(january) + _rows(february) + _rows(revised):
        expected[tuple(row[k] for k in key)] = row
    assert_same_rows(_rows(table_frame(pg_url, "raw.daily")), expected.values(), key)
    table = result.tables[0]
    assert (table.loaded, table.unchanged) == (1, 1)
    changed = len([i for i in range(5, january.height) if i % 10 == 0])
    assert (table.inserted, table.updated, table.deleted) == (40, changed, 0)


def test_a_load_after_closing_a_year_ends_equal_to_the_cache(
    layout: CacheLayout, pg_url: str
) -> None:
    spec, stocks = raw_dataset("daily"), codes(12)
    at = dt.datetime(2024, 1, 5, 18, tzinfo=dt.UTC)
    days = [dt.date(2023, 11, 30), dt.date(2023, 12, 28), dt.date(2023, 12, 29)]
    commit(layout, spec, daily_frame([*days, dt.date(2024, 1, 2)], stocks, 1), at)
    load_datasets(layout, pg_url, ["raw.daily"])  # the monthly layout of every year
    assert close_years(layout, spec) == [2023]
    # a revised December day after the closing: it lands in the yearly file
    revised = daily_frame([days[-1]], stocks[:3], 2)
    commit(layout, spec, revised, at + dt.timedelta(days=1))
    result = load_datasets(layout, pg_url, ["raw.daily"])
    cache = read_dataset(layout, "daily")
    assert cache is not None
    table = result.tables[0]
    assert (table.partitions, table.forgotten, table.inserted, table.updated) == (2, 2, 0, 3)
    assert_same_rows(
        _rows(table_frame(pg_url, "raw.daily")), _rows(cache), ("ts_code", "trade_date")
    )
    assert fetch(pg_url, "SELECT count(*) FROM raw.daily") == [(cache.height,)]
    recorded = fetch(pg_url, "SELECT partition FROM ops.load_state ORDER BY 1")
    assert recorded == [("2023.parquet",), ("2024/2024-01.parquet",)]


def test_factor_partition_owns_its_calc_dates(layout: CacheLayout, pg_url: str) -> None:
    stocks = codes(20)
    y2020 = factor_frame(week_ends(FRIDAY_2020, 6), stocks, 1)
    y2021 = factor_frame(week_ends(FRIDAY_2021, 6), stocks, 2)
    write_partition(layout, "factors", "p", "2020.parquet", y2020)
    write_partition(layout, "factors", "p", "2021.parquet", y2021)
    load_datasets(layout, pg_url)

    dates = week_ends(FRIDAY_2021, 6)
    new_2021 = (
        y2021.with_row_index("i")
        .with_columns(p_score=pl.when(pl.col("i") % 10 == 3).then(-1.0).otherwise("p_score"))
        .filter(pl.col("calc_date") != dates[2])  # a calc date removed
        .filter(~((pl.col("calc_date") == dates[4]) & pl.col("ts_code").is_in(stocks[:3])))
        .drop("i")
    )
    new_2021 = pl.concat([new_2021, factor_frame([dates[-1] + dt.timedelta(weeks=1)], stocks, 9)])
    write_partition(layout, "factors", "p", "2021.parquet", new_2021.sort("ts_code", "calc_date"))
    load_datasets(layout, pg_url)
    key = ("calc_date", "ts_code")
    expected = _rows(y2020) + _rows(new_2021)
    assert_same_rows(_rows(table_frame(pg_url, "factors.p")), expected, key)

    (layout.dataset_dir("factors", "p") / "2020.parquet").unlink()
    result = load_datasets(layout, pg_url)
    assert result.tables[0].forgotten == 1 and result.tables[0].deleted == y2020.height
    assert_same_rows(_rows(table_frame(pg_url, "factors.p")), _rows(new_2021), key)
    assert fetch(pg_url, "SELECT partition FROM ops.load_state") == [("2021.parquet",)]


def test_a_stock_moving_between_pit_buckets_is_kept(layout: CacheLayout, pg_url: str) -> None:
    frame = pl.DataFrame(
        {
            "ts_code": ["000001.SZ", "000001.SZ", "000002.SZ", "000003.SZ"],
            "knowledge_date": [dt.date(2024, 4, 30), dt.date(2024, 8, 30)] * 2,
            "gpa": [30.0, 31.0, 12.5, None],
        }
    )
    bucket_a = frame.filter(pl.col("ts_code") != "000003.SZ")
    write_partition(layout, "pit", "indicators", "part-00.parquet", bucket_a)
    write_partition(
        layout,
        "pit",
        "indicators",
        "part-01.parquet",
        frame.filter(pl.col("ts_code") == "000003.SZ"),
    )
    load_datasets(layout, pg_url)
    # 000002 moves from bucket 00 to bucket 01 (a new bucket count), 000003 leaves the cache.
    write_partition(
        layout,
        "pit",
        "indicators",
        "part-00.parquet",
        frame.filter(pl.col("ts_code") == "000001.SZ"),
    )
    write_partition(
        layout,
        "pit",
        "indicators",
        "part-01.parquet",
        frame.filter(pl.col("ts_code") == "000002.SZ"),
    )
    load_datasets(layout, pg_url)
    expected = _rows(frame.filter(pl.col("ts_code") != "000003.SZ"))
    got = _rows(table_frame(pg_url, "pit.indicators"))
    assert_same_rows(got, expected, ("ts_code", "knowledge_date"))


def test_null_in_a_nullable_key_is_a_value_of_its_own(layout: CacheLayout, pg_url: str) -> None:
    industry = _industry_frame()
    write_partition(layout, "pit", "industry", "all.parquet", industry)
    load_datasets(layout, pg_url)
    changed = industry.with_columns(
        l1_name=pl.when(pl.col("in_date").is_null()).then(pl.lit("银行Ⅱ")).otherwise("l1_name")
    )
    write_partition(layout, "pit", "industry", "all.parquet", changed)
    result = load_datasets(layout, pg_url)
    assert (result.tables[0].updated, result.tables[0].inserted) == (1, 0)
    got = _rows(table_frame(pg_url, "pit.industry"))
    assert_same_rows(got, _rows(changed), ("ts_code", "l3_code", "in_date"))
    index = fetch(pg_url, "SELECT indexdef FROM pg_indexes WHERE tablename = 'industry'")
    assert "NULLS NOT DISTINCT" in index[0][0]


def test_round_trip_fidelity(layout: CacheLayout, pg_url: str) -> None:
    long_text = "长" * 50_000 + "x" * 50_000  # ~200 kB of UTF-8
    instant = dt.datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
    frame = pl.DataFrame(
        {
            "ts_code": ["000001.SZ", "000002.SZ", "000003.SZ", "000004.SZ", "000005.SZ"],
            "calc_date": [dt.date(2024, 1, 5)] * 5,
            "value": [float("nan"), None, 1e300, -1e-300, -0.0],
            "ratio": [float("inf"), float("-inf"), 0.1, 1 / 3, None],
            "big": [2**62, -(2**62), 0, None, 7],
            "flag": [True, False, None, True, False],
            "name": ["平安银行", None, "", long_text, "a'b\"c\\d\n"],
            "when": [instant, None, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), instant, instant],
            "day": [dt.date(1900, 1, 1), dt.date(2100, 12, 31), None, dt.date(2024, 2, 29), None],
        },
        schema_overrides={"when": pl.Datetime("us", "UTC")},
    )
    write_partition(layout, "factors", "p", "2024.parquet", frame)
    load_datasets(layout, pg_url)
    back = table_frame(pg_url, "factors.p").sort("ts_code")
    assert back.select("value").to_series().is_nan().to_list() == [True, None, False, False, False]
    assert back["value"].is_null().to_list() == [False, True, False, False, False]
    assert_same_rows(_rows(back), _rows(frame), ("ts_code",))
    types = dict(
        fetch(
            pg_url,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'factors' AND table_name = 'p'",
        )
    )
    assert types == {
        "ts_code": "text",
        "calc_date": "date",
        "value": "double precision",
        "ratio": "double precision",
        "big": "bigint",
        "flag": "boolean",
        "name": "text",
        "when": "timestamp with time zone",
        "day": "date",
    }
    again = load_datasets(layout, pg_url, full=True)
    assert again.tables[0].updated == 0  # NaN equals NaN, -0.0 stays, nothing rewritten


def _income(rows: list[dict[str, Any]]) -> pl.DataFrame:
    from cache.catalogue.apis import api_spec

    schema = {**api_spec("income").polars_schema(), "_fetched_at": pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema=schema)


def test_statement_version_log(layout: CacheLayout, pg_url: str) -> None:
    fetched = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    base = {
        "ts_code": "000001.SZ",
        "end_date": dt.date(2023, 12, 31),
        "ann_date": dt.date(2024, 3, 15),
        "f_ann_date": dt.date(2024, 3, 15),
        "report_type": "1",
        "update_flag": "0",
        "revenue": 100.0,
        "_fetched_at": fetched,
    }
    restated = {**base, "update_flag": "1", "revenue": 101.0, "f_ann_date": dt.date(2024, 4, 20)}
    refetched = {**base, "_fetched_at": fetched + dt.timedelta(days=3)}  # same version
    undated = {**base, "ann_date": None, "update_flag": None, "revenue": float("nan")}
    first = _income([base, restated, refetched, undated])
    write_partition(layout, "raw", "income", "2023.parquet", first)
    result = load_datasets(layout, pg_url, ["raw.income"])
    assert result.tables[0].inserted == 3
    rows = fetch(pg_url, "SELECT row_hash, revenue, _fetched_at FROM raw.income ORDER BY revenue")
    assert len({r[0] for r in rows}) == 3
    assert [r[2] for r in rows if r[1] == 100.0] == [fetched]  # the first fetch is kept

    # A new version arrives with a column the table does not have yet (schema drift):
    # the old versions keep their hashes, the new one is added, nothing is rewritten.
    later = {**restated, "revenue": 102.0, "update_flag": "1", "ann_date": dt.date(2024, 6, 1)}
    second = pl.concat([first, _income([later])]).with_columns(
        extra_note=pl.when(pl.col("revenue") == 102.0).then(pl.lit("new")).otherwise(None)
    )
    write_partition(layout, "raw", "income", "2023.parquet", second)
    result = load_datasets(layout, pg_url, ["income"])
    assert (result.tables[0].inserted, result.tables[0].updated) == (1, 0)
    after = fetch(pg_url, "SELECT row_hash, extra_note FROM raw.income")
    assert {r[0] for r in rows} < {r[0] for r in after}
    assert sorted(r[1] or "" for r in after) == ["", "", "", "new"]

    # The same versions with the columns in another order: the same hashes.
    write_partition(layout, "raw", "income", "2023.parquet", second.select(second.columns[::-1]))
    result = load_datasets(layout, pg_url, ["income"])
    assert (result.tables[0].inserted, result.tables[0].updated) == (0, 0)


def test_schema_drift_adds_columns_and_type_conflicts_fail(
    layout: CacheLayout, pg_url: str
) -> None:
    frame = factor_frame(week_ends(FRIDAY_2020, 2), codes(5), 1)
    write_partition(layout, "factors", "p", "2020.parquet", frame)
    load_datasets(layout, pg_url)
    wider = factor_frame(week_ends(FRIDAY_2021, 2), codes(5), 2).with_columns(s_roe=pl.lit(1.5))
    write_partition(layout, "factors", "p", "2021.parquet", wider)
    load_datasets(layout, pg_url)
    rows = fetch(pg_url, "SELECT count(*), count(s_roe) FROM factors.p")
    assert rows == [(20, 10)]

    before = checksum(pg_url, "factors.p", "calc_date, ts_code")
    clash = wider.with_columns(pl.col("p_rank").cast(pl.String))
    write_partition(layout, "factors", "p", "2021.parquet", clash)
    assert "p_rank is bigint in PostgreSQL but text" in only_failure(load_datasets(layout, pg_url))
    assert checksum(pg_url, "factors.p", "calc_date, ts_code") == before


def test_duplicate_or_null_keys_are_refused_and_nothing_changes(
    layout: CacheLayout, pg_url: str
) -> None:
    frame = factor_frame(week_ends(FRIDAY_2020, 2), codes(4), 1)
    write_partition(layout, "factors", "p", "2020.parquet", frame)
    load_datasets(layout, pg_url)
    before = checksum(pg_url, "factors.p", "calc_date, ts_code")
    write_partition(layout, "factors", "p", "2020.parquet", pl.concat([frame, frame.head(1)]))
    assert "1 duplicate key(s) (calc_date, ts_code)" in only_failure(load_datasets(layout, pg_url))
    nulls = frame.with_columns(
        ts_code=pl.when(pl.col("p_rank") > 0).then(None).otherwise("ts_code")
    )
    write_partition(layout, "factors", "p", "2020.parquet", nulls)
    assert "null in key column 'ts_code'" in only_failure(load_datasets(layout, pg_url))
    assert checksum(pg_url, "factors.p", "calc_date, ts_code") == before


def test_dataset_names_resolve_and_unknown_ones_are_refused(layout: CacheLayout) -> None:
    write_partition(layout, "factors", "p", "2020.parquet", factor_frame([FRIDAY_2020], ["1"], 1))
    write_partition(
        layout, "pit", "indicators", "part-00.parquet", pl.DataFrame({"ts_code": ["1"]})
    )
    write_partition(layout, "raw", "daily", "all.parquet", pl.DataFrame({"ts_code": ["1"]}))
    write_partition(layout, "raw", "p", "all.parquet", pl.DataFrame({"ts_code": ["1"]}))
    assert resolve_datasets(layout, None) == [("pit", "indicators"), ("factors", "p")]
    assert resolve_datasets(layout, None, ["daily", "raw.daily", "weekly"]) == [
        ("pit", "indicators"),
        ("factors", "p"),
        ("raw", "daily"),
    ]
    assert resolve_datasets(layout, ["daily", "indicators", "factors.p"]) == [
        ("raw", "daily"),
        ("pit", "indicators"),
        ("factors", "p"),
    ]
    with pytest.raises(UsageError, match=r"ambiguous: say raw\.p or factors\.p"):
        resolve_datasets(layout, ["p"])
    with pytest.raises(UsageError, match=r"'raw\.weekly' is not in the cache"):
        resolve_datasets(layout, ["raw.weekly"])


def test_refused_password_is_one_clear_line_and_the_cache_is_untouched(
    layout: CacheLayout, pg_url: str
) -> None:
    write_partition(layout, "factors", "p", "2020.parquet", factor_frame([FRIDAY_2020], ["1"], 1))
    before = file_hashes(layout.root)
    password = pg_url.split(":")[2].split("@")[0]
    wrong = pg_url.replace(f":{password}@", ":not-the-password@")
    with pytest.raises(DatabaseUnavailableError) as err:
        load_datasets(layout, wrong)
    message = str(err.value)
    assert "password authentication failed" in message and "\n" not in message
    assert "not-the-password" not in message and password not in message
    assert "127.0.0.1" in message and "/t_" in message
    assert file_hashes(layout.root) == before


def test_a_derived_table_without_a_key_is_reported_not_loaded(
    layout: CacheLayout, pg_url: str
) -> None:
    write_partition(layout, "pit", "scratchpad", "part-00.parquet", pl.DataFrame({"x": [1]}))
    write_partition(layout, "factors", "p", "2020.parquet", factor_frame([FRIDAY_2020], ["1"], 1))
    result = load_datasets(layout, pg_url)
    assert result.not_loaded == ["pit.scratchpad"]
    assert [t.table for t in result.tables] == ["factors.p"]
    assert "pit.scratchpad: not loaded (no key defined)" in "\n".join(result.lines())


def _row_versions(url: str, calc_date: dt.date) -> set[str]:
    rows = fetch(url, f"SELECT DISTINCT xmin::text FROM factors.p WHERE calc_date = '{calc_date}'")
    return {r[0] for r in rows}


def test_only_the_changed_slices_of_a_partition_are_written(
    layout: CacheLayout, pg_url: str
) -> None:
    stocks = codes(15)
    dates = week_ends(FRIDAY_2021, 5)
    year = factor_frame(dates, stocks, 1)
    write_partition(layout, "factors", "p", "2021.parquet", year)
    load_datasets(layout, pg_url)
    untouched = {d: _row_versions(pg_url, d) for d in dates}

    # The next run: one more calc date, and one null (was NaN) on the third date.
    new_date = dates[-1] + dt.timedelta(weeks=1)
    target = year.filter(pl.col("calc_date") == dates[2]).row(0, named=True)["ts_code"]
    grown = pl.concat([year, factor_frame([new_date], stocks, 2)]).with_columns(
        gpa=pl.when((pl.col("calc_date") == dates[2]) & (pl.col("ts_code") == target))
        .then(None)
        .otherwise("gpa")
    )
    write_partition(layout, "factors", "p", "2021.parquet", grown.sort("ts_code", "calc_date"))
    result = load_datasets(layout, pg_url).tables[0]
    assert (result.inserted, result.updated, result.deleted) == (15, 1, 0)
    for d in dates:
        if d != dates[2]:
            assert _row_versions(pg_url, d) == untouched[d], d
    assert _row_versions(pg_url, dates[2]) != untouched[dates[2]]
    assert_same_rows(
        _rows(table_frame(pg_url, "factors.p")), _rows(grown), ("calc_date", "ts_code")
    )
    nulls = fetch(
        pg_url, f"SELECT count(*) FROM factors.p WHERE gpa IS NULL AND ts_code = '{target}'"
    )
    assert nulls == [(1,)]


def test_the_settings_pick_the_postgres_sink_behind_the_seam(
    layout: CacheLayout, tmp_path: Path, pg_url: str
) -> None:
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame([FRIDAY_2020], codes(3), 1)
    )
    config = tmp_path / "alphahome.toml"
    config.write_text(f'[database]\nurl = "{pg_url}"\n[cache]\ndir = "{layout.root}"\n')
    settings = load_settings(config, None, {}, env={})
    sink = open_sink(settings)
    assert sink.capabilities.name == "postgres" and sink.capabilities.supports_upsert
    assert sink.capabilities.durable and "password" not in sink.target
    result = load_from_settings(settings)
    assert result.sink == "postgres" and result.lines()[0].startswith("loaded into PostgreSQL")
    assert [t.inserted for t in result.tables] == [3]
    assert sink.counts([("factors", "p"), ("factors", "nothing")]) == {
        ("factors", "p"): 3,
        ("factors", "nothing"): None,
    }
    assert not layout.duckdb_path.exists()  # the catalogue is the other sink's


# The merge joins nullable key columns through a fill value (DATE '1970-01-01', '');
# a NULL key must still never meet a row that holds the fill value itself.
NULL_VERSUS_FILL = {
    "pit.industry": (
        ("ts_code", "l3_code", "in_date"),
        "in_date",
        dt.date(1970, 1, 1),
        pl.Date,
    ),
    "pit.statement_versions": (
        ("ts_code", "end_date", "source", "vis_date", "update_flag"),
        "update_flag",
        "",
        pl.String,
    ),
}


@pytest.mark.parametrize("table", sorted(NULL_VERSUS_FILL))
def test_a_null_key_and_the_fill_value_are_two_keys(
    layout: CacheLayout, pg_url: str, table: str
) -> None:
    key, nullable, fill, dtype = NULL_VERSUS_FILL[table]
    base = {
        "ts_code": "000001.SZ",
        "l3_code": "857831.SI",
        "end_date": dt.date(2023, 12, 31),
        "source": "income",
        "vis_date": dt.date(2024, 3, 15),
    }
    rows = [
        {**base, nullable: None, "note": "null key", "value": 1.0},
        {**base, nullable: fill, "note": "fill value", "value": 2.0},
        {**base, "ts_code": "600000.SH", nullable: None, "note": "other stock", "value": 3.0},
    ]
    types = {"end_date": pl.Date, "vis_date": pl.Date, nullable: dtype, "value": pl.Float64}
    schema = {c: types.get(c, pl.String) for c in (*key, "note", "value")}
    frame = pl.DataFrame([{c: r[c] for c in schema} for r in rows], schema=schema)
    name = table.split(".")[1]
    write_partition(layout, "pit", name, "all.parquet", frame)  # type: ignore[arg-type]

    first = load_datasets(layout, pg_url, [table])
    assert first.tables[0].inserted == 3
    again = load_datasets(layout, pg_url, [table], full=True)  # merged against itself
    assert (again.tables[0].inserted, again.tables[0].updated, again.tables[0].deleted) == (0, 0, 0)
    assert_same_rows(_rows(table_frame(pg_url, table)), _rows(frame), key)

    changed = frame.with_columns(
        note=pl.when(pl.col(nullable) == fill).then(pl.lit("fill value, changed")).otherwise("note")
    )
    write_partition(layout, "pit", name, "all.parquet", changed)  # type: ignore[arg-type]
    result = load_datasets(layout, pg_url, [table])
    assert (result.tables[0].inserted, result.tables[0].updated, result.tables[0].deleted) == (
        0,
        1,
        0,
    )
    got = _rows(table_frame(pg_url, table))
    assert_same_rows(got, _rows(changed), key)
    assert sorted((r["note"], r[nullable] is None) for r in got) == [
        ("fill value, changed", False),
        ("null key", True),
        ("other stock", True),
    ]


STAGING_TABLES = "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_ah\\_load\\_%'"


@pytest.mark.parametrize("streams", [1, 2])
def test_a_new_table_loads_in_streams_and_a_shared_key_loads_partition_by_partition(
    layout: CacheLayout, pg_url: str, streams: int
) -> None:
    stocks = codes(6)
    older = factor_frame(week_ends(FRIDAY_2020, 2), stocks, 1)  # no s_roe column
    wider = factor_frame(week_ends(FRIDAY_2021, 2), stocks, 2).with_columns(s_roe=pl.lit(1.5))
    empty = factor_frame([dt.date(2022, 1, 7)], stocks, 3).with_columns(s_roe=pl.lit(None))
    for name, frame in (("2020.parquet", older), ("2021.parquet", wider), ("2022.parquet", empty)):
        write_partition(layout, "factors", "p", name, frame)
    first = load_datasets(layout, pg_url, streams=streams)
    assert (first.tables[0].loaded, first.tables[0].inserted) == (3, 30)
    # one transaction per COPY stream: the rows hold one xmin per stream
    assert fetch(pg_url, "SELECT count(DISTINCT xmin::text) FROM factors.p") == [(streams,)]
    # the table appeared (created, or renamed into place) in the transaction that
    # recorded all three partitions
    same_transaction = (
        "SELECT count(*) FROM ops.load_state WHERE xmin::text = "
        "(SELECT xmin::text FROM pg_class WHERE oid = 'factors.p'::regclass)"
    )
    assert fetch(pg_url, same_transaction) == [(3,)]
    indexes = fetch(pg_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'p' ORDER BY 1")
    assert indexes == [("p_pkey",), ("p_ts_code",)]
    # (ts_code, calc_date) is the key in another order: no two entries to deduplicate
    options = "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'p_ts_code'"
    assert fetch(pg_url, options) == [("deduplicate_items=off",)]
    key = "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = 'factors.p'::regclass"
    assert fetch(pg_url, key) == [("p_pkey", "p")]
    assert fetch(pg_url, STAGING_TABLES) == [(0,)]
    expected = _rows(pl.concat([older, wider, empty], how="diagonal_relaxed"))
    assert_same_rows(_rows(table_frame(pg_url, "factors.p")), expected, ("calc_date", "ts_code"))
    assert load_datasets(layout, pg_url).tables[0].loaded == 0  # the records hold

    days = [dt.date(2024, 1, d) for d in (2, 3)]
    january = daily_frame(days, stocks, 4)
    again = daily_frame(days[1:], stocks, 5)  # a key both files hold: the later file wins
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", january)
    write_partition(layout, "raw", "daily", "2024/2024-01b.parquet", again)
    done = load_datasets(layout, pg_url, ["raw.daily"], streams=streams)
    assert done.ok and done.tables[0].loaded == 2
    assert fetch(pg_url, STAGING_TABLES) == [(0,)]  # the failed streams left nothing
    expected = _rows(january.filter(pl.col("trade_date") == days[0])) + _rows(again)
    assert_same_rows(_rows(table_frame(pg_url, "raw.daily")), expected, ("trade_date", "ts_code"))


def test_a_partition_failing_in_a_parallel_load_is_named_and_the_others_are_kept(
    layout: CacheLayout, pg_url: str
) -> None:
    stocks = codes(4)
    good = factor_frame(week_ends(FRIDAY_2020, 2), stocks, 1)
    bad = factor_frame(week_ends(FRIDAY_2021, 2), stocks, 2).with_columns(
        ts_code=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("ts_code"))
    )
    write_partition(layout, "factors", "p", "2020.parquet", good)
    write_partition(layout, "factors", "p", "2021.parquet", bad)
    result = load_datasets(layout, pg_url, ["factors.p"], streams=2)
    failure = only_failure(result)
    assert "2021.parquet" in failure and "null in key column 'ts_code'" in failure, failure
    assert_same_rows(_rows(table_frame(pg_url, "factors.p")), _rows(good), ("calc_date", "ts_code"))
    assert fetch(pg_url, STAGING_TABLES) == [(0,)]


PIT_KEY = ("ts_code", "knowledge_date")
SPAN_LOADER = """
import sys
from cache.layout import CacheLayout
from pipeline.load import load_datasets
load_datasets(CacheLayout(sys.argv[1]), sys.argv[2], ["pit.indicators"])
"""
BUCKETS = ["part-00.parquet", "part-01.parquet"]
SPAN_FORGET = "DELETE FROM ops.load_state WHERE table_name = $1 AND partition = ANY($2)"


def _pit_union(layout: CacheLayout) -> list[dict[str, Any]]:
    """Every row of every file of pit.indicators (the bucket and delta files)."""
    files = sorted(layout.dataset_dir("pit", "indicators").glob("*.parquet"))
    return _rows(pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed"))


def _pit_matches_files(layout: CacheLayout, url: str) -> None:
    assert_same_rows(_rows(table_frame(url, "pit.indicators")), _pit_union(layout), PIT_KEY)


def _stocks_of(frame: pl.DataFrame, *stocks: str) -> pl.DataFrame:
    return frame.filter(pl.col("ts_code").is_in(stocks))


class _PitStart(NamedTuple):
    """Six stocks' weekly pit.indicators rows: those known before the fifth week
    (`past`), in the fifth (`day5`) and in the sixth (`day6`)."""

    stocks: list[str]
    days: list[dt.date]
    history: pl.DataFrame
    past: pl.DataFrame
    day5: pl.DataFrame
    day6: pl.DataFrame


def _put_pit(layout: CacheLayout, name: str, frame: pl.DataFrame) -> None:
    write_partition(layout, "pit", "indicators", name, frame.sort(*PIT_KEY))


def _start_pit_files(layout: CacheLayout, weeks: int, seed: int) -> _PitStart:
    """The first three stocks' past rows in part-00, the last three's in part-01, and
    the fifth week's rows of the first and fourth in delta-000001-00."""
    stocks = codes(6)
    days = [dt.date(2024, 1, 5) + dt.timedelta(weeks=i) for i in range(weeks)]
    history = indicator_frame(stocks, days, seed)
    known = pl.col("knowledge_date")
    start = _PitStart(
        stocks, days, history, history.filter(known < days[4]),
        history.filter(known == days[4]), history.filter(known == days[5]),
    )  # fmt: skip
    _put_pit(layout, "part-00.parquet", _stocks_of(start.past, *stocks[:3]))
    _put_pit(layout, "part-01.parquet", _stocks_of(start.past, *stocks[3:]))
    _put_pit(layout, "delta-000001-00.parquet", _stocks_of(start.day5, stocks[0], stocks[3]))
    return start


def test_a_pit_stock_spanning_bucket_and_delta_files_is_their_union(
    layout: CacheLayout, pg_url: str
) -> None:
    (a, b, c, d, e, f), days, history, past, day5, day6 = _start_pit_files(layout, 7, 1)
    put = functools.partial(_put_pit, layout)

    def drop(name: str) -> None:
        (layout.dataset_dir("pit", "indicators") / name).unlink()

    # a new table holds every file's rows, the deltas' included, under its primary key
    first = load_datasets(layout, pg_url, ["pit.indicators"], streams=2).tables[0]
    assert (first.loaded, first.inserted) == (3, 26)
    _pit_matches_files(layout, pg_url)
    untouched = f"SELECT xmin::text, ctid::text FROM pit.indicators WHERE ts_code = '{b}'"
    b_rows = fetch(pg_url, untouched)

    # a new delta adds its rows and keeps the stocks' rows of the other files
    put("delta-000002-00.parquet", _stocks_of(day6, a, e))
    added = load_datasets(layout, pg_url, ["pit.indicators"]).tables[0]
    assert (added.loaded, added.inserted, added.updated, added.deleted) == (1, 2, 0, 0)
    _pit_matches_files(layout, pg_url)

    # a fold: the first delta's rows move into the bucket files and the delta goes
    put("part-00.parquet", pl.concat([_stocks_of(past, a, b, c), _stocks_of(day5, a)]))
    put("part-01.parquet", pl.concat([_stocks_of(past, d, e, f), _stocks_of(day5, d)]))
    drop("delta-000001-00.parquet")
    folded = load_datasets(layout, pg_url, ["pit.indicators"]).tables[0]
    assert (folded.loaded, folded.forgotten) == (2, 1)
    assert (folded.inserted, folded.updated, folded.deleted) == (0, 0, 0)
    _pit_matches_files(layout, pg_url)

    # non-additive: a's rows leave the bucket and the delta, and a new delta holds its
    # fresh rows (one value changed, one row fewer, one new row)
    fresh_a = pl.concat([_stocks_of(past, a), _stocks_of(day5, a), _stocks_of(day6, a)])
    fresh_a = fresh_a.filter(pl.col("knowledge_date") != days[0]).with_columns(
        gpa=pl.when(pl.col("knowledge_date") == days[1]).then(99.0).otherwise("gpa")
    )
    fresh_a = pl.concat(
        [fresh_a, _stocks_of(history, a).filter(pl.col("knowledge_date") == days[6])]
    )
    put("part-00.parquet", _stocks_of(past, b, c))
    put("delta-000002-00.parquet", _stocks_of(day6, e))
    put("delta-000003-00.parquet", fresh_a)
    moved = load_datasets(layout, pg_url, ["pit.indicators"]).tables[0]
    assert (moved.loaded, moved.inserted, moved.updated, moved.deleted) == (3, 1, 1, 1)
    _pit_matches_files(layout, pg_url)
    assert fetch(pg_url, untouched) == b_rows  # b's rows were never rewritten

    # a crash inside the load's transaction leaves table and records as they were;
    # the re-run equals the files
    records = "SELECT partition, content_sha256 FROM ops.load_state ORDER BY 1"
    before = (checksum(pg_url, "pit.indicators", "ts_code, knowledge_date"), fetch(pg_url, records))
    put(
        "delta-000004-00.parquet",
        _stocks_of(history, b, c).filter(pl.col("knowledge_date") == days[6]),
    )
    put("part-01.parquet", _stocks_of(past, d, f).with_columns(roe=pl.lit(1.0)))
    drop("delta-000002-00.parquet")
    env = {**os.environ, "AH_TEST_CRASH_AT": "load-commit:1"}
    crashed = subprocess.run(
        [sys.executable, "-c", SPAN_LOADER, str(layout.root), pg_url],
        env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
    )  # fmt: skip
    assert crashed.returncode == -9, crashed.stderr
    after = (checksum(pg_url, "pit.indicators", "ts_code, knowledge_date"), fetch(pg_url, records))
    assert after == before
    rerun = load_datasets(layout, pg_url, ["pit.indicators"]).tables[0]
    assert (rerun.loaded, rerun.forgotten) == (2, 1)
    _pit_matches_files(layout, pg_url)
    partitions = [p for p, _ in fetch(pg_url, records)]
    assert partitions == sorted(p.name for p in layout.dataset_dir("pit", "indicators").iterdir())
    again = load_datasets(layout, pg_url, ["pit.indicators"], full=True).tables[0]
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)


def test_postgres_crashing_inside_a_spanning_load_keeps_the_old_files_then_reruns(
    tmp_path: Path, crashable_server: PostgresServer
) -> None:
    """The database dies (`pg_ctl stop -m immediate`) while `ah load` is inside the ONE
    transaction of a PIT table's spanning load (a fold, a new delta, a stock rewritten):
    one error line; after recovery the table and its records are the old files'; a
    re-run equals the new files."""
    server, url = crashable_server, crashable_server.url
    layout = CacheLayout(tmp_path / "cache")
    (a, b, c, d, e, f), days, history, past, day5, day6 = _start_pit_files(layout, 6, 2)
    put = functools.partial(_put_pit, layout)
    assert load_datasets(layout, url, ["pit.indicators"]).ok
    old_rows = _pit_union(layout)
    records = "SELECT partition, content_sha256 FROM ops.load_state ORDER BY 1"
    old_records = fetch(url, records)
    assert [p for p, _ in old_records] == ["delta-000001-00.parquet", *BUCKETS]

    # the fold moves the delta's rows of a and d into their buckets and removes it; b is
    # rewritten (a row gone, a value changed, a new row); a new delta adds a's and e's
    fresh_b = _stocks_of(history, b).filter(pl.col("knowledge_date").is_in(days[1:4] + days[5:]))
    fresh_b = fresh_b.with_columns(
        gpa=pl.when(pl.col("knowledge_date") == days[2]).then(99.0).otherwise("gpa")
    )
    put("part-00.parquet", pl.concat([_stocks_of(past, a, c), fresh_b, _stocks_of(day5, a)]))
    put("part-01.parquet", pl.concat([_stocks_of(past, d, e, f), _stocks_of(day5, d)]))
    (layout.dataset_dir("pit", "indicators") / "delta-000001-00.parquet").unlink()
    put("delta-000002-00.parquet", _stocks_of(day6, a, e))

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "DATABASE"))}
    cache = ("--cache-dir", str(layout.root))
    load = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *cache, "load", "pit.indicators"],
        cwd=tmp_path, text=True,
        env={**clean, "DATABASE_URL": url, "AH_TEST_CRASH_AT": "load-commit:1:stop"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_stopped(load, "the spanning load's commit")
    # stopped inside load_spanning's transaction: it wrote, its last statement forgot the
    # removed delta, and nothing of it is visible
    activity = fetch(
        url,
        "SELECT query, backend_xid IS NOT NULL FROM pg_stat_activity "
        "WHERE state = 'idle in transaction'",
    )
    assert activity == [(SPAN_FORGET, True)], activity
    assert_same_rows(_rows(table_frame(url, "pit.indicators")), old_rows, PIT_KEY)
    server.crash()
    continue_after_crash(load, url.split(":")[2].split("@")[0])  # the password

    server.start()  # recovered: no partial merge, the records still the old files'
    assert_same_rows(_rows(table_frame(url, "pit.indicators")), old_rows, PIT_KEY)
    assert fetch(url, records) == old_records

    ah_env = {"DATABASE_URL": url}
    rerun = ah(*cache, "load", "pit.indicators", cwd=tmp_path, env=ah_env)
    assert rerun.returncode == 0, rerun.stderr
    assert (
        "(3 loaded, 0 unchanged, 1 removed from the cache); rows +3 new, 1 changed, 1 deleted"
        in rerun.stdout
    ), rerun.stdout
    _pit_matches_files(layout, url)
    hashes = {Path(p).name: sha for p, sha in file_hashes(layout.root).items()}
    assert dict(fetch(url, records)) == hashes
    verify = ah(*cache, "verify", "pit.indicators", cwd=tmp_path, env=ah_env)
    assert "drift" not in verify.stdout and verify.returncode == 0, verify.stdout
