"""Facts about the cache and the runs, read cheaply: `ah stats` and the other ops tools.

Row counts, sizes and date ranges come from Parquet footers (row-group statistics),
never from full scans. The trading calendar (`raw/trade_cal`) and the unit dates of the
per-trade-date datasets are here too, because health (staleness), verify (gaps), the
HTML report (coverage) and the schedule guard all measure time in unit dates. Run
history is read from the JSON run reports under `<cache>/reports/`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cache.footers import PerFileVersion, footer
from cache.layout import LAYERS, CacheLayout, Layer
from factors.calendar import calc_dates
from foundation.logs import get_logger
from pipeline.run.report import SUCCESSFUL
from pipeline.sync.tasks import TASKS, Calendar
from sinks.pg_inspect import table_stats

log = get_logger("stats")

# Per-trade-date tasks expected to have rows on every unit date of their calendar
# (sparse ones such as suspend_d or limit_list_d may legitimately miss a day).
DENSE_UNITS = 0.5
TRADE_DATE_CADENCE: dict[str, Calendar] = {
    t.name: t.calendar for t in TASKS if t.unit == "trade_date" and t.density >= DENSE_UNITS
}

# The column that says "as of when" for a dataset, first match wins.
DATE_COLUMNS: tuple[str, ...] = (
    "trade_date",
    "calc_date",
    "knowledge_date",
    "cal_date",
    "ann_date",
    "end_date",
)


# ---------------------------------------------------------------- Parquet footers


@dataclass(frozen=True)
class FileFacts:
    """What a Parquet footer says about one file."""

    path: Path
    rows: int
    bytes: int
    modified: dt.datetime
    date_column: str | None
    min_date: dt.date | None
    max_date: dt.date | None


def dataset_files(layout: CacheLayout, layer: Layer, name: str) -> list[Path]:
    """Every Parquet file of a dataset, sorted (temporary files never match `*.parquet`)."""
    base = layout.dataset_dir(layer, name)
    return sorted(base.rglob("*.parquet")) if base.is_dir() else []


def scan_files(files: list[Path]) -> pl.LazyFrame:
    """Files of one dataset as one lazy table: no hive columns from folder names (as the
    DuckDB views), columns missing in some files read as null."""
    return pl.scan_parquet(
        files, hive_partitioning=False, missing_columns="insert", extra_columns="ignore"
    )


def date_column(columns: Iterable[str]) -> str | None:
    """The dataset's "as of" column: the first of DATE_COLUMNS it has, else None."""
    present = set(columns)
    return next((c for c in DATE_COLUMNS if c in present), None)


def file_facts(path: Path) -> FileFacts:
    """Rows, size, mtime and the date range of a file from its footer alone.

    Remembered per file version (`cache.footers.PerFileVersion`), so the run report, the
    metrics and the alerts of one run summarise each unchanged file once.
    Raises the reader's error (OSError / ArrowInvalid) when the footer is unreadable.
    """
    return _FACTS.get(path)


