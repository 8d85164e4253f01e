"""`ah schedule`: ready-to-install cron lines, systemd timers or Windows `schtasks` commands.

Jobs: the daily sync after the market data is published (18:30 Mon–Fri), PIT + P on the
week's last trading day, G weekly or monthly, a daily health check and a nightly backup,
each at a configurable time, with the absolute paths of this install (the `ah` next to
the running Python, else `python /abs/cli.py`), the config file and the cache.

Cron cannot know the trading calendar, so the weekly and monthly jobs run every weekday
behind a guard, `ah schedule --due weekly|monthly`, that succeeds only on the last open
day of the week (month) according to the cached `raw/trade_cal` (`is_due`).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cache.layout import CacheLayout
from foundation.config import Settings
from foundation.errors import UsageError
from pipeline.ops.stats import trade_calendar, unit_dates

Format = Literal["cron", "systemd", "windows"]
Period = Literal["weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("weekly", "monthly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLI = Path(__file__).resolve().parents[1] / "cli.py"

# The `ah` sub-commands of each step (arguments after the global options).
SYNC = ("sync",)
PIT = ("pit",)
FACTOR_P = ("factors", "p", "--freq", "weekly")
HEALTH = ("health",)
BACKUP = ("backup",)


def factor_g(freq: Period) -> tuple[str, ...]:
    """The G step at its calc-date frequency."""
    return ("factors", "g", "--freq", freq)


def due_guard(period: Period) -> tuple[str, ...]:
    """The guard that succeeds only on the period's last open day."""
    return ("schedule", "--due", period)


@dataclass(frozen=True)
class ScheduleOptions:
    """When each job runs (local time, HH:MM) and on which weekdays."""

    sync_at: str = "18:30"
    pit_at: str = "20:00"
    g_at: str = "21:30"
    g_freq: Period = "weekly"
    health_at: str = "07:30"
    backup_at: str = "02:30"
    weekdays: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")

    def __post_init__(self) -> None:
        for name in ("sync_at", "pit_at", "g_at", "health_at", "backup_at"):
            value = getattr(self, name)
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
                msg = f"--{name.replace('_', '-')} must be HH:MM (24 h), got {value!r}"
                raise UsageError(msg)
        if self.g_freq not in PERIODS:
            msg = f"--g-freq must be weekly or monthly, got {self.g_freq!r}"
            raise UsageError(msg)
        unknown = [d for d in self.weekdays if d not in WEEKDAYS]
        if unknown or not self.weekdays:
            msg = f"--weekdays must name days among {', '.join(WEEKDAYS)}, got {self.weekdays!r}"
            raise UsageError(msg)


@dataclass(frozen=True)
class Job:
    """One scheduled job: a guard (optional) and `ah` steps run in order, stopping at a failure."""

    name: str
    description: str
    at: str
    every_day: bool
    guard: tuple[str, ...] | None
    steps: tuple[tuple[str, ...], ...]


def jobs(options: ScheduleOptions) -> list[Job]:
    """The jobs of an install, in the order of a day."""
    return [
        Job("backup", "nightly backup of the cache", options.backup_at, True, None, (BACKUP,)),
        Job("health", "daily health check", options.health_at, True, None, (HEALTH,)),
        Job(
            "sync",
            "daily sync after the market data is published",
            options.sync_at,
            False,
            None,
            (SYNC,),
        ),
        Job(
            "pit-p",
            "PIT tables and P on the week's last trading day",
            options.pit_at,
            False,
            due_guard("weekly"),
            (PIT, FACTOR_P),
        ),
        Job(
            "g",
            f"G on the {options.g_freq[:-2]}'s last trading day",
            options.g_at,
            False,
            due_guard(options.g_freq),
            (factor_g(options.g_freq),),
        ),
    ]


def ah_prefix(settings: Settings) -> list[str]:
    """The absolute command that runs `ah` with this install's config file and cache."""
    scripts = Path(sys.executable).parent
    exe = scripts / ("ah.exe" if os.name == "nt" else "ah")
    prefix = [str(exe)] if exe.exists() else [str(Path(sys.executable).absolute()), str(CLI)]
    if settings.config_file is not None:
        prefix += ["--config", str(Path(settings.config_file).absolute())]
    if settings.profile:
        prefix += ["--profile", settings.profile]
    return [*prefix, "--cache-dir", str(CacheLayout(settings.cache.dir).root)]


def is_due(layout: CacheLayout, period: Period, today: dt.date) -> bool:
    """True when `today` is the last open day of its week (month) in the cached calendar."""
    return today in unit_dates(trade_calendar(layout), period, today).to_list()


