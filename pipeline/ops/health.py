"""`ah health`: is this box ready, and was last night's data good? One table, exit 0/1.

Checks: the configuration loads, the config file holding a secret is owner-only, the
cache is writable, free disk is above `run.min_free_disk_gb`, the database is
reachable and migrated (`--check-db`), the Tushare token is accepted (`--check-api`),
every partition and state file is readable (none quarantined), which task locks (file
or PostgreSQL advisory) are held and by whom, the age of the last backup
(`run.max_backup_age_hours`), and per dataset how far the newest data is behind the
trading calendar. A `fail` makes the exit status 1; `warn` does not.

Also here, for the other engineers: `secure_state_dir(layout)` (owner-only state).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio

from cache.layout import LAYERS, CacheLayout
from cache.locks import LOCKS_SUBDIR
from cache.oslock import try_lock
from cache.quarantine import quarantined, unreadable_reason, unreadable_state_files
from foundation.config import ConfigError, Settings, mask_url
from foundation.logs import scrub
from pipeline.ops.records import last_backup
from pipeline.ops.stats import (
    TRADE_DATE_CADENCE,
    behind_counter,
    cache_stats,
    trade_calendar,
    unit_dates,
)
from pipeline.sources import market_today
from pipeline.sources.tushare.client import TushareClient
from pipeline.sources.tushare.errors import TushareError
from pipeline.sources.tushare.limits import RateLimits
from pipeline.sync.runner import recorded_source
from pipeline.sync.tasks import Calendar
from sinks.pg_inspect import migrations_applied
from sinks.postgres import DatabaseUnavailableError

Status = Literal["ok", "warn", "fail", "skip"]

GB = 1_000_000_000
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
UNIT_NAMES: dict[Calendar, str] = {"daily": "open days", "weekly": "weeks", "monthly": "months"}


@dataclass(frozen=True)
class Check:
    """One line of the health table."""

    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    """Every check of one `ah health` call."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when healthy, 1 when a check failed."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for `ah health --json`."""
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


# ---------------------------------------------------------------- permissions


def secure_state_dir(layout: CacheLayout) -> Path:
    """Create `<cache>/state` owner-only (0700) and make everything under it 0700/0600.

    Call before writing state, manifests or locks: they name hosts, pids and paths
    that other users of the box have no business reading.
    """
    state = layout.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    for path in [state, *state.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE)
    return state


def _secret_keys_from_file(settings: Settings) -> list[str]:
    """Secret settings whose value came from the config file (or a profile in it)."""
    secret_keys = ["tushare.token"]
    if settings.database.url and urlsplit(settings.database.url).password:
        secret_keys.append("database.url")
    in_file = ("file", "profile")
    return [k for k in secret_keys if settings.origins.get(k, "default").startswith(in_file)]


def check_config_permissions(settings: Settings) -> Check:
    """Warn when the config file holds a secret and group/others may read it."""
    path = settings.config_file
    if path is None:
        return Check("config permissions", "skip", "no config file")
    keys = _secret_keys_from_file(settings)
    mode = stat.S_IMODE(path.stat().st_mode)
    data = {"path": str(path), "mode": f"{mode:04o}", "secrets": keys}
    if keys and mode & 0o044:
        detail = (
            f"{path} holds {', '.join(keys)} and is readable by group/others "
            f"(mode {mode:04o}): chmod 600 {path}"
        )
        return Check("config permissions", "warn", detail, data)
    return Check("config permissions", "ok", f"{path} mode {mode:04o}", data)


def check_state_permissions(layout: CacheLayout) -> Check:
    """Warn when the state folder is open to group/others."""
    state = layout.state_dir
    if not state.is_dir():
        return Check("state permissions", "skip", f"{state} not created yet")
    mode = stat.S_IMODE(state.stat().st_mode)
    if mode & 0o077:
        detail = f"{state} is open to group/others (mode {mode:04o}): chmod -R go-rwx {state}"
        return Check("state permissions", "warn", detail, {"mode": f"{mode:04o}"})
    return Check("state permissions", "ok", f"{state} mode {mode:04o}", {"mode": f"{mode:04o}"})


# ---------------------------------------------------------------- the disk


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def check_cache_writable(root: Path) -> Check:
    """Write, sync and delete a probe file in the cache root (or the folder that will hold
    it: a warning then, since a mistyped `cache.dir` looks just like a new install)."""
    where = nearest_existing(root)
    if not where.is_dir():
        detail = f"cannot create {root}: {where} is not a directory"
        return Check("cache writable", "fail", detail, {"path": str(root)})
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".ah-health-") as probe:
            probe.write(b"alphahome health probe\n")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        detail = f"cannot write in {where}: {exc.strerror or exc}"
        return Check("cache writable", "fail", detail, {"path": str(root)})
    if where != root:  # a first run will create it; or cache.dir is mistyped
        detail = f"{root} does not exist yet (no run has written it; {where} is writable)"
        return Check("cache writable", "warn", detail, {"path": str(root)})
    return Check("cache writable", "ok", str(root), {"path": str(root)})


def check_disk(root: Path, min_free_gb: float) -> Check:
    """Fail when the cache's filesystem has less than `min_free_gb` GB free."""
    where = nearest_existing(root)
    where = where if where.is_dir() else where.parent
    usage = shutil.disk_usage(where)
    free_gb = usage.free / GB
    data = {"free_gb": round(free_gb, 3), "min_free_gb": min_free_gb, "path": str(where)}
    detail = f"{free_gb:.1f} GB free of {usage.total / GB:.1f} GB (floor {min_free_gb:g} GB)"
    return Check("disk space", "fail" if free_gb < min_free_gb else "ok", detail, data)


