"""Acceptance: the cron lines `ah schedule` prints, installed literally (the commands, not
the times), run the whole evening job on a simulated market into PostgreSQL: the
tables equal the cache, the metrics file is fresh and a run report is written."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from pipeline.run.metrics import parse_samples
from tests.cli_runner import ah
from tests.run.test_run_end_to_end import KEYS, duckdb_frame, pg_frame

TODAY = "2024-03-29"  # a Friday: the week's last open day, so factors are due, PIT full
CONFIG = f"""
[simulator]
stocks = 20
start = 2022-06-01
today = {TODAY}
[source]
kind = "sim"
[run]
workers = 2
timeout_minutes = 20
"""


def cron_commands(text: str) -> dict[str, str]:
    """Job name (from the comment above) -> the command of each crontab entry."""
    commands, name = {}, ""
    for line in text.splitlines():
        if line.startswith("# ") and ":" in line:
            name = line[2:].split(":", 1)[0]
        elif line and not line.startswith(("#", "SHELL")):
            commands[name] = line.split(" ", 5)[5].replace("\\%", "%")
    return commands


def sh(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "TUSHARE", "DATA"))}
    return subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.postgres
def test_installed_cron_lines_load_postgres(pg_url: str, tmp_path: Path) -> None:
    work = tmp_path / "box"
    work.mkdir()
    (work / "alphahome.toml").write_text(CONFIG)
    out = ah("schedule", "--cron", cwd=work)
    assert out.returncode == 0, out.stderr
    commands = cron_commands(out.stdout)
    assert set(commands) == {"backup", "health", "run"}
    env = {"DATABASE_URL": pg_url}
    started = time.time()
    done = sh(commands["run"], tmp_path, env)  # cron's cwd is not the install's
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in done.stdout + done.stderr
    assert "cadence: full PIT (week's last open day); factors due at" in done.stdout
    cache = work / "data"
    for table, key in KEYS.items():
        pg = pg_frame(pg_url, table, key)
        local = duckdb_frame(cache, table, key)
        assert pg.height > 0 and pg.columns == local.columns, table
        assert_frame_equal(pg, local, check_exact=True, check_dtypes=False)
    prom = cache / "metrics" / "alphahome.prom"
    assert prom.stat().st_mtime >= started
    samples = {name: value for name, labels, value in parse_samples(prom.read_text()) if not labels}
    assert samples["alphahome_run_finished_timestamp_seconds"] >= int(started)
    assert samples["alphahome_run_success_rate"] == 1
    reports = sorted((cache / "reports").glob("sync-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["arguments"]["cadence"] == "calendar" and report["exit_code"] == 0
    stages = {t["task"]: t["status"] for t in report["tasks"] if t["strategy"] == "stage"}
    assert stages == {"pit": "success", "factors": "success", "load": "success"}
    assert (cache / "reports" / "latest.html").is_file()
    # the nightly backup, then the morning health check: silent when all is well (so
    # MAILTO mails only trouble)
    backup = sh(commands["backup"], tmp_path, env)
    assert backup.returncode == 0 and "database dump" in backup.stdout, backup.stderr[-2000:]
    assert "alphahome_backup_last_success_timestamp_seconds" in prom.read_text()
    health = sh(commands["health"], tmp_path, env)
    assert health.returncode == 0 and health.stdout == "", health.stdout + health.stderr
