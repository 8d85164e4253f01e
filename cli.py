"""`ah`: the alphahome command line. Thin: parse, call one function, print.

Start-up stays light (`ah --version` and `ah --help` import typer and little else): each
command imports what it uses, and the configuration and logging modules load on first use.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer's own click

from foundation.errors import AlphahomeError, StorageError, UsageError

if TYPE_CHECKING:
    from foundation.config import Settings

app = typer.Typer(
    name="ah",
    help="alphahome: Tushare Pro to a point-in-time Parquet cache, P and G factors, PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: Rich's help renderer costs a second at start-up
)
config_app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alphahome")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class AppState:
    """Global options, and the settings loaded from them on first use."""

    config: Path | None = None
    profile: str | None = None
    log_level: str | None = None
    cache_dir: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, **flags: Any) -> Settings:
        """Load the effective settings (command flags win over everything else)."""
        from foundation.config import check_task_names, load_settings
        from foundation.logs import register_secrets

        if self._settings is None or flags:
            all_flags = {"run.log_level": self.log_level, "cache.dir": self.cache_dir, **flags}
            settings = load_settings(self.config, self.profile, all_flags)
            register_secrets(settings.secrets())
            if settings.tasks or settings.run.exclude_tasks:  # names only the sync knows
                from pipeline.sync.tasks import TASKS_BY_NAME

                check_task_names(settings, TASKS_BY_NAME)
            self._settings = settings
        return self._settings


STATE = AppState()


def start_logging(settings: Settings) -> None:
    """Start the console and file logs of a command that does work (`foundation.logs`)."""
    from foundation.logs import start_logging as start

    start(settings)


def _json(data: Any) -> str:
    """The machine-readable form of a report (`--json`): indented, UTF-8 kept."""
    import json

    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alphahome {_version()}")
        raise typer.Exit


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile overlay.")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG…ERROR.")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache root.")] = None,
    _version_flag: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print version."),
    ] = False,
) -> None:
    """Global options (they override the config file and the environment)."""
    STATE.config, STATE.profile = config, profile
    STATE.log_level = log_level.upper() if log_level else None
    STATE.cache_dir = cache_dir
    STATE._settings = None


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (secrets masked) and where each value came from."""
    from foundation.config import describe

    settings = STATE.settings()
    rows = describe(settings)
    source = str(settings.config_file) if settings.config_file else "(no config file)"
    typer.echo(f"# config file: {source}; profile: {settings.profile or '(none)'}")
    width = max(len(k) for k, _, _ in rows)
    for key, shown, origin in rows:
        typer.echo(f"{key:<{width}}  {shown}  [{origin}]")


@config_app.command("check")
def config_check() -> None:
    """Validate the configuration; exit 0 when valid, 2 otherwise."""
    settings = STATE.settings()
    typer.echo(f"configuration ok ({settings.config_file or 'defaults and environment'})")


@config_app.command("example")
def config_example() -> None:
    """Print an example config file: every key, its default and its meaning (commented)."""
    from foundation.config import example_config

    typer.echo(example_config(), nl=False)


state_app = typer.Typer(help="Show and reset the state of sync tasks.", no_args_is_help=True)
app.add_typer(state_app, name="state")
_DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d"]
# AlphaHome's script flags (both spellings), each feeding one config key as a flag layer.
_MAX_RETRIES = typer.Option("--max-retries", "--max_retries", help="run.max_retries")
_RETRY_DELAY = typer.Option("--retry-delay", "--retry_delay", help="run.retry_delay_s (s)")
_BATCH_SIZE = typer.Option("--batch-size", "--batch_size", help="run.batch_size (units/commit)")
_USE_DB_STATE = typer.Option("--use-db-state", help="state.backend = postgres")
_STATE_DIR = typer.Option("--state-dir", help="state.dir (task state and locks)")


def _state_flags(use_db_state: bool, state_dir: Path | None) -> dict[str, Any]:
    """The config paths the state-backend flags set (None: not given)."""
    return {"state.backend": "postgres" if use_db_state else None, "state.dir": state_dir}


