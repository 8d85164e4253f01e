"""`ah run`: sync → pit → factors → load, with one run report, metrics and alerts.

Each stage reads only the stage above it from the cache, so a stage can be skipped or
run alone; the run report lists the sync tasks and then one entry per compute stage.
Every compute stage has the same shape, `stage(settings, request, on_progress) ->
StageResult`, over the stage's own entry point (build_pit, compute_factors,
load_datasets). A stage that fails, for any reason, is recorded as failed and the
stages after it are skipped; the run still finishes its report.

The report is completed (the data's as-of date, the market's today, the alerts) and
then saved once; the HTML page and the metrics are written from that same report.
`ah pit`, `ah factors` and `ah load` record themselves the same way (`recorded_stage`)
and `ah sync` publishes its report (`publish_report`), so the metrics never go stale
whichever command the schedule runs.

With `--cadence calendar` (the schedule's evening job) the calendar decides the weekly
and monthly parts (pipeline/run/cadence.py). `run.timeout_minutes` bounds the whole
run: when it passes, the running stage is stopped, recorded as failed ("timed out"),
the later stages are skipped, and the report is still written (exit 1).
"""

from __future__ import annotations

import _thread
import contextlib
import datetime as dt
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cache.asof import data_as_of
from cache.layout import CacheLayout
from cache.quarantine import sweep_unreadable
from cache.views import refresh_catalog
from foundation.config import Settings
from foundation.crashpoints import crash_point
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger
from foundation.progress import stage_progress
from pipeline.backends import stage_lock
from pipeline.executor import validate_executor_spec
from pipeline.factor_step import compute_factors
from pipeline.load import load_from_settings
from pipeline.ops.health import secure_state_dir
from pipeline.ops.retention import apply_retention
from pipeline.pit.step import build_pit
from pipeline.run.alerts import announce_alerts, evaluate_alerts
from pipeline.run.cadence import CADENCES, plan_cadence
from pipeline.run.html import add_report_sections, write_run_report_html
from pipeline.run.metrics import write_metrics
from pipeline.run.report import SyncReport, TaskOutcome, now_iso
from pipeline.sources import check_source_kind, market_today
from pipeline.sync.runner import SyncRequest, recorded_source, run_sync

STAGES = ("sync", "pit", "factors", "load")

log = get_logger("run")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunRequest:
    """What `ah run` parsed: the stages, and the options each stage takes."""

    stages: Sequence[str] = STAGES
    skip: Sequence[str] = ()  # stages left out of `stages` (`--skip`)
    source: str | None = None
    full: bool = False
    freq: str = "weekly"
    executor: str = "process"
    workers: int | None = None
    sync: SyncRequest = field(default_factory=SyncRequest)
    progress: bool | None = None
    cadence: str = "always"  # "calendar": factors when due, full PIT on the week's end
    timeout_s: float | None = None  # None: run.timeout_minutes; 0: no limit
    pit_full: bool = False


@dataclass
class RunResult:
    """The run's report (saved, alerts included), the exit status it implies, the lines
    to print."""

    report: SyncReport
    exit_code: int
    lines: list[str]


@dataclass(frozen=True)
class StageResult:
    """What a compute stage did: rows written, a one-line note, lines to print."""

    rows: int
    note: str
    lines: tuple[str, ...] = ()
    failure: str = ""  # the stage did part of its work: why the rest failed


Stage = Callable[[Settings, RunRequest, Progress], StageResult]


def _workers(settings: Settings, request: RunRequest) -> int:
    return request.workers or settings.run.workers


def pit_stage(settings: Settings, request: RunRequest, on_progress: Progress) -> StageResult:
    """Build every PIT table (incremental, or full with `--full`)."""
    layout = CacheLayout(settings.cache.dir)
    full = request.full or request.pit_full
    mode: Literal["full", "incremental"] = "full" if full else "incremental"
    workers = _workers(settings, request)
    with stage_lock(settings, "pit"):
        result = build_pit(layout, ("all",), mode, request.executor, workers, on_progress)
    note = f"{result.mode} build: {result.stocks_rebuilt} stocks rebuilt"
    return StageResult(sum(result.rows_written.values()), note)


def factor_stage(settings: Settings, request: RunRequest, on_progress: Progress) -> StageResult:
    """Compute P and G at the calc dates up to the data's as-of date."""
    with stage_lock(settings, "factors"):
        result = compute_factors(
            CacheLayout(settings.cache.dir), "all", freq=request.freq,  # type: ignore[arg-type]
            mode="backfill" if request.full else "incremental", executor=request.executor,
            workers=_workers(settings, request), on_progress=on_progress,
        )  # fmt: skip
    dates = ", ".join(f"{k} {v}" for k, v in result.dates_computed.items())
    return StageResult(sum(result.rows_written.values()), f"calc dates: {dates}")


