"""PostgreSQL loads of every raw dataset of the catalogue, of a table wider than the 100
arguments PostgreSQL passes to a function, and a load that goes on past a failing
dataset (real server)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from cache.catalogue.datasets import FETCHED_AT, FETCHED_AT_TYPE, DatasetSpec, datasets
from cache.layout import CacheLayout
from pipeline.load import load_datasets
from tests.cli_runner import ah
from tests.sinks.helpers import codes, factor_frame, fetch, week_ends, write_partition

pytestmark = pytest.mark.postgres

FETCHED = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
DAY = dt.date(2023, 3, 31)


def synthetic_rows(spec: DatasetSpec, n: int = 3) -> pl.DataFrame:
    """`n` rows of every column of `spec`, each value distinct, so keys are unique."""

    def value(dtype: pl.DataType, column: str, i: int) -> object:
        if dtype == pl.Date:
            return DAY + dt.timedelta(days=i)
        if dtype.is_float():
            return 1.5 + i
        if dtype.is_integer():
            return i + 1
        if dtype == pl.Boolean:
            return i % 2 == 0
        if isinstance(dtype, pl.Datetime):
            return FETCHED + dt.timedelta(hours=i)
        return f"{column}-{i}"

    data = {c: [value(t, c, i) for i in range(n)] for c, t in spec.schema.items()}
    data[FETCHED_AT] = [FETCHED] * n
    return pl.DataFrame(data, schema={**spec.schema, FETCHED_AT: FETCHED_AT_TYPE})


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    return CacheLayout(tmp_path / "cache")


def test_every_raw_dataset_loads_and_reloads(layout: CacheLayout, pg_url: str) -> None:
    raw = datasets("raw")
    for spec in raw:
        write_partition(layout, "raw", spec.name, "2023.parquet", synthetic_rows(spec))
    names = [spec.qualified for spec in raw]
    result = load_datasets(layout, pg_url, names)
    assert result.ok, result.failed
    assert {t.table for t in result.tables} == set(names)
    widest = max(raw, key=lambda s: len(s.schema))
    assert len(widest.schema) > 100  # the balance sheet: over PostgreSQL's 100 arguments
    for spec in raw:
        assert fetch(pg_url, f"SELECT count(*) FROM {spec.qualified}") == [(3,)], spec.name
    changed = synthetic_rows(widest).with_columns(pl.col(widest.key[0]).reverse())
    write_partition(layout, "raw", widest.name, "2023.parquet", changed)
    again = load_datasets(layout, pg_url, [widest.qualified])
    assert again.ok and again.tables[0].loaded == 1


def test_a_table_of_300_columns(layout: CacheLayout, pg_url: str) -> None:
    spec = next(s for s in datasets("raw") if s.name == "income")
    base = synthetic_rows(spec)
    extra = {f"extra_{i:03d}": [float(i), None, float(-i)] for i in range(300 - len(spec.schema))}
    wide = base.with_columns(**{k: pl.Series(v, dtype=pl.Float64) for k, v in extra.items()})
    assert wide.width >= 300
    write_partition(layout, "raw", "income", "2023.parquet", wide)
    first = load_datasets(layout, pg_url, ["raw.income"])
    assert first.ok, first.failed
    assert first.tables[0].inserted == 3
    # one value changed in the last column: one new version, the others kept
    last = list(extra)[-1]
    revised = wide.with_columns(
        pl.when(pl.int_range(3) == 0).then(7.0).otherwise(pl.col(last)).alias(last)
    )
    write_partition(layout, "raw", "income", "2023.parquet", revised)
    second = load_datasets(layout, pg_url, ["raw.income"])
    assert second.ok and (second.tables[0].inserted, second.tables[0].updated) == (1, 0)
    assert fetch(pg_url, f"SELECT count(*), count({last}) FROM raw.income") == [(4, 3)]


def test_a_failing_dataset_does_not_stop_the_others(
    layout: CacheLayout, pg_url: str, tmp_path: Path
) -> None:
    p = factor_frame(week_ends(dt.date(2020, 1, 3), 2), codes(4), 1)
    write_partition(layout, "factors", "p", "2020.parquet", pl.concat([p, p.head(1)]))  # dup key
    g = factor_frame(week_ends(dt.date(2020, 1, 3), 2), codes(4), 2)
    write_partition(layout, "factors", "g", "2020.parquet", g.rename({"p_rank": "g_rank"}))
    daily = next(s for s in datasets("raw") if s.name == "daily")
    write_partition(layout, "raw", "daily", "2023.parquet", synthetic_rows(daily))
    config = tmp_path / "alphahome.toml"
    config.write_text(f'[database]\nurl = "{pg_url}"\n[cache]\ndir = "{layout.root}"\n')
    out = ah("--config", str(config), "load", "factors.p", "factors.g", "raw.daily", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "FAILED factors.p: " in out.stdout and "1 duplicate key(s)" in out.stdout
    assert "factors.g:" in out.stdout and "raw.daily:" in out.stdout
    assert fetch(pg_url, "SELECT count(*) FROM factors.g") == [(8,)]
    assert fetch(pg_url, "SELECT count(*) FROM raw.daily") == [(3,)]
    # the failed partition's transaction was rolled back: not even its table was left
    assert fetch(pg_url, "SELECT to_regclass('factors.p') IS NULL") == [(True,)]