_EXEC_OPT = typer.Option("--executor", help="process | inline | local-dask | dask://HOST:PORT")


@app.command("sync")
def sync_command(
    tasks: Annotated[
        list[str] | None, typer.Argument(help="Tasks (default: [sync] groups, or the 26).")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="sim | tushare")] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-fetch every unit.")] = False,
    start: Annotated[datetime | None, typer.Option("--start", formats=_DATE_FORMATS)] = None,
    end: Annotated[datetime | None, typer.Option("--end", formats=_DATE_FORMATS)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    mode: Annotated[str, typer.Option("--mode", help="upsert | append")] = "upsert",
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Plan afresh.")] = False,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Skip a task.")] = None,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="default, all, market, finance, an area (fund, hk, …)"),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Tasks at once.")] = None,
    exchange: Annotated[str | None, typer.Option("--exchange", help="stock_basic")] = None,
    list_status: Annotated[str | None, typer.Option("--list-status", help="L|D|P")] = None,
    max_retries: Annotated[int | None, _MAX_RETRIES] = None,
    retry_delay: Annotated[float | None, _RETRY_DELAY] = None,
    batch_size: Annotated[int | None, _BATCH_SIZE] = None,
    use_db_state: Annotated[bool, _USE_DB_STATE] = False,
    state_dir: Annotated[Path | None, _STATE_DIR] = None,
) -> None:
    """Fetch what is missing from the source into the cache's raw/ datasets."""
    from pipeline.sync.runner import SyncRequest, run_sync

    settings = STATE.settings(**{
        "run.workers": workers,  # checks --workers like the key
        "run.max_retries": max_retries, "run.retry_delay_s": retry_delay,
        "run.batch_size": batch_size, **_state_flags(use_db_state, state_dir),
    })  # fmt: skip
    start_logging(settings)
    filters = {k: v for k, v in (("exchange", exchange), ("list_status", list_status)) if v}
    report = run_sync(
        settings,
        SyncRequest(
            tasks=tuple(tasks or ()),
            source=source,
            full=full,
            start=start.date() if start else None,
            end=end.date() if end else None,
            dry_run=dry_run,
            mode=mode,  # type: ignore[arg-type]
            resume=not no_resume,
            exclude=tuple(exclude or ()),
            groups=tuple(group or ()),
            workers=workers,
            filters=filters,
        ),
    )
    if not dry_run:
        from pipeline.run.job import publish_report

        publish_report(settings, report)
    typer.echo(report.render())
    raise typer.Exit(report.exit_code)


@app.command("tasks")
def tasks_command(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    use_db_state: Annotated[bool, _USE_DB_STATE] = False,
    state_dir: Annotated[Path | None, _STATE_DIR] = None,
    all_tasks: Annotated[
        bool, typer.Option("--all", help="Every catalogued API, with area and points.")
    ] = False,
) -> None:
    """Each dataset with its rows, first/last date and last successful sync."""
    from pipeline.sync.listing import list_tasks, render_tasks, tasks_json

    settings = STATE.settings(**_state_flags(use_db_state, state_dir))
    rows = list_tasks(settings, all_tasks=all_tasks)
    typer.echo(_json(tasks_json(rows)) if as_json else render_tasks(rows, coverage=all_tasks))


