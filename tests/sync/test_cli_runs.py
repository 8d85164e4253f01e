"""Acceptance 5, 6 and 7 and the other commands, as a user runs them: `ah` subprocesses
against the simulator over loopback HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from cache.views import open_catalog
from pipeline.sync.runner import SyncRequest, run_sync
from pipeline.sync.tasks import TASKS
from tests.cli_runner import file_times, user_environment
from tests.sync.conftest import (
    ROOT,
    START,
    Served,
    ah,
    cache_rows,
    copy_cache,
    settings_for,
    write_config,
)
from tests.sync.reference import DATASETS, truth_rows

SECRET = "sekret-token-0042"


def start_ah(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=cwd,
        env=user_environment(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_holder(lock: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip():
            return json.loads(lock.read_text())
        time.sleep(0.05)
    raise AssertionError("the first run never took its lock")


def test_a_second_sync_of_a_running_task_refuses_at_once_until_the_holder_dies(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    # the holder is paced to 6 calls a minute on weekly, so it runs for a while
    slow = write_config(tmp_path / "slow", served.url, limits={"weekly": 6})
    fast = write_config(tmp_path / "fast", served.url)
    cache = ["--cache-dir", str(tmp_path / "data")]
    holder = start_ah("--config", str(slow), *cache, "sync", "weekly", cwd=tmp_path)
    try:
        info = wait_for_holder(tmp_path / "data/state/locks/weekly.lock")
        assert info["pid"] == holder.pid
        started = time.monotonic()
        second = ah("--config", str(fast), *cache, "sync", "weekly", "daily", cwd=tmp_path)
        assert time.monotonic() - started < 15
        assert second.returncode == 4
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "weekly" in lines[0]
        assert not (tmp_path / "data/raw/daily").exists()  # refused before any work
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    started = time.monotonic()
    third = ah("--config", str(fast), *cache, "sync", "weekly", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "weekly" in third.stdout and "success" in third.stdout


def test_analysts_read_the_catalogue_during_and_after_a_run(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    root = copy_cache(synced, tmp_path)
    config = write_config(tmp_path, served.url)
    rows = len(cache_rows(root, "daily"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    # a full re-fetch rewrites every partition of daily while we read it
    run = start_ah("--config", str(config), "sync", "daily", "--full", cwd=tmp_path)
    counts = []
    while run.poll() is None:
        with open_catalog(root / "alphahome.duckdb") as con:
            counts.append(con.execute("select count(*) from raw.daily").fetchone()[0])
        time.sleep(0.02)
    assert run.returncode == 0, run.stderr.read() if run.stderr else ""
    assert len(counts) > 3 and set(counts) == {rows}  # never a row missing or twice
    with open_catalog(root / "alphahome.duckdb") as con:
        assert con.execute("select count(*) from raw.daily").fetchone() == (rows,)
    for spec in TASKS:
        frame = pl.scan_parquet(str(root / "raw" / spec.name / "**" / "*.parquet")).collect()
        asked_by = ["type"] if DATASETS[spec.name].types else []  # stored, not returned
        expected = [*spec.fields, *asked_by, "_fetched_at"]
        assert frame.columns == expected, spec.name


def test_a_bad_token_is_one_line_and_writes_nothing(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    config = write_config(tmp_path, served.url, token=SECRET)
    out = ah("--config", str(config), "sync", cwd=tmp_path)
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "token" in lines[0] and SECRET not in out.stderr + out.stdout
    data = tmp_path / "data"
    assert not any((data / sub).exists() for sub in ("raw", "state", "reports"))
    assert not (data / "alphahome.duckdb").exists()


def test_an_api_above_the_points_is_skipped_and_the_rate_decides_the_exit(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(points=2000, stocks=12)
    # configured honestly: the planner knows limit_list_d needs 5000 points
    honest = settings_for(tmp_path / "a", served.url, points=2000)
    tasks = ("daily", "weekly", "monthly", "adj_factor", "limit_list_d")
    report = run_sync(honest, SyncRequest(tasks=tasks, progress=False))
    assert report.exit_code == 0  # 4 of 5 = 80%, the alert level
    status = {t.task: (t.status, t.reason) for t in report.tasks}
    assert status["limit_list_d"] == ("skipped", "needs 5000 points, the account has 2000")
    assert all(s == "success" for name, (s, _) in status.items() if name != "limit_list_d")
    # configured too high: the server refuses and says why; 1 of 2 is under 80%
    wrong = settings_for(tmp_path / "b", served.url, points=5000)
    report = run_sync(wrong, SyncRequest(tasks=("daily", "limit_list_d"), progress=False))
    assert report.exit_code == 1
    skipped = {t.task: t for t in report.tasks}["limit_list_d"]
    assert skipped.status == "skipped" and "limit_list_d" in skipped.reason
    # report datasets fall back from the refused vip variant to one call per stock
    served.sim.reset_calls()
    report = run_sync(wrong, SyncRequest(tasks=("income",), start=START, progress=False))
    assert report.exit_code == 0 and served.sim.calls["income"] == 12
    assert cache_rows(tmp_path / "b/data", "income") == truth_rows(served.sim, "income", START)


def test_dry_run_prints_the_plan_and_touches_nothing(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    root = copy_cache(synced, tmp_path)
    served.sim.advance(3)
    config = write_config(tmp_path, served.url)

    def files() -> dict[Path, int]:  # the CLI's own log aside
        return {
            p: p.stat().st_mtime_ns
            for p in root.rglob("*")
            if p.is_file() and "logs" not in p.parts
        }

    before = files()
    out = ah("--config", str(config), "sync", "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "daily" in out.stdout
        and "calls planned" in out.stdout
        and "at the configured" in out.stdout
    )
    assert files() == before
    planning = {"trade_cal", "daily", "stock_basic", "index_basic", "index_classify"}
    assert set(served.sim.calls) <= planning  # only what planning needs was asked


def test_the_cache_refuses_to_mix_sources_and_simulated_data_needs_asking(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    copy_cache(synced, tmp_path)
    config = write_config(tmp_path, served.url)
    out = ah("--config", str(config), "sync", "daily", "--source", "sim", cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "refusing to mix" in out.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    out = ah("sync", cwd=bare)
    assert out.returncode == 2 and "--source sim" in out.stderr
    assert not (bare / "data" / "raw").exists()


def test_a_source_whose_today_went_back_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "alphahome.toml").write_text(
        "[source]\nkind = 'sim'\n[simulator]\nstocks = 8\nstart = 2024-01-02\n"
    )
    later = {"AH_SIMULATOR_TODAY": "2024-07-01"}
    first = ah("sync", "daily", "stock_basic", cwd=tmp_path, env=later)
    assert first.returncode == 0, first.stderr
    before = file_times(tmp_path / "data")

    earlier = {"AH_SIMULATOR_TODAY": "2024-06-20"}
    out = ah("sync", "daily", "stock_basic", cwd=tmp_path, env=earlier)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "today 2024-06-20 is before the cache's as-of date 2024-07-01" in line
    assert "AH_SIMULATOR_TODAY" in line
    assert file_times(tmp_path / "data") == before
    again = ah("sync", "daily", "stock_basic", cwd=tmp_path, env=later)
    assert again.returncode == 0, again.stderr


def test_tasks_and_state_commands(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    root = copy_cache(synced, tmp_path)
    config = write_config(tmp_path, served.url)
    out = ah("--config", str(config), "tasks", cwd=tmp_path)
    assert out.returncode == 0
    line = next(x for x in out.stdout.splitlines() if x.startswith("daily "))
    assert str(len(cache_rows(root, "daily"))) in line.split() and "success" in line
    assert "2023-01-03" in line  # first trade date of the history
    listed = ah("--config", str(config), "tasks", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    daily = next(t for t in json.loads(listed.stdout) if t["task"] == "daily")
    assert daily["rows"] == len(cache_rows(root, "daily")) and daily["status"] == "success"
    assert daily["first"] == "2023-01-03" and daily["last"] >= daily["first"]
    assert {t["task"] for t in json.loads(listed.stdout)} == {t.name for t in TASKS}
    out = ah("--config", str(config), "state", "show", "daily", cwd=tmp_path)
    assert out.returncode == 0 and "status: success" in out.stdout
    shown = ah("--config", str(config), "state", "show", "daily", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    [state] = json.loads(shown.stdout)
    assert state["task"] == "daily" and state["status"] == "success"
    assert state["units_done"] == state["units_total"] > 0
    out = ah("--config", str(config), "state", "reset", "daily", cwd=tmp_path)
    assert out.returncode == 0 and "reset" in out.stdout
    served.sim.reset_calls()
    out = ah("--config", str(config), "sync", "daily", "--start", START.isoformat(), cwd=tmp_path)
    assert out.returncode == 0
    assert served.sim.calls["daily"] >= 3  # every unit planned again: several ranged calls
    out = ah("--config", str(config), "state", "show", "nosuchtask", cwd=tmp_path)
    assert out.returncode == 2 and "unknown task" in out.stderr
