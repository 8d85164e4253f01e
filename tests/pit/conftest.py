"""Fixtures of the PIT tests: a small raw cache written as real Parquet."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from cache.layout import CacheLayout
from tests.pit.synthetic import FETCHED_TYPE, FIRST_FETCH, full_columns, synthetic_raw, write_raw

STOCKS = 24
QUARTERS = 12


def headline_frames() -> dict[str, pl.DataFrame]:
    """A few express and forecast rows with every documented column."""
    fetched = pl.lit(FIRST_FETCH, dtype=FETCHED_TYPE)
    express = pl.DataFrame(
        {
            "ts_code": ["600000.SH", "000001.SZ"],
            "ann_date": [dt.date(2020, 1, 15), dt.date(2020, 1, 20)],
            "end_date": [dt.date(2019, 12, 31), dt.date(2019, 12, 31)],
            "revenue": [1.5e9, 2.5e9],
            "n_income": [1.1e8, None],
        }
    ).with_columns(_fetched_at=fetched)
    forecast = pl.DataFrame(
        {
            "ts_code": ["600000.SH"],
            "ann_date": [dt.date(2019, 10, 10)],
            "end_date": [dt.date(2019, 12, 31)],
            "type": ["预增"],
            "net_profit_min": [9.0e7],
            "net_profit_max": [1.2e8],
        }
    ).with_columns(_fetched_at=fetched)
    return {
        "express": full_columns("express", express),
        "forecast": full_columns("forecast", forecast),
    }


def with_tie(income: pl.DataFrame) -> pl.DataFrame:
    """`income` plus a second row of one stock's first version, fetched at the same time,
    that wins the tie by basic_eps (a column versions do not carry) though its revenue
    is lower: only a build that breaks ties by every column keeps its revenue."""
    first = income.sort("ts_code", "end_date").head(1)
    rival = first.with_columns(
        basic_eps=pl.lit(9.0), revenue=pl.col("revenue") - 1.0, total_revenue=pl.lit(1.0)
    )
    first = first.with_columns(basic_eps=pl.lit(1.0), total_revenue=pl.lit(1.0))
    rest = income.join(first.select("ts_code", "end_date"), on=["ts_code", "end_date"], how="anti")
    return pl.concat([rest, first, rival])


@pytest.fixture
def raw_frames() -> dict[str, pl.DataFrame]:
    """24 stocks x 12 quarters, 30% restated, with express, forecast and industries, and
    one tie between two income rows of a version."""
    frames = synthetic_raw(STOCKS, QUARTERS, restated=0.3, first_year=2019, seed=7)
    return frames | headline_frames() | {"income": with_tie(frames["income"])}


@pytest.fixture
def raw_cache(tmp_path: pytest.TempPathFactory, raw_frames: dict[str, pl.DataFrame]) -> CacheLayout:
    """A cache whose raw layer holds `raw_frames`."""
    layout = CacheLayout(tmp_path / "cache")
    write_raw(layout, raw_frames)
    return layout