@state_app.command("show")
def state_show(
    task: Annotated[str | None, typer.Argument(help="One task.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
    use_db_state: Annotated[bool, _USE_DB_STATE] = False,
    state_dir: Annotated[Path | None, _STATE_DIR] = None,
) -> None:
    """Print the stored state of a task (or of every task)."""
    from pipeline.state import show_state, state_documents

    settings = STATE.settings(**_state_flags(use_db_state, state_dir))
    if as_json:
        typer.echo(_json(state_documents(settings, task)))
        return
    typer.echo(show_state(settings, task))


@state_app.command("reset")
def state_reset(
    task: Annotated[str, typer.Argument(help="The task to forget.")],
    use_db_state: Annotated[bool, _USE_DB_STATE] = False,
    state_dir: Annotated[Path | None, _STATE_DIR] = None,
) -> None:
    """Forget a task's state: its next sync plans every unit again."""
    from pipeline.state import reset_state

    typer.echo(reset_state(STATE.settings(**_state_flags(use_db_state, state_dir)), task))


@app.command("health")
def health_command(
    check_db: Annotated[bool, typer.Option("--check-db", help="Reach the database.")] = False,
    check_api: Annotated[bool, typer.Option("--check-api", help="Try the token.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    stale_days: Annotated[
        int, typer.Option("--stale-days", min=0, max=10_000, help="Units behind allowed.")
    ] = 1,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only failed and warned checks.")
    ] = False,
) -> None:
    """Configuration, cache, disk, locks, data freshness, backups (and database, token): 0 or 1."""
    from pipeline.ops.health import check_health, health_output

    report = check_health(
        STATE.settings, check_db=check_db, check_api_token=check_api, stale_after=stale_days
    )
    text = health_output(report, as_json, quiet=quiet)
    if text:
        typer.echo(text)
    raise typer.Exit(report.exit_code)


@app.command("stats")
def stats_command(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
    runs: Annotated[
        int, typer.Option("--runs", min=0, max=100_000, help="Recent runs shown.")
    ] = 10,
) -> None:
    """Rows, size, date range and last update per dataset; run history from the reports."""
    from cache.layout import CacheLayout
    from pipeline.ops.stats import stats_output

    settings = STATE.settings()
    typer.echo(stats_output(CacheLayout(settings.cache.dir), settings.database.url, as_json, runs))


@app.command("sql")
def sql_command(
    query: Annotated[
        str, typer.Argument(help="SQL on the catalogue, e.g. select … from raw.daily")
    ],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json | parquet")] = "table",
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file.")] = None,
) -> None:
    """Run one SQL query on the DuckDB catalogue (read-only) and print or save the result."""
    from cache.layout import CacheLayout
    from pipeline.ops.sql import run_sql

    layout = CacheLayout(STATE.settings().cache.dir)
    typer.echo(run_sql(layout, query, fmt, output), nl=False)


@app.command("shell")
def shell_command() -> None:
    """An interactive SQL prompt on the DuckDB catalogue (read-only); reads a script from
    standard input when it is not a terminal."""
    from cache.layout import CacheLayout
    from pipeline.ops.sql import shell

    layout = CacheLayout(STATE.settings().cache.dir)
    raise typer.Exit(shell(layout, sys.stdin, sys.stdout, sys.stdin.isatty()))


@app.command("describe")
def describe_command(
    table: Annotated[
        str | None, typer.Argument(help="raw.daily, pit.indicators, … (default: every table)")
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Markdown, as docs/columns.md.")
    ] = False,
) -> None:
    """What each column means: type, meaning, unit and source, per table."""
    from cache.catalogue.columns import describe

    typer.echo(describe(table, markdown), nl=False)


@app.command("verify")
def verify_command(
    datasets: Annotated[list[str] | None, typer.Argument(help="e.g. daily, pit.indicators")] = None,
    skip_sink: Annotated[bool, typer.Option("--skip-sink", help="No database counts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of lines.")] = False,
) -> None:
    """Data quality: corrupt files, gaps, duplicate keys, PIT violations, ranges, sink drift."""
    from cache.layout import CacheLayout
    from pipeline.ops.verify import verify_cache

    settings = STATE.settings()
    url = None if skip_sink else settings.database.url
    layout = CacheLayout(settings.cache.dir)
    report = verify_cache(layout, datasets or (), url, settings.sinks.raw_datasets)
    if not datasets:  # a whole-cache verify is what the metrics report
        from pipeline.ops.records import record_verify

        when = datetime.now(UTC)
        record_verify(layout, len(report.datasets), [f.check for f in report.findings], when)
        _refresh_metrics(settings)
    typer.echo(_json(report.to_dict()) if as_json else report.render())
    raise typer.Exit(report.exit_code)


@app.command("repair")
def repair_command(
    datasets: Annotated[list[str] | None, typer.Argument(help="Raw tasks (default: all).")] = None,
    executor: Annotated[str, _EXEC_OPT] = "process",
    source: Annotated[str | None, typer.Option("--source", help="sim | tushare")] = None,
) -> None:
    """Re-fetch quarantined partitions and calendar gaps; rebuild the PIT and factor files
    that depend on them."""
    from pipeline.ops.repair import repair_cache

    settings = STATE.settings()
    start_logging(settings)
    result = repair_cache(settings, datasets or (), executor, source)
    typer.echo("\n".join(result.lines))
    raise typer.Exit(result.exit_code)


backup_app = typer.Typer(help="Snapshot the cache (and the database).")
app.add_typer(backup_app, name="backup", invoke_without_command=True)
_DEST = typer.Option("--dest", help="Backup root (default <cache>/../alphahome-backups).")


@backup_app.callback(invoke_without_command=True)
def backup_command(
    ctx: typer.Context,
    dest: Annotated[Path | None, _DEST] = None,
    keep_daily: Annotated[int, typer.Option("--keep-daily", min=1, help="Daily kept.")] = 7,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", min=0, help="Weekly kept.")] = 4,
) -> None:
    """Take a verified, incremental snapshot; `ah backup list` shows them."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.ops.backup import create_backup, describe_backup

    settings = STATE.settings()
    start_logging(settings)
    typer.echo(describe_backup(create_backup(settings, dest, keep_daily, keep_weekly)))
    _refresh_metrics(settings)


def _refresh_metrics(settings: Settings) -> None:
    """Refresh the non-run series of the metrics file (backup, verify, datasets)."""
    from cache.layout import CacheLayout
    from pipeline.run.metrics import refresh_metrics
    from pipeline.sources import market_today
    from pipeline.sync.runner import recorded_source

    layout = CacheLayout(settings.cache.dir)
    refresh_metrics(layout, market_today(settings, recorded_source(layout)))


@backup_app.command("verify")
def backup_verify(
    snapshot: Annotated[str | None, typer.Argument(help="Snapshot name (default: newest).")] = None,
    dest: Annotated[Path | None, _DEST] = None,
) -> None:
    """Re-hash every file of a snapshot (and its config copy) against its manifest."""
    from cache.layout import CacheLayout
    from pipeline.ops.backup import default_backup_root, describe_verify, verify_backup

    root = dest or default_backup_root(CacheLayout(STATE.settings().cache.dir))
    typer.echo(describe_verify(verify_backup(root, snapshot)))


@backup_app.command("list")
def backup_list(dest: Annotated[Path | None, _DEST] = None) -> None:
    """The snapshots under the backup root."""
    from cache.layout import CacheLayout
    from pipeline.ops.backup import default_backup_root, list_backups, render_backups

    root = dest or default_backup_root(CacheLayout(STATE.settings().cache.dir))
    typer.echo(render_backups(list_backups(root), root))


@app.command("restore")
def restore_command(
    snapshot: Annotated[str | None, typer.Argument(help="Snapshot name (default: newest).")] = None,
    dest: Annotated[Path | None, _DEST] = None,
    with_database: Annotated[bool, typer.Option("--with-database", help="pg_restore too.")] = False,
) -> None:
    """Replace the cache by a snapshot (refused while a task lock is held)."""
    from pipeline.ops.backup import describe_restore, restore_backup

    settings = STATE.settings()
    start_logging(settings)
    typer.echo(describe_restore(restore_backup(settings, snapshot, dest, with_database)))


@app.command("schedule")
def schedule_command(
    cron: Annotated[bool, typer.Option("--cron", help="crontab lines (default).")] = False,
    systemd: Annotated[bool, typer.Option("--systemd", help="systemd units and timers.")] = False,
    windows: Annotated[bool, typer.Option("--windows", help="schtasks commands.")] = False,
    write: Annotated[
        Path | None, typer.Option("--write", help="Write the files to install into DIR.")
    ] = None,
    run_at: Annotated[
        str, typer.Option("--run-at", "--sync-at", help="Evening ah run, HH:MM on --weekdays.")
    ] = "18:30",
    freq: Annotated[
        str, typer.Option("--freq", "--g-freq", help="Factor calc dates: weekly | monthly.")
    ] = "weekly",
    health_at: Annotated[str, typer.Option("--health-at", help="Daily.")] = "07:30",
    backup_at: Annotated[str, typer.Option("--backup-at", help="Nightly.")] = "02:30",
    weekdays: Annotated[str, typer.Option("--weekdays", help="Run days.")] = "mon,tue,wed,thu,fri",
    env_file: Annotated[
        Path, typer.Option("--env-file", help="systemd EnvironmentFile= with the secrets.")
    ] = Path("/etc/alphahome/alphahome.env"),
    due: Annotated[str | None, typer.Option("--due", help="weekly|monthly guard.")] = None,
    pit_at: Annotated[str | None, typer.Option("--pit-at", hidden=True)] = None,
    g_at: Annotated[str | None, typer.Option("--g-at", hidden=True)] = None,
) -> None:
    """Cron / systemd / schtasks entries: the evening ah run, daily health, nightly backup."""
    from pipeline.ops.schedule import (
        ScheduleOptions,
        check_due,
        describe_written,
        render_schedule,
        write_schedule,
    )

    settings = STATE.settings()
    if due is not None:
        is_due, message = check_due(settings, due)  # type: ignore[arg-type]
        typer.echo(message)
        raise typer.Exit(0 if is_due else 1)
    for flag, value in (("--pit-at", pit_at), ("--g-at", g_at)):
        if value is not None:
            typer.echo(
                f"note: {flag} is no longer used: the evening ah run does PIT and factors", err=True
            )
    kind = "systemd" if systemd else "windows" if windows else "cron"
    days = tuple(d.strip().lower() for d in weekdays.split(",") if d.strip())
    options = ScheduleOptions(
        run_at, freq, health_at, backup_at, days, env_file,  # type: ignore[arg-type]
        settings.run.timeout_minutes,
    )  # fmt: skip
    if write is not None:
        written = write_schedule(settings, options, kind, write)  # type: ignore[arg-type]
        typer.echo(describe_written(kind, options, written))  # type: ignore[arg-type]
        return
    typer.echo(render_schedule(settings, options, kind), nl=False)  # type: ignore[arg-type]


@app.command("load")
def load_command(
    datasets: Annotated[
        list[str] | None, typer.Argument(help="e.g. factors.p, raw.daily (default: PIT, factors).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Reload every partition.")] = False,
) -> None:
    """Load the cache into PostgreSQL (or rebuild the DuckDB file when no database is set)."""
    from pipeline.backends import stage_lock
    from pipeline.load import load_from_settings
    from pipeline.run.job import recorded_stage

    settings = STATE.settings()
    start_logging(settings)
    with stage_lock(settings, "load"), recorded_stage(settings, "load") as record:
        result = load_from_settings(settings, datasets or None, full=full)
        record.rows = sum(t.inserted + t.updated for t in result.tables)
        record.note = f"{result.sink}: {result.target}"
        if not result.ok:
            record.failure = "; ".join(result.failed)
    typer.echo("\n".join(result.lines()))
    raise typer.Exit(0 if result.ok else AlphahomeError.exit_code)  # the others were loaded


db_app = typer.Typer(help="The PostgreSQL database: migrate, status, rename.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _database_url() -> str:
    url = STATE.settings().database.url
    if url is None:
        msg = "no database configured: set [database] url or DATABASE_URL"
        raise AlphahomeError(msg)
    return url


def _ask_password() -> str:
    return str(typer.prompt("PostgreSQL password", hide_input=True))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (ops.schema_migrations)."""
    from sinks.migrations import migrate

    applied = migrate(_database_url())
    typer.echo("\n".join(f"applied {m.version} {m.name}" for m in applied) or "up to date")


@db_app.command("status")
def db_status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """Server version, tables with row counts, migrations, last load per table."""
    from sinks.admin import database_status

    status = database_status(_database_url(), _ask_password)
    typer.echo(_json(status.to_dict()) if as_json else "\n".join(status.lines()))


@db_app.command("rename")
def db_rename(
    old: Annotated[str, typer.Argument(help="Existing database.")],
    new: Annotated[str, typer.Argument(help="New name (must not exist).")],
    update_config: Annotated[
        bool, typer.Option("--update-config", help="Rewrite database.url in the config file.")
    ] = False,
) -> None:
    """Rename a database, ending the other sessions connected to it; print the new URL."""
    from foundation.config import mask_url, set_file_string
    from sinks.admin import config_url_update, rename_database
    from sinks.postgres import with_database

    url = _database_url()
    target = config_url_update(STATE.settings(), old, new) if update_config else None
    typer.echo("\n".join(rename_database(url, old, new, _ask_password).lines()))
    typer.echo(f"new URL: {mask_url(with_database(url, new))}")
    if target is not None:
        set_file_string(target[0], "database.url", target[1])
        typer.echo(f"database.url in {target[0]} now names {new}")


# ---------------------------------------------------- compute stages and the whole run

sim_app = typer.Typer(help="The built-in Tushare simulator.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
factors_app = typer.Typer(help="P and G factor scores.", no_args_is_help=True)
app.add_typer(factors_app, name="factors")


@sim_app.command("serve")
def sim_serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 7878,
    stocks: Annotated[int | None, typer.Option("--stocks")] = None,
    start: Annotated[datetime | None, typer.Option("--start", formats=_DATE_FORMATS)] = None,
    today: Annotated[datetime | None, typer.Option("--today", formats=_DATE_FORMATS)] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    points: Annotated[int | None, typer.Option("--points")] = None,
    limit_per_min: Annotated[int | None, typer.Option("--limit-per-min")] = None,
    fault_rate: Annotated[float | None, typer.Option("--fault-rate")] = None,
) -> None:
    """Serve the simulated market over HTTP, wire-compatible with Tushare Pro."""
    from pipeline.sources import simulator_config
    from pipeline.sources.simulator import serve_forever

    settings = STATE.settings(**{
        "simulator.stocks": stocks, "simulator.seed": seed, "simulator.points": points,
        "simulator.limit_per_min": limit_per_min, "simulator.fault_rate": fault_rate,
        "simulator.start": start.date() if start else None,
        "simulator.today": today.date() if today else None,
    })  # fmt: skip
    serve_forever(simulator_config(settings), host, port)


@sim_app.command("advance")
def sim_advance(
    to: Annotated[
        datetime | None, typer.Option("--to", formats=_DATE_FORMATS, help="the new today")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", help="open days to move forward (default 1)")
    ] = None,
    url: Annotated[
        str, typer.Option("--url", help="the running `ah sim serve`")
    ] = "http://127.0.0.1:7878",
) -> None:
    """Move the today of a running `ah sim serve`: the same market, further on."""
    from pipeline.sources.simulator import move_today

    if to is None and days is None:
        days = 1
    day = move_today(url, to=to.date() if to else None, days=days)
    typer.echo(f"simulator today: {day:%Y-%m-%d}")


@app.command("pit")
def pit_command(
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="income|balance|indicators|industry|all (repeat or comma list; AlphaHome's "
            "financial_indicators, industry_classification too)",
        ),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="incremental | full")] = "incremental",
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="process|inline|local-dask|dask://H:P")
    ] = "process",
    parallel: Annotated[
        bool, typer.Option("--parallel", help="AlphaHome's flag: stocks over --workers processes")
    ] = False,
) -> None:
    """Build the point-in-time tables from the raw statements."""
    from cache.layout import CacheLayout
    from cache.views import refresh_catalog
    from foundation.progress import stage_progress
    from pipeline.backends import stage_lock
    from pipeline.pit.step import build_pit
    from pipeline.run.job import recorded_stage

    if parallel and executor == "inline":
        msg = "--parallel asks for worker processes, --executor inline for none: choose one"
        raise UsageError(msg)
    settings = STATE.settings(**{"run.workers": workers})
    start_logging(settings)
    layout = CacheLayout(settings.cache.dir)
    with stage_lock(settings, "pit"), recorded_stage(settings, "pit") as record:
        with stage_progress("pit") as on_progress:
            result = build_pit(
                layout, _pit_targets(target), mode, executor, settings.run.workers, on_progress,  # type: ignore[arg-type]
            )  # fmt: skip
        refresh_catalog(settings)
        record.rows = sum(result.rows_written.values())
        record.note = f"{result.mode} build: {result.stocks_rebuilt} stocks rebuilt"
    for table, rows in result.rows_written.items():
        typer.echo(
            f"pit.{table}: {rows} rows written, {result.table_rows.get(table, 0)} in the table"
        )
    typer.echo(f"{result.mode} build: {result.stocks_rebuilt} stocks in {result.duration_s:.1f} s")


