"""The client against the simulator's wire (endpoints, typed errors, coercion), task
selection, filters, progress lines and the report document."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import anyio
import polars as pl
import pytest

from foundation import progress as progress_module
from foundation.errors import UsageError
from pipeline.sources.tushare.client import TushareClient
from pipeline.sources.tushare.errors import AuthError, PermissionDenied, RequestRejected
from pipeline.sources.tushare.limits import RateLimits
from pipeline.sync.runner import SyncRequest, run_sync
from pipeline.sync.tasks import DEFAULT_GROUPS, TASKS, select_tasks
from tests.sync.conftest import SIM_TOKEN, START, Served, settings_for


def ask(url: str, token: str, api: str, params: dict[str, str], fields: list[str] | None = None):
    async def main():
        limits = RateLimits(5000, default=0)
        async with TushareClient(url, token, limits=limits, max_retries=0) as client:
            return await client.query(api, params, fields)

    return anyio.run(main)


def test_client_endpoints_types_and_typed_errors(serve: Callable[..., Served]) -> None:
    served = serve(points=2000)
    for base in (served.url, served.url + "/dataapi"):
        page = ask(base, SIM_TOKEN, "trade_cal", {"start_date": "20240101", "end_date": "20240110"})
        assert (
            page.frame.schema["cal_date"] == pl.Date and page.frame.schema["is_open"] == pl.String
        )
        assert page.frame["cal_date"].max() == dt.date(2024, 1, 10) and not page.truncated
    daily = ask(served.url, SIM_TOKEN, "daily", {"trade_date": "20240628"})
    assert daily.frame.schema["close"] == pl.Float64 and daily.frame.height > 0
    # a full page at the documented cap is never taken as complete
    capped = ask(served.url, SIM_TOKEN, "daily", {"end_date": "20240628"})
    assert capped.frame.height == 6000 and capped.truncated
    with pytest.raises(AuthError) as bad:
        ask(served.url, "not-the-token", "daily", {"trade_date": "20240628"})
    assert (
        bad.value.code == 40101 and bad.value.request_id and "not-the-token" not in str(bad.value)
    )
    with pytest.raises(PermissionDenied) as refused:
        ask(served.url, SIM_TOKEN, "income_vip", {"period": "20231231"})
    assert refused.value.code == 40203 and "income_vip" in str(refused.value)
    with pytest.raises(RequestRejected, match="no_such_field"):
        ask(served.url, SIM_TOKEN, "daily", {"trade_date": "20240628"}, ["no_such_field"])


def test_selection_by_name_group_and_exclusion() -> None:
    assert [t.name for t in select_tasks()] == [
        t.name for g in ("reference", "index", "market", "finance") for t in TASKS if t.group == g
    ]
    for group in DEFAULT_GROUPS:
        assert {t.group for t in select_tasks(groups=[group])} == {group}
    chosen = select_tasks(["daily", "income"], ["reference"], exclude=["trade_cal"])
    assert [t.name for t in chosen] == ["stock_basic", "namechange", "daily", "income"]
    with pytest.raises(UsageError, match="unknown task 'dayly'"):
        select_tasks(["dayly"])
    with pytest.raises(UsageError, match="unknown group"):
        select_tasks(groups=["bonds"])


def test_filters_exclusions_progress_lines_and_the_report(
    tmp_path: Path,
    serve: Callable[..., Served],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = serve()
    settings = settings_for(
        tmp_path,
        served.url,
        run='exclude_tasks = ["monthly"]',
        extra="[tasks.weekly]\nenabled = false\n",
    )
    with pytest.raises(UsageError, match="--exchange applies to none"):
        run_sync(settings, SyncRequest(tasks=("daily",), filters={"exchange": "SSE"}))
    monkeypatch.setattr(progress_module, "BOARD_LOG_EVERY_S", 0.05)
    caplog.set_level(logging.INFO, logger="alphahome")
    request = SyncRequest(
        groups=("reference",),
        tasks=("weekly", "monthly", "daily"),
        filters={"list_status": "L", "exchange": "SZSE"},
        start=START,
        progress=False,
    )
    report = run_sync(settings, request)
    names = [t.task for t in report.tasks]
    # named tasks run even when disabled; [run] exclude_tasks always wins
    assert "weekly" in names and "monthly" not in names and "daily" in names
    stocks = pl.read_parquet(str(tmp_path / "data/raw/stock_basic/*.parquet"))
    assert set(stocks["list_status"]) == {"L"} and set(stocks["exchange"]) == {"SZSE"}
    assert any(" calls (" in r.getMessage() for r in caplog.records if "sync progress:" in r.msg)
    doc = json.loads(Path(report.path or "").read_text())
    assert doc["run_id"] == report.run_id and doc["finished"] >= doc["started"]
    assert doc["exit_code"] == 0 and doc["calls"] == sum(doc["calls_by_api"].values())
    daily = next(t for t in doc["tasks"] if t["task"] == "daily")
    for key in ("status", "reason", "units_total", "units_done", "calls", "rows_fetched",
                "rows_saved", "retries", "duration_s", "errors", "strategy"):  # fmt: skip
        assert key in daily
    assert daily["status"] == "success" and daily["rows_saved"] == daily["rows_fetched"] > 0
    assert "daily" in report.render() and "success rate 100%" in report.render()


def test_a_task_that_failed_counts_as_ended_in_the_progress_lines(
    tmp_path: Path,
    serve: Callable[..., Served],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = serve()
    settings = settings_for(tmp_path, served.url)
    blocked = tmp_path / "data" / "raw" / "weekly" / ".spill"  # a file where its folder goes
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    monkeypatch.setattr(progress_module, "BOARD_LOG_EVERY_S", 0.02)
    caplog.set_level(logging.INFO, logger="alphahome")
    request = SyncRequest(tasks=("weekly", "adj_factor"), start=START, progress=False)
    report = run_sync(settings, request)
    weekly = next(t for t in report.tasks if t.task == "weekly")
    assert weekly.status == "failed" and "StorageError" in weekly.reason
    assert not list((tmp_path / "data").rglob("*.fetching"))  # the tasks ended: no marker
    messages = [r.getMessage() for r in caplog.records]
    failed_at = next(i for i, m in enumerate(messages) if m.startswith("weekly: failed"))
    later = [
        re.match(r"sync progress: (\d+)/(\d+) calls.*running: adj_factor (\d+)/(\d+)$", m)
        for m in messages[failed_at:]
    ]
    seen = [m for m in later if m]
    assert seen, messages[failed_at:]  # lines went on after it, adj_factor running
    for line in seen:  # weekly's planned calls count as done; it is not running
        done, total, running_done, running_total = map(int, line.groups())
        assert done - running_done == total - running_total > 0
