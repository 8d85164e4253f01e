"""The report of one run (`ah sync` or `ah run`): JSON under `<cache>/reports/` and a table.

The JSON is the record other tools build on (HTML pages, metrics, history): run id,
start and end, the arguments, per task (sync task or compute stage) the outcome and
its reason, units, calls, rows fetched and saved, retries, duration and errors; the
data's as-of date (cache/asof.py) and the market's today it was judged against; the
alerts the run raised; and the totals that decide the exit status. A run saves it
once, when it is complete (alerts included).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from cache.atomic import write_bytes_atomic
from cache.layout import CacheLayout
from foundation.logs import scrub

OUTCOMES = ("success", "partial", "no_data", "skipped", "failed")
SUCCESSFUL = ("success", "no_data")

AlertKind = Literal["success_rate", "failed_task", "long_task", "stale_data", "damaged_file"]


@dataclass(frozen=True)
class Alert:
    """One thing an operator must look at (evaluated by pipeline/run/alerts.py)."""

    kind: AlertKind
    subject: str
    message: str
    value: float | None = None
    threshold: float | None = None

    def line(self) -> str:
        """The `ALERT …` line printed and logged."""
        return scrub(f"ALERT {self.kind} {self.subject}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (report section `alerts`, webhook body)."""
        return {
            k: (scrub(v) if isinstance(v, str) else v) for k, v in dataclasses.asdict(self).items()
        }


@dataclass
class TaskOutcome:
    """How one task ended in a run."""

    task: str
    status: str = "skipped"
    reason: str = ""
    api: str = ""
    strategy: str = ""
    units_total: int = 0
    units_done: int = 0
    calls: int = 0
    calls_estimated: int = 0
    rows_fetched: int = 0
    rows_saved: int = 0
    retries: int = 0
    rate_limited: int = 0
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class SyncReport:
    """Everything a run did (the sync's tasks, then one entry per compute stage) and the
    alerts it raised; `exit_code` applies the alert rules."""

    run_id: str
    started: str
    source: str
    cache_dir: str
    arguments: dict[str, Any]
    success_rate_alert: float
    finished: str | None = None
    as_of: str | None = None  # the data's as-of date after the run (cache/asof.py)
    source_as_of: str | None = None  # the newest trade date the source had (sync only)
    market_today: str | None = None  # the source's today, the reference for staleness
    dry_run: bool = False
    tasks: list[TaskOutcome] = field(default_factory=list)
    calls_by_api: dict[str, int] = field(default_factory=dict)
    limits_by_api: dict[str, int | None] = field(default_factory=dict)  # calls/min, None: none
    sync_seconds: float | None = None  # the sync's own wall time (quota use is over it)
    estimated_seconds: float = 0.0
    duration_s: float = 0.0
    path: str | None = None
    alerts: list[Alert] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        """Share of the selected tasks that ended `success` or `no_data` (1.0 when none)."""
        if not self.tasks:
            return 1.0
        return sum(t.status in SUCCESSFUL for t in self.tasks) / len(self.tasks)

    @property
    def exit_code(self) -> int:
        """0, or 1 when a task failed hard, the success rate is under the alert level or
        the run raised an alert."""
        if self.dry_run:
            return 0
        failed = any(t.status == "failed" for t in self.tasks)
        low = self.success_rate < self.success_rate_alert
        return 1 if failed or low or self.alerts else 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        doc = dataclasses.asdict(self)
        doc["alerts"] = [a.to_dict() for a in self.alerts]
        doc["success_rate"] = round(self.success_rate, 4)
        doc["exit_code"] = self.exit_code
        doc["calls"] = sum(self.calls_by_api.values())
        return doc

    def save(self, layout: CacheLayout) -> Path:
        """Write the JSON under `<cache>/reports/sync-<run_id>.json` (secrets scrubbed)."""
        path = layout.reports_dir / f"sync-{self.run_id}.json"
        self.path = str(path)
        text = scrub(json.dumps(self.to_dict(), ensure_ascii=False, indent=1, default=str))
        write_bytes_atomic(text.encode("utf-8"), path)
        return path

    def table(self) -> Table:
        """The per-task summary as a rich table."""
        title = "sync plan (dry run)" if self.dry_run else f"sync {self.run_id}"
        table = Table(title=title)
        for column in ("task", "status", "strategy", "units", "calls", "rows", "saved", "s"):
            table.add_column(column, justify="left" if column in ("task", "status") else "right")
        table.add_column("reason")
        for t in self.tasks:
            units = f"{t.units_done}/{t.units_total}"
            calls = str(t.calls_estimated if self.dry_run else t.calls)
            table.add_row(
                t.task,
                t.status,
                t.strategy,
                units,
                calls,
                str(t.rows_fetched),
                str(t.rows_saved),
                f"{t.duration_s:.1f}",
                scrub(t.reason),
            )
        return table

    def render(self) -> str:
        """The summary as text: the table and one closing line."""
        console = Console(width=140, record=True, file=io.StringIO(), force_terminal=False)
        console.print(self.table())
        total = sum(self.calls_by_api.values())
        if self.dry_run:
            tail = (
                f"{sum(t.calls_estimated for t in self.tasks)} calls planned; "
                f"about {_duration(self.estimated_seconds)} at the configured rate limits"
            )
        else:
            tail = (
                f"{total} calls, success rate {self.success_rate:.0%}, "
                f"{self.duration_s:.1f} s, exit {self.exit_code}"
                + (f"; report {self.path}" if self.path else "")
            )
        return console.export_text() + tail


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def now_iso() -> str:
    """The current UTC time, ISO formatted to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