def _pit_targets(given: list[str] | None) -> tuple[str, ...]:
    """`--target` values: repeated, comma-separated, or none (all)."""
    found = tuple(t.strip() for item in given or () for t in item.split(",") if t.strip())
    return found or ("all",)


def _factors(
    which: str,
    start: datetime | None,
    end: datetime | None,
    freq: str,
    mode: str,
    workers: int | None,
    executor: str,
    recompute_since: datetime | None,
) -> None:
    from cache.layout import CacheLayout
    from cache.views import refresh_catalog
    from foundation.progress import stage_progress
    from pipeline.backends import stage_lock
    from pipeline.factor_step import compute_factors
    from pipeline.run.job import recorded_stage

    settings = STATE.settings(**{"run.workers": workers})
    start_logging(settings)
    layout = CacheLayout(settings.cache.dir)
    with stage_lock(settings, "factors"), recorded_stage(settings, "factors") as record:
        with stage_progress(f"factors {which}") as on_progress:
            result = compute_factors(
                layout, which, start=start.date() if start else None,  # type: ignore[arg-type]
                end=end.date() if end else None, freq=freq, mode=mode,  # type: ignore[arg-type]
                recompute_since=recompute_since.date() if recompute_since else None,
                executor=executor, workers=settings.run.workers, on_progress=on_progress,
            )  # fmt: skip
        refresh_catalog(settings)
        record.rows = sum(result.rows_written.values())
        record.note = "calc dates: " + ", ".join(
            f"{k} {v}" for k, v in result.dates_computed.items()
        )
    for factor, dates in result.dates_computed.items():
        typer.echo(f"factors.{factor}: {dates} calc dates, {result.rows_written[factor]} rows")
    typer.echo(f"as of {result.as_of}, {result.duration_s:.1f} s")