# ---------------------------------------------------------------- database and API


def _one_line(exc: BaseException, secrets: list[str]) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return scrub(text)


def check_database(url: str | None) -> Check:
    """Reach the database through the sink and look for ops.schema_migrations."""
    if url is None:
        return Check("database", "skip", "no database.url: results go to the embedded DuckDB")
    shown = mask_url(url)
    try:
        applied = migrations_applied(url)
    except DatabaseUnavailableError as exc:
        detail = f"cannot reach {shown}: {scrub(exc.reason)}"
        return Check("database", "fail", detail, {"url": shown})
    if applied is None:
        detail = f"{shown} reachable but not migrated (no ops.schema_migrations): run ah db migrate"
        return Check("database", "fail", detail, {"url": shown})
    detail = f"{shown} reachable, {applied} migrations applied"
    return Check("database", "ok", detail, {"url": shown, "migrations": applied})


async def _trade_cal_days(settings: Settings, token: str, today: dt.date) -> int:
    limits = RateLimits(settings.tushare.points, settings.tushare.limits)
    params = {
        "exchange": "SSE",
        "start_date": (today - dt.timedelta(days=7)).strftime("%Y%m%d"),
        "end_date": today.strftime("%Y%m%d"),
    }
    async with TushareClient(
        settings.tushare.base_url,
        token,
        limits=limits,
        timeout_s=settings.tushare.timeout_s,
        max_retries=0,
    ) as client:
        page = await client.query("trade_cal", params, ["cal_date", "is_open"], max_retries=0)
    return page.frame.height


def check_api(settings: Settings, today: dt.date) -> Check:
    """One cheap call through the project's client (trade_cal, last week): token accepted?"""
    token, base_url = settings.tushare.token, settings.tushare.base_url
    if not token:
        return Check("api token", "fail", "no token configured (tushare.token or TUSHARE_TOKEN)")
    try:
        days = anyio.run(_trade_cal_days, settings, token, today)
    except TushareError as exc:
        return Check("api token", "fail", f"{base_url}: {_one_line(exc, [token])}")
    return Check("api token", "ok", f"token accepted by {base_url} (trade_cal: {days} days)")


# ---------------------------------------------------------------- task locks


@dataclass(frozen=True)
class LockState:
    """A task lock file and, when held, what its holder wrote in it."""

    task: str
    path: Path | None  # None for a PostgreSQL advisory lock
    held: bool
    holder: str
    since: dt.datetime | None


def lock_files(layout: CacheLayout) -> list[Path]:
    """`<cache>/state/locks/*.lock`, sorted."""
    folder = layout.state_dir / LOCKS_SUBDIR
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


def _holder(path: Path) -> tuple[str, dt.datetime | None]:
    """What the holder wrote (cache.locks: JSON pid, host, since) as text, and since
    when (its `since`, else the file's mtime)."""
    since = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
    info: Any = None
    with contextlib.suppress(ValueError):
        info = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    if not isinstance(info, dict):
        return "an unknown holder", since
    with contextlib.suppress(KeyError, TypeError, ValueError):
        stated = dt.datetime.fromisoformat(info["since"])
        since = stated if stated.tzinfo else stated.replace(tzinfo=dt.UTC)
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}", since


def lock_states(layout: CacheLayout) -> list[LockState]:
    """Every task lock file and whether a process holds it (a lock probe, released at once)."""
    states = []
    for path in lock_files(layout):
        fd = os.open(path, os.O_RDONLY)
        try:
            free = try_lock(fd)
        finally:
            os.close(fd)
        holder, since = ("", None) if free else _holder(path)
        states.append(LockState(path.stem, path, not free, holder, since))
    return states


