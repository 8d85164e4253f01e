"""The harness's own machinery: child processes and their memory, cache clones, the
binary COPY encoder, the partition rewrite, targets and the report."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from bench.__main__ import parse_stages
from bench.child import ChildFailed, in_child, tree_cpu_s
from bench.figures import Figure, StageResult, Target
from bench.report import render_markdown, render_table
from bench.runner import STAGE_NAMES, assemble
from bench.samecache import differences
from bench.scenarios import scenario
from bench.stages.factor_reference import _agreement, _stale_before, _year_ago
from bench.stages.load import changed_partitions, changed_rows
from bench.stages.pg_copy import copy_file, write_copy_file
from bench.stages.sync import _delta
from bench.workdir import clone_cache

MB = 1024 * 1024


# ------------------------------------------------------------------ work run in children


def hold_memory(megabytes: int) -> int:
    """Touch `megabytes` of memory and return how many bytes were held."""
    block = bytearray(megabytes * MB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def hold_memory_in_a_worker(megabytes: int) -> int:
    """Stay small, but have a pool worker hold `megabytes` for a while."""
    import time

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        held = pool.submit(hold_memory_then_wait, megabytes).result()
    time.sleep(0.05)  # the worker is gone: only the sampler could have seen its memory
    return held


def hold_memory_then_wait(megabytes: int) -> int:
    """Hold `megabytes` for half a second (long enough to be sampled)."""
    import time

    block = bytearray(megabytes * MB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(0.5)
    return len(block)


def fail(message: str) -> None:
    """Raise, to see the child's traceback come back."""
    raise ValueError(message)


def test_in_child_returns_the_value_and_its_peak_memory() -> None:
    found = in_child(hold_memory, 300)
    assert found.value == 300 * MB
    assert found.peak_rss_mb >= 300
    assert found.peak_rss_mb < 300 + 400  # an interpreter, not the test process's size


def test_in_child_counts_the_memory_of_its_pool_workers() -> None:
    found = in_child(hold_memory_in_a_worker, 300)
    assert found.value == 300 * MB
    assert found.peak_rss_mb >= 300


def test_in_child_raises_with_the_childs_traceback() -> None:
    with pytest.raises(ChildFailed, match="ValueError: no such luck"):
        in_child(fail, "no such luck")


SPIN = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_tree_cpu_counts_live_and_reaped_descendants() -> None:
    me = os.getpid()
    before = tree_cpu_s(me)
    subprocess.run([sys.executable, "-c", SPIN], check=True)  # reaped: in our cutime
    reaped = tree_cpu_s(me)
    assert reaped - before >= 0.25
    live = subprocess.Popen(
        [sys.executable, "-c", SPIN + "print('spun', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert live.stdout is not None and live.stdin is not None
    assert live.stdout.readline() == "spun\n"
    assert tree_cpu_s(me) - reaped >= 0.25  # still running: its own times
    live.stdin.close()
    live.wait()


# ------------------------------------------------------------------ caches


def test_clone_links_parquet_files_and_copies_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "cache"
    (source / "raw" / "daily" / "2024").mkdir(parents=True)
    (source / "state").mkdir()
    data = source / "raw" / "daily" / "2024" / "2024-06.parquet"
    pl.DataFrame({"ts_code": ["A"], "close": [1.0]}).write_parquet(data)
    (source / "state" / "daily.lock").write_text("pid 1")

    clone = clone_cache(source, tmp_path / "clone")

    linked = clone / "raw" / "daily" / "2024" / "2024-06.parquet"
    assert linked.stat().st_ino == data.stat().st_ino
    copied = clone / "state" / "daily.lock"
    assert copied.stat().st_ino != (source / "state" / "daily.lock").stat().st_ino
    copied.write_text("pid 2")
    assert (source / "state" / "daily.lock").read_text() == "pid 1"


def _month(tmp: Path, name: str, rows: int) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "ts_code": [f"{i:06d}.SZ" for i in range(rows)],
            "trade_date": [dt.date(2024, 6, 3)] * rows,
            "close": [float(i) for i in range(rows)],
            "vol": [float(2 * i) for i in range(rows)],
        }
    ).write_parquet(path)
    return path