_FREQ = typer.Option("--freq", help="weekly | monthly | daily")
_FMODE = typer.Option("--mode", help="incremental | backfill")
_EXEC = typer.Option("--executor", help="process | inline | local-dask | dask://HOST:PORT")
_START = typer.Option("--start", formats=_DATE_FORMATS)
_END = typer.Option("--end", formats=_DATE_FORMATS)
_SINCE = typer.Option("--recompute-since", formats=_DATE_FORMATS, help="Recompute from here.")


def _factor_command(which: str, doc: str) -> None:
    def command(
        start: Annotated[datetime | None, _START] = None,
        end: Annotated[datetime | None, _END] = None,
        freq: Annotated[str, _FREQ] = "weekly",
        mode: Annotated[str, _FMODE] = "incremental",
        workers: Annotated[int | None, typer.Option("--workers")] = None,
        executor: Annotated[str, _EXEC] = "process",
        recompute_since: Annotated[datetime | None, _SINCE] = None,
    ) -> None:
        _factors(which, start, end, freq, mode, workers, executor, recompute_since)

    command.__doc__ = doc
    factors_app.command(which)(command)


_factor_command("p", "Compute P (profitability) scores at the calc dates.")
_factor_command("g", "Compute G (growth) scores at the calc dates (and the P they need).")
_factor_command("all", "Compute P and G at the calc dates.")


