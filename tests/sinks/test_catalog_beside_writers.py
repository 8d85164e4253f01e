"""A catalogue rebuild beside a writer that replaces and removes files (a sync compacting
a closed year's monthly files, a PIT build folding its deltas) never fails on a file
that moved meanwhile, and its views read what the files hold once the writer is done."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from cache.layout import CacheLayout
from cache.views import open_catalog, rebuild_catalog
from tests.sinks.helpers import codes, daily_frame, write_partition

STEADY_FILES = 120  # files the writer leaves alone: what makes binding a view take a while
ROUNDS = 25  # closed years the writer compacts
MONTHS = 12
PAUSE_S = 0.03  # between two compactions


def _compacting_writer(layout: CacheLayout, done: threading.Event) -> None:
    """Year after year: twelve monthly files, then one year file and the monthly files
    removed one by one, as `close_years` does."""
    try:
        for year in range(1990, 1990 + ROUNDS):
            days = [dt.date(year, month, 3) for month in range(1, MONTHS + 1)]
            months = [
                write_partition(
                    layout, "raw", "daily", f"{year}/{year}-{d.month:02d}.parquet",
                    daily_frame([d], codes(4), d.month),
                )
                for d in days
            ]  # fmt: skip
            time.sleep(0.01)
            write_partition(
                layout, "raw", "daily", f"{year}.parquet", daily_frame(days, codes(4), year)
            )
            for path in months:
                path.unlink()
                time.sleep(0.002)
            time.sleep(PAUSE_S)
    finally:
        done.set()


def test_a_rebuild_beside_a_writer_removing_files_neither_fails_nor_misses_rows(
    tmp_path: Path,
) -> None:
    layout = CacheLayout(tmp_path / "cache")
    for i in range(STEADY_FILES):
        day = dt.date(2020, 1, 1) + dt.timedelta(days=i)
        write_partition(
            layout, "raw", "daily", f"steady/{i:03d}.parquet", daily_frame([day], codes(4), i)
        )
    done = threading.Event()
    writer = threading.Thread(target=_compacting_writer, args=(layout, done))
    writer.start()
    rebuilds = 0
    try:
        while not done.is_set() or rebuilds == 0:
            rebuild_catalog(layout)
            rebuilds += 1
    finally:
        writer.join()
    assert rebuilds > 1
    rebuild_catalog(layout)
    with open_catalog(layout.duckdb_path) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT trade_date) FROM raw.daily").fetchall()
    assert rows == [(4 * (STEADY_FILES + ROUNDS * MONTHS), STEADY_FILES + ROUNDS * MONTHS)]
