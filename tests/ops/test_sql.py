"""`ah sql` and `ah shell` on a small catalogue: formats, files, and bad input."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from cache.layout import CacheLayout
from cache.views import rebuild_catalog
from tests.cli_runner import ROOT, ah
from tests.sinks.helpers import codes, daily_frame, write_partition


def _cache(tmp_path: Path) -> Path:
    layout = CacheLayout(tmp_path / "data")
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", daily_frame(days, codes(3), 2))
    rebuild_catalog(layout)
    return tmp_path


def test_formats_and_files(tmp_path: Path) -> None:
    work = _cache(tmp_path)
    query = (
        "select ts_code, trade_date from raw.daily where trade_date = DATE '2024-01-03' order by 1"
    )
    table = ah("sql", query, cwd=work)
    assert table.returncode == 0 and "(3 rows)" in table.stdout and "2024-01-03" in table.stdout
    rows = json.loads(ah("sql", query, "--format", "json", cwd=work).stdout)
    assert [r["trade_date"] for r in rows] == ["2024-01-03"] * 3
    assert rows[0]["ts_code"] == sorted(codes(3))[0]
    csv = ah("sql", query, "--format", "csv", "--output", "out/x.csv", cwd=work)
    assert csv.returncode == 0 and "wrote 3 rows" in csv.stdout
    assert (work / "out" / "x.csv").read_text().splitlines()[0] == "ts_code,trade_date"
    parquet = ah("sql", query, "--format", "parquet", "--output", "x.parquet", cwd=work)
    assert parquet.returncode == 0, parquet.stderr
    assert pl.read_parquet(work / "x.parquet").schema["trade_date"] == pl.Date


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    work = _cache(tmp_path)
    for args in (
        ("sql", "select nosuch from raw.daily"),
        ("sql", "select 1", "--format", "xml"),
        ("sql", "select 1", "--format", "parquet"),
        ("sql", "create table raw.x as select 1"),  # read-only
        ("--cache-dir", "elsewhere", "sql", "select 1"),  # no catalogue there
    ):
        out = ah(*args, cwd=work)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: "), out.stderr
        assert "Traceback" not in out.stderr


def test_shell_runs_a_piped_script(tmp_path: Path) -> None:
    work = _cache(tmp_path)
    script = ".tables\n.mode csv\nselect count(*) as n\nfrom raw.daily;\nselect nosuch;\n.quit\n"
    out = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "shell"],
        cwd=work, input=script, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "raw.daily" in out.stdout and "n\n6\n" in out.stdout
    assert "error: query failed" in out.stdout
    assert out.returncode == 1  # a script with a failed statement
