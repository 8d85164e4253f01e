"""Acceptance 3: `kill -9` at any point of a sync leaves a readable cache, nothing of the
killed run lives on or writes after it, and the re-run ends with the cache a clean run
makes, fetching only what is missing."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from cache.views import open_catalog
from pipeline.sync.spill import read_spill
from tests.cli_runner import ah_killed
from tests.sync.conftest import START, Served, ah, cache_rows, write_config
from tests.sync.reference import truth_rows

TASKS = ("daily", "adj_factor", "income", "weekly")
ARGS = ("sync", *TASKS, "--start", START.isoformat())


def assert_readable(root: Path) -> None:
    """Every dataset reads through Polars (the contract's glob) and the DuckDB views."""
    for name in TASKS:
        folder = root / "raw" / name
        if folder.is_dir() and any(folder.rglob("*.parquet")):
            pl.scan_parquet(str(folder / "**" / "*.parquet")).select(pl.len()).collect()
    if (root / "alphahome.duckdb").exists():
        with open_catalog(root / "alphahome.duckdb") as con:
            views = con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
            for (view,) in views:
                con.execute(f"select count(*) from raw.{view}").fetchone()


def last_report(root: Path) -> dict:
    return json.loads(sorted((root / "reports").glob("sync-*.json"))[-1].read_text())


@pytest.mark.parametrize(
    "point",
    [
        "partition:5",  # between the partition files of one commit ("compaction")
        "state:4",  # after a commit, before the next
        "spill:9",  # a fetched page spilled to disk, not merged yet
        "compact:1",  # a closed year's file in place, its monthly files not yet deleted
        pytest.param("merge:2", marks=pytest.mark.slow),  # merged, its units not recorded
        pytest.param("unspill:3", marks=pytest.mark.slow),  # recorded, spill files half gone
        pytest.param("fetch:6", marks=pytest.mark.slow),  # an answer received, not committed
        pytest.param("write:3", marks=pytest.mark.slow),  # a temporary Parquet file written
        pytest.param("views:2", marks=pytest.mark.slow),  # while the catalogue is rebuilt
    ],
)
def test_kill_9_then_rerun_equals_a_clean_run(
    tmp_path: Path, serve: Callable[..., Served], point: str
) -> None:
    served = serve(stocks=20)
    config = write_config(tmp_path, served.url, extra="[tasks.weekly]\nbatch_size = 4\n")
    root = tmp_path / "data"
    root.mkdir()
    # killed: no process of it alive 2 s later, no file written after the kill
    ah_killed("--config", str(config), *ARGS, cwd=tmp_path, root=root,
              env={"AH_TEST_CRASH_AT": point})  # fmt: skip
    assert_readable(root)
    served.sim.reset_calls()
    rerun = ah("--config", str(config), *ARGS, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(root.rglob("*.tmp")), "temporary files left behind"
    for name in TASKS:
        assert cache_rows(root, name) == truth_rows(served.sim, name, START), name
        stored = pl.read_parquet(str(root / "raw" / name / "**" / "*.parquet"))
        assert stored.height == len(cache_rows(root, name)), f"{name}: a row stored twice"
    daily = root / "raw" / "daily"
    assert (daily / "2023.parquet").is_file() and not (daily / "2023").exists()
    assert_readable(root)


def test_resume_fetches_only_what_is_missing_and_no_resume_starts_afresh(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(stocks=20)
    extra = "[tasks.weekly]\nbatch_size = 4\n"
    config = write_config(tmp_path, served.url, extra=extra)
    args = ("--config", str(config), "sync", "weekly", "--start", START.isoformat())
    # weekly for 20 stocks over 18 months: one call per stock, committed four at a time
    crashed = ah(*args, cwd=tmp_path, env={"AH_TEST_CRASH_AT": "state:3"})
    assert crashed.returncode == -signal.SIGKILL
    state = json.loads((tmp_path / "data/state/tasks/weekly.json").read_text())
    assert len(state["plan_done"]) == 8  # two batches of four recorded before the kill
    # pages fetched after them wait in spill files: merged by the re-run, not asked again
    spills = (tmp_path / "data/raw/weekly/.spill").glob("*.arrow")
    kept = set(state["plan_done"]) | {read_spill(path).item for path in spills}
    resumed_copy = tmp_path / "copy"
    write_config(resumed_copy, served.url, extra=extra)
    import shutil

    shutil.copytree(tmp_path / "data", resumed_copy / "data")
    served.sim.reset_calls()
    assert ah(*args, cwd=tmp_path).returncode == 0
    assert served.sim.calls["weekly"] == 20 - len(kept)
    assert not (tmp_path / "data/raw/weekly/.spill").exists()
    served.sim.reset_calls()
    again = ("--config", str(resumed_copy / "alphahome.toml"), *args[2:], "--no-resume")
    assert ah(*again, cwd=resumed_copy).returncode == 0
    assert served.sim.calls["weekly"] == 20
    for root in (tmp_path / "data", resumed_copy / "data"):
        assert cache_rows(root, "weekly") == truth_rows(served.sim, "weekly", START)
        assert last_report(root)["tasks"][0]["status"] == "success"


def test_pages_spilled_before_a_kill_are_merged_by_the_rerun_not_fetched_again(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(stocks=20)
    config = write_config(tmp_path, served.url, extra="[tasks.weekly]\nbatch_size = 4\n")
    args = ("--config", str(config), "sync", "weekly", "--start", START.isoformat())
    # weekly: one page per stock; killed right after the 12th page is spilled
    crashed = ah(*args, cwd=tmp_path, env={"AH_TEST_CRASH_AT": "spill:12"})
    assert crashed.returncode == -signal.SIGKILL
    assert list((tmp_path / "data/raw/weekly/.spill").glob("*.arrow"))
    served.sim.reset_calls()
    rerun = ah(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert served.sim.calls["weekly"] == 20 - 12  # every spilled page kept, merged or not
    assert cache_rows(tmp_path / "data", "weekly") == truth_rows(served.sim, "weekly", START)
    assert not (tmp_path / "data/raw/weekly/.spill").exists()
    assert_readable(tmp_path / "data")


class Interrupted(Exception):
    """Stands in for a crash at a checkpoint, in-process."""


def test_a_ranged_backfill_commits_page_by_page_and_resumes_where_it_stopped(
    tmp_path: Path, serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.sync import runner as sync_module
    from pipeline.sync.runner import SyncRequest, run_sync
    from tests.sync.conftest import settings_for

    served = serve()  # 40 stocks: about 11 000 daily rows, two pages of 6000
    settings = settings_for(tmp_path, served.url)
    request = SyncRequest(tasks=("daily",), start=START, progress=False)
    monkeypatch.setattr(sync_module, "BATCH_ROWS", 1)  # commit every page

    def crash_after_first_commit(point: str) -> None:
        if point == "state" and any((tmp_path / "data/raw/daily").rglob("*.parquet")):
            raise Interrupted

    monkeypatch.setattr(sync_module, "crash_point", crash_after_first_commit)
    report = run_sync(settings, request)
    assert report.tasks[0].status == "failed" and "Interrupted" in report.tasks[0].reason
    state = json.loads((tmp_path / "data/state/tasks/daily.json").read_text())
    assert 0 < len(state["committed"]) < len(truth_dates(served))  # the newest page's dates
    newest_missing = max(set(truth_dates(served)) - set(state["committed"]))
    # the other page, when it was fetched before the interruption, waits in a spill file
    spilled = any(
        not set(read_spill(path).units) <= set(state["committed"])
        for path in (tmp_path / "data/raw/daily/.spill").glob("*.arrow")
    )
    monkeypatch.undo()
    served.sim.reset_calls()
    assert run_sync(settings, request).exit_code == 0
    # the as-of probe, the refresh window (the last three dates), and the page left
    # unless it was spilled
    assert served.sim.calls["daily"] == (2 if spilled else 3)
    assert newest_missing < max(state["committed"])
    assert cache_rows(tmp_path / "data", "daily") == truth_rows(served.sim, "daily", START)


def truth_dates(served: Served) -> list[str]:
    days = served.sim.ground_truth("daily")["trade_date"].unique()
    return [d.strftime("%Y%m%d") for d in days if d >= START]