def _read_facts(path: Path) -> FileFacts:
    meta = footer(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    column = date_column(names)
    low: dt.date | None = None
    high: dt.date | None = None
    if column is not None:
        index = names.index(column)
        stats = [meta.row_group(g).column(index).statistics for g in range(meta.num_row_groups)]
        bounds = [(s.min, s.max) for s in stats if s is not None and s.has_min_max]
        if bounds:
            low = min(b[0] for b in bounds)
            high = max(b[1] for b in bounds)
    info = path.stat()
    return FileFacts(
        path=path,
        rows=meta.num_rows,
        bytes=info.st_size,
        modified=dt.datetime.fromtimestamp(info.st_mtime, tz=dt.UTC),
        date_column=column,
        min_date=low if isinstance(low, dt.date) else None,
        max_date=high if isinstance(high, dt.date) else None,
    )


_FACTS: PerFileVersion[FileFacts] = PerFileVersion(_read_facts)


@dataclass(frozen=True)
class DatasetStats:
    """One dataset of the cache, summarised from its footers."""

    layer: str
    name: str
    files: int
    rows: int
    bytes: int
    date_column: str | None
    first_date: dt.date | None
    last_date: dt.date | None
    last_update: dt.datetime | None
    unreadable: int

    @property
    def key(self) -> str:
        """`layer.name`, as the DuckDB catalogue and PostgreSQL name it."""
        return f"{self.layer}.{self.name}"


def dataset_stats(layout: CacheLayout, layer: Layer, name: str) -> DatasetStats:
    """Summary of one dataset from the footers of its files (unreadable footers counted)."""
    facts: list[FileFacts] = []
    unreadable = 0
    for path in dataset_files(layout, layer, name):
        try:
            facts.append(file_facts(path))
        except (OSError, ValueError) as exc:
            unreadable += 1
            log.warning("unreadable Parquet footer %s: %s", path, exc)
    lows = [f.min_date for f in facts if f.min_date is not None]
    highs = [f.max_date for f in facts if f.max_date is not None]
    return DatasetStats(
        layer=layer,
        name=name,
        files=len(facts) + unreadable,
        rows=sum(f.rows for f in facts),
        bytes=sum(f.bytes for f in facts),
        date_column=next((f.date_column for f in facts if f.date_column), None),
        first_date=min(lows) if lows else None,
        last_date=max(highs) if highs else None,
        last_update=max((f.modified for f in facts), default=None),
        unreadable=unreadable,
    )


def cache_stats(layout: CacheLayout) -> list[DatasetStats]:
    """Every dataset of every layer, in layer then name order."""
    return [
        dataset_stats(layout, layer, name) for layer in LAYERS for name in layout.datasets(layer)
    ]


# ---------------------------------------------------------------- the trading calendar


def trade_calendar(layout: CacheLayout) -> pl.DataFrame:
    """raw/trade_cal as (exchange, cal_date, is_open) rows; empty when it is not cached."""
    files = dataset_files(layout, "raw", "trade_cal")
    schema = {"exchange": pl.String, "cal_date": pl.Date, "is_open": pl.String}
    if not files:
        return pl.DataFrame(schema=schema)
    return scan_files(files).select(pl.col(c).cast(t) for c, t in schema.items()).collect()


def unit_dates(calendar: pl.DataFrame, cadence: Calendar, until: dt.date) -> pl.Series:
    """The unit dates of a cadence up to `until`: open days, or the last open day of each
    week / month the calendar covers (the factor step's calc dates, factors/calendar.py)."""
    return calc_dates(calendar, until, cadence)


def behind_counter(
    calendar: pl.DataFrame, today: dt.date
) -> Callable[[Calendar, dt.date | None], int | None]:
    """A function of (cadence, newest date) counting the unit dates due by `today` that
    come after the newest date (all of them when it is None); None without a calendar.

    A week's (month's) unit is due once its last open day is <= today, so a period in
    progress does not count against a weekly (monthly) dataset. Each cadence's unit
    dates are listed once, however many datasets are counted.
    """
    dues: dict[Calendar, pl.Series] = {}

    def behind(cadence: Calendar, newest: dt.date | None) -> int | None:
        if cadence not in dues:
            dues[cadence] = unit_dates(calendar, cadence, today)
        due = dues[cadence]
        if due.is_empty():
            return None
        if newest is None:
            return due.len()
        return int((due > newest).sum())

    return behind


# ---------------------------------------------------------------- run reports


@dataclass(frozen=True)
class TaskRecord:
    """One task's line of a run report (`pipeline.run.report.TaskOutcome` as JSON).

    Read keys: `task`, `status` (success | partial | no_data | skipped | failed),
    `reason`, `duration_s`, `calls`, `rows_fetched`, `rows_saved`, `retries`, `errors`
    (a list), `units_done`, `units_total`. Missing numbers read as 0.
    """

    task: str
    status: str
    reason: str
    duration_s: float
    calls: int
    rows_fetched: int
    rows_saved: int
    retries: int
    errors: int
    units_done: int
    units_total: int

    @property
    def succeeded(self) -> bool:
        """success or no_data (ran and found nothing new) count as successes."""
        return self.status in SUCCESSFUL


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return 0.0
    return float(value)


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list) else int(_number(value))


def task_records(report: Mapping[str, Any]) -> list[TaskRecord]:
    """The tasks of a run report as records (see TaskRecord for the keys read)."""
    return [
        TaskRecord(
            task=str(raw.get("task", "?")),
            status=str(raw.get("status", "failed")),
            reason=str(raw.get("reason") or ""),
            duration_s=_number(raw.get("duration_s")),
            calls=_count(raw.get("calls")),
            rows_fetched=_count(raw.get("rows_fetched")),
            rows_saved=_count(raw.get("rows_saved")),
            retries=_count(raw.get("retries")),
            errors=_count(raw.get("errors")),
            units_done=_count(raw.get("units_done")),
            units_total=_count(raw.get("units_total")),
        )
        for raw in report.get("tasks") or []
    ]


