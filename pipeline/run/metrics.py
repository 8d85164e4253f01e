"""Prometheus textfile: `<cache>/metrics/alphahome.prom`, for node_exporter's textfile collector.

Written atomically after every run. Per task: duration, rows, calls, retries, errors,
status (one series per outcome, 1 for the current one), last run and last success
time; per run: success rate, duration, finish time, tasks by outcome, alerts; per
dataset: rows, bytes, newest date (from Parquet footers) and its lag in open days of
the exchange calendar behind the market's today (so a holiday week is not "stale"),
and whether it is stale by its own cadence; the last load, the last backup (time,
bytes) and the last verify (time, findings per check). Tasks that were not in this
run keep their series from the previous file, so a weekly factor run does not erase
the daily sync's last success time. `ah backup` and `ah verify` refresh the
non-run series (`refresh_metrics`).

`METRICS` is the single list of exported names: the deploy rules and dashboard are
checked against it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.atomic import write_bytes_atomic
from cache.layout import CacheLayout
from cache.state import FileStateStore
from pipeline.ops.records import last_backup, last_verify
from pipeline.ops.stats import (
    TRADE_DATE_CADENCE,
    behind_counter,
    cache_stats,
    parse_time,
    run_duration_s,
    success_rate,
    task_records,
    trade_calendar,
)
from pipeline.run.report import OUTCOMES

PROM_FILE = "alphahome.prom"
PROM_MODE = 0o644  # node_exporter runs as another user


@dataclass(frozen=True)
class MetricSpec:
    """One exported gauge family."""

    name: str
    help: str
    labels: tuple[str, ...]


TASK_DURATION = MetricSpec(
    "alphahome_task_duration_seconds", "Duration of the task's last run.", ("task",)
)
TASK_ROWS_FETCHED = MetricSpec(
    "alphahome_task_rows_fetched", "Rows fetched from the source in the task's last run.", ("task",)
)
TASK_ROWS_SAVED = MetricSpec(
    "alphahome_task_rows_saved", "Rows committed to the cache in the task's last run.", ("task",)
)
TASK_CALLS = MetricSpec(
    "alphahome_task_api_calls", "API calls made in the task's last run.", ("task",)
)
TASK_RETRIES = MetricSpec(
    "alphahome_task_retries", "Retries of transient errors in the task's last run.", ("task",)
)
TASK_ERRORS = MetricSpec("alphahome_task_errors", "Errors in the task's last run.", ("task",))
TASK_STATUS = MetricSpec(
    "alphahome_task_status",
    "Outcome of the task's last run: 1 for the current outcome, 0 for the others.",
    ("task", "status"),
)
TASK_LAST_RUN = MetricSpec(
    "alphahome_task_last_run_timestamp_seconds", "When the task last ran (unix time).", ("task",)
)
TASK_LAST_SUCCESS = MetricSpec(
    "alphahome_task_last_success_timestamp_seconds",
    "When the task last succeeded (success or no_data; unix time).",
    ("task",),
)
RUN_SUCCESS_RATE = MetricSpec(
    "alphahome_run_success_rate", "Share of tasks that succeeded in the last run.", ()
)
RUN_DURATION = MetricSpec("alphahome_run_duration_seconds", "Duration of the last run.", ())
RUN_FINISHED = MetricSpec(
    "alphahome_run_finished_timestamp_seconds", "When the last run finished (unix time).", ()
)
RUN_TASKS = MetricSpec("alphahome_run_tasks", "Tasks of the last run by status.", ("status",))
RUN_ALERTS = MetricSpec("alphahome_run_alerts", "Alerts raised by the last run.", ())
DATASET_ROWS = MetricSpec(
    "alphahome_dataset_rows", "Rows in the cache (Parquet footers).", ("layer", "dataset")
)
DATASET_BYTES = MetricSpec(
    "alphahome_dataset_bytes", "Bytes of Parquet in the cache.", ("layer", "dataset")
)
DATASET_NEWEST = MetricSpec(
    "alphahome_dataset_newest_date_timestamp_seconds",
    "Newest date in the dataset (midnight UTC of it, unix time).",
    ("layer", "dataset"),
)

DATASET_LAG = MetricSpec(
    "alphahome_dataset_lag_sessions",
    "Trading sessions (open days of the exchange calendar) after the dataset's newest date, "
    "up to the market's today.",
    ("layer", "dataset"),
)
DATASET_STALE = MetricSpec(
    "alphahome_dataset_stale",
    "1 when a per-trade-date dataset is more than one due unit (open day, week or month end) "
    "behind the market's today, else 0.",
    ("layer", "dataset"),
)
LOAD_LAST_SUCCESS = MetricSpec(
    "alphahome_load_last_success_timestamp_seconds",
    "When the load into the sink last succeeded (ah load or the run's load stage; unix time).",
    (),
)
BACKUP_LAST_SUCCESS = MetricSpec(
    "alphahome_backup_last_success_timestamp_seconds",
    "When the last verified backup snapshot finished (unix time).",
    (),
)
BACKUP_BYTES = MetricSpec("alphahome_backup_bytes", "Bytes of the last backup snapshot.", ())
VERIFY_LAST_RUN = MetricSpec(
    "alphahome_verify_last_run_timestamp_seconds", "When ah verify last ran (unix time).", ()
)
VERIFY_FINDINGS = MetricSpec(
    "alphahome_verify_findings", "Findings of the last ah verify, by check.", ("check",)
)

METRICS: tuple[MetricSpec, ...] = (
    TASK_DURATION,
    TASK_ROWS_FETCHED,
    TASK_ROWS_SAVED,
    TASK_CALLS,
    TASK_RETRIES,
    TASK_ERRORS,
    TASK_STATUS,
    TASK_LAST_RUN,
    TASK_LAST_SUCCESS,
    RUN_SUCCESS_RATE,
    RUN_DURATION,
    RUN_FINISHED,
    RUN_TASKS,
    RUN_ALERTS,
    DATASET_ROWS,
    DATASET_BYTES,
    DATASET_NEWEST,
    DATASET_LAG,
    DATASET_STALE,
    LOAD_LAST_SUCCESS,
    BACKUP_LAST_SUCCESS,
    BACKUP_BYTES,
    VERIFY_LAST_RUN,
    VERIFY_FINDINGS,
)
TASK_METRICS = frozenset(m.name for m in METRICS if "task" in m.labels)

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def escape_label(value: str) -> str:
    """A label value escaped for the exposition format (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def unescape_label(value: str) -> str:
    """The inverse of `escape_label`."""
    return re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], value)