def load_stage(settings: Settings, request: RunRequest, on_progress: Progress) -> StageResult:
    """Load the PIT and factor tables (and the configured raw ones) into the sink."""
    with stage_lock(settings, "load"):
        result = load_from_settings(settings, full=request.full, on_progress=on_progress)
    rows = sum(t.inserted + t.updated for t in result.tables)
    failure = "; ".join(result.failed)
    if failure:
        failure = f"{len(result.failed)} dataset(s) not loaded: {failure}"
    return StageResult(rows, f"{result.sink}: {result.target}", tuple(result.lines()), failure)


COMPUTE_STAGES: tuple[tuple[str, Stage], ...] = (
    ("pit", pit_stage),
    ("factors", factor_stage),
    ("load", load_stage),
)


def _check_stages(stages: Sequence[str], skip: Sequence[str] = ()) -> list[str]:
    """The stages to run, in order: `stages` without `skip`; `UsageError` for a name that
    is no stage (in either) or when none is left."""
    unknown = [s for s in (*stages, *skip) if s not in STAGES]
    if unknown:
        msg = f"unknown stage {unknown[0]!r}; expected some of {', '.join(STAGES)}"
        raise UsageError(msg)
    chosen = [s for s in STAGES if s in stages and s not in skip]
    if not chosen:
        given = ",".join(stages) or "none"
        msg = f"no stage left to run: --stages {given} with --skip {','.join(skip) or 'none'}"
        raise UsageError(msg)
    return chosen


class RunTimeout(AlphahomeError):
    """The whole-run timeout passed while a stage ran (`run.timeout_minutes`)."""


class Watchdog:
    """Stops the run when `run.timeout_minutes` passes: it interrupts the main thread
    (the stage unwinds through its `finally` blocks, releasing its locks; commits are
    atomic) and the run records the stage as timed out. While it holds, SIGINT has
    Python's handler even if the run was started with SIGINT ignored."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self.interrupted_between_stages = False
        self._timer: threading.Timer | None = None
        self._sigint_given: signal.Handlers | None = None

    def _fire(self) -> None:
        self.fired = True
        _thread.interrupt_main()

    def __enter__(self) -> Watchdog:
        if self.seconds > 0 and threading.current_thread() is threading.main_thread():
            given = signal.getsignal(signal.SIGINT)
            if isinstance(given, signal.Handlers):
                # interrupt_main() does nothing unless Python handles SIGINT, and a run a
                # script starts in the background inherits it ignored: while the timeout
                # holds, SIGINT stops such a run cleanly too (asyncio's runner, in the
                # sync, turns only Python's own handler into a clean cancellation)
                self._sigint_given = given
                signal.signal(signal.SIGINT, signal.default_int_handler)
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> bool:
        """Swallow the watchdog's own interrupt when it lands between stages (the run
        records it: `interrupted_between_stages`)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._sigint_given is not None:
            signal.signal(signal.SIGINT, self._sigint_given)
            self._sigint_given = None
        self.interrupted_between_stages = kind is KeyboardInterrupt and self.fired
        return self.interrupted_between_stages

    def reason(self) -> str:
        """What a stage stopped by the watchdog is recorded with."""
        return f"timed out: the run exceeded {self.seconds / 60:g} min"


def _run_stage(
    settings: Settings,
    request: RunRequest,
    name: str,
    stage: Stage,
    lines: list[str],
    watchdog: Watchdog | None = None,
) -> TaskOutcome:
    """Run one compute stage; any exception becomes a failed outcome (its traceback goes
    to the log files only), and so does the run's timeout."""
    outcome = TaskOutcome(task=name, api="-", strategy="stage")
    started = time.monotonic()
    try:
        try:
            with stage_progress(name, request.progress) as on_progress:
                result = stage(settings, request, on_progress)
        except KeyboardInterrupt:
            if watchdog is None or not watchdog.fired:
                raise  # a Ctrl-C, not the timeout
            raise RunTimeout(watchdog.reason()) from None
        outcome.status, outcome.rows_saved, outcome.reason = "success", result.rows, result.note
        outcome.units_done = outcome.units_total = 1
        lines.extend(result.lines)
        if result.failure:
            outcome.status, outcome.reason, outcome.errors = (
                "failed",
                result.failure,
                [result.failure],
            )
            log.error("stage %s failed: %s", name, result.failure)
    except Exception as exc:  # a stage's failure is the run's record, not a traceback
        reason = str(exc) if isinstance(exc, AlphahomeError) else f"{type(exc).__name__}: {exc}"
        outcome.status, outcome.reason, outcome.errors = "failed", reason, [reason]
        log.error("stage %s failed: %s", name, reason)
        log.debug("stage %s failed", name, exc_info=True)  # the traceback: log files only
    outcome.duration_s = round(time.monotonic() - started, 3)
    log.info("stage %s: %s in %.1f s %s", name, outcome.status, outcome.duration_s, outcome.reason)
    return outcome