@factors_app.command("rerank")
def factors_rerank(
    which: Annotated[str, typer.Argument(help="p | g | all")] = "all",
    start: Annotated[datetime | None, _START] = None,
    end: Annotated[datetime | None, _END] = None,
) -> None:
    """Recompute scores and ranks from the stored sub-factors."""
    from cache.layout import CacheLayout
    from pipeline.backends import stage_lock
    from pipeline.factor_step import rerank_factors
    from pipeline.run.job import recorded_stage

    settings = STATE.settings()
    start_logging(settings)
    with stage_lock(settings, "factors"), recorded_stage(settings, "factors") as record:
        result = rerank_factors(
            CacheLayout(settings.cache.dir), which,  # type: ignore[arg-type]
            start.date() if start else None, end.date() if end else None,
        )  # fmt: skip
        record.rows = sum(result.rows_written.values())
        record.note = "rerank: " + ", ".join(f"{k} {v}" for k, v in result.dates_computed.items())
    for factor, dates in result.dates_computed.items():
        typer.echo(f"factors.{factor}: {dates} calc dates reranked")


@app.command("run")
def run_command(
    source: Annotated[str | None, typer.Option("--source", help="sim | tushare")] = None,
    stages: Annotated[
        str, typer.Option("--stages", help="Comma list of sync,pit,factors,load.")
    ] = "sync,pit,factors,load",
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="Skip stages (repeat or comma list).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-fetch and rebuild everything.")] = False,
    freq: Annotated[str | None, typer.Option("--freq", help="weekly | monthly | daily")] = None,
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    executor: Annotated[str, _EXEC] = "process",
    cadence: Annotated[
        str, typer.Option("--cadence", help="always | calendar (factors when due, weekly full PIT)")
    ] = "always",
    timeout_minutes: Annotated[
        float | None, typer.Option("--timeout-minutes", help="Stop the run after this (0: none).")
    ] = None,
) -> None:
    """The main job: sync, then PIT, then factors, then load, with one run report."""
    from pipeline.run.job import RunRequest, run_pipeline

    settings = STATE.settings(**{
        "run.workers": workers, "run.freq": freq, "run.timeout_minutes": timeout_minutes,
    })  # fmt: skip
    start_logging(settings)
    chosen = [s.strip() for s in stages.split(",") if s.strip()]
    skipped = [s.strip() for given in skip or [] for s in given.split(",") if s.strip()]
    result = run_pipeline(
        settings,
        RunRequest(
            stages=chosen, skip=skipped, source=source, full=full, freq=settings.run.freq,
            executor=executor, cadence=cadence,
        ),
    )  # fmt: skip
    for line in result.lines:
        typer.echo(line)
    raise typer.Exit(result.exit_code)


