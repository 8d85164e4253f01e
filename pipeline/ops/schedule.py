"""`ah schedule`: ready-to-install cron lines, systemd units and timers, or `schtasks` commands.

Jobs: the evening job after the market data is published (18:30 Mon–Fri), one `ah run
--cadence calendar`: sync → PIT → factors → load, where the exchange calendar (the
cached `raw/trade_cal`) decides the weekly and monthly parts (factors on the period's
last open day, a full PIT on the week's last open day: pipeline/run/cadence.py); a
daily `ah health --quiet` (silent when all is well, so MAILTO mails only trouble) and
a nightly backup, each at a configurable time, with the absolute paths of this install
(the `ah` next to the running Python, else `python /abs/cli.py`), the config file and
the cache.

`--write DIR` writes the files to install instead of printing: `alphahome.cron`, or
one `.service` and one `.timer` per job (secrets through `EnvironmentFile=`, the
invoking user, `TimeoutStartSec` from `run.timeout_minutes`, which `ah run` enforces
itself first) and an `alphahome.env.example`, or `alphahome-schtasks.cmd`.

`ah schedule --due weekly|monthly` remains: it succeeds only on the last open day of
the week (month) according to the cached calendar (`is_due`), for hand-made jobs.
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

# The `ah` sub-commands of each job (arguments after the global options).
HEALTH = ("health", "--quiet")
BACKUP = ("backup",)
ENV_FILE = Path("/etc/alphahome/alphahome.env")
SECRET_VARIABLES = ("TUSHARE_TOKEN", "DATABASE_URL")
TIMEOUT_MARGIN_S = 300  # systemd's own stop comes after `ah run`'s clean one


def evening_run(freq: Period) -> tuple[str, ...]:
    """The evening job: the whole run, its weekly/monthly parts gated by the calendar."""
    return ("run", "--cadence", "calendar", "--freq", freq)


def due_guard(period: Period) -> tuple[str, ...]:
    """The guard that succeeds only on the period's last open day."""
    return ("schedule", "--due", period)


@dataclass(frozen=True)
class ScheduleOptions:
    """When each job runs (local time, HH:MM), on which weekdays, the factor frequency."""

    run_at: str = "18:30"
    freq: Period = "weekly"
    health_at: str = "07:30"
    backup_at: str = "02:30"
    weekdays: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    env_file: Path = ENV_FILE
    timeout_minutes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("run_at", "health_at", "backup_at"):
            value = getattr(self, name)
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
                msg = f"--{name.replace('_', '-')} must be HH:MM (24 h), got {value!r}"
                raise UsageError(msg)
        if self.freq not in PERIODS:
            msg = f"--freq must be weekly or monthly, got {self.freq!r}"
            raise UsageError(msg)
        unknown = [d for d in self.weekdays if d not in WEEKDAYS]
        if unknown or not self.weekdays:
            msg = f"--weekdays must name days among {', '.join(WEEKDAYS)}, got {self.weekdays!r}"
            raise UsageError(msg)
        if not Path(self.env_file).is_absolute() or re.search(r"\s", str(self.env_file)):
            msg = f"--env-file must be an absolute path without spaces, got {str(self.env_file)!r}"
            raise UsageError(msg)


@dataclass(frozen=True)
class Job:
    """One scheduled job: `ah` steps run in order, stopping at a failure."""

    name: str
    description: str
    at: str
    every_day: bool
    steps: tuple[tuple[str, ...], ...]
    timeout: bool = False  # bounded by run.timeout_minutes