def _new_report(settings: Settings, request: RunRequest, stages: list[str]) -> SyncReport:
    return SyncReport(
        run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
        started=now_iso(),
        source=request.source or settings.source.kind,
        cache_dir=str(CacheLayout(settings.cache.dir).root),
        arguments={"stages": stages},
        success_rate_alert=settings.run.success_rate_alert,
    )


def _timeout_s(settings: Settings, request: RunRequest) -> float:
    if request.timeout_s is not None:
        return request.timeout_s
    return settings.run.timeout_minutes * 60


def run_pipeline(settings: Settings, request: RunRequest) -> RunResult:
    """Run the selected stages in order; a failed stage stops the stages after it.

    Bad arguments (a stage, the executor, the cadence) raise `UsageError` before any
    stage starts. The report is saved once, after the alerts are evaluated, and the
    HTML page and the metrics are written from it, whatever the stages did.
    """
    stages = _check_stages(request.stages, request.skip)
    if request.source is not None:  # also when no stage fetches: it dates the freshness
        check_source_kind(request.source)
    validate_executor_spec(request.executor)
    if request.cadence not in CADENCES:
        msg = f"unknown cadence {request.cadence!r}; expected always or calendar"
        raise UsageError(msg)
    layout = CacheLayout(settings.cache.dir)
    started = time.monotonic()
    lines: list[str] = []
    for entry in sweep_unreadable(layout):  # the stages then rebuild or re-fetch them
        log.warning("quarantined %s", entry.line())
        lines.append(f"quarantined {entry.line()}")
    report = _new_report(settings, request, stages)  # replaced by the sync's own report
    with Watchdog(_timeout_s(settings, request)) as watchdog:
        report, ok = _sync_part(settings, request, stages, lines, watchdog)
        report.arguments = {**report.arguments, "stages": stages, "cadence": request.cadence}
        if ok and request.cadence == "calendar":
            plan = plan_cadence(layout, request.freq)
            report.arguments["calendar"] = plan.to_dict()
            lines.append(f"cadence: {plan.reason}")
            if plan.pit_full and not request.full:
                request = RunRequest(**{**request.__dict__, "pit_full": True})
            if not plan.factors_due:
                stages = [s for s in stages if s != "factors"]
        for name, stage in COMPUTE_STAGES:
            if name not in stages:
                continue
            if not ok:
                report.tasks.append(
                    TaskOutcome(task=name, status="skipped", reason="an earlier stage failed")
                )
                continue
            outcome = _run_stage(settings, request, name, stage, lines, watchdog)
            report.tasks.append(outcome)
            ok = outcome.status == "success"
        _refresh_views(settings, report, stages)
    if watchdog.interrupted_between_stages:
        reason = watchdog.reason()
        report.tasks.append(
            TaskOutcome(task="run", status="failed", reason=reason, errors=[reason], api="-",
                        strategy="stage")
        )  # fmt: skip
    report.duration_s = round(time.monotonic() - started, 3)
    html = finish_report(settings, report, request.source, evaluate=True)
    lines.append(
        f"run {report.run_id}: success rate {report.success_rate:.0%} in "
        f"{report.duration_s:.1f} s; as of {report.as_of or '-'}; report {html}"
    )
    announce_alerts(settings, report.alerts, run_id=report.run_id)
    return RunResult(report=report, exit_code=report.exit_code, lines=lines)


def _catalogue_by_load(settings: Settings, stages: Sequence[str]) -> bool:
    """Whether the run's load stage rebuilds the cache's DuckDB catalogue (the DuckDB
    sink: no database URL), so the stages before it need not."""
    return "load" in stages and settings.database.url is None


def _refresh_views(settings: Settings, report: SyncReport, stages: list[str]) -> None:
    """Show the run's new datasets and columns in the cache's DuckDB views file, unless
    the load stage rebuilt it (the DuckDB sink); with PostgreSQL, analysts still query
    the cache. The sync leaves the rebuild to this when the load stage was to do it, so
    a load that did not run (an earlier stage failed) still leaves a current file."""
    by_load = _catalogue_by_load(settings, stages)
    if by_load and any(t.task == "load" and t.status == "success" for t in report.tasks):
        return
    computed = any(t.task in ("pit", "factors") and t.status == "success" for t in report.tasks)
    if not computed and not (by_load and "sync" in stages):
        return
    try:
        refresh_catalog(settings)
    except Exception as exc:  # the views are a convenience: never fail the run for them
        log.error("could not refresh the views file: %s", exc)


