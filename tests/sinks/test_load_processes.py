"""Loaders as real processes: kill -9 mid-transaction, two loaders at once, `ah load`."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cache.layout import CacheLayout
from pipeline.load import load_datasets
from sinks.postgres import PAUSE_ENV
from tests.sinks.helpers import (
    assert_same_rows,
    checksum,
    codes,
    factor_frame,
    fetch,
    file_hashes,
    table_frame,
    week_ends,
    write_partition,
)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
KEY = ("calc_date", "ts_code")
LOADER = """
import json, sys
from cache.layout import CacheLayout
from pipeline.load import load_datasets
if sys.argv[3] == "on-cue":
    sys.stdin.readline()  # imports done; load when the test says so
result = load_datasets(CacheLayout(sys.argv[1]), sys.argv[2])
print(json.dumps({t.table: {"inserted": t.inserted, "lock_waits": t.lock_waits}
                  for t in result.tables}))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "DATABASE"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _start_loader(
    root: Path, url: str, pause_s: float | None, on_cue: bool = False
) -> subprocess.Popen[str]:
    env = _clean_env(**({PAUSE_ENV: str(pause_s)} if pause_s else {}))
    return subprocess.Popen(
        [sys.executable, "-c", LOADER, str(root), url, "on-cue" if on_cue else "now"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_in_transaction(proc: subprocess.Popen[str]) -> str:
    """Block until the loader says it is paused inside a partition's transaction."""
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        assert line, f"loader ended before pausing: {proc.communicate()}"
        if line.startswith(PAUSE_ENV):
            return line


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


@pytest.mark.timeout(120)
def test_kill_9_mid_transaction_leaves_tables_as_before(tmp_path: Path, pg_url: str) -> None:
    layout = CacheLayout(tmp_path / "cache")
    stocks = codes(25)
    v1 = {
        "2020.parquet": factor_frame(week_ends(dt.date(2020, 1, 3), 5), stocks, 1),
        "2021.parquet": factor_frame(week_ends(dt.date(2021, 1, 1), 5), stocks, 2),
    }
    for name, frame in v1.items():
        write_partition(layout, "factors", "p", name, frame)
    load_datasets(layout, pg_url)
    before = checksum(pg_url, "factors.p", "calc_date, ts_code")
    state_before = fetch(pg_url, "SELECT * FROM ops.load_state ORDER BY partition")

    v2 = {
        name: frame.with_row_index("i")
        .with_columns(p_score=pl.when(pl.col("i") % 10 == 0).then(-5.0).otherwise("p_score"))
        .filter(pl.col("i") % 7 != 0)
        .drop("i")
        for name, frame in v1.items()
    }
    for name, frame in v2.items():
        write_partition(layout, "factors", "p", name, frame)
    loader = _start_loader(layout.root, pg_url, pause_s=60)
    assert "2020.parquet" in _wait_in_transaction(loader)
    loader.kill()  # SIGKILL while the transaction is open, after its writes
    loader.wait(timeout=30)

    assert checksum(pg_url, "factors.p", "calc_date, ts_code") == before
    assert fetch(pg_url, "SELECT * FROM ops.load_state ORDER BY partition") == state_before
    rerun = load_datasets(layout, pg_url)
    assert rerun.tables[0].loaded == 2
    expected = _rows(v2["2020.parquet"]) + _rows(v2["2021.parquet"])
    assert_same_rows(_rows(table_frame(pg_url, "factors.p")), expected, KEY)


@pytest.mark.timeout(120)
def test_two_loaders_of_one_table_take_turns(tmp_path: Path, pg_url: str) -> None:
    stocks = codes(20)
    first = CacheLayout(tmp_path / "first")
    second = CacheLayout(tmp_path / "second")
    frame_2020 = factor_frame(week_ends(dt.date(2020, 1, 3), 4), stocks, 1)
    frame_2021 = factor_frame(week_ends(dt.date(2021, 1, 1), 4), stocks, 2)
    write_partition(first, "factors", "p", "2020.parquet", frame_2020)
    write_partition(second, "factors", "p", "2021.parquet", frame_2021)

    waiter = _start_loader(second.root, pg_url, pause_s=None, on_cue=True)
    holder = _start_loader(first.root, pg_url, pause_s=5)
    _wait_in_transaction(holder)
    assert waiter.stdin is not None
    waiter.stdin.write("go\n")
    waiter.stdin.flush()
    waited = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not waited:
        rows = fetch(
            pg_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        waited = rows[0][0] == 1
        time.sleep(0.1)
    out_holder, err_holder = holder.communicate(timeout=60)
    out_waiter, err_waiter = waiter.communicate(timeout=60)
    assert holder.returncode == 0, err_holder
    assert waiter.returncode == 0, err_waiter
    assert waited, "the second loader never waited on the table's advisory lock"
    assert json.loads(out_holder)["factors.p"] == {"inserted": 80, "lock_waits": 0}
    assert json.loads(out_waiter)["factors.p"] == {"inserted": 80, "lock_waits": 1}
    expected = _rows(frame_2020) + _rows(frame_2021)
    assert_same_rows(_rows(table_frame(pg_url, "factors.p")), expected, KEY)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ah(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ah_load_with_the_database_down(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame([dt.date(2020, 1, 3)], ["1"], 1)
    )
    before = file_hashes(layout.root)
    port = _closed_port()
    url = f"postgresql://alpha:hush-hush-pw@127.0.0.1:{port}/research"
    out = _ah("--cache-dir", str(layout.root), "load", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"127.0.0.1:{port}/research" in lines[0] and "refused" in lines[0]
    assert "hush-hush-pw" not in out.stderr
    assert file_hashes(layout.root) == before


def test_ah_load_into_postgres_and_without_a_database(tmp_path: Path, pg_url: str) -> None:
    layout = CacheLayout(tmp_path / "cache")
    frame = factor_frame([dt.date(2020, 1, 3)], codes(3), 1)
    write_partition(layout, "factors", "p", "2020.parquet", frame)
    out = _ah("--cache-dir", str(layout.root), "load", env={"DATABASE_URL": pg_url}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "factors.p: 1 partitions (1 loaded" in out.stdout and "+3 new" in out.stdout
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in out.stdout + out.stderr
    assert fetch(pg_url, "SELECT count(*) FROM factors.p") == [(3,)]

    out = _ah("--cache-dir", str(layout.root), "load", env={}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(layout.duckdb_path) in out.stdout
    assert layout.duckdb_path.exists()
