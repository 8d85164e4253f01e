"""The run report of `ah run`: saved once with its alerts, judged on the data's as-of date
and the market's today (never the wall clock), and written even when a stage fails."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import ah

TODAY = "2024-03-29"  # the simulator's today, a Friday (the wall clock is years later)
CONFIG = f"""
[simulator]
stocks = 30
start = 2022-01-01
today = {TODAY}
[run]
workers = 2
"""


def run_id(out: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"^run (\S+): success rate", out.stdout, re.MULTILINE)
    assert found, out.stdout[-2000:] + out.stderr[-2000:]
    return found.group(1)


def saved_report(cache: Path, out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((cache / "reports" / f"sync-{run_id(out)}.json").read_text())
    return doc


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A small simulated market after a full `ah run --source sim`: (work dir, its report)."""
    work = tmp_path_factory.mktemp("run-report")
    (work / "alphahome.toml").write_text(CONFIG)
    out = ah("run", "--source", "sim", cwd=work, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return work, saved_report(work / "data", out)


def test_full_run_report_holds_the_as_of_date_and_its_alerts(
    synced: tuple[Path, dict[str, Any]],
) -> None:
    work, report = synced
    assert report["alerts"] == [] and report["exit_code"] == 0
    assert report["as_of"] == TODAY and report["source_as_of"] == TODAY
    assert report["market_today"] == TODAY
    persisted = json.loads((work / "data" / "state" / "asof.json").read_text())
    assert persisted["as_of"] == TODAY


def test_compute_stages_on_a_healthy_cache_raise_no_alert(
    synced: tuple[Path, dict[str, Any]],
) -> None:
    work, _ = synced
    cache = work / "data"
    before = set((cache / "reports").glob("*.json"))
    out = ah("run", "--stages", "pit,factors,load", cwd=work, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ALERT" not in out.stderr and "Traceback" not in out.stderr
    assert f"as of {TODAY}" in out.stdout
    report = saved_report(cache, out)
    assert set((cache / "reports").glob("*.json")) - before == {
        cache / "reports" / f"sync-{report['run_id']}.json"
    }  # one JSON per run
    assert [t["task"] for t in report["tasks"]] == ["pit", "factors", "load"]
    assert {t["status"] for t in report["tasks"]} == {"success"}
    assert report["alerts"] == [] and report["exit_code"] == 0
    assert report["as_of"] == TODAY and report["market_today"] == TODAY
    page = (cache / "reports" / f"{report['run_id']}.html").read_text(encoding="utf-8")
    assert "No alerts." in page
    shares = re.findall(r"([0-9.]+)% of (\d+) dates", page)
    assert len(shares) >= 5  # daily, weekly, monthly, daily_basic, …
    assert {share for share, _ in shares} == {"100.0"}
    assert f"{TODAY}: " in page  # the coverage runs up to the data's as-of date
    metrics = (cache / "metrics" / "alphahome.prom").read_text()
    assert "alphahome_run_alerts 0" in metrics


def test_failed_stage_on_an_empty_cache_still_writes_the_report(tmp_path: Path) -> None:
    (tmp_path / "alphahome.toml").write_text(CONFIG)
    out = ah("run", "--stages", "pit,factors", cwd=tmp_path, timeout=300)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    cache = tmp_path / "data"
    report = saved_report(cache, out)
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [
        ("pit", "failed"),
        ("factors", "skipped"),
    ]
    assert "no raw data for the PIT build" in report["tasks"][0]["reason"]
    kinds = {(a["kind"], a["subject"]) for a in report["alerts"]}
    assert ("failed_task", "pit") in kinds and ("success_rate", "run") in kinds
    assert report["exit_code"] == 1 and report["as_of"] is None
    for alert in report["alerts"]:
        assert f"ALERT {alert['kind']} {alert['subject']}" in out.stderr
    page = (cache / "reports" / "latest.html").read_text(encoding="utf-8")
    assert page == (cache / "reports" / f"{report['run_id']}.html").read_text(encoding="utf-8")
    assert "ALERT failed_task pit" in page
    metrics = (cache / "metrics" / "alphahome.prom").read_text()
    assert f"alphahome_run_alerts {len(report['alerts'])}" in metrics
    assert 'alphahome_task_status{task="pit",status="failed"} 1' in metrics


def test_calendar_cadence_skips_factors_not_due(synced: tuple[Path, dict[str, Any]]) -> None:
    work, _ = synced
    # the data is as of Friday the 29th, the week's last open day, and its factors are
    # stored: nothing is due, and the week's PIT is rebuilt in full
    out = ah("run", "--stages", "pit,factors,load", "--cadence", "calendar", cwd=work, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = saved_report(work / "data", out)
    assert [t["task"] for t in report["tasks"]] == ["pit", "load"]
    assert report["tasks"][0]["reason"].startswith("full build")
    calendar = report["arguments"]["calendar"]
    assert calendar["factors_due"] is False and calendar["pit_full"] is True
    assert "factors not due" in out.stdout
    metrics = (work / "data" / "metrics" / "alphahome.prom").read_text()
    assert 'alphahome_task_status{task="factors",status="success"} 1' in metrics  # kept


def _reports(cache: Path) -> set[Path]:
    return set((cache / "reports").glob("sync-*.json"))


def test_stage_and_sync_commands_record_their_runs(synced: tuple[Path, dict[str, Any]]) -> None:
    work, _ = synced
    cache = work / "data"
    before = _reports(cache)
    out = ah("load", cwd=work, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (new,) = _reports(cache) - before
    report = json.loads(new.read_text())
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [("load", "success")]
    assert report["arguments"]["stages"] == ["load"] and report["finished"]
    metrics = (cache / "metrics" / "alphahome.prom").read_text()
    assert 'alphahome_task_status{task="load",status="success"} 1' in metrics
    assert "alphahome_load_last_success_timestamp_seconds " in metrics
    assert f"alphahome_run_finished_timestamp_seconds {_epoch(report['finished'])}" in metrics
    # `ah sync` publishes its report too: the HTML page and the metrics
    out = ah("sync", "trade_cal", "--source", "sim", cwd=work, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (synced_report,) = _reports(cache) - before - {new}
    run = json.loads(synced_report.read_text())["run_id"]
    assert run in (cache / "reports" / "latest.html").read_text(encoding="utf-8")
    metrics = (cache / "metrics" / "alphahome.prom").read_text()
    assert 'alphahome_task_status{task="trade_cal",status="success"} 1' in metrics
    assert 'alphahome_task_status{task="load",status="success"} 1' in metrics  # kept


def _epoch(iso: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso).timestamp())


def test_failed_stage_command_records_the_failure(tmp_path: Path) -> None:
    (tmp_path / "alphahome.toml").write_text(CONFIG)
    out = ah("pit", cwd=tmp_path, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "no raw data" in out.stderr
    (path,) = _reports(tmp_path / "data")
    report = json.loads(path.read_text())
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [("pit", "failed")]
    metrics = (tmp_path / "data" / "metrics" / "alphahome.prom").read_text()
    assert 'alphahome_task_status{task="pit",status="failed"} 1' in metrics


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["terminal", "background-job"])
def test_run_timeout_stops_cleanly_and_writes_the_report(
    tmp_path: Path, sigint_ignored: bool
) -> None:
    (tmp_path / "alphahome.toml").write_text(CONFIG)
    out = ah(
        "run", "--source", "sim", "--timeout-minutes", "0.02",
        cwd=tmp_path, timeout=300, sigint_ignored=sigint_ignored,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr
    cache = tmp_path / "data"
    report = saved_report(cache, out)
    statuses = [(t["task"], t["status"]) for t in report["tasks"]]
    assert statuses[-3:] == [("pit", "skipped"), ("factors", "skipped"), ("load", "skipped")]
    failed = [t for t in report["tasks"] if t["status"] == "failed"]
    assert failed and "timed out: the run exceeded 0.02 min" in failed[0]["reason"]
    assert ("failed_task", failed[0]["task"]) in {
        (a["kind"], a["subject"]) for a in report["alerts"]
    }
    assert (cache / "reports" / "latest.html").is_file()
    assert (cache / "metrics" / "alphahome.prom").is_file()
    locks = list((cache / "state" / "locks").glob("*.lock"))
    assert all(not p.read_text().strip() for p in locks)  # released (emptied), not held


def test_a_run_whose_load_never_came_still_shows_the_synced_datasets(tmp_path: Path) -> None:
    """The sync of `ah run` leaves the catalogue to the DuckDB load stage; when a failed
    stage stops the run before the load, the run still rebuilds it."""
    from cache.layout import CacheLayout
    from cache.views import open_catalog
    from foundation.config import load_settings
    from pipeline.run.job import RunRequest, run_pipeline
    from pipeline.sync.runner import SyncRequest

    tasks = ("trade_cal", "stock_basic", "index_classify", "namechange", "index_basic")
    config = tmp_path / "alphahome.toml"
    config.write_text(
        CONFIG.replace("stocks = 30", "stocks = 20") + f'[cache]\ndir = "{tmp_path}/data"\n'
    )
    settings = load_settings(config_file=config, env={})
    request = RunRequest(
        stages=("sync", "pit", "load"), source="sim", progress=False,
        sync=SyncRequest(tasks=tasks, progress=False),
    )  # fmt: skip
    result = run_pipeline(settings, request)
    statuses = [(t.task, t.status) for t in result.report.tasks]
    assert statuses[-2:] == [("pit", "failed"), ("load", "skipped")], statuses
    assert all((task, "success") in statuses for task in tasks)
    with open_catalog(CacheLayout(settings.cache.dir).duckdb_path) as con:
        views = set(
            con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'raw'").fetchall()
        )
    assert views == {(task,) for task in tasks}  # not only those of the sync's early views