def _one_line(text: str) -> str:
    """`text` with its line breaks folded, so an error is always one line on stderr."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _usage_line(exc: ClickException) -> str:
    """Click's own parsing error (bad option value, unknown option, missing argument) as
    one line naming the command, instead of its boxed multi-line message."""
    ctx = getattr(exc, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{where}{exc.format_message()}{hint}"


def _fail(message: str, exit_code: int) -> int:
    """Print one scrubbed line on stderr and give the exit code back."""
    from foundation.logs import scrub

    typer.echo(f"error: {_one_line(scrub(message))}", err=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    """Run `ah`; user errors print one line and exit non-zero, never a traceback."""
    try:
        code = app(args=argv, prog_name="ah", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else AlphahomeError.exit_code
    except NoArgsIsHelpError as exc:  # `ah`, `ah db`: the help is the answer
        if exc.format_message().strip():  # typer's help printed itself already
            typer.echo(exc.format_message())
        return UsageError.exit_code
    except ClickException as exc:
        return _fail(_usage_line(exc), UsageError.exit_code)
    except typer.Abort:
        return _fail("aborted", AlphahomeError.exit_code)
    except AlphahomeError as exc:  # the one place an error becomes a line and an exit code
        return _fail(str(exc), exc.exit_code)
    except OSError as exc:  # the disk or the system refused: one line naming the path
        from foundation.logs import get_logger

        error = StorageError.from_os_error(exc)
        get_logger().debug("storage error", exc_info=True)
        return _fail(str(error), error.exit_code)
    except Exception as exc:  # the last line of defence: one line here, traceback in the log
        from foundation.logs import get_logger

        get_logger().debug("unexpected error", exc_info=True)
        return _fail(f"unexpected {type(exc).__name__}: {exc}", AlphahomeError.exit_code)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
