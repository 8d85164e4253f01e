"""A raw file written before a column existed is refused with the way out, untouched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from cache.catalogue.datasets import raw_dataset
from cache.layout import CacheLayout
from cache.store import StaleLayoutError, commit

FETCHED = dt.datetime(2024, 6, 28, 12, tzinfo=dt.UTC)


def test_a_file_without_the_type_column_is_refused_and_kept(tmp_path: Path) -> None:
    spec = raw_dataset("fina_mainbz")
    layout = CacheLayout(tmp_path)
    row = {c: None for c in spec.columns} | {
        "ts_code": "000001.SZ",
        "end_date": dt.date(2023, 12, 31),
        "bz_item": "银行业务",
        "type": "P",
    }
    fresh = pl.DataFrame([row], schema=dict(spec.schema))
    old = fresh.drop("type").with_columns(
        pl.lit(FETCHED, dtype=pl.Datetime("us", "UTC")).alias("_fetched_at")
    )
    path = layout.dataset_dir("raw", "fina_mainbz") / "2023.parquet"
    path.parent.mkdir(parents=True)
    old.write_parquet(path)
    before = path.read_bytes()
    with pytest.raises(StaleLayoutError, match=r"no column type .*ah state reset fina_mainbz"):
        commit(layout, spec, fresh, FETCHED)
    assert path.read_bytes() == before
