"""Alert channels besides the generic JSON webhook: e-mail over SMTP, and the WeCom
(企业微信) and DingTalk (钉钉) group robots, in the message formats those robots take.

Each configured channel (`[alerts]` in the config) gets every alert of a run; a channel
that fails is logged and never fails the run. Only alert text goes out, scrubbed like
the logs; robot URLs carry their key in the query, so they are logged by host only.

- WeCom robot: POST `{"msgtype": "markdown", "markdown": {"content": ...}}` to the
  robot's `.../cgi-bin/webhook/send?key=...` URL; content at most 4096 bytes.
- DingTalk robot: POST `{"msgtype": "markdown", "markdown": {"title", "text"}}` to
  `.../robot/send?access_token=...`; with a signing secret, `timestamp` (ms) and
  `sign` = base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>")) go in the query.
  Both answer HTTP 200 with `{"errcode": 0}` on success.
- E-mail: one plain-text message to `alerts.email_to`, through `alerts.smtp_host`
  (port 465: implicit TLS; `smtp_starttls`: STARTTLS; login when `smtp_user` is set).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from foundation.config import AlertsConfig, Settings
from foundation.logs import get_logger, scrub
from pipeline.run.report import Alert

log = get_logger("alerts")

WECOM_MAX_BYTES = 4096
SMTP_TLS_PORT = 465


def _headline(alerts: Sequence[Alert], host: str) -> str:
    return f"alphahome on {host}: {len(alerts)} alert{'s' if len(alerts) != 1 else ''}"


def markdown_text(alerts: Sequence[Alert], host: str, run_id: str | None) -> str:
    """The alerts as robot markdown: a heading, one bullet per alert, the run id."""
    lines = [f"### {_headline(alerts, host)}"]
    lines += [f"- **{a.kind}** `{a.subject}`: {a.message}" for a in alerts]
    if run_id:
        lines.append(f"> run {run_id}")
    return scrub("\n".join(lines))


def _truncate_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 4].decode("utf-8", errors="ignore") + "\n…"


def wecom_body(alerts: Sequence[Alert], host: str, run_id: str | None) -> dict[str, Any]:
    """The WeCom group robot's markdown message."""
    content = _truncate_bytes(markdown_text(alerts, host, run_id), WECOM_MAX_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_body(alerts: Sequence[Alert], host: str, run_id: str | None) -> dict[str, Any]:
    """The DingTalk group robot's markdown message."""
    text = markdown_text(alerts, host, run_id)
    return {"msgtype": "markdown", "markdown": {"title": _headline(alerts, host), "text": text}}


def dingtalk_signed_url(url: str, secret: str, now_ms: int | None = None) -> str:
    """The robot URL with DingTalk's `timestamp` and `sign` query parameters."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
    sign = quote(base64.b64encode(digest).decode(), safe="")
    return f"{url}{'&' if '?' in url else '?'}timestamp={stamp}&sign={sign}"


def post_robot(label: str, url: str, body: dict[str, Any], timeout_s: float) -> bool:
    """POST a robot message; True when it answered 2xx with errcode 0. Never raises."""
    target = urlsplit(url).netloc or "?"
    try:
        response = httpx.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.warning("%s alert to %s failed: %s", label, target, type(exc).__name__)
        return False
    try:
        answer = response.json() if response.content else {}
    except ValueError:
        answer = {}
    errcode = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    if not response.is_success or errcode != 0:
        errmsg = scrub(str(answer.get("errmsg", ""))) if isinstance(answer, dict) else ""
        log.warning(
            "%s alert to %s refused: HTTP %s errcode %s %s",
            label, target, response.status_code, errcode, errmsg,
        )  # fmt: skip
        return False
    log.info("%s alert to %s accepted", label, target)
    return True


def email_message(
    config: AlertsConfig, alerts: Sequence[Alert], host: str, run_id: str | None
) -> EmailMessage:
    """The alert e-mail: the headline as subject, one ALERT line per alert as body."""
    message = EmailMessage()
    message["Subject"] = scrub(_headline(alerts, host))
    message["From"] = config.email_from
    message["To"] = ", ".join(config.email_to)
    message["Date"] = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    body = [a.line() for a in alerts]
    if run_id:
        body += ["", f"run {run_id} on {host}"]
    message.set_content("\n".join(body) + "\n")
    return message


def send_email(
    config: AlertsConfig, alerts: Sequence[Alert], host: str, run_id: str | None, timeout_s: float
) -> bool:
    """Send the alert e-mail; True when the server accepted it. Never raises."""
    message = email_message(config, alerts, host, run_id)
    server = f"{config.smtp_host}:{config.smtp_port}"
    try:
        smtp: smtplib.SMTP
        if config.smtp_port == SMTP_TLS_PORT:
            smtp = smtplib.SMTP_SSL(
                config.smtp_host, config.smtp_port, timeout=timeout_s,
                context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout_s)
        with smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("alert e-mail via %s failed: %s", server, scrub(f"{type(exc).__name__}"))
        return False
    log.info("alert e-mail via %s sent to %d recipients", server, len(config.email_to))
    return True


def send_channels(
    settings: Settings, alerts: Sequence[Alert], run_id: str | None, timeout_s: float
) -> dict[str, bool]:
    """Send the alerts to every configured channel; channel -> delivered."""
    config = settings.alerts
    host = socket.gethostname()
    sent: dict[str, bool] = {}
    if not alerts:
        return sent
    if config.email_to:
        sent["email"] = send_email(config, alerts, host, run_id, timeout_s)
    if config.wecom_webhook:
        body = wecom_body(alerts, host, run_id)
        sent["wecom"] = post_robot("WeCom", config.wecom_webhook, body, timeout_s)
    if config.dingtalk_webhook:
        url = config.dingtalk_webhook
        if config.dingtalk_secret:
            url = dingtalk_signed_url(url, config.dingtalk_secret)
        body = dingtalk_body(alerts, host, run_id)
        sent["dingtalk"] = post_robot("DingTalk", url, body, timeout_s)
    return sent