def advisory_lock_states(url: str) -> list[LockState]:
    """The PostgreSQL advisory locks of tasks and stages held now (`state.backend =
    "postgres"`), with their recorded holders."""
    from sinks.pg_state import held_locks

    states = []
    for task, info in held_locks(url):
        since = None
        holder = "an unknown holder"
        if info:
            holder = f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"
            with contextlib.suppress(KeyError, TypeError, ValueError):
                stated = dt.datetime.fromisoformat(info["since"])
                since = stated if stated.tzinfo else stated.replace(tzinfo=dt.UTC)
        states.append(LockState(task, None, True, holder, since))
    return states


def check_locks(
    layout: CacheLayout,
    max_seconds: float,
    now: dt.datetime,
    database_url: str | None = None,
) -> Check:
    """Which task locks are held and by whom; warn when one is older than the task alert.

    With `database_url` (the state in PostgreSQL) the advisory locks are read there, and
    any file lock of the cache is listed too.
    """
    try:
        found = advisory_lock_states(database_url) if database_url else []
    except DatabaseUnavailableError as exc:
        return Check("locks", "fail", f"advisory locks not readable: {scrub(str(exc))}")
    held = found + [s for s in lock_states(layout) if s.held]
    if not held:
        return Check("locks", "ok", "no task lock held", {"held": []})
    data = {"held": [{"task": s.task, "holder": s.holder} for s in held]}
    detail = "; ".join(f"{s.task} held by {s.holder}" for s in held)
    old = [s.task for s in held if s.since and (now - s.since).total_seconds() > max_seconds]
    if old:
        detail += f" (held longer than {max_seconds:g} s: {', '.join(old)})"
        return Check("locks", "warn", detail, data)
    return Check("locks", "ok", detail, data)


# ---------------------------------------------------------------- damaged files


def damaged_files(layout: CacheLayout) -> list[str]:
    """One line per damaged thing: a Parquet file whose footer cannot be read, a state
    file that does not parse (task states, the PIT and factor build states, the other
    documents and the factors' stock lists), a quarantined file not yet repaired."""
    lines = []
    for layer in LAYERS:
        base = layout.root / layer
        for path in sorted(base.rglob("*.parquet")) if base.is_dir() else []:
            reason = unreadable_reason(path)
            if reason:
                lines.append(f"{path.relative_to(layout.root)}: {reason}")
    for path, reason in unreadable_state_files(layout).items():
        shown = path.relative_to(layout.root) if path.is_relative_to(layout.root) else path
        lines.append(f"{shown}: {reason}")
    lines += [f"quarantined {e.line()}" for e in quarantined(layout)]
    return lines


def check_damage(layout: CacheLayout) -> Check:
    """Fail naming every unreadable partition or state file and every quarantined one
    (`ah repair` re-fetches and rebuilds them)."""
    lines = damaged_files(layout)
    if not lines:
        return Check("files", "ok", "every partition and state file readable", {"damaged": []})
    detail = "; ".join(lines) + " (run ah repair)"
    return Check("files", "fail", detail, {"damaged": lines})


# ---------------------------------------------------------------- freshness


@dataclass(frozen=True)
class Freshness:
    """How far one dataset's newest date is behind the trading calendar."""

    dataset: str
    date_column: str | None
    newest: dt.date | None
    cadence: Calendar | None
    behind: int | None
    stale: bool


def dataset_freshness(
    layout: CacheLayout, today: dt.date, allowed_behind: int = 1
) -> list[Freshness]:
    """Per dataset, the newest date (from footers) and the due units after it.

    Only the per-trade-date raw datasets (stats.TRADE_DATE_CADENCE) can be stale: more
    than `allowed_behind` due units (open days, week ends, month ends) after their
    newest date. Others report how many open days their newest date is behind.
    """
    behind_by = behind_counter(trade_calendar(layout), today)
    found = []
    for s in cache_stats(layout):
        cadence = TRADE_DATE_CADENCE.get(s.name) if s.layer == "raw" else None
        behind = None
        if s.date_column is not None:
            behind = behind_by(cadence or "daily", s.last_date)
        stale = cadence is not None and behind is not None and behind > allowed_behind
        found.append(Freshness(s.key, s.date_column, s.last_date, cadence, behind, stale))
    return found


