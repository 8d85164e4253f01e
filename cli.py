"""`ah`: the alphahome command line. Thin: parse, call one function, print."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer

from foundation.config import Settings, describe, load_settings
from foundation.errors import AlphahomeError
from foundation.logs import get_logger, register_secrets, scrub, start_logging

app = typer.Typer(
    name="ah",
    help="alphahome: Tushare Pro to a point-in-time Parquet cache, P and G factors, PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version() -> str:
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
        if self._settings is None or flags:
            all_flags = {"run.log_level": self.log_level, "cache.dir": self.cache_dir, **flags}
            self._settings = load_settings(self.config, self.profile, all_flags)
            register_secrets(self._settings.secrets())
        return self._settings


STATE = AppState()


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


state_app = typer.Typer(help="Show and reset the state of sync tasks.", no_args_is_help=True)
app.add_typer(state_app, name="state")
_DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d"]
_EXEC_OPT = typer.Option("--executor", help="process | inline | local-dask | dask://HOST:PORT")


@app.command("sync")
def sync_command(
    tasks: Annotated[list[str] | None, typer.Argument(help="Tasks (default: all).")] = None,
    source: Annotated[str | None, typer.Option("--source", help="sim | tushare")] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-fetch every unit.")] = False,
    start: Annotated[datetime | None, typer.Option("--start", formats=_DATE_FORMATS)] = None,
    end: Annotated[datetime | None, typer.Option("--end", formats=_DATE_FORMATS)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    mode: Annotated[str, typer.Option("--mode", help="upsert | append")] = "upsert",
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Plan afresh.")] = False,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Skip a task.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="market, finance, …")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Tasks at once.")] = None,
    exchange: Annotated[str | None, typer.Option("--exchange", help="stock_basic")] = None,
    list_status: Annotated[str | None, typer.Option("--list-status", help="L|D|P")] = None,
) -> None:
    """Fetch what is missing from the source into the cache's raw/ datasets."""
    from pipeline.sync.runner import SyncRequest, run_sync

    settings = STATE.settings()
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
    typer.echo(report.render())
    raise typer.Exit(report.exit_code)


@app.command("tasks")
def tasks_command() -> None:
    """Each dataset with its rows, first/last date and last successful sync."""
    from pipeline.sync.runner import list_tasks, render_tasks

    typer.echo(render_tasks(list_tasks(STATE.settings())))


@state_app.command("show")
def state_show(task: Annotated[str | None, typer.Argument(help="One task.")] = None) -> None:
    """Print the stored state of a task (or of every task)."""
    from pipeline.state import show_state

    typer.echo(show_state(STATE.settings(), task))


@state_app.command("reset")
def state_reset(task: Annotated[str, typer.Argument(help="The task to forget.")]) -> None:
    """Forget a task's state: its next sync plans every unit again."""
    from pipeline.state import reset_state

    typer.echo(reset_state(STATE.settings(), task))


