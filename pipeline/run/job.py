"""`ah run`: sync → pit → factors → load, with one run report, metrics and alerts.

Each stage reads only the stage above it from the cache, so a stage can be skipped or
run alone; the run report lists the sync tasks and then one entry per compute stage.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache.layout import CacheLayout
from foundation.config import Settings
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger
from foundation.progress import stage_progress
from pipeline.factor_step import compute_factors
from pipeline.load import load_from_settings
from pipeline.pit.step import build_pit
from pipeline.run.alerts import announce_alerts, evaluate_alerts
from pipeline.run.html import add_report_sections, write_run_report_html
from pipeline.run.metrics import write_metrics
from pipeline.run.report import SyncReport, TaskOutcome, now_iso
from pipeline.sync.runner import SyncRequest, run_sync

STAGES = ("sync", "pit", "factors", "load")

log = get_logger("run")


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
    """The report document of the run and the process exit status it implies."""

    report: dict[str, Any]
    exit_code: int
    lines: list[str]


def _check_stages(stages: Sequence[str]) -> list[str]:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        msg = f"unknown stage {unknown[0]!r}; expected some of {', '.join(STAGES)}"
        raise UsageError(msg)
    return [s for s in STAGES if s in stages]


def _stage(
    report: SyncReport,
    name: str,
    work: Callable[[Callable[[int, int], None]], tuple[int, str]],
    progress: bool | None,
) -> bool:
    """Run one compute stage into the report; False when it failed."""
    outcome = TaskOutcome(task=name, api="-", strategy="stage")
    started = time.monotonic()
    try:
        with stage_progress(name, progress) as on_progress:
            rows, note = work(on_progress)
        outcome.status, outcome.rows_saved, outcome.reason = "success", rows, note
        outcome.units_done = outcome.units_total = 1
    except AlphahomeError as exc:
        outcome.status, outcome.reason = "failed", str(exc)
        outcome.errors = [str(exc)]
        log.error("stage %s failed: %s", name, exc)
    outcome.duration_s = round(time.monotonic() - started, 3)
    report.tasks.append(outcome)
    log.info("stage %s: %s in %.1f s %s", name, outcome.status, outcome.duration_s, outcome.reason)
    return outcome.status == "success"


def run_pipeline(settings: Settings, request: RunRequest) -> RunResult:
    """Run the selected stages in order; a failed stage stops the stages after it."""
    stages = _check_stages(request.stages)
    layout = CacheLayout(settings.cache.dir)
    workers = request.workers or settings.run.workers
    started = time.monotonic()
    lines: list[str] = []
    if "sync" in stages:
        sync_request = SyncRequest(
            **{**request.sync.__dict__, "source": request.source, "full": request.full,
               "progress": request.progress}
        )  # fmt: skip
        report = run_sync(settings, sync_request)
        lines.append(report.render())
        ok = all(t.status != "failed" for t in report.tasks)
    else:
        report = SyncReport(
            run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
            started=now_iso(),
            source=request.source or settings.source.kind,
            cache_dir=str(layout.root),
            arguments={"stages": stages},
            success_rate_alert=settings.run.success_rate_alert,
        )
        ok = True
    report.arguments = {**report.arguments, "stages": stages}

    def pit(on_progress: Callable[[int, int], None]) -> tuple[int, str]:
        mode = "full" if request.full else "incremental"
        result = build_pit(layout, ("all",), mode, request.executor, workers, on_progress)
        return sum(result.rows_written.values()), f"{result.stocks_rebuilt} stocks rebuilt"

    def factors(on_progress: Callable[[int, int], None]) -> tuple[int, str]:
        result = compute_factors(
            layout, "all", freq=request.freq, mode="backfill" if request.full else "incremental",
            executor=request.executor, workers=workers, on_progress=on_progress,
        )  # fmt: skip
        dates = ", ".join(f"{k} {v}" for k, v in result.dates_computed.items())
        return sum(result.rows_written.values()), f"calc dates: {dates}"

    def load(on_progress: Callable[[int, int], None]) -> tuple[int, str]:
        result = load_from_settings(settings, full=request.full, on_progress=on_progress)
        lines.extend(result.lines())
        return sum(t.inserted + t.updated for t in result.tables), f"{result.sink}: {result.target}"

    for name, work in (("pit", pit), ("factors", factors), ("load", load)):
        if name in stages:
            if not ok:
                report.tasks.append(
                    TaskOutcome(task=name, status="skipped", reason="an earlier stage failed")
                )
                continue
            ok = _stage(report, name, work, request.progress)
    report.finished = now_iso()
    report.duration_s = round(time.monotonic() - started, 3)
    report.save(layout)
    doc = report.to_dict()
    alerts = evaluate_alerts(settings, doc)
    doc["alerts"] = [a.to_dict() for a in alerts]
    doc = add_report_sections(layout, doc)
    html = write_run_report_html(layout, doc)
    write_metrics(layout, doc)
    lines.append(
        f"run {report.run_id}: success rate {report.success_rate:.0%} in "
        f"{report.duration_s:.1f} s; report {html}"
    )
    exit_code = max(report.exit_code, announce_alerts(settings, alerts, run_id=report.run_id))
    return RunResult(report=doc, exit_code=exit_code, lines=lines)
