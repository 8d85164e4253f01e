"""The data's as-of date (cache/asof.py): computed from raw/daily, persisted, and never
trusted once raw/daily changed, the file went missing or it is corrupt."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from cache.asof import as_of_path, compute_as_of, data_as_of, record_as_of
from cache.atomic import write_parquet_atomic
from cache.catalogue.datasets import raw_dataset
from cache.layout import CacheLayout
from cache.store import commit, write_empty

FETCHED = dt.datetime(2024, 6, 28, 12, tzinfo=dt.UTC)
DAILY = raw_dataset("daily")


def bars(days: list[dt.date], codes: tuple[str, ...] = ("000001.SZ", "600000.SH")) -> pl.DataFrame:
    schema = dict(DAILY.schema)
    rows = [
        {c: (code if c == "ts_code" else day if c == "trade_date" else 1.0) for c in schema}
        for code in codes
        for day in days
    ]
    return pl.DataFrame(rows, schema=schema)


def save(layout: CacheLayout, days: list[dt.date]) -> None:
    """Commit daily bars as the sync does (one file per month)."""
    commit(layout, DAILY, bars(days), FETCHED)


def persisted(layout: CacheLayout) -> dict:
    return json.loads(as_of_path(layout).read_text(encoding="utf-8"))


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    return CacheLayout(tmp_path / "cache")


def test_no_daily_bars_means_no_as_of_date(layout: CacheLayout) -> None:
    assert data_as_of(layout) is None and compute_as_of(layout) is None
    assert not as_of_path(layout).exists()
    write_empty(layout, DAILY)  # a dataset with no rows
    assert data_as_of(layout) is None


def test_newest_trade_date_is_persisted_and_read_back(layout: CacheLayout) -> None:
    save(layout, [dt.date(2024, 5, 31), dt.date(2024, 6, 27), dt.date(2024, 4, 1)])
    assert len(list(layout.dataset_dir("raw", "daily").rglob("*.parquet"))) == 3
    assert record_as_of(layout) == dt.date(2024, 6, 27)
    doc = persisted(layout)
    assert doc["as_of"] == "2024-06-27" and doc["files"] == 3
    assert data_as_of(layout) == dt.date(2024, 6, 27)


def test_the_persisted_file_is_the_fast_path_while_daily_is_unchanged(
    layout: CacheLayout,
) -> None:
    save(layout, [dt.date(2024, 6, 27)])
    record_as_of(layout)
    doc = persisted(layout)
    # a file that says otherwise with the same fingerprint is believed: nothing was reread
    as_of_path(layout).write_text(json.dumps({**doc, "as_of": "2024-06-03"}))
    assert data_as_of(layout) == dt.date(2024, 6, 3)


def test_a_commit_after_the_last_record_is_seen(layout: CacheLayout) -> None:
    """As after a kill -9 between a commit and the write of asof.json."""
    save(layout, [dt.date(2024, 6, 27)])
    assert record_as_of(layout) == dt.date(2024, 6, 27)
    save(layout, [dt.date(2024, 6, 28)])  # the same month file, rewritten
    assert data_as_of(layout) == dt.date(2024, 6, 28)
    assert persisted(layout)["as_of"] == "2024-06-28"  # remembered again
    save(layout, [dt.date(2024, 7, 1)])  # a new month file
    assert data_as_of(layout) == dt.date(2024, 7, 1)


def test_removed_daily_files_are_seen(layout: CacheLayout) -> None:
    save(layout, [dt.date(2024, 5, 31), dt.date(2024, 6, 28)])
    record_as_of(layout)
    next(layout.dataset_dir("raw", "daily").rglob("*-06.parquet")).unlink()
    assert data_as_of(layout) == dt.date(2024, 5, 31)


@pytest.mark.parametrize(
    "content", [None, "", "{not json", "[]", '{"as_of": "yesterday"}', '{"fingerprint": 3}']
)
def test_missing_or_corrupt_file_is_recomputed(layout: CacheLayout, content: str | None) -> None:
    save(layout, [dt.date(2024, 6, 28)])
    record_as_of(layout)
    fingerprint = persisted(layout)["fingerprint"]
    if content is None:
        as_of_path(layout).unlink()
    else:
        as_of_path(layout).write_text(content)
    assert data_as_of(layout) == dt.date(2024, 6, 28)
    assert persisted(layout)["as_of"] == "2024-06-28"
    assert persisted(layout)["fingerprint"] == fingerprint


def test_bad_date_in_a_matching_file_is_recomputed(layout: CacheLayout) -> None:
    save(layout, [dt.date(2024, 6, 28)])
    record_as_of(layout)
    doc = persisted(layout)
    as_of_path(layout).write_text(json.dumps({**doc, "as_of": "28/06/2024"}))
    assert data_as_of(layout) == dt.date(2024, 6, 28)


def test_files_without_statistics_are_read(layout: CacheLayout) -> None:
    frame = bars([dt.date(2024, 6, 3), dt.date(2024, 6, 21)])
    target = layout.dataset_dir("raw", "daily") / "2024" / "2024-06.parquet"
    target.parent.mkdir(parents=True)
    frame.write_parquet(target, statistics=False)
    stats = pq.ParquetFile(target).metadata.row_group(0).column(1).statistics
    assert stats is None or not stats.has_min_max
    assert compute_as_of(layout) == dt.date(2024, 6, 21)
    write_parquet_atomic(bars([dt.date(2024, 6, 24)]), target.with_name("extra.parquet"))
    assert data_as_of(layout) == dt.date(2024, 6, 24)