def jobs(options: ScheduleOptions) -> list[Job]:
    """The jobs of an install, in the order of a day."""
    return [
        Job("backup", "nightly backup of the cache", options.backup_at, True, (BACKUP,)),
        Job("health", "daily health check", options.health_at, True, (HEALTH,)),
        Job(
            "run",
            f"evening run: sync, PIT, factors ({options.freq}, by the calendar), load",
            options.run_at,
            False,
            (evening_run(options.freq),),
            timeout=True,
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
        "# Commands log to <cache>/logs/alphahome.log; set MAILTO to get their output by mail",
        "# (ah health --quiet prints only when something is wrong). Secrets: the config file",
        "# (owner-only) or TUSHARE_TOKEN / DATABASE_URL set above these lines.",
        "SHELL=/bin/sh",
    ]
    for job in jobs(options):
        hour, minute = job.at.split(":")
        command = " && ".join(shlex.join([*prefix, *step]) for step in job.steps)
        command = command.replace("%", "\\%")  # a bare % ends a cron command
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


def service_user() -> str:
    """The user the units run as: the invoking one (the sudo caller under sudo)."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root" and getpass.getuser() == "root":
        return sudo_user
    return getpass.getuser()


def _timeout(options: ScheduleOptions) -> str:
    if options.timeout_minutes <= 0:
        return "infinity"
    return f"{round(options.timeout_minutes * 60) + TIMEOUT_MARGIN_S}s"


def systemd_units(settings: Settings, options: ScheduleOptions) -> dict[str, str]:
    """File name -> content: a .service and a .timer per job."""
    prefix = ah_prefix(settings)
    user = service_user()
    units: dict[str, str] = {}
    for job in jobs(options):
        unit = f"alphahome-{job.name}"
        service = [
            "[Unit]",
            f"Description=alphahome: {job.description}",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"User={user}",
            f"EnvironmentFile=-{str(options.env_file).replace('%', '%%')}",
        ]
        if job.timeout:
            service.append(f"TimeoutStartSec={_timeout(options)}")
        service += [f"ExecStart={_systemd_line([*prefix, *step])}" for step in job.steps]
        timer = [
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
        units[f"{unit}.service"] = "\n".join(service) + "\n"
        units[f"{unit}.timer"] = "\n".join(timer) + "\n"
    return units


def env_example(options: ScheduleOptions) -> str:
    """The EnvironmentFile template (the secrets, never in unit files)."""
    return (
        f"# Secrets for the alphahome units: install as {options.env_file}, mode 0600.\n"
        + "".join(f"# {name}=\n" for name in SECRET_VARIABLES)
    )


def _install_hint(options: ScheduleOptions, directory: str) -> list[str]:
    timers = " ".join(f"alphahome-{job.name}.timer" for job in jobs(options))
    return [
        f"# install: cp {directory}/alphahome-*.service {directory}/alphahome-*.timer "
        "/etc/systemd/system/",
        f"#          install -m 600 -D {directory}/alphahome.env.example {options.env_file} "
        "(then fill in the secrets)",
        f"#          systemctl daemon-reload && systemctl enable --now {timers}",
    ]


def render_systemd(settings: Settings, options: ScheduleOptions) -> str:
    """Every unit file, each under a `### <file>` header, with the commands to install them
    (`ah schedule --systemd --write DIR` writes the files themselves)."""
    out = ["# alphahome schedule (ah schedule --systemd)", *_install_hint(options, "DIR")]
    for name, text in systemd_units(settings, options).items():
        out += ["", f"### {name}", text.rstrip("\n")]
    out += ["", "### alphahome.env.example", env_example(options).rstrip("\n")]
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
        "REM Secrets: the config file, or TUSHARE_TOKEN / DATABASE_URL set with setx.",
        "REM The evening run stops itself after run.timeout_minutes (when set).",
    ]
    for job in jobs(options):
        chain = " && ".join(
            " ".join(_windows_quote(a) for a in [*prefix, *step]) for step in job.steps
        )
        action = f"cmd /c {chain}" if len(job.steps) > 1 else chain
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


def write_schedule(
    settings: Settings, options: ScheduleOptions, kind: Format, directory: Path
) -> list[Path]:
    """`ah schedule --write DIR`: the files to install, written into `directory`."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        msg = f"--write {directory}: not a directory"
        raise UsageError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, str]
    if kind == "systemd":
        files = {**systemd_units(settings, options), "alphahome.env.example": env_example(options)}
    elif kind == "windows":
        files = {"alphahome-schtasks.cmd": render_windows(settings, options)}
    else:
        files = {"alphahome.cron": render_cron(settings, options)}
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


def describe_written(kind: Format, options: ScheduleOptions, written: list[Path]) -> str:
    """What `ah schedule --write` prints: the files and how to install them."""
    directory = str(written[0].parent) if written else "DIR"
    lines = [f"wrote {p}" for p in written]
    if kind == "systemd":
        lines += [line.removeprefix("# ") for line in _install_hint(options, directory)]
    elif kind == "cron":
        lines.append(f"install: crontab {directory}/alphahome.cron  (replaces the user's crontab)")
    else:
        lines.append(f"install: run {directory}\\alphahome-schtasks.cmd in an elevated cmd.exe")
    return "\n".join(lines)