def _sync_part(
    settings: Settings,
    request: RunRequest,
    stages: list[str],
    lines: list[str],
    watchdog: Watchdog,
) -> tuple[SyncReport, bool]:
    """The sync stage (when selected): its report, which the run completes, and whether
    it went well enough for the compute stages to follow."""
    if "sync" not in stages:
        return _new_report(settings, request, stages), True
    sync_request = SyncRequest(
        **{**request.sync.__dict__, "source": request.source, "full": request.full,
           "progress": request.progress, "save_report": False,
           "refresh_views": not _catalogue_by_load(settings, stages)}
    )  # fmt: skip
    started = time.monotonic()
    try:
        report = run_sync(settings, sync_request)
    except KeyboardInterrupt:
        if not watchdog.fired:
            raise  # a Ctrl-C, not the timeout
        report = _new_report(settings, request, stages)
        reason = watchdog.reason()
        report.tasks.append(
            TaskOutcome(
                task="sync", status="failed", reason=reason, errors=[reason], api="-",
                strategy="stage", duration_s=round(time.monotonic() - started, 3),
            )
        )  # fmt: skip
        log.error("stage sync failed: %s", reason)
        return report, False
    lines.append(report.render())
    return report, all(t.status != "failed" for t in report.tasks)


def finish_report(
    settings: Settings, report: SyncReport, source: str | None, *, evaluate: bool
) -> Path:
    """Complete a finished run's report (as-of date, market's today, and the alerts when
    `evaluate`), save it, write its HTML page and the metrics, apply the retention of
    reports and logs; the HTML page's path."""
    layout = CacheLayout(settings.cache.dir)
    report.finished = now_iso()
    try:
        as_of = data_as_of(layout)
    except Exception as exc:  # a damaged cache: the report still goes out, with the reason
        log.error("as-of date not known: %s", exc)
        as_of = None
    report.as_of = as_of.isoformat() if as_of else None
    kind = source or recorded_source(layout) or settings.source.kind
    report.market_today = report.market_today or market_today(settings, kind).isoformat()
    if evaluate:
        report.alerts = evaluate_alerts(settings, report.to_dict())
    report.save(layout)
    return publish_report(settings, report)


def publish_report(settings: Settings, report: SyncReport) -> Path:
    """The HTML page and the metrics of a saved report, then the retention of reports and
    logs (`ah sync` calls this after its own save); the HTML page's path."""
    layout = CacheLayout(settings.cache.dir)
    secure_state_dir(layout)  # task state, manifests and locks name hosts, pids, paths
    doc = add_report_sections(layout, report.to_dict())
    html = write_run_report_html(layout, doc)
    write_metrics(layout, doc)
    apply_retention(layout, settings.run.keep_reports_days, settings.run.keep_logs_days)
    return html


@dataclass
class StageRecord:
    """What a stand-alone stage command tells `recorded_stage`: rows written, a note,
    and why it failed when it failed without raising (a load that went on past a
    dataset it could not load)."""

    rows: int = 0
    note: str = ""
    failure: str | None = None


@contextlib.contextmanager
def recorded_stage(settings: Settings, name: str) -> Iterator[StageRecord]:
    """Record a stand-alone stage command (`ah pit`, `ah factors`, `ah load`) as a
    one-stage run: its report, HTML page and metrics are written whether it succeeds
    or raises (the error still propagates to the command line). No alerts are
    evaluated: the command's own exit status stands."""
    report = _new_report(settings, RunRequest(stages=(name,)), [name])
    outcome = TaskOutcome(task=name, api="-", strategy="stage")
    record = StageRecord()
    started = time.monotonic()
    try:
        yield record
        outcome.status, outcome.rows_saved, outcome.reason = "success", record.rows, record.note
        if record.failure is not None:
            outcome.status, outcome.reason, outcome.errors = (
                "failed",
                record.failure,
                [record.failure],
            )
        outcome.units_done = outcome.units_total = 1
    except Exception as exc:
        reason = str(exc) if isinstance(exc, AlphahomeError) else f"{type(exc).__name__}: {exc}"
        outcome.status, outcome.reason, outcome.errors = "failed", reason, [reason]
        raise
    finally:
        outcome.duration_s = round(time.monotonic() - started, 3)
        report.tasks.append(outcome)
        report.duration_s = outcome.duration_s
        crash_point(f"{name}-report")
        try:
            finish_report(settings, report, None, evaluate=False)
        except Exception as exc:  # the record must not mask what the command did
            log.error("could not record the %s run: %s", name, exc)
            log.debug("record of %s failed", name, exc_info=True)
