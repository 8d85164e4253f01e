"""`ah schedule`: cron, systemd and schtasks entries, and the last-trading-day guard."""

from __future__ import annotations

import datetime as dt
import getpass
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.errors import UsageError
from pipeline.ops.schedule import ScheduleOptions, is_due, render_schedule, write_schedule
from tests.ops.conftest import (
    SyntheticCache,
    all_days,
    is_open,
    last_open_per_week,
    make_settings,
    open_days_between,
)


@pytest.fixture
def installed(synthetic: SyntheticCache, tmp_path: Path) -> tuple[SyntheticCache, Path]:
    config = tmp_path / "conf dir" / "alphahome.toml"
    config.parent.mkdir()
    config.write_text("")
    return synthetic, config


def _entries(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("#", "SHELL"))]


def test_cron_lines(installed: tuple[SyntheticCache, Path]) -> None:
    synthetic, config = installed
    settings = make_settings(synthetic.layout.root, config=config)
    entries = _entries(render_schedule(settings, ScheduleOptions(), "cron"))
    assert len(entries) == 3
    for line in entries:
        argv = shlex.split(line.split(" ", 5)[5])
        assert Path(argv[0]).is_absolute()
        assert argv[argv.index("--config") + 1] == str(config)  # quoted: the path has a space
        assert argv[argv.index("--cache-dir") + 1] == str(synthetic.layout.root)
        if argv[0] == sys.executable:
            assert Path(argv[1]).name == "cli.py" and Path(argv[1]).is_absolute()
    evening = next(line for line in entries if " run " in line)
    assert evening.startswith("30 18 * * 1,2,3,4,5 ")
    assert evening.endswith(" run --cadence calendar --freq weekly") and "&&" not in evening
    assert not any(" sync" in line or " pit" in line or "factors" in line for line in entries)
    assert any(line.startswith("30 2 * * * ") and line.endswith(" backup") for line in entries)
    assert any(
        line.startswith("30 7 * * * ") and line.endswith(" health --quiet") for line in entries
    )


def test_cadences_are_configurable(synthetic: SyntheticCache) -> None:
    settings = make_settings(synthetic.layout.root)
    options = ScheduleOptions(run_at="19:05", freq="monthly", weekdays=("mon", "wed"))
    entries = _entries(render_schedule(settings, options, "cron"))
    evening = next(line for line in entries if " run " in line)
    assert evening.startswith("5 19 * * 1,3 ") and evening.endswith("--freq monthly")
    with pytest.raises(UsageError, match="HH:MM"):
        ScheduleOptions(run_at="25:00")
    with pytest.raises(UsageError, match="weekdays"):
        ScheduleOptions(weekdays=("funday",))
    with pytest.raises(UsageError, match="env-file"):
        ScheduleOptions(env_file=Path("relative.env"))


