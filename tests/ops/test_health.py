"""`ah health`: every check, healthy and failing."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cache.layout import CacheLayout
from cache.locks import FileLocks
from foundation.config import ConfigError
from pipeline.ops.health import (
    check_health,
    dataset_freshness,
    health_output,
    lock_states,
    secure_state_dir,
)
from pipeline.ops.records import record_backup
from tests.ops.conftest import (
    TODAY,
    SyntheticCache,
    build_cache,
    closed_port,
    is_open,
    make_settings,
    open_days_between,
)


def statuses(report: Any) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_healthy_cache_exits_zero(synthetic: SyntheticCache) -> None:
    settings = make_settings(synthetic.layout.root)
    when = dt.datetime(2024, 6, 28, 2, 30, tzinfo=dt.UTC)
    record_backup(synthetic.layout, synthetic.layout.root.parent / "b", when, 1, 1)
    report = check_health(lambda: settings, today=TODAY, now=when + dt.timedelta(hours=5))
    found = statuses(report)
    assert report.exit_code == 0, health_output(report, False)
    assert found["config"] == "ok" and found["cache writable"] == "ok"
    assert found["disk space"] == "ok" and found["calendar"] == "ok"
    assert found["data raw.daily"] == "ok" and found["data raw.weekly"] == "ok"
    assert found["database"] == "skip" and found["api token"] == "skip"
    text = health_output(report, False)
    assert text.splitlines()[-1] == "health: ok"
    doc = json.loads(health_output(report, True))
    assert doc["ok"] is True
    assert {c["name"] for c in doc["checks"]} == set(found)


def test_backup_age_and_quiet_output(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    settings = make_settings(layout.root)
    when = dt.datetime(2024, 6, 28, 2, 30, tzinfo=dt.UTC)
    report = check_health(lambda: settings, today=TODAY, now=when)
    assert statuses(report)["backup"] == "warn" and report.exit_code == 0
    quiet = health_output(report, False, quiet=True)
    assert quiet.splitlines()[1].startswith("backup") and "no backup recorded" in quiet
    assert len(quiet.splitlines()) == 3  # header, the warned check, the verdict
    record_backup(layout, layout.root.parent / "b", when, 1, 1)
    report = check_health(lambda: settings, today=TODAY, now=when + dt.timedelta(hours=35))
    assert statuses(report)["backup"] == "ok" and health_output(report, False, quiet=True) == ""
    report = check_health(lambda: settings, today=TODAY, now=when + dt.timedelta(hours=37))
    assert statuses(report)["backup"] == "fail" and report.exit_code == 1
    assert "older than 36 h" in health_output(report, False, quiet=True)


def test_stale_daily_dataset_fails(tmp_path: Path) -> None:
    newest = dt.date(2024, 6, 20)
    cache = build_cache(tmp_path / "cache", daily_until=newest)
    settings = make_settings(cache.layout.root)
    report = check_health(lambda: settings, today=TODAY, stale_after=1)
    check = next(c for c in report.checks if c.name == "data raw.daily")
    behind = len([d for d in open_days_between(newest + dt.timedelta(days=1), TODAY)])
    assert check.status == "fail" and check.data["behind"] == behind == 6
    assert report.exit_code == 1
    assert "FAIL" in health_output(report, False).splitlines()[-1]
    # a larger tolerance accepts the same lag
    assert check_health(lambda: settings, today=TODAY, stale_after=behind).exit_code == 0


def test_weekly_dataset_is_not_stale_in_the_middle_of_a_week(synthetic: SyntheticCache) -> None:
    wednesday = dt.date(2024, 7, 3)
    assert all(is_open(d) for d in (dt.date(2024, 7, 1), wednesday))
    found = {f.dataset: f for f in dataset_freshness(synthetic.layout, wednesday, 1)}
    assert found["raw.weekly"].behind == 0 and not found["raw.weekly"].stale
    # raw.daily stops on the 28th: Monday to Wednesday are due
    assert found["raw.daily"].behind == 3 and found["raw.daily"].stale
    assert found["factors.p"].stale is False  # only per-trade-date raw datasets can be stale


def test_missing_calendar_is_a_warning(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "empty-cache")
    report = check_health(lambda: settings, today=TODAY)
    found = statuses(report)
    assert found["calendar"] == "warn"
    # will be created, its parent is writable; but a mistyped cache.dir looks the same
    assert found["cache writable"] == "warn"
    writable = next(c for c in report.checks if c.name == "cache writable")
    assert "empty-cache does not exist yet" in writable.detail
    assert report.exit_code == 0


def test_cache_unwritable_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "alphahome.toml").touch()
    config = tmp_path / "alphahome.toml"
    report = check_health(lambda: make_settings(blocker / "cache", config=config), today=TODAY)
    check = next(c for c in report.checks if c.name == "config")  # refused when loaded
    assert check.status == "fail" and f"but {blocker} is a file" in check.detail
    assert report.exit_code == 1


def test_disk_space_under_the_floor_fails(synthetic: SyntheticCache) -> None:
    settings = make_settings(synthetic.layout.root, run__min_free_disk_gb=10_000_000.0)
    report = check_health(lambda: settings, today=TODAY)
    check = next(c for c in report.checks if c.name == "disk space")
    assert check.status == "fail" and check.data["free_gb"] < 10_000_000
    assert report.exit_code == 1


def test_config_error_is_a_failed_check() -> None:
    def broken() -> Any:
        raise ConfigError("alphahome.toml: run.workers must be a number > 0, got 0")

    report = check_health(broken, today=TODAY)
    assert [(c.name, c.status) for c in report.checks] == [("config", "fail")]
    assert report.exit_code == 1


def test_config_file_with_token_readable_by_others_warns(tmp_path: Path) -> None:
    config = tmp_path / "alphahome.toml"
    config.write_text('[tushare]\ntoken = "tok-secret-123456"\n')
    config.chmod(0o644)
    settings = make_settings(tmp_path / "cache", config=config)
    report = check_health(lambda: settings, today=TODAY)
    check = next(c for c in report.checks if c.name == "config permissions")
    assert check.status == "warn" and "chmod 600" in check.detail
    assert "tok-secret-123456" not in health_output(report, False)
    assert "tok-secret-123456" not in health_output(report, True)
    config.chmod(0o600)
    report = check_health(lambda: settings, today=TODAY)
    assert statuses(report)["config permissions"] == "ok"


def test_secure_state_dir_is_owner_only(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    (layout.state_dir / "tasks").mkdir(parents=True)
    (layout.state_dir / "tasks" / "daily.json").write_text("{}")
    os.chmod(layout.state_dir, 0o755)
    os.chmod(layout.state_dir / "tasks" / "daily.json", 0o644)
    settings = make_settings(layout.root)
    assert statuses(check_health(lambda: settings, today=TODAY))["state permissions"] == "warn"
    secure_state_dir(layout)
    assert stat.S_IMODE(layout.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((layout.state_dir / "tasks").stat().st_mode) == 0o700
    assert stat.S_IMODE((layout.state_dir / "tasks" / "daily.json").stat().st_mode) == 0o600
    assert statuses(check_health(lambda: settings, today=TODAY))["state permissions"] == "ok"


def test_held_lock_names_its_holder(synthetic: SyntheticCache) -> None:
    locks = FileLocks(synthetic.layout)
    locks.acquire(["daily"])
    try:
        held = {s.task: s for s in lock_states(synthetic.layout)}
        assert held["daily"].held and f"pid {os.getpid()}" in held["daily"].holder
        settings = make_settings(synthetic.layout.root)
        check = next(
            c for c in check_health(lambda: settings, today=TODAY).checks if c.name == "locks"
        )
        assert "daily held by pid" in check.detail
    finally:
        locks.release()
    assert not any(s.held for s in lock_states(synthetic.layout))


def test_database_down_fails(synthetic: SyntheticCache) -> None:
    url = f"postgresql://ah:pw-never-shown@127.0.0.1:{closed_port()}/ah"
    settings = make_settings(synthetic.layout.root, database__url=url)
    report = check_health(lambda: settings, check_db=True, today=TODAY)
    check = next(c for c in report.checks if c.name == "database")
    assert check.status == "fail" and "cannot reach" in check.detail
    assert "pw-never-shown" not in health_output(report, False)
    assert report.exit_code == 1


@pytest.mark.postgres
def test_database_reachable_then_migrated(synthetic: SyntheticCache, pg_url: str) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    settings = make_settings(synthetic.layout.root, database__url=pg_url)
    check = next(
        c
        for c in check_health(lambda: settings, check_db=True, today=TODAY).checks
        if c.name == "database"
    )
    assert check.status == "fail" and "not migrated" in check.detail
    with pgdb.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA ops")
        cur.execute("CREATE TABLE ops.schema_migrations (version int primary key)")
        cur.execute("INSERT INTO ops.schema_migrations VALUES (1), (2)")
    report = check_health(lambda: settings, check_db=True, today=TODAY)
    check = next(c for c in report.checks if c.name == "database")
    assert check.status == "ok" and check.data["migrations"] == 2
    assert report.exit_code == 0


def _tushare(good_token: str) -> Any:
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("token") != good_token:
            return 200, {
                "request_id": "r",
                "code": 40101,
                "msg": "您的token不对，请确认。",
                "data": None,
            }
        items = [["20240624", "1"], ["20240625", "1"], ["20240626", "1"]]
        data = {"fields": ["cal_date", "is_open"], "items": items, "has_more": False}
        return 200, {"request_id": "r", "code": 0, "msg": "", "data": data}

    return answer


def test_api_token_accepted_and_refused(synthetic: SyntheticCache, http_server: Any) -> None:
    url, received = http_server(_tushare("good-token-123"))
    good = make_settings(
        synthetic.layout.root, tushare__base_url=url, tushare__token="good-token-123"
    )
    report = check_health(lambda: good, check_api_token=True, today=TODAY)
    check = next(c for c in report.checks if c.name == "api token")
    assert check.status == "ok" and "3 days" in check.detail
    assert received.bodies[0]["api_name"] == "trade_cal"
    bad = make_settings(
        synthetic.layout.root, tushare__base_url=url, tushare__token="bad-token-456"
    )
    report = check_health(lambda: bad, check_api_token=True, today=TODAY)
    check = next(c for c in report.checks if c.name == "api token")
    assert check.status == "fail" and "40101" in check.detail
    assert "bad-token-456" not in health_output(report, True)
    assert report.exit_code == 1


def test_api_unreachable_or_tokenless_fails(synthetic: SyntheticCache) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    settings = make_settings(
        synthetic.layout.root, tushare__base_url=url, tushare__token="t-123456"
    )
    check = next(
        c
        for c in check_health(lambda: settings, check_api_token=True, today=TODAY).checks
        if c.name == "api token"
    )
    assert check.status == "fail" and "connection failed" in check.detail
    tokenless = make_settings(synthetic.layout.root)
    check = next(
        c
        for c in check_health(lambda: tokenless, check_api_token=True, today=TODAY).checks
        if c.name == "api token"
    )
    assert check.status == "fail" and "no token" in check.detail
