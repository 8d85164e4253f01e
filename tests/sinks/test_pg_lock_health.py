"""`ah health` with the state in PostgreSQL sees the advisory locks held there."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from cache.layout import CacheLayout
from pipeline.ops.health import check_locks
from sinks.pg_state import PostgresLocks

pytestmark = pytest.mark.postgres


def test_health_names_the_holders_of_advisory_locks(tmp_path: Path, pg_url: str) -> None:
    layout = CacheLayout(tmp_path / "data")
    now = dt.datetime.now(dt.UTC)
    assert check_locks(layout, 3600, now, pg_url).detail == "no task lock held"
    locks = PostgresLocks(pg_url)
    locks.acquire(["daily", "stage.pit"])
    try:
        held = check_locks(layout, 3600, now, pg_url)
        other = PostgresLocks(pg_url)  # a lock taken and given back is not listed
        other.check(["income"])
        other.release()
        again = check_locks(layout, 3600, now, pg_url)
    finally:
        locks.release()
    assert held.status == "ok"
    assert {h["task"] for h in held.data["held"]} == {"daily", "stage.pit"}
    assert f"daily held by pid {os.getpid()} on " in held.detail
    assert again.data == held.data
    assert check_locks(layout, 3600, now, pg_url).detail == "no task lock held"
    late = check_locks(layout, 0, now + dt.timedelta(seconds=5), pg_url)
    assert late.status == "ok"  # released: nothing to warn about