def _unit_file(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file parsed: section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        key, value = line.split("=", 1)
        current.setdefault(key, []).append(value)
    return sections


def test_systemd_write_files(installed: tuple[SyntheticCache, Path], tmp_path: Path) -> None:
    synthetic, config = installed
    settings = make_settings(synthetic.layout.root, config=config, **{"run.timeout_minutes": 90})
    options = ScheduleOptions(timeout_minutes=settings.run.timeout_minutes)
    out = tmp_path / "units"
    written = write_schedule(settings, options, "systemd", out)
    names = sorted(p.name for p in written)
    units = [
        f"alphahome-{j}.{k}" for j in ("backup", "health", "run") for k in ("service", "timer")
    ]
    assert names == sorted([*units, "alphahome.env.example"])
    user = getpass.getuser()
    for job in ("backup", "health", "run"):
        service = _unit_file((out / f"alphahome-{job}.service").read_text())["Service"]
        assert service["Type"] == ["oneshot"] and service["User"] == [user]
        assert service["EnvironmentFile"] == ["-/etc/alphahome/alphahome.env"]
        (start,) = service["ExecStart"]
        assert start.startswith("/") and f'"{config}"' in start  # a path with a space is quoted
        timer = _unit_file((out / f"alphahome-{job}.timer").read_text())
        assert timer["Install"]["WantedBy"] == ["timers.target"]
        assert timer["Timer"]["Persistent"] == ["true"]
    run = _unit_file((out / "alphahome-run.service").read_text())["Service"]
    assert run["TimeoutStartSec"] == [f"{90 * 60 + 300}s"]
    assert run["ExecStart"][0].endswith(" run --cadence calendar --freq weekly")
    timer = _unit_file((out / "alphahome-run.timer").read_text())["Timer"]
    assert timer["OnCalendar"] == ["Mon,Tue,Wed,Thu,Fri *-*-* 18:30:00"]
    env = (out / "alphahome.env.example").read_text()
    assert "TUSHARE_TOKEN=" in env and "DATABASE_URL=" in env
    if user != "root":
        assert "User=root" not in "".join(p.read_text() for p in written)
    # the printed form carries the same units
    text = render_schedule(settings, options, "systemd")
    assert text.count("[Timer]") == 3 and "### alphahome-run.service" in text
    assert "systemctl enable --now alphahome-backup.timer" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_pass_systemd_analyze_verify(
    installed: tuple[SyntheticCache, Path], tmp_path: Path
) -> None:
    synthetic, config = installed
    settings = make_settings(synthetic.layout.root, config=config)
    written = write_schedule(settings, ScheduleOptions(), "systemd", tmp_path / "units")
    units = [str(p) for p in written if p.suffix in (".service", ".timer")]
    done = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "alphahome" not in done.stderr, done.stderr


def test_cron_and_windows_write(synthetic: SyntheticCache, tmp_path: Path) -> None:
    settings = make_settings(synthetic.layout.root)
    (cron,) = write_schedule(settings, ScheduleOptions(), "cron", tmp_path / "c")
    assert cron.name == "alphahome.cron"
    assert cron.read_text() == render_schedule(settings, ScheduleOptions(), "cron")
    (cmd,) = write_schedule(settings, ScheduleOptions(), "windows", tmp_path / "w")
    assert cmd.read_bytes().count(b"\r\nschtasks ") == 3
    with pytest.raises(UsageError, match="not a directory"):
        write_schedule(settings, ScheduleOptions(), "cron", cron)


def test_windows_schtasks(synthetic: SyntheticCache) -> None:
    text = render_schedule(make_settings(synthetic.layout.root), ScheduleOptions(), "windows")
    lines = [line for line in text.split("\r\n") if line.startswith("schtasks ")]
    assert len(lines) == 3
    run = next(line for line in lines if "alphahome\\run" in line)
    assert "/SC WEEKLY /D MON,TUE,WED,THU,FRI /ST 18:30" in run
    assert "run --cadence calendar --freq weekly" in run and "cmd /c" not in run
    assert "/SC DAILY /ST 02:30" in next(line for line in lines if "alphahome\\backup" in line)
    health = next(line for line in lines if "alphahome\\health" in line)
    assert "health --quiet" in health


def test_due_on_the_last_open_day_of_the_week_and_month(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    days = open_days_between(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    week_ends = set(last_open_per_week(days))
    month_ends = {
        max(d for d in days if (d.year, d.month) == (y, m))
        for y, m in {(d.year, d.month) for d in days}
    }
    for day in all_days(dt.date(2024, 3, 25), dt.date(2024, 5, 8)):
        assert is_due(layout, "weekly", day) == (day in week_ends), day
        assert is_due(layout, "monthly", day) == (day in month_ends), day
    # Qingming: Thursday and Friday closed, the week ends on Wednesday the 3rd
    assert not is_open(dt.date(2024, 4, 5)) and is_due(layout, "weekly", dt.date(2024, 4, 3))
    assert is_due(layout, "monthly", dt.date(2024, 4, 30))


def test_not_due_without_a_calendar(tmp_path: Path) -> None:
    from cache.layout import CacheLayout

    assert not is_due(CacheLayout(tmp_path / "none"), "weekly", dt.date(2024, 6, 28))
