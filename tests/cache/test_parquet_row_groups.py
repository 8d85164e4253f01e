"""Cache files are written in small row groups, so one stock's rows are a few groups."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from cache.atomic import ROW_GROUP_ROWS, write_parquet_atomic


def test_a_sorted_file_splits_into_row_groups_one_stock_can_skip(tmp_path: Path) -> None:
    days = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 1, 20), eager=True)
    stocks = [f"{i:06d}.SZ" for i in range(3000)]
    frame = (
        pl.DataFrame({"ts_code": stocks})
        .join(pl.DataFrame({"trade_date": days}), how="cross")
        .with_columns(close=pl.int_range(pl.len()).cast(pl.Float64))
        .sort("ts_code", "trade_date")
    )
    target = write_parquet_atomic(frame, tmp_path / "2024-01.parquet")
    meta = pq.ParquetFile(target).metadata
    assert meta.num_row_groups == -(-frame.height // ROW_GROUP_ROWS)
    ranges = [
        (meta.row_group(g).column(0).statistics.min, meta.row_group(g).column(0).statistics.max)
        for g in range(meta.num_row_groups)
    ]
    # sorted by ts_code: consecutive groups overlap at most at their boundary stock
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(ranges))
    stock = stocks[1500]
    holding = [g for g, (low, high) in enumerate(ranges) if low <= stock <= high]
    assert len(holding) <= 2 < meta.num_row_groups
    rows = duckdb.execute(
        f"SELECT count(*) FROM read_parquet('{target}') WHERE ts_code = '{stock}'"
    ).fetchone()
    assert rows == (len(days),)
