"""Alerts at the end of a run: low success rate, failed or long tasks, stale data, and
files found damaged (quarantined and not yet repaired: `ah repair`).

Each alert is one `ALERT <kind> <subject>: <message>` line on stderr and in the log,
makes the run's exit status non-zero, and is POSTed as JSON to `run.alert_webhook`
when configured (and sent to the `[alerts]` channels: channels.py). A webhook that
times out or fails is logged and never fails the run.
Secrets are never sent: the body holds only alert text, scrubbed like the logs, and
the webhook URL (which may embed a token, as Slack's do) is logged by host only. Alerts
go to http(s) only and, unless `run.alert_allow_private`, never to a loopback, private,
link-local or cloud-metadata address (checked at config load and again, resolved, here).
"""

from __future__ import annotations

import datetime as dt
import socket
import sys
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from cache.layout import CacheLayout
from cache.quarantine import quarantined
from foundation.config import Settings, internal_host
from foundation.logs import get_logger
from pipeline.ops.health import UNIT_NAMES, dataset_freshness
from pipeline.ops.stats import success_rate, task_records
from pipeline.run.channels import send_channels
from pipeline.run.report import Alert, AlertKind
from pipeline.sources import market_today
from pipeline.sync.runner import recorded_source

__all__ = [
    "Alert",
    "AlertKind",
    "announce_alerts",
    "evaluate_alerts",
    "refused_destination",
    "send_webhook",
]

log = get_logger("alerts")

DEFAULT_WEBHOOK_TIMEOUT_S = 10.0


def reference_day(settings: Settings, report: Mapping[str, Any]) -> dt.date:
    """The day staleness is judged on: the market's today the run recorded, else the
    source's today (`market_today`: the simulator's today for a simulated cache)."""
    if report.get("market_today"):
        return dt.date.fromisoformat(str(report["market_today"]))
    layout = CacheLayout(settings.cache.dir)
    return market_today(settings, recorded_source(layout))


def evaluate_alerts(
    settings: Settings, report: Mapping[str, Any], stale_after: int = 1
) -> list[Alert]:
    """The alerts a finished run raises, from its report and the cache it left.

    Success rate (success and no_data over all tasks, as the sync counts it) under
    `run.success_rate_alert`; each failed task; each task longer than
    `run.max_task_seconds_alert`; each per-trade-date dataset (raw/daily's newest date
    is the data's as-of date) more than `stale_after` due units (open days of the
    calendar, week or month ends) behind the market's today (`reference_day`), never
    the wall clock; each file quarantined and not yet repaired.
    """
    records = task_records(report)
    alerts: list[Alert] = []
    rate = success_rate(records)
    floor = settings.run.success_rate_alert
    if rate is not None and rate < floor:
        ok = sum(r.succeeded for r in records)
        message = f"{rate:.0%} of tasks succeeded ({ok}/{len(records)}), alert under {floor:.0%}"
        alerts.append(Alert("success_rate", "run", message, rate, floor))
    for r in records:
        if r.status == "failed":
            alerts.append(Alert("failed_task", r.task, f"failed: {r.reason or 'no reason given'}"))
    limit = settings.run.max_task_seconds_alert
    for r in records:
        if r.duration_s > limit:
            message = f"took {r.duration_s:.0f} s, alert over {limit:g} s"
            alerts.append(Alert("long_task", r.task, message, r.duration_s, limit))
    layout = CacheLayout(settings.cache.dir)
    today = reference_day(settings, report)
    for f in dataset_freshness(layout, today, stale_after):
        if f.stale:
            unit = UNIT_NAMES[f.cadence or "daily"]
            message = f"newest {f.date_column} {f.newest}, {f.behind} {unit} behind {today}"
            alerts.append(Alert("stale_data", f.dataset, message, f.behind, stale_after))
    for entry in quarantined(layout):
        message = f"{entry.partition} unreadable, moved aside: {entry.reason} (run ah repair)"
        alerts.append(Alert("damaged_file", entry.dataset, message))
    return alerts


def refused_destination(url: str, allow_private: bool = False) -> str | None:
    """Why alerts may not go to `url`, or None: only http(s), and (unless `allow_private`)
    never to a loopback, private, link-local or cloud-metadata address, the host's
    resolved addresses included (a public name may point inside)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    if allow_private:
        return None
    problem = internal_host(parts.hostname)
    if problem:
        return problem
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None  # unresolvable: the POST fails and says so
    for info in infos:
        problem = internal_host(str(info[4][0]))
        if problem:
            return f"{parts.hostname} resolves to {info[4][0]}, {problem}"
    return None


def send_webhook(
    url: str,
    alerts: list[Alert],
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S,
    run_id: str | None = None,
    allow_private: bool = False,
) -> bool:
    """POST the alerts as JSON (redirects not followed); True on a 2xx answer. Never
    raises: failures, and destinations `refused_destination` refuses, are logged."""
    target = urlsplit(url).hostname or "?"  # the URL may embed a token: the host only
    refused = refused_destination(url, allow_private)
    if refused:
        log.warning("alert webhook to %s not sent: %s (run.alert_allow_private)", target, refused)
        return False
    body = {
        "source": "alphahome",
        "host": socket.gethostname(),
        "run_id": run_id,
        "sent_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "alerts": [a.to_dict() for a in alerts],
        "text": "\n".join(a.line() for a in alerts),
    }
    try:
        response = httpx.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.warning("alert webhook to %s failed: %s", target, type(exc).__name__)
        return False
    if not response.is_success:
        log.warning("alert webhook to %s answered HTTP %s", target, response.status_code)
        return False
    log.info("alert webhook to %s accepted %d alerts", target, len(alerts))
    return True


def announce_alerts(
    settings: Settings,
    alerts: list[Alert],
    run_id: str | None = None,
    stream: TextIO | None = None,
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S,
) -> int:
    """Print and log each ALERT line, send the webhook if configured; the exit status (0/1)."""
    out = stream or sys.stderr
    for alert in alerts:
        out.write(alert.line() + "\n")
        log.error(alert.line())
    if alerts and settings.run.alert_webhook:
        send_webhook(
            settings.run.alert_webhook, alerts, timeout_s, run_id, settings.run.alert_allow_private
        )
    send_channels(settings, alerts, run_id, timeout_s)  # e-mail, WeCom, DingTalk (channels.py)
    return 1 if alerts else 0
