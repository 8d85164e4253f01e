"""A misbehaving source: deadlines per call and per task, error classes by code, capped
messages. The simulator over loopback refuses whole APIs with a fixed answer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from foundation.config import Settings
from pipeline.sources.simulator.protocol import PER_MINUTE_MSG
from pipeline.sources.tushare.errors import (
    MAX_MESSAGE_CHARS,
    AuthError,
    DeadlineExceeded,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
    TransientError,
    classify,
)
from pipeline.sync.runner import SyncRequest, run_sync
from tests.sync.conftest import START, Served, ah, settings_for, write_config

RECENT = dt.date(2024, 5, 20)  # a few weeks of history keep the runs short
LIMITED = (40203, PER_MINUTE_MSG.format(n=1))


def with_deadlines(settings: Settings, call_s: float, task_s: float) -> Settings:
    return dataclasses.replace(
        settings,
        tushare=dataclasses.replace(settings.tushare, call_deadline_s=call_s),
        run=dataclasses.replace(settings.run, task_deadline_s=task_s),
    )


def test_a_source_rate_limited_forever_fails_the_task_by_its_deadline(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(api_errors={"weekly": LIMITED})
    settings = with_deadlines(settings_for(tmp_path, served.url), call_s=1.0, task_s=4.0)
    started = time.monotonic()
    tasks = ("stock_basic", "weekly")  # weekly: one call a week since START, ~80 calls
    report = run_sync(settings, SyncRequest(tasks=tasks, start=START, progress=False))
    elapsed = time.monotonic() - started
    outcome = {t.task: t for t in report.tasks}
    assert outcome["stock_basic"].status == "success"
    assert outcome["weekly"].status == "failed"
    assert "task deadline reached after 4 s (run.task_deadline_s)" in outcome["weekly"].reason
    assert any("tushare.call_deadline_s" in e for e in outcome["weekly"].errors)
    assert outcome["weekly"].rate_limited >= 1
    assert report.exit_code != 0
    assert outcome["weekly"].units_total > 40 and elapsed < 20, elapsed  # not 80 s of calls


def test_a_call_deadline_alone_bounds_each_call(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(api_errors={"weekly": LIMITED})
    settings = with_deadlines(settings_for(tmp_path, served.url), call_s=0.5, task_s=3600)
    started = time.monotonic()
    report = run_sync(settings, SyncRequest(tasks=("weekly",), start=RECENT, progress=False))
    weekly = report.tasks[0]
    assert weekly.status == "failed" and "no result within 0.5 s" in weekly.reason
    assert "每分钟最多访问该接口1次" in weekly.reason  # the last answer, for the user
    # every item failed by its own deadline, none waited a window of a minute
    assert time.monotonic() - started < 10 + weekly.calls * 0.1


def test_codes_not_words_decide_and_huge_messages_are_capped(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    huge = "token refused? " + "x" * 2_000_000
    served = serve(api_errors={"weekly": (-2001, huge)})
    config = write_config(tmp_path, served.url)
    out = ah("--config", str(config), "sync", "weekly", "--start", "20240520", cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]  # a failed task, not an auth error (3)
    assert len(out.stdout) + len(out.stderr) < 20_000
    assert "Traceback" not in out.stderr
    written = sum(p.stat().st_size for p in (tmp_path / "data" / "state").rglob("*.json"))
    assert written < 200_000
    state = json.loads((tmp_path / "data" / "state" / "tasks" / "weekly.json").read_text())
    assert state["status"] == "failed" and "more characters" in state["reason"]
    assert len(state["reason"]) < MAX_MESSAGE_CHARS + 200


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (40101, "您的token不对，请确认。", AuthError),
        (None, "您的token不对，请确认。", AuthError),
        (-2001, "参数token不能为空", RequestRejected),
        (-1, "invalid token format in field list", RequestRejected),
        (40203, PER_MINUTE_MSG.format(n=200), RateLimited),
        (40203, "抱歉，您每天最多访问该接口100000次，…", QuotaExhausted),
        (40203, "抱歉，您没有接口(fund_daily)访问权限", PermissionDenied),
        (-2002, "anything", PermissionDenied),
        (-1, "系统内部错误", TransientError),
        (-2001, "系统内部错误 in a parameter", RequestRejected),
        (12345, "每分钟最多访问该接口5次", RequestRejected),  # a limit text under another code
    ],
)
def test_classification_by_code(code: int | None, message: str, kind: type) -> None:
    error = classify("daily", code, message, "req-1")
    assert type(error) is kind
    assert error.code == code and error.request_id == "req-1"


def test_messages_are_one_capped_line() -> None:
    error = classify("daily", -2001, "line one\nline two " + "y" * 10_000, None)
    assert "\n" not in str(error)
    assert error.message.startswith("line one line two yyy")
    assert len(error.message) <= MAX_MESSAGE_CHARS + 40
    assert DeadlineExceeded("daily", "m").api == "daily"