@app.command("health")
def health_command(
    check_db: Annotated[bool, typer.Option("--check-db", help="Reach the database.")] = False,
    check_api: Annotated[bool, typer.Option("--check-api", help="Try the token.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    stale_days: Annotated[int, typer.Option("--stale-days", help="Units behind allowed.")] = 1,
) -> None:
    """Configuration, cache, disk, locks, data freshness (and database, token): exit 0 or 1."""
    from pipeline.ops.health import check_health, health_output

    report = check_health(
        STATE.settings, check_db=check_db, check_api_token=check_api, stale_after=stale_days
    )
    typer.echo(health_output(report, as_json))
    raise typer.Exit(report.exit_code)


@app.command("stats")
def stats_command(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
    runs: Annotated[int, typer.Option("--runs", help="Recent runs shown.")] = 10,
) -> None:
    """Rows, size, date range and last update per dataset; run history from the reports."""
    from cache.layout import CacheLayout
    from pipeline.ops.stats import stats_output

    settings = STATE.settings()
    typer.echo(stats_output(CacheLayout(settings.cache.dir), settings.database.url, as_json, runs))


@app.command("verify")
def verify_command(
    datasets: Annotated[list[str] | None, typer.Argument(help="e.g. daily, pit.indicators")] = None,
    skip_sink: Annotated[bool, typer.Option("--skip-sink", help="No database counts.")] = False,
) -> None:
    """Data quality: corrupt files, gaps, duplicate keys, PIT violations, ranges, sink drift."""
    from cache.layout import CacheLayout
    from pipeline.ops.verify import verify_cache

    settings = STATE.settings()
    url = None if skip_sink else settings.database.url
    report = verify_cache(
        CacheLayout(settings.cache.dir), datasets or (), url, settings.sinks.raw_datasets
    )
    typer.echo(report.render())
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
    keep_daily: Annotated[int, typer.Option("--keep-daily", help="Daily snapshots kept.")] = 7,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", help="Weekly kept.")] = 4,
) -> None:
    """Take a verified, incremental snapshot; `ah backup list` shows them."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.ops.backup import create_backup, describe_backup

    settings = STATE.settings()
    start_logging(settings)
    typer.echo(describe_backup(create_backup(settings, dest, keep_daily, keep_weekly)))


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
    systemd: Annotated[bool, typer.Option("--systemd", help="systemd timers.")] = False,
    windows: Annotated[bool, typer.Option("--windows", help="schtasks commands.")] = False,
    sync_at: Annotated[str, typer.Option("--sync-at", help="HH:MM, Mon-Fri.")] = "18:30",
    pit_at: Annotated[str, typer.Option("--pit-at", help="PIT + P, week's end.")] = "20:00",
    g_at: Annotated[str, typer.Option("--g-at", help="G time.")] = "21:30",
    g_freq: Annotated[str, typer.Option("--g-freq", help="weekly | monthly")] = "weekly",
    health_at: Annotated[str, typer.Option("--health-at", help="Daily.")] = "07:30",
    backup_at: Annotated[str, typer.Option("--backup-at", help="Nightly.")] = "02:30",
    weekdays: Annotated[str, typer.Option("--weekdays", help="Sync days.")] = "mon,tue,wed,thu,fri",
    due: Annotated[str | None, typer.Option("--due", help="weekly|monthly guard.")] = None,
) -> None:
    """Print cron / systemd / schtasks entries for the daily and weekly jobs of this install."""
    from pipeline.ops.schedule import ScheduleOptions, check_due, render_schedule

    settings = STATE.settings()
    if due is not None:
        is_due, message = check_due(settings, due)  # type: ignore[arg-type]
        typer.echo(message)
        raise typer.Exit(0 if is_due else 1)
    kind = "systemd" if systemd else "windows" if windows else "cron"
    days = tuple(d.strip().lower() for d in weekdays.split(",") if d.strip())
    options = ScheduleOptions(sync_at, pit_at, g_at, g_freq, health_at, backup_at, days)  # type: ignore[arg-type]
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

    settings = STATE.settings()
    start_logging(settings)
    with stage_lock(settings, "load"):
        result = load_from_settings(settings, datasets or None, full=full)
    typer.echo("\n".join(result.lines()))


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
def db_status() -> None:
    """Server version, tables with row counts, migrations, last load per table."""
    from sinks.admin import database_status

    typer.echo("\n".join(database_status(_database_url(), _ask_password).lines()))


@db_app.command("rename")
def db_rename(
    old: Annotated[str, typer.Argument(help="Existing database.")],
    new: Annotated[str, typer.Argument(help="New name (must not exist).")],
) -> None:
    """Rename a database, ending the other sessions connected to it."""
    from sinks.admin import rename_database

    typer.echo("\n".join(rename_database(_database_url(), old, new, _ask_password).lines()))


# ---------------------------------------------------- compute stages and the whole run

sim_app = typer.Typer(help="The built-in Tushare simulator.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
factors_app = typer.Typer(help="P and G factor scores.", no_args_is_help=True)
app.add_typer(factors_app, name="factors")


@sim_app.command("serve")
def sim_serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 7878,
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


@app.command("pit")
def pit_command(
    target: Annotated[
        str, typer.Option("--target", help="income|balance|indicators|industry|all")
    ] = "all",
    mode: Annotated[str, typer.Option("--mode", help="incremental | full")] = "incremental",
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="process|inline|local-dask|dask://H:P")
    ] = "process",
) -> None:
    """Build the point-in-time tables from the raw statements."""
    from cache.layout import CacheLayout
    from cache.views import refresh_catalog
    from foundation.progress import stage_progress
    from pipeline.backends import stage_lock
    from pipeline.pit.step import build_pit

    settings = STATE.settings(**{"run.workers": workers})
    start_logging(settings)
    layout = CacheLayout(settings.cache.dir)
    with stage_lock(settings, "pit"), stage_progress("pit") as on_progress:
        result = build_pit(layout, (target,), mode, executor, settings.run.workers, on_progress)  # type: ignore[arg-type]
    refresh_catalog(settings)
    for table, rows in result.rows_written.items():
        typer.echo(
            f"pit.{table}: {rows} rows written, {result.table_rows.get(table, 0)} in the table"
        )
    typer.echo(f"{result.mode} build: {result.stocks_rebuilt} stocks in {result.duration_s:.1f} s")


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

    settings = STATE.settings(**{"run.workers": workers})
    start_logging(settings)
    layout = CacheLayout(settings.cache.dir)
    with stage_lock(settings, "factors"), stage_progress(f"factors {which}") as on_progress:
        result = compute_factors(
            layout, which, start=start.date() if start else None,  # type: ignore[arg-type]
            end=end.date() if end else None, freq=freq, mode=mode,  # type: ignore[arg-type]
            recompute_since=recompute_since.date() if recompute_since else None,
            executor=executor, workers=settings.run.workers, on_progress=on_progress,
        )  # fmt: skip
    refresh_catalog(settings)
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

    settings = STATE.settings()
    start_logging(settings)
    with stage_lock(settings, "factors"):
        result = rerank_factors(
            CacheLayout(settings.cache.dir), which,  # type: ignore[arg-type]
            start.date() if start else None, end.date() if end else None,
        )  # fmt: skip
    for factor, dates in result.dates_computed.items():
        typer.echo(f"factors.{factor}: {dates} calc dates reranked")


@app.command("run")
def run_command(
    source: Annotated[str | None, typer.Option("--source", help="sim | tushare")] = None,
    stages: Annotated[
        str, typer.Option("--stages", help="Comma list of sync,pit,factors,load.")
    ] = "sync,pit,factors,load",
    skip: Annotated[list[str] | None, typer.Option("--skip", help="Skip a stage.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-fetch and rebuild everything.")] = False,
    freq: Annotated[str, _FREQ] = "weekly",
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    executor: Annotated[str, _EXEC] = "process",
) -> None:
    """The main job: sync, then PIT, then factors, then load, with one run report."""
    from pipeline.run.job import RunRequest, run_pipeline

    settings = STATE.settings(**{"run.workers": workers})
    start_logging(settings)
    chosen = [s.strip() for s in stages.split(",") if s.strip() and s.strip() not in (skip or [])]
    result = run_pipeline(
        settings,
        RunRequest(stages=chosen, source=source, full=full, freq=freq, executor=executor),
    )
    for line in result.lines:
        typer.echo(line)
    raise typer.Exit(result.exit_code)


def _one_line(text: str) -> str:
    """`text` with its line breaks folded, so an error is always one line on stderr."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run `ah`; user errors print one line and exit non-zero, never a traceback."""
    try:
        app(args=argv, prog_name="ah")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else AlphahomeError.exit_code
    except AlphahomeError as exc:  # the one place an error becomes a line and an exit code
        typer.echo(f"error: {_one_line(scrub(str(exc)))}", err=True)
        return exc.exit_code
    except Exception as exc:  # the last line of defence: one line here, traceback in the log
        get_logger().debug("unexpected error", exc_info=True)
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {_one_line(scrub(str(exc)))}", err=True
        )
        return AlphahomeError.exit_code  # a bug is a failed run
    return 0


if __name__ == "__main__":
    sys.exit(main())