def escape_help(text: str) -> str:
    """HELP text escaped (backslash and newline)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a decimal point, NaN/Inf spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def parse_samples(text: str) -> list[Sample]:
    """The samples of an exposition-format text (comments skipped, labels unescaped)."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels_text, value = match.groups()
        labels = tuple((k, unescape_label(v)) for k, v in _LABEL.findall(labels_text or ""))
        samples.append((name, labels, float(value)))
    return samples


def render_exposition(samples: list[Sample]) -> str:
    """HELP/TYPE headers and samples grouped per family in METRICS order."""
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample[0], []).append(sample)
    lines: list[str] = []
    for spec in METRICS:
        family = sorted(by_name.get(spec.name, []), key=lambda s: s[1])
        if not family:
            continue
        lines += [f"# HELP {spec.name} {escape_help(spec.help)}", f"# TYPE {spec.name} gauge"]
        for name, labels, value in family:
            shown = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
            lines.append(
                f"{name}{{{shown}}} {format_value(value)}"
                if shown
                else f"{name} {format_value(value)}"
            )
    return "\n".join(lines) + "\n"


def _epoch(value: dt.datetime | dt.date) -> float:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return value.timestamp()


def run_samples(report: Mapping[str, Any], alerts: int | None = None) -> list[Sample]:
    """Task and run samples of one run report (last success only for tasks that succeeded)."""
    records = task_records(report)
    finished = parse_time(report.get("finished")) or dt.datetime.now(dt.UTC)
    samples: list[Sample] = []
    for r in records:
        task: Labels = (("task", r.task),)
        samples += [
            (TASK_DURATION.name, task, r.duration_s),
            (TASK_ROWS_FETCHED.name, task, r.rows_fetched),
            (TASK_ROWS_SAVED.name, task, r.rows_saved),
            (TASK_CALLS.name, task, r.calls),
            (TASK_RETRIES.name, task, r.retries),
            (TASK_ERRORS.name, task, r.errors),
            (TASK_LAST_RUN.name, task, _epoch(finished)),
        ]
        samples += [
            (TASK_STATUS.name, (("task", r.task), ("status", o)), float(r.status == o))
            for o in OUTCOMES
        ]
        if r.succeeded:
            samples.append((TASK_LAST_SUCCESS.name, task, _epoch(finished)))
    rate = success_rate(records)
    if rate is not None:
        samples.append((RUN_SUCCESS_RATE.name, (), rate))
    duration = run_duration_s(report)
    if duration is not None:
        samples.append((RUN_DURATION.name, (), duration))
    samples.append((RUN_FINISHED.name, (), _epoch(finished)))
    samples += [
        (RUN_TASKS.name, (("status", o),), float(sum(r.status == o for r in records)))
        for o in OUTCOMES
    ]
    raised = alerts if alerts is not None else len(report.get("alerts") or [])
    samples.append((RUN_ALERTS.name, (), float(raised)))
    return samples


def dataset_samples(layout: CacheLayout, today: dt.date | None = None) -> list[Sample]:
    """Rows, bytes and newest date of every dataset, from Parquet footers; with `today`
    (the market's), the lag in open days and whether each is stale by its cadence."""
    behind_by = behind_counter(trade_calendar(layout), today) if today is not None else None
    samples: list[Sample] = []
    for s in cache_stats(layout):
        labels: Labels = (("layer", s.layer), ("dataset", s.name))
        samples += [(DATASET_ROWS.name, labels, s.rows), (DATASET_BYTES.name, labels, s.bytes)]
        if s.last_date is not None:
            samples.append((DATASET_NEWEST.name, labels, _epoch(s.last_date)))
        if behind_by is None or s.date_column is None:
            continue
        lag = behind_by("daily", s.last_date)
        if lag is not None:
            samples.append((DATASET_LAG.name, labels, float(lag)))
        cadence = TRADE_DATE_CADENCE.get(s.name) if s.layer == "raw" else None
        behind = behind_by(cadence, s.last_date) if cadence else None
        if behind is not None:
            samples.append((DATASET_STALE.name, labels, float(behind > 1)))
    return samples


