"""`ah stats`: footer statistics, run history, sink tables."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cache.atomic import write_parquet_atomic
from pipeline.ops.stats import (
    cache_stats,
    collect_stats,
    dataset_stats,
    load_reports,
    render_stats,
    run_history,
    task_history,
)
from pipeline.run.report import TaskOutcome
from sinks.pg_inspect import table_stats
from tests.ops.conftest import CODES, SyntheticCache, make_report, save_report


def test_dataset_stats_from_footers(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    daily = dataset_stats(layout, "raw", "daily")
    files = sorted(layout.dataset_dir("raw", "daily").rglob("*.parquet"))
    assert daily.files == len(files) == 6  # one file per month
    assert daily.rows == len(CODES) * len(synthetic.daily_dates)
    assert (
        daily.first_date == synthetic.daily_dates[0]
        and daily.last_date == synthetic.daily_dates[-1]
    )
    assert daily.bytes == sum(f.stat().st_size for f in files)
    assert daily.date_column == "trade_date" and daily.unreadable == 0
    p = dataset_stats(layout, "factors", "p")
    assert p.date_column == "calc_date" and p.last_date == synthetic.calc_dates[-1]
    keys = [s.key for s in cache_stats(layout)]
    assert keys == [
        "raw.daily",
        "raw.income",
        "raw.trade_cal",
        "raw.weekly",
        "pit.indicators",
        "factors.g",
        "factors.p",
    ]


def test_date_range_spans_row_groups(tmp_path: Path) -> None:
    from cache.layout import CacheLayout

    layout = CacheLayout(tmp_path)
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(1000)]
    table = pa.table({"ts_code": ["x"] * len(days), "trade_date": days})
    target = layout.dataset_dir("raw", "daily") / "a.parquet"
    target.parent.mkdir(parents=True)
    pq.write_table(table, target, row_group_size=100)
    assert pq.ParquetFile(target).metadata.num_row_groups == 10
    found = dataset_stats(layout, "raw", "daily")
    assert (found.first_date, found.last_date, found.rows) == (days[0], days[-1], 1000)
    # the facts are remembered per file version: a file replaced by rename is read again
    write_parquet_atomic(pl.DataFrame({"ts_code": ["x"] * 10, "trade_date": days[:10]}), target)
    again = dataset_stats(layout, "raw", "daily")
    assert (again.first_date, again.last_date, again.rows) == (days[0], days[9], 10)


def test_unreadable_footer_is_counted(synthetic: SyntheticCache) -> None:
    bad = synthetic.layout.dataset_dir("raw", "daily") / "broken.parquet"
    bad.write_bytes(b"PAR1 not really")
    found = dataset_stats(synthetic.layout, "raw", "daily")
    assert found.unreadable == 1 and found.files == 7
    assert "1 unreadable" in render_stats(collect_stats(synthetic.layout))


def test_run_history_and_task_history(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    start = dt.datetime(2024, 6, 25, 10, tzinfo=dt.UTC)
    outcomes = [
        ["success", "success"],
        ["success", "failed"],
        ["no_data", "partial"],
    ]
    for i, statuses in enumerate(outcomes):
        tasks = [
            TaskOutcome(name, status, duration_s=10.0 * (i + 1) + j)
            for j, (name, status) in enumerate(zip(("daily", "income"), statuses, strict=True))
        ]
        save_report(layout, make_report(f"run{i}", start + dt.timedelta(days=i), tasks))
    (layout.reports_dir / "latest.json").write_text("{}")
    (layout.reports_dir / "garbage.json").write_text("{not json")
    reports = load_reports(layout)
    assert [r["run_id"] for r in reports] == ["run0", "run1", "run2"]
    history = run_history(reports)
    for i, (run, statuses) in enumerate(zip(history, outcomes, strict=True)):
        good = sum(s in ("success", "no_data") for s in statuses)
        assert run.success_rate == pytest.approx(good / 2)
        assert run.failed == statuses.count("failed")
        assert run.duration_s == pytest.approx(10.0 * (i + 1) * 2 + 1)
    tasks = {row["task"]: row for row in task_history(reports).to_dicts()}
    assert tasks["daily"]["runs"] == 3 and tasks["daily"]["success_rate"] == pytest.approx(1.0)
    assert tasks["income"]["success_rate"] == pytest.approx(1 / 3)
    assert tasks["income"]["max_s"] == pytest.approx(31.0) and tasks["income"][
        "median_s"
    ] == pytest.approx(21.0)
    assert tasks["income"]["last_status"] == "partial"
    text = render_stats(collect_stats(layout))
    assert "run2" in text and "raw.daily" in text and "tasks over all runs" in text
    json.dumps(collect_stats(layout), default=str)  # JSON-ready


def test_empty_cache(tmp_path: Path) -> None:
    from cache.layout import CacheLayout

    stats = collect_stats(CacheLayout(tmp_path / "nothing"))
    assert stats["datasets"] == [] and stats["runs"] == []
    assert "no datasets in the cache yet" in render_stats(stats)


@pytest.mark.postgres
def test_postgres_table_stats(synthetic: SyntheticCache, pg_url: str) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    with pgdb.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA raw")
        cur.execute("CREATE TABLE raw.daily (ts_code text, trade_date date)")
        cur.execute(
            "INSERT INTO raw.daily SELECT 'x', DATE '2024-01-01' + i FROM generate_series(1, 250) i"
        )
        cur.execute("ANALYZE raw.daily")
    found = table_stats(pg_url)
    assert [(t.schema, t.name, t.rows_estimate) for t in found] == [("raw", "daily", 250)]
    assert found[0].bytes > 0
    text = render_stats(collect_stats(synthetic.layout, pg_url))
    assert "raw.daily" in text and "~250" in text