def check_freshness(layout: CacheLayout, today: dt.date, allowed_behind: int) -> list[Check]:
    """The calendar line and one line per dataset."""
    past = unit_dates(trade_calendar(layout), "daily", today)
    if past.is_empty():
        return [Check("calendar", "warn", "raw/trade_cal not cached: staleness not checked")]
    last = past[-1]
    checks = [
        Check("calendar", "ok", f"last open day <= {today}: {last}", {"last_open": str(last)})
    ]
    for f in dataset_freshness(layout, today, allowed_behind):
        unit = UNIT_NAMES[f.cadence or "daily"]
        if f.newest is None:
            detail = "no dated rows" if f.date_column else "no date column"
        else:
            detail = f"newest {f.date_column} {f.newest}"
            if f.behind is not None:
                detail += f", {f.behind} {unit} behind"
        if f.stale:
            detail += f" (allowed {allowed_behind})"
        status: Status = "fail" if f.stale else "ok"
        data = {"newest": str(f.newest) if f.newest else None, "behind": f.behind, "stale": f.stale}
        checks.append(Check(f"data {f.dataset}", status, detail, data))
    return checks


def check_backup(layout: CacheLayout, max_age_hours: float, now: dt.datetime) -> Check:
    """The last recorded backup (`ah backup`): none warns, older than the limit fails."""
    if max_age_hours <= 0:
        return Check("backup", "skip", "not checked (run.max_backup_age_hours = 0)")
    found = last_backup(layout)
    if found is None:
        return Check("backup", "warn", "no backup recorded: schedule ah backup (ah schedule)")
    when, doc = found
    hours = (now - when).total_seconds() / 3600
    data = {
        "finished": when.isoformat(),
        "age_hours": round(hours, 2),
        "snapshot": doc.get("snapshot"),
    }
    detail = f"last {when:%Y-%m-%d %H:%M} UTC, {hours:.1f} h ago ({doc.get('snapshot')})"
    if hours > max_age_hours:
        return Check("backup", "fail", f"{detail}; older than {max_age_hours:g} h", data)
    return Check("backup", "ok", detail, data)


# ---------------------------------------------------------------- the whole check


def check_health(
    load: Callable[[], Settings],
    *,
    check_db: bool = False,
    check_api_token: bool = False,
    stale_after: int = 1,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
) -> HealthReport:
    """Run every check; `load` gives the settings (a ConfigError becomes a failed check).

    `stale_after`: a per-trade-date dataset more than this many due units behind fails.
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        settings = load()
    except ConfigError as exc:
        return HealthReport([Check("config", "fail", str(exc))])
    layout = CacheLayout(settings.cache.dir)
    today = today or market_today(settings, recorded_source(layout))
    source = settings.config_file or "defaults and environment"
    checks = [
        Check("config", "ok", f"valid ({source}; profile {settings.profile or 'none'})"),
        check_config_permissions(settings),
        check_cache_writable(layout.root),
        check_disk(layout.root, settings.run.min_free_disk_gb),
        check_state_permissions(layout),
    ]
    checks.append(
        check_database(settings.database.url)
        if check_db
        else Check("database", "skip", "not checked (--check-db)")
    )
    checks.append(
        check_api(settings, today)
        if check_api_token
        else Check("api token", "skip", "not checked (--check-api)")
    )
    locks_at = CacheLayout(settings.cache.dir, settings.state.dir)  # `[state] dir`
    pg_state = settings.database.url if settings.state.backend == "postgres" else None
    checks.append(check_damage(layout))
    checks.append(check_locks(locks_at, settings.run.max_task_seconds_alert, now, pg_state))
    checks.append(check_backup(layout, settings.run.max_backup_age_hours, now))
    checks += check_freshness(layout, today, stale_after)
    return HealthReport(checks)


def render_health(report: HealthReport) -> str:
    """The terminal table and a closing verdict line."""
    width = max(len(c.name) for c in report.checks)
    lines = [f"{'check':<{width}}  status  detail"]
    for c in report.checks:
        shown = c.status.upper() if c.status in ("fail", "warn") else c.status
        lines.append(f"{c.name:<{width}}  {shown:<6}  {c.detail}")
    failed = sum(c.status == "fail" for c in report.checks)
    warned = sum(c.status == "warn" for c in report.checks)
    verdict = "ok" if report.ok else f"FAIL ({failed} failed)"
    lines.append(f"health: {verdict}" + (f", {warned} warnings" if warned else ""))
    return "\n".join(lines)


def health_output(report: HealthReport, as_json: bool, quiet: bool = False) -> str:
    """What `ah health` prints: the table, or the JSON document. `quiet`: nothing when no
    check failed or warned, else only those checks and the verdict (for cron's MAILTO)."""
    if as_json:
        return json.dumps(report.to_dict(), indent=2, default=str, ensure_ascii=False)
    if quiet:
        trouble = [c for c in report.checks if c.status in ("fail", "warn")]
        return render_health(HealthReport(trouble)) if trouble else ""
    return render_health(report)
