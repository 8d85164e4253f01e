"""The catalogue file opens in an older DuckDB (1.1) after the cache folder was moved."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cache.layout import CacheLayout
from cache.views import open_catalog, rebuild_catalog
from tests.sinks.helpers import codes, daily_frame, factor_frame, write_partition

REPO = Path(__file__).resolve().parents[2]
OLD_DUCKDB = "duckdb==1.1.3"

READER = """
import sys, duckdb
assert duckdb.__version__.startswith("1.1"), duckdb.__version__
db = sys.argv[1]
with duckdb.connect(db, read_only=True) as con:  # from the cache folder (the cwd)
    print(con.execute("select count(*) from factors.p").fetchone()[0])
with duckdb.connect(db, read_only=True) as con:  # from anywhere, with the search path
    con.execute("set file_search_path = '%s'" % sys.argv[2])
    print(con.execute("select count(*), min(trade_date) from raw.daily").fetchone())
    print(con.execute("select count(*) from pit.daily_qfq(DATE '2024-01-02')").fetchone()[0])
"""


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is neither on the PATH nor in .tools/bin (make install puts it there)")
    return found


@pytest.fixture(scope="session")
def old_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """duckdb 1.1 from PyPI installed into a folder of its own, once per session."""
    target = tmp_path_factory.mktemp("duckdb-1.1")
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", sys.executable, "--target",
         str(target), OLD_DUCKDB],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return target


def test_an_older_duckdb_reads_the_views_of_a_moved_cache(tmp_path: Path, old_duckdb: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame([dt.date(2020, 1, 3)], codes(5), 1)
    )
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    bars = daily_frame(days, codes(3), 2)
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", bars)
    factors = bars.select("ts_code", "trade_date", "_fetched_at").with_columns(adj_factor=2.0)
    write_partition(layout, "raw", "adj_factor", "2024/2024-01.parquet", factors)
    rebuild_catalog(layout)
    moved = tmp_path / "elsewhere" / "cache"
    moved.parent.mkdir()
    shutil.move(layout.root, moved)
    env = {**os.environ, "PYTHONPATH": str(old_duckdb)}
    out = subprocess.run(
        [sys.executable, "-c", READER, str(moved / "alphahome.duckdb"), str(moved)],
        cwd=moved,  # the first reader relies on it
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["5", "(6, datetime.date(2024, 1, 2))", "3"]
    with open_catalog(moved / "alphahome.duckdb") as con:  # from any working directory
        assert con.execute("select count(*) from raw.daily").fetchone() == (6,)
