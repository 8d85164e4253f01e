"""`ah schedule`: cron, systemd and schtasks entries, and the last-trading-day guard."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path

import pytest

from foundation.errors import UsageError
from pipeline.ops.schedule import ScheduleOptions, is_due, render_schedule
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


def test_cron_lines(installed: tuple[SyntheticCache, Path]) -> None:
    synthetic, config = installed
    settings = make_settings(synthetic.layout.root, config=config)
    text = render_schedule(settings, ScheduleOptions(), "cron")
    entries = [line for line in text.splitlines() if line and not line.startswith(("#", "SHELL"))]
    assert len(entries) == 5
    by_command = {}
    for line in entries:
        fields = line.split(" ", 5)
        by_command[line] = fields
        argv = shlex.split(fields[5].split(" && ")[0].replace(" >/dev/null", ""))
        assert Path(argv[0]).is_absolute()
        assert argv[argv.index("--config") + 1] == str(config)  # quoted: the path has a space
        assert argv[argv.index("--cache-dir") + 1] == str(synthetic.layout.root)
        if argv[0] == sys.executable:
            assert Path(argv[1]).name == "cli.py" and Path(argv[1]).is_absolute()
    sync = next(line for line in entries if line.rstrip().endswith(" sync"))
    assert sync.startswith("30 18 * * 1,2,3,4,5 ")
    pit = next(line for line in entries if " pit" in line)
    assert pit.startswith("0 20 * * 1,2,3,4,5 ") and "schedule --due weekly >/dev/null && " in pit
    assert pit.index(" pit") < pit.index("factors p --freq weekly")
    g = next(line for line in entries if "factors g " in line)
    assert "schedule --due weekly" in g and g.startswith("30 21 ")
    assert any(line.startswith("30 2 * * * ") and line.endswith(" backup") for line in entries)
    assert any(line.startswith("30 7 * * * ") and line.endswith(" health") for line in entries)


def test_cadences_are_configurable(synthetic: SyntheticCache) -> None:
    settings = make_settings(synthetic.layout.root)
    options = ScheduleOptions(
        sync_at="19:05", g_freq="monthly", g_at="22:00", weekdays=("mon", "wed")
    )
    text = render_schedule(settings, options, "cron")
    assert "5 19 * * 1,3 " in text
    g = next(line for line in text.splitlines() if "factors g " in line)
    assert g.startswith("0 22 * * 1,3 ") and "--due monthly" in g and "--freq monthly" in g
    with pytest.raises(UsageError, match="HH:MM"):
        ScheduleOptions(sync_at="25:00")
    with pytest.raises(UsageError, match="weekdays"):
        ScheduleOptions(weekdays=("funday",))


def test_systemd_units(installed: tuple[SyntheticCache, Path]) -> None:
    synthetic, config = installed
    text = render_schedule(
        make_settings(synthetic.layout.root, config=config), ScheduleOptions(), "systemd"
    )
    assert text.count("[Timer]") == 5 and text.count("Type=oneshot") == 5
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 18:30:00" in text
    assert "OnCalendar=*-*-* 02:30:00" in text
    assert text.count("ExecCondition=") == 2
    assert f'"{config}"' in text  # a path with a space is quoted
    for line in text.splitlines():
        if line.startswith(("ExecStart=", "ExecCondition=")):
            assert line.split("=", 1)[1].startswith("/")
    assert "systemctl enable --now alphahome-backup.timer" in text


def test_windows_schtasks(synthetic: SyntheticCache) -> None:
    text = render_schedule(make_settings(synthetic.layout.root), ScheduleOptions(), "windows")
    lines = [line for line in text.split("\r\n") if line.startswith("schtasks ")]
    assert len(lines) == 5
    sync = next(line for line in lines if "alphahome\\sync" in line)
    assert "/SC WEEKLY /D MON,TUE,WED,THU,FRI /ST 18:30" in sync
    pit = next(line for line in lines if "alphahome\\pit-p" in line)
    assert "cmd /c" in pit and "schedule --due weekly &&" in pit
    assert "/SC DAILY /ST 02:30" in next(line for line in lines if "alphahome\\backup" in line)


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