def test_changed_partitions_finds_rewritten_and_new_files(tmp_path: Path) -> None:
    before = tmp_path / "before"
    _month(before, "2024/2024-05.parquet", 3)
    _month(before, "2024/2024-06.parquet", 3)
    after = clone_cache(before, tmp_path / "after")
    path = after / "2024" / "2024-06.parquet"
    path.unlink()
    _month(after, "2024/2024-06.parquet", 4)
    _month(after, "2024/2024-07.parquet", 2)

    assert changed_partitions(before, after) == ["2024/2024-06.parquet", "2024/2024-07.parquet"]


def test_changed_rows_changes_every_tenth_row_and_no_key(tmp_path: Path) -> None:
    path = _month(tmp_path, "2024-06.parquet", 95)
    original = pl.read_parquet(path)
    linked = tmp_path / "link.parquet"
    os.link(path, linked)

    assert changed_rows(path, ("trade_date", "ts_code")) == 10

    rewritten = pl.read_parquet(path)
    assert rewritten.select("ts_code", "trade_date").equals(
        original.select("ts_code", "trade_date")
    )
    differs = [i for i in range(95) if rewritten.row(i) != original.row(i)]
    assert differs == list(range(0, 95, 10))
    assert rewritten["close"][10] == pytest.approx(original["close"][10] * 1.01 + 0.01)
    assert pl.read_parquet(linked).equals(original)  # replaced, never written through


# ------------------------------------------------------------------ binary COPY


@pytest.mark.postgres
def test_binary_copy_stores_every_type_and_null(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    utc = dt.UTC
    rows = pa.table(
        {
            "s": pa.array(["a", None, "héllo", "", "000001.SZ", "x" * 300]),
            "d": pa.array(
                [dt.date(2024, 1, 2), dt.date(1999, 12, 31), None, dt.date(2000, 1, 1),
                 dt.date(1970, 1, 1), dt.date(2038, 1, 19)]
            ),
            "f": pa.array([1.5, None, -0.0, 1e300, -2.25, 3.0]),
            "i": pa.array([1, -2, None, 2**62, 0, -(2**40)], pa.int64()),
            "b": pa.array([True, False, None, True, False, True]),
            "ts": pa.array(
                [dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=utc), None,
                 dt.datetime(1990, 1, 1, tzinfo=utc), dt.datetime(2000, 1, 1, tzinfo=utc),
                 dt.datetime(2030, 5, 5, tzinfo=utc), dt.datetime(1969, 12, 31, tzinfo=utc)],
                pa.timestamp("us", "UTC"),
            ),
        }
    )  # fmt: skip
    sliced = pa.concat_tables([rows.slice(0, 2), rows.slice(2)])  # chunks with offsets
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE t (n serial, s text, d date, f double precision, i bigint, "
            "b boolean, ts timestamptz)"
        )
        stream = tmp_path / "rows.copy"
        assert write_copy_file([sliced.slice(0, 4), sliced.slice(4)], stream) == 6
        copy_file(cur, "t", rows.column_names, stream)
        cur.execute("SELECT s, d, f, i, b, ts FROM t ORDER BY n")
        stored = cur.fetchall()
    assert [list(r) for r in stored] == [list(r.values()) for r in rows.to_pylist()]


# ------------------------------------------------------------------ small pure pieces


def test_stale_cutoff_follows_the_design_example() -> None:
    assert _stale_before(dt.date(2024, 4, 15)) == dt.date(2023, 6, 30)
    assert _stale_before(dt.date(2024, 11, 1)) == dt.date(2024, 1, 31)


def test_year_ago_takes_the_nearest_date_and_the_earlier_on_a_tie() -> None:
    t = dt.date(2024, 6, 28)
    target = t - dt.timedelta(days=365)
    dates = [target - dt.timedelta(days=3), target + dt.timedelta(days=3), t]
    assert _year_ago(dates, t) == target - dt.timedelta(days=3)
    assert _year_ago([target + dt.timedelta(days=31), t], t) is None


def test_server_count_delta_counts_only_this_run() -> None:
    before = {"calls": {"daily": 2}, "outcomes": {"daily": {"ok": 2}}}
    after = {
        "calls": {"daily": 5, "adj_factor": 7},
        "outcomes": {"daily": {"ok": 5}, "adj_factor": {"ok": 6, "rate_limited": 1}},
    }
    assert _delta(after, before) == ({"daily": 3, "adj_factor": 7}, 1)


