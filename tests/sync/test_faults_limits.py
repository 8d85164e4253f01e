"""Acceptance 4 and the rest of the contract: faults, rate limits, the PostgreSQL state
backend, append mode, secrets."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cache.locks import LockHeld
from foundation.config import load_settings
from pipeline.sources.tushare import limits
from pipeline.state import show_state
from pipeline.sync.runner import SyncRequest, run_sync
from sinks.pg_state import PostgresLocks
from tests.sync.conftest import (
    START,
    TODAY,
    Served,
    cache_rows,
    copy_cache,
    settings_for,
    start_simulator,
    write_config,
)
from tests.sync.reference import truth_rows

SECRET = "sekret-token-0042"
SPEED = 10  # the simulator's clock runs ten times fast: its minute lasts 6 s


def outcomes(served: Served, kind: str) -> int:
    return sum(n for (_, outcome), n in served.sim.outcomes.items() if kind in outcome)


def test_with_5_percent_faults_nothing_is_missing_and_no_secret_leaks(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(fault_rate=0.05, slow_response_s=2.0, token=SECRET)
    settings = settings_for(tmp_path, served.url, token=SECRET, timeout_s=1.0)
    tasks = ("daily", "weekly", "adj_factor", "income", "stock_basic")
    report = run_sync(settings, SyncRequest(tasks=tasks, start=START, progress=False))
    assert report.exit_code == 0, report.render()
    assert sum(t.retries for t in report.tasks) > 0 and outcomes(served, "http_50") > 0
    for name in tasks:
        assert cache_rows(tmp_path / "data", name) == truth_rows(served.sim, name, START)
    written = [p for p in (tmp_path / "data").rglob("*") if p.suffix in (".json", ".log")]
    assert written and all(SECRET not in p.read_text() for p in written)


@pytest.mark.parametrize("configured", [10, 100])
def test_rate_limits_are_kept_or_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: int
) -> None:
    monkeypatch.setattr(limits, "WINDOW_S", 60 / SPEED)
    start = TODAY - dt.timedelta(days=21)  # 15 trade dates: adj_factor one call each
    with contextlib.ExitStack() as stack:
        served = start_simulator(stack, clock=lambda: time.time() * SPEED, limit_per_min=10)
        settings = settings_for(tmp_path, served.url, limits={"adj_factor": configured})
        request = SyncRequest(tasks=("adj_factor",), start=start, progress=False)
        began = time.monotonic()
        report = run_sync(settings, request)
        assert report.exit_code == 0, report.render()
        calls = served.sim.calls["adj_factor"]
        refused = outcomes(served, "rate_limited")
        if configured == 10:  # matches the server: paced, never refused
            assert calls >= 15 and refused == 0
            assert time.monotonic() - began >= (calls - 1) * 60 / SPEED / 10
        else:  # too high: refusals are waited out and not failures
            assert refused > 0 and report.tasks[0].rate_limited == refused
            assert report.tasks[0].status == "success" and not report.tasks[0].errors
        expected = {r for r in truth_rows(served.sim, "adj_factor", start)}
        assert cache_rows(tmp_path / "data", "adj_factor") == expected


@pytest.mark.postgres
def test_state_and_locks_in_postgresql(
    tmp_path: Path, serve: Callable[..., Served], pg_url: str
) -> None:
    served = serve()
    extra = f'[state]\nbackend = "postgres"\n[database]\nurl = "{pg_url}"\n'
    settings = load_settings(write_config(tmp_path, served.url, extra=extra), env={})
    request = SyncRequest(tasks=("daily",), start=START, progress=False)
    assert run_sync(settings, request).exit_code == 0
    assert not (tmp_path / "data/state/tasks").exists()  # the state lives in the database
    assert "status: success" in show_state(settings, "daily")
    served.sim.advance(1)
    served.sim.reset_calls()
    assert run_sync(settings, request).exit_code == 0
    assert served.sim.calls["daily"] == 2  # the probe and the refresh window: state was read
    holder = PostgresLocks(pg_url)
    holder.acquire(["daily"])
    try:
        with pytest.raises(LockHeld, match="task daily is being synced by pid"):
            run_sync(settings, request)
    finally:
        holder.release()


def test_append_mode_adds_new_units_and_refuses_stored_keys(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    root = copy_cache(synced, tmp_path)
    served.sim.advance(1)
    settings = settings_for(tmp_path, served.url)
    append = SyncRequest(tasks=("daily",), start=START, mode="append", progress=False)
    served.sim.reset_calls()
    report = run_sync(settings, append)
    assert report.exit_code == 0 and report.tasks[0].units_total == 1  # no refresh window
    assert cache_rows(root, "daily") == truth_rows(served.sim, "daily", START)
    before = {p: p.stat().st_mtime_ns for p in (root / "raw/daily").rglob("*.parquet")}
    again = SyncRequest(tasks=("daily",), start=START, mode="append", full=True, progress=False)
    report = run_sync(settings, again)
    assert report.exit_code == 1 and report.tasks[0].status == "failed"
    assert "already stored" in report.tasks[0].reason
    assert {p: p.stat().st_mtime_ns for p in (root / "raw/daily").rglob("*.parquet")} == before
    saved = json.loads(Path(report.path or "").read_text())
    assert saved["tasks"][0]["status"] == "failed" and saved["exit_code"] == 1
