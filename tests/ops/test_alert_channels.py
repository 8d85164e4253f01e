"""Alert channels: each configured one receives the alerts on loopback, in its format
(generic webhook JSON, WeCom and DingTalk robot markdown, SMTP e-mail), with no secret."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import io
import socket
import socketserver
import threading
from collections.abc import Iterator
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from pipeline.run.alerts import announce_alerts
from pipeline.run.channels import dingtalk_signed_url, send_channels, wecom_body
from pipeline.run.report import Alert
from tests.ops.conftest import SyntheticCache, closed_port, make_settings

ALERTS = [
    Alert("failed_task", "daily", "failed: token abcdef123456 refused"),
    Alert("success_rate", "run", "50% of tasks succeeded (1/2), alert under 80%", 0.5, 0.8),
]
TOKEN = "abcdef123456"


class SmtpServer:
    """A minimal loopback SMTP server (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
    that keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 loopback ESMTP")
                sender, recipients = "", []
                while line := self.rfile.readline():
                    command = line.decode().strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 loopback")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 end with .")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        outer.messages.append((sender, recipients, email.message_from_bytes(data)))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.close()


def test_every_channel_receives_the_alerts(
    synthetic: SyntheticCache, http_server: Any, smtp_server: SmtpServer
) -> None:
    ok = {"errcode": 0, "errmsg": "ok"}
    hook_url, hook = http_server(lambda body: (200, {}))
    wecom_url, wecom = http_server(lambda body: (200, ok))
    ding_url, ding = http_server(lambda body: (200, ok))
    settings = make_settings(
        synthetic.layout.root,
        **{
            "tushare.token": TOKEN,
            "run.alert_webhook": f"{hook_url}/hook",
            "run.alert_allow_private": True,  # the receivers listen on loopback
            "alerts.wecom_webhook": f"{wecom_url}/cgi-bin/webhook/send?key=wecom-key-123",
            "alerts.dingtalk_webhook": f"{ding_url}/robot/send?access_token=ding-token-123",
            "alerts.dingtalk_secret": "SECsigning",
            "alerts.email_to": ["ops@example.com", "oncall@example.com"],
            "alerts.email_from": "alphahome@box.example.com",
            "alerts.smtp_host": "127.0.0.1",
            "alerts.smtp_port": smtp_server.port,
        },
    )
    from foundation.logs import register_secrets

    register_secrets(settings.secrets())
    stderr = io.StringIO()
    assert announce_alerts(settings, ALERTS, run_id="r1", stream=stderr) == 1
    assert stderr.getvalue().count("ALERT ") == 2 and TOKEN not in stderr.getvalue()
    # the generic webhook: JSON with every alert
    (body,) = hook.bodies
    assert [a["subject"] for a in body["alerts"]] == ["daily", "run"] and body["run_id"] == "r1"
    # WeCom: markdown content, one bullet per alert
    (body,) = wecom.bodies
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"content"}
    content = body["markdown"]["content"]
    assert "**failed_task** `daily`" in content and "**success_rate** `run`" in content
    assert wecom.paths == ["/cgi-bin/webhook/send?key=wecom-key-123"]
    # DingTalk: markdown title + text, signed with the secret
    (body,) = ding.bodies
    assert body["msgtype"] == "markdown" and "2 alerts" in body["markdown"]["title"]
    assert "**failed_task** `daily`" in body["markdown"]["text"]
    query = parse_qs(urlsplit(ding.paths[0]).query)
    assert query["access_token"] == ["ding-token-123"]
    stamp = query["timestamp"][0]
    expected = hmac.new(b"SECsigning", f"{stamp}\nSECsigning".encode(), hashlib.sha256).digest()
    assert base64.b64decode(query["sign"][0]) == expected
    # e-mail: one message to both recipients
    ((sender, recipients, message),) = smtp_server.messages
    assert sender == "alphahome@box.example.com"
    assert recipients == ["ops@example.com", "oncall@example.com"]
    assert "2 alerts" in message["Subject"]
    text = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "ALERT failed_task daily" in text and "run r1" in text
    # no secret went out on any channel
    everything = str(hook.bodies) + str(wecom.bodies) + str(ding.bodies) + text
    assert TOKEN not in everything and "SECsigning" not in everything


def test_channels_that_fail_are_logged_not_raised(
    synthetic: SyntheticCache, http_server: Any, caplog: Any
) -> None:
    refused, _ = http_server(lambda body: (200, {"errcode": 93000, "errmsg": "invalid key"}))
    settings = make_settings(
        synthetic.layout.root,
        **{
            "alerts.wecom_webhook": f"{refused}/send?key=k",
            "alerts.dingtalk_webhook": f"http://127.0.0.1:{closed_port()}/robot/send",
            "alerts.email_to": ["ops@example.com"],
            "alerts.smtp_host": "127.0.0.1",
            "alerts.smtp_port": closed_port(),
        },
    )
    caplog.set_level("WARNING", logger="alphahome")
    sent = send_channels(settings, ALERTS, "r2", timeout_s=5)
    assert sent == {"email": False, "wecom": False, "dingtalk": False}
    logged = caplog.text
    assert "errcode 93000 invalid key" in logged and "alert e-mail via 127.0.0.1" in logged
    assert send_channels(settings, [], "r3", timeout_s=5) == {}  # nothing to say: no message


def test_robot_formats_and_signature() -> None:
    many = [Alert("stale_data", f"raw.d{i}", "x" * 200) for i in range(40)]
    content = wecom_body(many, "box", None)["markdown"]["content"]
    assert len(content.encode()) <= 4096 and content.endswith("…")
    url = dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", "s", 1700)
    query = parse_qs(urlsplit(url).query)
    assert query["timestamp"] == ["1700"]
    digest = hmac.new(b"s", b"1700\ns", hashlib.sha256).digest()
    assert unquote(url.split("sign=")[1]) == base64.b64encode(digest).decode()
    assert socket.gethostname()  # the headline names the host