def test_targets_compare_at_their_bounds() -> None:
    assert Target(">=", 0.95).holds(0.95) and not Target(">=", 0.95).holds(0.949)
    assert Target("<", 50).holds(49.9) and not Target("<", 50).holds(50)
    assert Figure("x", 1.0, "s").status == "info"
    assert Figure("x", 0.9, "", Target("<=", 0)).status == "MISS"


def test_fingerprint_depends_on_the_market_only() -> None:
    small = scenario("small")
    assert small.fingerprint() == scenario("small").fingerprint()
    assert small.fingerprint() != scenario("full").fingerprint()
    assert dataclasses.replace(small, reps=9).fingerprint() == small.fingerprint()
    assert dataclasses.replace(small, seed=8).fingerprint() != small.fingerprint()


def test_report_shows_figures_targets_and_errors() -> None:
    good = StageResult("simulator", "the simulator")
    good.figures = [Figure("daily", 12.5, "ms", Target("<", 50)), Figure("rows", 300, "")]
    bad = StageResult("sync", "the sync", error="Traceback …\nRuntimeError: server down")
    doc = assemble(scenario("tiny"), 1, {"simulator": good, "sync": bad}, None, False, 3.0)

    table = render_table(doc)
    assert "simulator  daily" in table and "12.50 ms" in table and "< 50 ms" in table
    assert "PASS" in table and "RuntimeError: server down" in table
    assert doc["summary"] == {"pass": 1, "miss": 0, "errors": 1}
    markdown = render_markdown(doc)
    assert "| simulator | daily | 12.50 ms | < 50 ms | PASS |" in markdown
    assert "RuntimeError: server down" in markdown


def test_stages_are_named_by_list_or_commas_in_pipeline_order() -> None:
    assert parse_stages(None) == list(STAGE_NAMES)
    assert parse_stages(["pit,load", "query"]) == ["pit", "load", "query"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown stage"):
        parse_stages(["pit", "loads"])


def test_agreement_counts_missing_rows_on_either_side_as_disagreeing() -> None:
    import pandas as pd

    stored = pd.DataFrame({"ts_code": ["a", "b", "c"], "p_score": [1.0, None, 3.0]})
    mine = pd.DataFrame({"ts_code": ["a", "b", "d"], "p_score": [1.0000004, None, 3.0]})
    assert _agreement(mine, stored, "p_score") == 0.5
    assert _agreement(stored, stored, "p_score") == 1.0


# ------------------------------------------------------------------ incremental = full


def _write(cache: Path, dataset: str, files: dict[str, pl.DataFrame]) -> None:
    folder = cache / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in files.items():
        frame.write_parquet(folder / name)


def test_same_cache_compares_rows_as_multisets_without_the_fetch_time(tmp_path: Path) -> None:
    fetched = dt.datetime(2024, 8, 22, tzinfo=dt.UTC)
    rows = pl.DataFrame(
        {"ts_code": ["A", "B", "B"], "v": [1.0, None, 2.5], "_fetched_at": [fetched] * 3}
    )
    left, right = tmp_path / "left", tmp_path / "right"
    _write(left, "raw/daily", {"2023.parquet": rows[:2], "2024.parquet": rows[2:]})
    later = rows.with_columns(pl.lit(fetched + dt.timedelta(days=1)).alias("_fetched_at"))
    _write(
        right, "raw/daily", {"2024.parquet": later.reverse().select("v", "_fetched_at", "ts_code")}
    )
    _write(left, "pit/balance", {"part-0.parquet": rows.drop("_fetched_at")})
    _write(right, "pit/balance", {"part-0.parquet": rows.drop("_fetched_at")})
    # other files, order, column order and fetch time aside: the same
    assert differences(left, right) == (2, [])

    doubled = pl.concat([rows[:1], rows]).drop("_fetched_at")
    _write(right, "pit/balance", {"part-0.parquet": doubled})  # one row twice
    _write(right, "factors/p", {"2024.parquet": rows})  # on the right only
    compared, found = differences(left, right)
    assert compared == 3
    assert [d.text() for d in found] == [
        "pit/balance: 0 rows only left, 1 only right",
        "factors/p: only in the right cache",
    ]
    changed = rows.with_columns(pl.when(pl.col("v") == 2.5).then(2.6).otherwise("v").alias("v"))
    _write(left, "raw/daily", {"2023.parquet": changed[:2], "2024.parquet": changed[2:]})
    found = differences(left, right)[1]
    assert found[0].text() == "raw/daily: 1 rows only left, 1 only right"
