"""Helpers of the sink tests: small caches written with Polars, tables read back."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pgdb
import numpy as np
import polars as pl

from cache.atomic import write_parquet_atomic
from cache.catalogue.apis import api_spec
from cache.layout import CacheLayout, Layer

UTC = dt.UTC


def write_partition(
    layout: CacheLayout, layer: Layer, name: str, partition: str, frame: pl.DataFrame
) -> Path:
    """Write one partition file of a dataset, as the cache writers do (atomically)."""
    return write_parquet_atomic(frame, layout.dataset_dir(layer, name) / partition)


def codes(n: int) -> list[str]:
    """n stock codes."""
    return [f"{600000 + i:06d}.SH" if i % 2 else f"{i + 1:06d}.SZ" for i in range(n)]


def factor_frame(calc_dates: list[dt.date], stocks: list[str], seed: int) -> pl.DataFrame:
    """A factors.p-shaped frame: every stock on every calc date, random scores."""
    rng = np.random.default_rng(seed)
    n = len(calc_dates) * len(stocks)
    grid = pl.DataFrame({"calc_date": calc_dates}).join(
        pl.DataFrame({"ts_code": stocks}), how="cross"
    )
    return grid.select(
        "ts_code",
        "calc_date",
        p_score=pl.Series(rng.uniform(0, 100, n)),
        p_rank=pl.Series(rng.integers(1, 500, n)),
        gpa=pl.Series(np.where(rng.random(n) < 0.1, np.nan, rng.normal(20, 5, n))),
        is_financial=pl.Series(rng.random(n) < 0.2),
        industry_l1=pl.Series(rng.choice(["银行", "电子", "医药生物"], n)),
        end_date=pl.col("calc_date") - pl.duration(days=60),
    ).sort("ts_code", "calc_date")


def daily_frame(trade_dates: list[dt.date], stocks: list[str], seed: int) -> pl.DataFrame:
    """A raw daily frame with exactly the API's documented columns plus _fetched_at."""
    rng = np.random.default_rng(seed)
    schema = api_spec("daily").polars_schema()
    grid = pl.DataFrame({"ts_code": stocks}).join(
        pl.DataFrame({"trade_date": trade_dates}), how="cross"
    )
    n = grid.height
    floats = {
        name: pl.Series(name, rng.uniform(1, 100, n))
        for name, dtype in schema.items()
        if dtype == pl.Float64
    }
    fetched = dt.datetime(2024, 7, 1, 18, 0, tzinfo=UTC)
    return (
        grid.with_columns(**floats)
        .with_columns(_fetched_at=pl.lit(fetched, pl.Datetime("us", "UTC")))
        .select(*schema, "_fetched_at")
        .sort("ts_code", "trade_date")
    )


def week_ends(start: dt.date, count: int) -> list[dt.date]:
    """`count` Fridays from `start` (a Friday)."""
    return [start + dt.timedelta(weeks=i) for i in range(count)]


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query."""
    with pgdb.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def table_frame(url: str, table: str) -> pl.DataFrame:
    """A whole table as a Polars frame."""
    with pgdb.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")
        return pl.from_arrow(cur.fetch_arrow_table())  # type: ignore[return-value]


def checksum(url: str, table: str, key: str) -> tuple[int, str]:
    """(row count, md5 of every row's text in key order) of a table."""
    rows = fetch(
        url,
        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {key}), '')) "
        f"FROM {table} t",
    )
    return rows[0][0], rows[0][1]


def same_value(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (and only NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b if a is not None and b is not None else a is b


def by_key(rows: Iterable[dict[str, Any]], key: tuple[str, ...]) -> dict[tuple[Any, ...], dict]:
    """Row dicts indexed by their key values (a repeated key is a test failure)."""
    indexed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in key)
        assert k not in indexed, f"duplicate key {k}"
        indexed[k] = row
    return indexed


def assert_same_rows(
    got: Iterable[dict[str, Any]], expected: Iterable[dict[str, Any]], key: tuple[str, ...]
) -> None:
    """The same rows by key, every column equal (NaN equal to NaN, never to null)."""
    got_rows, want_rows = by_key(got, key), by_key(expected, key)
    assert got_rows.keys() == want_rows.keys()
    for k, want in want_rows.items():
        row = got_rows[k]
        for column, value in want.items():
            assert same_value(row[column], value), (k, column, row[column], value)


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every Parquet file under the cache's data layers."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for layer in ("raw", "pit", "factors")
        for p in sorted((root / layer).rglob("*"))
        if p.is_file()
    }


def indicator_frame(stocks: list[str], knowledge_dates: list[dt.date], seed: int) -> pl.DataFrame:
    """A pit.indicators-shaped frame (the catalogue's schema): every stock on every date,
    random values, sorted by stock as the PIT files are."""
    from cache.catalogue.datasets import INDICATOR_SCHEMA

    rng = np.random.default_rng(seed)
    grid = pl.DataFrame({"ts_code": stocks}).join(
        pl.DataFrame({"knowledge_date": knowledge_dates}), how="cross"
    )
    n = grid.height
    filled = {
        name: (
            pl.Series(name, rng.normal(10, 3, n))
            if dtype == pl.Float64
            else pl.col("knowledge_date") - pl.duration(days=int(rng.integers(1, 90)))
            if dtype == pl.Date
            else pl.lit("1")
        )
        for name, dtype in INDICATOR_SCHEMA.items()
        if name not in grid.columns
    }
    return (
        grid.with_columns(**filled)
        .cast(dict(INDICATOR_SCHEMA))  # type: ignore[arg-type]
        .select(*INDICATOR_SCHEMA)
        .sort("ts_code", "knowledge_date")
    )