def check_due(settings: Settings, period: Period, today: dt.date | None = None) -> tuple[bool, str]:
    """`ah schedule --due`: (due?, the line to print) for today in the cached calendar."""
    if period not in PERIODS:
        msg = f"--due must be weekly or monthly, got {period!r}"
        raise UsageError(msg)
    day = today or dt.date.today()
    due = is_due(CacheLayout(settings.cache.dir), period, day)
    unit = period[:-2]
    verdict = "is" if due else "is not"
    return due, f"{day} {verdict} the last trading day of its {unit}"


# ---------------------------------------------------------------- cron


def _cron_days(job: Job, options: ScheduleOptions) -> str:
    if job.every_day:
        return "*"
    return ",".join(str(WEEKDAYS.index(d) + 1) for d in options.weekdays)


def render_cron(settings: Settings, options: ScheduleOptions) -> str:
    """crontab lines; install with `crontab -e` (or into /etc/cron.d with a user column)."""
    prefix = ah_prefix(settings)
    lines = [
        "# alphahome schedule (ah schedule --cron); times are this machine's local time zone.",
        "# Commands log to <cache>/logs/alphahome.log; set MAILTO to get their output by mail.",
        "SHELL=/bin/sh",
    ]
    for job in jobs(options):
        hour, minute = job.at.split(":")
        parts = []
        if job.guard:
            parts.append(shlex.join([*prefix, *job.guard]) + " >/dev/null")
        parts += [shlex.join([*prefix, *step]) for step in job.steps]
        command = " && ".join(parts).replace("%", "\\%")  # a bare % ends a cron command
        lines += [
            f"# {job.name}: {job.description}",
            f"{int(minute)} {int(hour)} * * {_cron_days(job, options)} {command}",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- systemd


def _systemd_quote(arg: str) -> str:
    escaped = arg.replace("%", "%%")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_line(argv: Sequence[str]) -> str:
    return " ".join(_systemd_quote(a) for a in argv)


def _on_calendar(job: Job, options: ScheduleOptions) -> str:
    days = "" if job.every_day else ",".join(d.capitalize() for d in options.weekdays) + " "
    return f"{days}*-*-* {job.at}:00"


def render_systemd(settings: Settings, options: ScheduleOptions) -> str:
    """A .service and a .timer per job, with the commands to install them."""
    prefix = ah_prefix(settings)
    user = getpass.getuser()
    names = [f"alphahome-{job.name}.timer" for job in jobs(options)]
    out = [
        "# alphahome schedule (ah schedule --systemd): save each unit under /etc/systemd/system/,",
        f"# then: systemctl daemon-reload && systemctl enable --now {' '.join(names)}",
        "# A weekly/monthly job whose ExecCondition fails (not the last trading day) is skipped.",
    ]
    for job in jobs(options):
        unit = f"alphahome-{job.name}"
        service = [
            f"### {unit}.service",
            "[Unit]",
            f"Description=alphahome: {job.description}",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"User={user}",
        ]
        if job.guard:
            service.append(f"ExecCondition={_systemd_line([*prefix, *job.guard])}")
        service += [f"ExecStart={_systemd_line([*prefix, *step])}" for step in job.steps]
        timer = [
            f"### {unit}.timer",
            "[Unit]",
            f"Description=alphahome: {job.description} ({job.at})",
            "",
            "[Timer]",
            f"OnCalendar={_on_calendar(job, options)}",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]
        out += ["", *service, "", *timer]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- Windows


def _windows_quote(arg: str) -> str:
    return f'"{arg}"' if re.search(r"[\s&|<>^]", arg) else arg


def render_windows(settings: Settings, options: ScheduleOptions) -> str:
    """`schtasks /Create` commands for cmd.exe (one task per job, under \\alphahome\\)."""
    prefix = ah_prefix(settings)
    lines = [
        "REM alphahome schedule (ah schedule --windows): run these in an elevated cmd.exe.",
        "REM schtasks limits /TR to 261 characters: shorten paths if a line is refused.",
    ]
    for job in jobs(options):
        commands = [job.guard, *job.steps] if job.guard else list(job.steps)
        chain = " && ".join(" ".join(_windows_quote(a) for a in [*prefix, *c]) for c in commands)
        action = f"cmd /c {chain}" if len(commands) > 1 else chain
        action = action.replace('"', '\\"')
        if job.every_day:
            when = "/SC DAILY"
        else:
            when = "/SC WEEKLY /D " + ",".join(d.upper() for d in options.weekdays)
        lines += [
            f"REM {job.name}: {job.description}",
            f'schtasks /Create /F /TN "alphahome\\{job.name}" {when} /ST {job.at} /TR "{action}"',
        ]
    return "\r\n".join(lines) + "\r\n"


def render_schedule(settings: Settings, options: ScheduleOptions, kind: Format = "cron") -> str:
    """The schedule in the chosen format (what `ah schedule` prints)."""
    renderers = {"cron": render_cron, "systemd": render_systemd, "windows": render_windows}
    return renderers[kind](settings, options)
