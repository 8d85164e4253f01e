"""Alerts: thresholds, ALERT lines, exit status, the webhook (working, unreachable, slow)."""

from __future__ import annotations

import datetime as dt
import io
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from foundation.logs import register_secrets
from pipeline.run.alerts import (
    Alert,
    announce_alerts,
    evaluate_alerts,
    refused_destination,
    send_webhook,
)
from pipeline.run.report import TaskOutcome
from tests.ops.conftest import SyntheticCache, build_cache, closed_port, make_report, make_settings


def test_a_good_run_raises_nothing(synthetic: SyntheticCache) -> None:
    tasks = [TaskOutcome("daily", "success", duration_s=10.0), TaskOutcome("income", "no_data")]
    report = make_report(tasks=tasks)
    settings = make_settings(synthetic.layout.root)
    assert evaluate_alerts(settings, report) == []
    stream = io.StringIO()
    assert announce_alerts(settings, [], stream=stream) == 0 and stream.getvalue() == ""


def test_thresholds_and_stale_data(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "cache", daily_until=dt.date(2024, 6, 24))
    tasks = [
        TaskOutcome("daily", "success", duration_s=7200.0),
        TaskOutcome("income", "failed", reason="HTTP 502 from server"),
        TaskOutcome("cashflow", "partial"),
        TaskOutcome("balancesheet", "success"),
    ]
    report = make_report(tasks=tasks)  # finishes 2024-06-28: four open days after the 24th
    settings = make_settings(
        cache.layout.root, run__success_rate_alert=0.8, run__max_task_seconds_alert=3600.0
    )
    alerts = evaluate_alerts(settings, report)
    found = {(a.kind, a.subject) for a in alerts}
    assert found == {
        ("success_rate", "run"),
        ("failed_task", "income"),
        ("long_task", "daily"),
        ("stale_data", "raw.daily"),
    }
    rate = next(a for a in alerts if a.kind == "success_rate")
    assert rate.value == 0.5 and rate.threshold == 0.8
    stale = next(a for a in alerts if a.kind == "stale_data")
    assert stale.value == 4 and "4 open days behind" in stale.message
    stream = io.StringIO()
    assert announce_alerts(settings, alerts, stream=stream) == 1
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("ALERT ") for line in lines)
    assert "ALERT failed_task income: failed: HTTP 502 from server" in lines


def test_webhook_receives_json_without_secrets(synthetic: SyntheticCache, http_server: Any) -> None:
    url, received = http_server(lambda body: (200, {"ok": True}))
    secret = "tok-very-secret-987"
    register_secrets([secret])
    settings = make_settings(
        synthetic.layout.root,
        tushare__token=secret,
        run__alert_webhook=url + "/hook",
        run__alert_allow_private=True,  # the test's server listens on loopback
    )
    report = make_report(tasks=[TaskOutcome("daily", "failed", reason=f"bad token {secret}")])
    alerts = evaluate_alerts(settings, report)
    assert announce_alerts(settings, alerts, run_id="r1", stream=io.StringIO()) == 1
    assert len(received.bodies) == 1 and received.paths == ["/hook"]
    body = received.bodies[0]
    assert body["source"] == "alphahome" and body["run_id"] == "r1"
    assert {a["kind"] for a in body["alerts"]} == {"success_rate", "failed_task"}
    assert "ALERT failed_task daily" in body["text"]
    assert secret not in str(body)


def test_webhook_unreachable_is_logged_not_raised(caplog: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?key=hook-secret"
    alert = Alert("failed_task", "daily", "failed: x")
    logger = logging.getLogger("alphahome")
    logger.propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="alphahome"):
            assert send_webhook(url, [alert], timeout_s=2.0, allow_private=True) is False
    finally:
        logger.propagate = False
    assert "alert webhook to 127.0.0.1" in caplog.text
    assert "hook-secret" not in caplog.text


def test_webhook_error_status_and_timeout(http_server: Any) -> None:
    url, received = http_server(lambda body: (500, {"error": "boom"}))
    alert = Alert("failed_task", "daily", "x")
    assert send_webhook(url, [alert], timeout_s=2.0, allow_private=True) is False
    assert len(received.bodies) == 1
    # a server that accepts the connection and never answers: the timeout bounds the wait
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    stop = threading.Event()
    threading.Thread(target=lambda: (silent.accept(), stop.wait(5)), daemon=True).start()
    try:
        began = time.monotonic()
        ok = send_webhook(
            f"http://127.0.0.1:{silent.getsockname()[1]}/", [alert], 0.5, allow_private=True
        )
        assert ok is False and time.monotonic() - began < 3
    finally:
        stop.set()
        silent.close()


def test_webhook_to_internal_destinations_is_refused_at_send_time(
    http_server: Any, caplog: Any
) -> None:
    url, received = http_server(lambda body: (200, {"ok": True}))
    alert = Alert("failed_task", "daily", "x")
    logger = logging.getLogger("alphahome")
    logger.propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="alphahome"):
            assert send_webhook(url.replace("://", "://u:hookpw77@"), [alert], 2.0) is False
            # a name that resolves to loopback is refused as the address itself is
            named = url.replace("127.0.0.1", "localhost.")
            assert send_webhook(named, [alert], 2.0) is False
            assert send_webhook("http://169.254.169.254/latest/", [alert], 2.0) is False
    finally:
        logger.propagate = False
    assert received.bodies == []
    assert "not sent: a loopback address" in caplog.text and "hookpw77" not in caplog.text
    assert refused_destination("http://[fe80::1]/x") == "a link-local address"
    assert refused_destination("file:///etc/passwd") == "not an http(s) URL"
    assert refused_destination("http://127.0.0.1/x", allow_private=True) is None
    assert send_webhook(url, [alert], 2.0, allow_private=True) is True
    assert len(received.bodies) == 1