def ops_samples(layout: CacheLayout) -> list[Sample]:
    """The last backup and the last verify (pipeline/ops/records.py)."""
    samples: list[Sample] = []
    backup = last_backup(layout)
    if backup is not None:
        when, doc = backup
        samples.append((BACKUP_LAST_SUCCESS.name, (), _epoch(when)))
        samples.append((BACKUP_BYTES.name, (), float(doc.get("bytes") or 0)))
    verify = last_verify(layout)
    if verify is not None:
        when, findings = verify
        samples.append((VERIFY_LAST_RUN.name, (), _epoch(when)))
        samples += [(VERIFY_FINDINGS.name, (("check", c),), float(n)) for c, n in findings.items()]
    return samples


def load_sample(samples: list[Sample]) -> list[Sample]:
    """The last load's success time, from the `load` task's (this run's or carried over)."""
    found: list[Sample] = []
    for name, labels, value in samples:
        if name == TASK_LAST_SUCCESS.name and labels == (("task", "load"),):
            found.append((LOAD_LAST_SUCCESS.name, (), value))
    return found[:1]


def carried_over(previous: list[Sample], current: list[Sample]) -> list[Sample]:
    """Per-task samples of the previous file to keep: tasks not in this run, and the last
    success time of tasks in this run that did not succeed this time."""
    tasks_now = {dict(labels)["task"] for name, labels, _ in current if name in TASK_METRICS}
    success_now = {
        dict(labels)["task"] for name, labels, _ in current if name == TASK_LAST_SUCCESS.name
    }
    kept = []
    for name, labels, value in previous:
        if name not in TASK_METRICS:
            continue
        task = dict(labels).get("task")
        if task not in tasks_now or (name == TASK_LAST_SUCCESS.name and task not in success_now):
            kept.append((name, labels, value))
    return kept


def state_last_success(layout: CacheLayout) -> list[Sample]:
    """Last success times recorded in the task state files (cache/state.py)."""
    store = FileStateStore(layout)
    samples: list[Sample] = []
    for task in store.tasks():
        when = parse_time(store.load(task).last_success)
        if when is not None:
            samples.append((TASK_LAST_SUCCESS.name, (("task", task),), when.timestamp()))
    return samples


def metrics_path(layout: CacheLayout) -> Path:
    """`<cache>/metrics/alphahome.prom`."""
    return layout.metrics_dir / PROM_FILE


def _today(report: Mapping[str, Any]) -> dt.date:
    if report.get("market_today"):
        return dt.date.fromisoformat(str(report["market_today"]))
    return dt.datetime.now(dt.UTC).date()


def write_metrics(
    layout: CacheLayout, report: Mapping[str, Any], alerts: int | None = None
) -> Path:
    """Write the textfile for this run atomically; returns its path.

    `alerts`: how many alerts the run raised (default: the length of report["alerts"]).
    Series of tasks not in this run are kept from the previous file; last success times
    the previous file lacks come from the task state files. Lags are counted up to the
    report's `market_today`.
    """
    path = metrics_path(layout)
    previous = parse_samples(path.read_text(encoding="utf-8")) if path.exists() else []
    known = {labels for name, labels, _ in previous if name == TASK_LAST_SUCCESS.name}
    previous += [s for s in state_last_success(layout) if s[1] not in known]
    current = run_samples(report, alerts) + dataset_samples(layout, _today(report))
    tasks = current + carried_over(previous, current)
    text = render_exposition(tasks + load_sample(tasks) + ops_samples(layout))
    return write_bytes_atomic(text.encode("utf-8"), path, mode=PROM_MODE)


def refresh_metrics(layout: CacheLayout, today: dt.date | None = None) -> Path:
    """Rewrite the textfile with fresh dataset, backup and verify series, keeping the run
    and task series of the last run (`ah backup` and `ah verify` call this)."""
    path = metrics_path(layout)
    previous = parse_samples(path.read_text(encoding="utf-8")) if path.exists() else []
    fresh = dataset_samples(layout, today) + ops_samples(layout)
    replaced = {name for name, _, _ in fresh} | {
        DATASET_ROWS.name, DATASET_BYTES.name, DATASET_NEWEST.name, DATASET_LAG.name,
        DATASET_STALE.name, BACKUP_LAST_SUCCESS.name, BACKUP_BYTES.name,
        VERIFY_LAST_RUN.name, VERIFY_FINDINGS.name,
    }  # fmt: skip
    kept = [s for s in previous if s[0] not in replaced]
    text = render_exposition(kept + fresh)
    return write_bytes_atomic(text.encode("utf-8"), path, mode=PROM_MODE)