def success_rate(records: list[TaskRecord]) -> float | None:
    """Share of the run's tasks that ended success or no_data, as the sync computes it
    (`SyncReport.success_rate`); None for a run without tasks."""
    if not records:
        return None
    return sum(r.succeeded for r in records) / len(records)


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (naive ones are taken as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def run_duration_s(report: Mapping[str, Any]) -> float | None:
    """Seconds from `started` to `finished`, or None when either is missing."""
    started, finished = parse_time(report.get("started")), parse_time(report.get("finished"))
    if started is None or finished is None:
        return None
    return max(0.0, (finished - started).total_seconds())


def load_reports(layout: CacheLayout) -> list[dict[str, Any]]:
    """Every readable JSON run report, oldest first, one per run id (latest.json skipped)."""
    folder = layout.reports_dir
    if not folder.is_dir():
        return []
    reports: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink() or path.stem == "latest":
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable run report %s: %s", path, exc)
            continue
        if isinstance(report, dict):
            reports[str(report.get("run_id", path.stem))] = report
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(reports.values(), key=lambda r: parse_time(r.get("started")) or epoch)


@dataclass(frozen=True)
class RunSummary:
    """One past run, for the history table and chart."""

    run_id: str
    started: str | None
    duration_s: float | None
    tasks: int
    failed: int
    success_rate: float | None


def run_history(reports: list[dict[str, Any]]) -> list[RunSummary]:
    """A summary line per run report, in the order given."""
    history = []
    for report in reports:
        records = task_records(report)
        history.append(
            RunSummary(
                run_id=str(report.get("run_id", "?")),
                started=report.get("started"),
                duration_s=run_duration_s(report),
                tasks=len(records),
                failed=sum(r.status == "failed" for r in records),
                success_rate=success_rate(records),
            )
        )
    return history


def task_history(reports: list[dict[str, Any]]) -> pl.DataFrame:
    """Per task over all runs: runs, success rate, median and max duration, last outcome."""
    rows = [
        {"run": i, **asdict(record)}
        for i, report in enumerate(reports)
        for record in task_records(report)
    ]
    if not rows:
        return pl.DataFrame(
            schema={
                "task": pl.String,
                "runs": pl.UInt32,
                "success_rate": pl.Float64,
                "median_s": pl.Float64,
                "max_s": pl.Float64,
                "last_status": pl.String,
            }
        )
    frame = pl.DataFrame(rows)
    return (
        frame.sort("run")
        .group_by("task")
        .agg(
            runs=pl.len(),
            success_rate=pl.col("status").is_in(list(SUCCESSFUL)).mean(),
            median_s=pl.col("duration_s").median(),
            max_s=pl.col("duration_s").max(),
            last_status=pl.col("status").last(),
        )
        .sort("task")
    )


# ---------------------------------------------------------------- the PostgreSQL sink


# ---------------------------------------------------------------- `ah stats`


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*r).rstrip() for r in rows)]


def _date(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def collect_stats(layout: CacheLayout, database_url: str | None = None) -> dict[str, Any]:
    """Everything `ah stats` shows, as plain data (JSON-ready with `default=str`)."""
    reports = load_reports(layout)
    return {
        "cache": str(layout.root),
        "datasets": [asdict(s) | {"key": s.key} for s in cache_stats(layout)],
        "sink": [asdict(t) for t in table_stats(database_url)] if database_url else None,
        "runs": [asdict(r) for r in run_history(reports)],
        "tasks": task_history(reports).to_dicts(),
    }


def render_stats(stats: Mapping[str, Any], last_runs: int = 10) -> str:
    """The `ah stats` text: datasets, sink tables, recent runs, per-task history."""
    lines = [f"cache {stats['cache']}", ""]
    dataset_rows = [
        [
            d["key"],
            str(d["files"]) + (f" ({d['unreadable']} unreadable)" if d["unreadable"] else ""),
            f"{d['rows']:,}",
            human_bytes(d["bytes"]),
            _date(d["first_date"]),
            _date(d["last_date"]),
            _date(d["last_update"]),
        ]
        for d in stats["datasets"]
    ]
    header = ["dataset", "files", "rows", "size", "first", "last", "updated (UTC)"]
    lines += _table(header, dataset_rows) if dataset_rows else ["no datasets in the cache yet"]
    if stats.get("sink") is not None:
        sink_rows = [
            [f"{t['schema']}.{t['name']}", f"~{t['rows_estimate']:,}", human_bytes(t["bytes"])]
            for t in stats["sink"]
        ]
        lines += ["", "PostgreSQL (row estimates from planner statistics)"]
        lines += _table(["table", "rows", "size"], sink_rows) if sink_rows else ["no tables"]
    runs = stats["runs"][-last_runs:]
    lines += ["", f"last {len(runs)} of {len(stats['runs'])} runs"]
    run_rows = [
        [
            r["run_id"],
            r["started"] or "-",
            "-" if r["duration_s"] is None else f"{r['duration_s']:.0f} s",
            str(r["tasks"]),
            str(r["failed"]),
            "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}",
        ]
        for r in runs
    ]
    lines += _table(["run", "started", "duration", "tasks", "failed", "success"], run_rows)
    task_rows = [
        [
            t["task"],
            str(t["runs"]),
            "-" if t["success_rate"] is None else f"{t['success_rate']:.0%}",
            f"{t['median_s']:.1f} s",
            f"{t['max_s']:.1f} s",
            t["last_status"],
        ]
        for t in stats["tasks"]
    ]
    if task_rows:
        lines += ["", "tasks over all runs"]
        lines += _table(["task", "runs", "success", "median", "max", "last"], task_rows)
    return "\n".join(lines)


def stats_output(layout: CacheLayout, database_url: str | None, as_json: bool, runs: int) -> str:
    """What `ah stats` prints: the tables, or the JSON document."""
    stats = collect_stats(layout, database_url)
    if as_json:
        return json.dumps(stats, indent=2, default=str, ensure_ascii=False)
    return render_stats(stats, runs)
