"""`ah run`: sync → pit → factors → load, with one run report, metrics and alerts.

Each stage reads only the stage above it from the cache, so a stage can be skipped or
run alone; the run report lists the sync tasks and then one entry per compute stage.
Every compute stage has the same shape, `stage(settings, request, on_progress) ->
StageResult`, over the stage's own entry point (build_pit, compute_factors,
load_datasets). A stage that fails, for any reason, is recorded as failed and the
stages after it are skipped; the run still finishes its report.

The report is completed (the data's as-of date, the market's today, the alerts) and
then saved once; the HTML page and the metrics are written from that same report.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cache.asof import data_as_of
from cache.layout import CacheLayout
from cache.quarantine import sweep_unreadable
from foundation.config import Settings
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger
from foundation.progress import stage_progress
from pipeline.backends import stage_lock
from pipeline.executor import validate_executor_spec
from pipeline.factor_step import compute_factors
from pipeline.load import load_from_settings
from pipeline.pit.step import build_pit
from pipeline.run.alerts import announce_alerts, evaluate_alerts
from pipeline.run.html import add_report_sections, write_run_report_html
from pipeline.run.metrics import write_metrics
from pipeline.run.report import SyncReport, TaskOutcome, now_iso
from pipeline.sources import market_today
from pipeline.sync.runner import SyncRequest, recorded_source, run_sync

STAGES = ("sync", "pit", "factors", "load")

log = get_logger("run")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunRequest:
    """What `ah run` parsed: the stages, and the options each stage takes."""

    stages: Sequence[str] = STAGES
    source: str | None = None
    full: bool = False
    freq: str = "weekly"
    executor: str = "process"
    workers: int | None = None
    sync: SyncRequest = field(default_factory=SyncRequest)
    progress: bool | None = None


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


Stage = Callable[[Settings, RunRequest, Progress], StageResult]


def _workers(settings: Settings, request: RunRequest) -> int:
    return request.workers or settings.run.workers


def pit_stage(settings: Settings, request: RunRequest, on_progress: Progress) -> StageResult:
    """Build every PIT table (incremental, or full with `--full`)."""
    layout = CacheLayout(settings.cache.dir)
    mode: Literal["full", "incremental"] = "full" if request.full else "incremental"
    workers = _workers(settings, request)
    with stage_lock(settings, "pit"):
        result = build_pit(layout, ("all",), mode, request.executor, workers, on_progress)
    return StageResult(sum(result.rows_written.values()), f"{result.stocks_rebuilt} stocks rebuilt")


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
    return StageResult(rows, f"{result.sink}: {result.target}", tuple(result.lines()))


COMPUTE_STAGES: tuple[tuple[str, Stage], ...] = (
    ("pit", pit_stage),
    ("factors", factor_stage),
    ("load", load_stage),
)


def _check_stages(stages: Sequence[str]) -> list[str]:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        msg = f"unknown stage {unknown[0]!r}; expected some of {', '.join(STAGES)}"
        raise UsageError(msg)
    return [s for s in STAGES if s in stages]


def _run_stage(
    settings: Settings, request: RunRequest, name: str, stage: Stage, lines: list[str]
) -> TaskOutcome:
    """Run one compute stage; any exception becomes a failed outcome (its traceback goes
    to the log files only)."""
    outcome = TaskOutcome(task=name, api="-", strategy="stage")
    started = time.monotonic()
    try:
        with stage_progress(name, request.progress) as on_progress:
            result = stage(settings, request, on_progress)
        outcome.status, outcome.rows_saved, outcome.reason = "success", result.rows, result.note
        outcome.units_done = outcome.units_total = 1
        lines.extend(result.lines)
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


def run_pipeline(settings: Settings, request: RunRequest) -> RunResult:
    """Run the selected stages in order; a failed stage stops the stages after it.

    Bad arguments (a stage, the executor) raise `UsageError` before any stage starts.
    The report is saved once, after the alerts are evaluated, and the HTML page and
    the metrics are written from it, whatever the stages did.
    """
    stages = _check_stages(request.stages)
    validate_executor_spec(request.executor)
    layout = CacheLayout(settings.cache.dir)
    started = time.monotonic()
    lines: list[str] = []
    for entry in sweep_unreadable(layout):  # the stages then rebuild or re-fetch them
        log.warning("quarantined %s", entry.line())
        lines.append(f"quarantined {entry.line()}")
    if "sync" in stages:
        sync_request = SyncRequest(
            **{**request.sync.__dict__, "source": request.source, "full": request.full,
               "progress": request.progress, "save_report": False}
        )  # fmt: skip
        report = run_sync(settings, sync_request)
        lines.append(report.render())
        ok = all(t.status != "failed" for t in report.tasks)
    else:
        report = _new_report(settings, request, stages)
        ok = True
    report.arguments = {**report.arguments, "stages": stages}
    for name, stage in COMPUTE_STAGES:
        if name not in stages:
            continue
        if not ok:
            report.tasks.append(
                TaskOutcome(task=name, status="skipped", reason="an earlier stage failed")
            )
            continue
        outcome = _run_stage(settings, request, name, stage, lines)
        report.tasks.append(outcome)
        ok = outcome.status == "success"
    report.finished = now_iso()
    report.duration_s = round(time.monotonic() - started, 3)
    try:
        as_of = data_as_of(layout)
    except Exception as exc:  # a damaged cache: the report still goes out, with the reason
        log.error("as-of date not known: %s", exc)
        as_of = None
    report.as_of = as_of.isoformat() if as_of else None
    kind = request.source or recorded_source(layout) or settings.source.kind
    report.market_today = report.market_today or market_today(settings, kind).isoformat()
    report.alerts = evaluate_alerts(settings, report.to_dict())
    report.save(layout)
    doc = add_report_sections(layout, report.to_dict())
    html = write_run_report_html(layout, doc)
    write_metrics(layout, doc)
    lines.append(
        f"run {report.run_id}: success rate {report.success_rate:.0%} in "
        f"{report.duration_s:.1f} s; as of {report.as_of or '-'}; report {html}"
    )
    announce_alerts(settings, report.alerts, run_id=report.run_id)
    return RunResult(report=report, exit_code=report.exit_code, lines=lines)
