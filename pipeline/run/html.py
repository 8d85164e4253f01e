"""The run report as one static HTML page with inline SVG charts (opens offline, no JS).

`<cache>/reports/<run_id>.html` and `latest.html`: a summary, the alerts, task
durations coloured by outcome, run history (durations and success rates), rows per
trade date of each per-trade-date dataset against the trading calendar up to the
data's as-of date (cache/asof.py; missing open days in red), and the distribution of
P and G scores per calc date (box plots).

The page is rendered from the report dict alone; the facts it needs from the cache
(coverage, score distributions, history) are added to the report as the `ops`
section by `add_report_sections`, which the orchestrator may also save in the JSON.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from cache.asof import data_as_of
from cache.atomic import write_bytes_atomic
from cache.layout import CacheLayout
from pipeline.ops.stats import (
    TRADE_DATE_CADENCE,
    dataset_files,
    load_reports,
    run_duration_s,
    run_history,
    scan_files,
    success_rate,
    task_records,
    trade_calendar,
    unit_dates,
)
from pipeline.run.report import OUTCOMES

COVERAGE_WINDOW = 120
SCORE_DATES = 12
HISTORY_RUNS = 30
WIDTH = 960
LATEST = "latest.html"

COLOURS = {
    "success": "#2e7d32",
    "partial": "#f9a825",
    "no_data": "#78909c",
    "skipped": "#b0bec5",
    "failed": "#c62828",
}
MISSING = "#ef9a9a"
BAR = "#1565c0"

# ---------------------------------------------------------------- facts from the cache


def _as_of(layout: CacheLayout, report: Mapping[str, Any]) -> dt.date | None:
    """The data's as-of date the run recorded, else the cache's (cache/asof.py)."""
    if report.get("as_of"):
        return dt.date.fromisoformat(str(report["as_of"]))
    return data_as_of(layout)


def coverage(
    layout: CacheLayout, day: dt.date | None, window: int = COVERAGE_WINDOW
) -> list[dict[str, Any]]:
    """Rows per expected unit date over the last `window` units of each per-trade-date dataset.

    Expected dates come from the calendar (from the dataset's first date to `day`, the
    data's as-of date); without a calendar or an as-of date the dates present are
    shown and nothing counts as missing.
    """
    calendar = trade_calendar(layout) if day is not None else pl.DataFrame()
    found = []
    for name, cadence in TRADE_DATE_CADENCE.items():
        files = dataset_files(layout, "raw", name)
        if not files:
            continue
        dates = scan_files(files).select(pl.col("trade_date"))
        first = dates.select(pl.col("trade_date").min()).collect().item()
        if first is None:
            continue
        if calendar.is_empty() or day is None:
            expected = dates.select(pl.col("trade_date").unique().sort()).collect()["trade_date"]
        else:
            expected = unit_dates(calendar, cadence, day)
            expected = expected.filter(expected >= first)
        expected = expected.tail(window)
        if expected.is_empty():
            continue
        counts = (
            dates.filter(pl.col("trade_date") >= expected.min())
            .group_by("trade_date")
            .agg(rows=pl.len())
            .collect()
        )
        frame = (
            pl.DataFrame({"trade_date": expected})
            .join(counts, on="trade_date", how="left")
            .with_columns(pl.col("rows").fill_null(0))
            .sort("trade_date")
        )
        missing = frame.filter(pl.col("rows") == 0)["trade_date"]
        found.append(
            {
                "dataset": f"raw.{name}",
                "cadence": cadence,
                "dates": frame["trade_date"].cast(pl.String).to_list(),
                "rows": frame["rows"].to_list(),
                "missing": missing.cast(pl.String).to_list(),
                "coverage": None if calendar.is_empty() else 1 - missing.len() / frame.height,
            }
        )
    return found


def score_distributions(
    layout: CacheLayout, last: int = SCORE_DATES
) -> dict[str, list[dict[str, Any]]]:
    """Per factor (p, g), quantiles of the score on each of the last `last` calc dates."""
    found: dict[str, list[dict[str, Any]]] = {}
    for factor in ("p", "g"):
        files = dataset_files(layout, "factors", factor)
        if not files:
            continue
        score = pl.col(f"{factor}_score")
        scan = scan_files(files).select("calc_date", score)
        recent = scan.select(pl.col("calc_date").unique()).collect()["calc_date"].sort().tail(last)
        frame = (
            scan.filter(pl.col("calc_date").is_in(recent.implode()))
            .group_by("calc_date")
            .agg(
                n=score.count(),
                nulls=score.null_count(),
                min=score.min(),
                q1=score.quantile(0.25, "linear"),
                median=score.median(),
                q3=score.quantile(0.75, "linear"),
                max=score.max(),
            )
            .sort("calc_date")
            .with_columns(pl.col("calc_date").cast(pl.String))
            .collect()
        )
        found[factor] = frame.to_dicts()
    return found


def add_report_sections(layout: CacheLayout, report: Mapping[str, Any]) -> dict[str, Any]:
    """The report with an added `ops` section: coverage, score distributions, run history.

    Existing keys are left as they are; the history includes this run.
    """
    reports = [r for r in load_reports(layout) if r.get("run_id") != report.get("run_id")]
    history = run_history([*reports, dict(report)])[-HISTORY_RUNS:]
    day = _as_of(layout, report)
    ops = {
        "as_of": day.isoformat() if day else None,
        "coverage": coverage(layout, day),
        "scores": score_distributions(layout),
        "history": [asdict(h) for h in history],
    }
    return {**report, "ops": ops}


# ---------------------------------------------------------------- SVG pieces


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _svg(height: float, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{_e(label)}">'
        + "".join(body)
        + "</svg>"
    )


def _text(
    x: float, y: float, text: Any, anchor: str = "start", size: int = 12, fill: str = "#333"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{fill}">{_e(text)}</text>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "") -> str:
    tip = f"<title>{_e(title)}</title>" if title else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{max(h, 0.5):.1f}" '
        f'fill="{fill}">{tip}</rect>'
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, stroke: str = "#999", width: float = 1
) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{stroke}" stroke-width="{width}"/>'
    )


def _legend(y: float) -> list[str]:
    body = []
    for i, outcome in enumerate(OUTCOMES):
        x = 10 + i * 120
        body += [_rect(x, y - 10, 12, 12, COLOURS[outcome]), _text(x + 16, y, outcome)]
    return body


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def durations_chart(tasks: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars: each task's duration, coloured by its outcome."""
    if not tasks:
        return "<p>No tasks in this run.</p>"
    rows = sorted(tasks, key=lambda t: -t["duration_s"])
    left, right, row, top = 200, 90, 22, 30
    longest = max(t["duration_s"] for t in rows) or 1.0
    scale = (WIDTH - left - right) / longest
    body = _legend(16)
    for i, t in enumerate(rows):
        y = top + i * row
        width = t["duration_s"] * scale
        tip = f"{t['task']}: {t['status']}, {_seconds(t['duration_s'])}"
        body += [
            _text(left - 8, y + 13, t["task"], "end"),
            _rect(left, y + 2, width, row - 6, COLOURS.get(t["status"], "#555"), tip),
            _text(left + width + 6, y + 13, _seconds(t["duration_s"])),
        ]
    return _svg(top + len(rows) * row + 10, body, "task durations by outcome")


def outcomes_chart(tasks: Sequence[Mapping[str, Any]]) -> str:
    """One stacked bar: how many tasks ended with each outcome."""
    total = len(tasks) or 1
    body, x, plot = [], 10.0, WIDTH - 20
    for outcome in OUTCOMES:
        n = sum(t["status"] == outcome for t in tasks)
        if not n:
            continue
        width = plot * n / total
        body += [
            _rect(x, 8, width, 28, COLOURS[outcome], f"{outcome}: {n}"),
            _text(x + width / 2, 27, f"{outcome} {n}", "middle", 12, "#fff"),
        ]
        x += width
    return _svg(44, body, "task outcomes")


def history_chart(history: Sequence[Mapping[str, Any]]) -> str:
    """Run durations (bars, red when a task failed) and success rate (line, right axis)."""
    if not history:
        return "<p>No run history yet.</p>"
    left, right, top, height = 60, 50, 14, 180
    plot_w = WIDTH - left - right
    slot = plot_w / len(history)
    longest = max((h["duration_s"] or 0) for h in history) or 1.0
    body = [
        _line(left, top + height, left + plot_w, top + height),
        _text(left - 6, top + 10, _seconds(longest), "end", 11),
        _text(left - 6, top + height, "0", "end", 11),
        _text(left + plot_w + 6, top + 10, "100%", "start", 11, "#6a1b9a"),
        _text(left + plot_w + 6, top + height, "0%", "start", 11, "#6a1b9a"),
    ]
    points = []
    for i, h in enumerate(history):
        x = left + i * slot
        bar = (h["duration_s"] or 0) / longest * height
        colour = COLOURS["failed"] if h["failed"] else COLOURS["success"]
        tip = f"{h['run_id']}: {_seconds(h['duration_s'] or 0)}, {h['failed']} failed"
        body.append(_rect(x + slot * 0.15, top + height - bar, slot * 0.7, bar, colour, tip))
        if h["success_rate"] is not None:
            points.append(f"{x + slot / 2:.1f},{top + height - h['success_rate'] * height:.1f}")
    step = max(1, len(history) // 8)
    for i in range(0, len(history), step):
        started = str(history[i]["started"] or history[i]["run_id"])[:10]
        body.append(_text(left + i * slot + slot / 2, top + height + 16, started, "middle", 10))
    if points:
        body.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="#6a1b9a" stroke-width="2"/>'
        )
    return _svg(top + height + 24, body, "run history")


def coverage_chart(datasets: Sequence[Mapping[str, Any]]) -> str:
    """Per dataset, rows per expected date; open days without rows as red bars."""
    if not datasets:
        return "<p>No per-trade-date datasets in the cache.</p>"
    left, right, band, gap = 200, 20, 50, 26
    plot_w = WIDTH - left - right
    body: list[str] = []
    for k, d in enumerate(datasets):
        top = 8 + k * (band + gap)
        n = len(d["dates"])
        slot = plot_w / max(n, 1)
        most = max(d["rows"]) or 1
        share = "" if d["coverage"] is None else f"{d['coverage']:.1%} of {n} dates"
        body += [
            _text(left - 8, top + 20, d["dataset"], "end", 12),
            _text(left - 8, top + 36, share, "end", 11, "#666"),
            _line(left, top + band, left + plot_w, top + band),
        ]
        for i, (date, rows) in enumerate(zip(d["dates"], d["rows"], strict=True)):
            x = left + i * slot
            if rows == 0:
                body.append(_rect(x, top, max(slot - 0.5, 1), band, MISSING, f"{date}: no rows"))
            else:
                h = rows / most * band
                body.append(
                    _rect(x, top + band - h, max(slot - 0.5, 1), h, BAR, f"{date}: {rows} rows")
                )
        body += [
            _text(left, top + band + 14, d["dates"][0], "start", 10, "#666"),
            _text(left + plot_w, top + band + 14, d["dates"][-1], "end", 10, "#666"),
        ]
    return _svg(8 + len(datasets) * (band + gap), body, "rows per trade date")


def boxplot_chart(stats: Sequence[Mapping[str, Any]], label: str) -> str:
    """Box plots of a score (0–100) per calc date: min–max whiskers, quartile box, median."""
    if not stats:
        return f"<p>No {_e(label)} scores in the cache.</p>"
    left, right, top, height = 50, 20, 12, 200
    plot_w = WIDTH - left - right
    slot = plot_w / len(stats)

    def y(v: float) -> float:
        return top + height - v / 100 * height

    body = []
    for tick in (0, 25, 50, 75, 100):
        body += [
            _line(left, y(tick), left + plot_w, y(tick), "#e0e0e0"),
            _text(left - 6, y(tick) + 4, tick, "end", 10),
        ]
    for i, s in enumerate(stats):
        centre = left + i * slot + slot / 2
        box_w = min(slot * 0.5, 40)
        body.append(_text(centre, top + height + 16, s["calc_date"], "middle", 10))
        body.append(_text(centre, top + height + 30, f"n={s['n']}", "middle", 9, "#666"))
        if s["n"] == 0:
            continue
        tip = (
            f"{s['calc_date']}: n={s['n']} nulls={s['nulls']} min={s['min']:.1f} q1={s['q1']:.1f} "
            f"median={s['median']:.1f} q3={s['q3']:.1f} max={s['max']:.1f}"
        )
        body += [
            _line(centre, y(s["min"]), centre, y(s["max"]), "#455a64"),
            _line(centre - box_w / 4, y(s["min"]), centre + box_w / 4, y(s["min"]), "#455a64"),
            _line(centre - box_w / 4, y(s["max"]), centre + box_w / 4, y(s["max"]), "#455a64"),
            _rect(centre - box_w / 2, y(s["q3"]), box_w, y(s["q1"]) - y(s["q3"]), "#90caf9", tip),
            _line(
                centre - box_w / 2, y(s["median"]), centre + box_w / 2, y(s["median"]), "#0d47a1", 2
            ),
        ]
    return _svg(top + height + 38, body, f"{label} distribution per calc date")


# ---------------------------------------------------------------- the page

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1000px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right}.alert{color:#b71c1c;font-weight:600}.ok{color:#2e7d32;font-weight:600}
.muted{color:#666}
.badge{display:inline-block;padding:1px 6px;border-radius:3px;color:#fff;font-size:12px}
"""


def _badge(status: str) -> str:
    colour = COLOURS.get(status, "#555")
    return f'<span class="badge" style="background:{colour}">{_e(status)}</span>'


def _task_table(tasks: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "task",
            "status",
            "reason",
            "duration",
            "calls",
            "fetched",
            "saved",
            "retries",
            "errors",
        )
    )
    rows = "".join(
        "<tr>"
        f"<td>{_e(t['task'])}</td><td>{_badge(t['status'])}</td><td>{_e(t['reason'] or '')}</td>"
        f"<td class=n>{_seconds(t['duration_s'])}</td><td class=n>{t['calls']:,}</td>"
        f"<td class=n>{t['rows_fetched']:,}</td><td class=n>{t['rows_saved']:,}</td>"
        f"<td class=n>{t['retries']:,}</td><td class=n>{t['errors']:,}</td></tr>"
        for t in tasks
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _alerts(report: Mapping[str, Any]) -> str:
    alerts = report.get("alerts") or []
    if not alerts:
        return '<p class="ok">No alerts.</p>'
    items = "".join(
        f'<li class="alert">ALERT {_e(a.get("kind", ""))} {_e(a.get("subject", ""))}: '
        f"{_e(a.get('message', ''))}</li>"
        for a in alerts
    )
    return f"<ul>{items}</ul>"


def render_report_html(report: Mapping[str, Any]) -> str:
    """The whole page, from a report that has its `ops` section (see add_report_sections)."""
    tasks = [asdict(r) for r in task_records(report)]
    ops = report.get("ops") or {}
    rate = success_rate(task_records(report))
    duration = run_duration_s(report)
    run_id = str(report.get("run_id", "?"))
    took = "?" if duration is None else _seconds(duration)
    shown_rate = "-" if rate is None else f"{rate:.0%}"
    summary = (
        f"started {_e(report.get('started', '?'))}, finished {_e(report.get('finished', '?'))}"
        f" ({took}); {len(tasks)} tasks, success rate {shown_rate}"
    )
    scores = ops.get("scores") or {}
    sections = [
        f"<h1>alphahome run {_e(run_id)}</h1><p class=muted>{summary}</p>",
        "<h2>Alerts</h2>" + _alerts(report),
        "<h2>Outcomes</h2>" + outcomes_chart(tasks),
        "<h2>Task durations</h2>" + durations_chart(tasks),
        "<h2>Tasks</h2>" + _task_table(tasks),
        "<h2>Run history</h2>" + history_chart(ops.get("history") or []),
        "<h2>Rows per trade date against the calendar</h2>"
        + coverage_chart(ops.get("coverage") or []),
        "<h2>P score distribution per calc date</h2>" + boxplot_chart(scores.get("p") or [], "P"),
        "<h2>G score distribution per calc date</h2>" + boxplot_chart(scores.get("g") or [], "G"),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>alphahome run {_e(run_id)}</title><style>{CSS}</style></head><body>"
        + "".join(sections)
        + "</body></html>\n"
    )


def _file_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id) + ".html"


def write_run_report_html(layout: CacheLayout, report: Mapping[str, Any]) -> Path:
    """Write `<cache>/reports/<run_id>.html` and `latest.html` atomically; returns the first.

    Adds the `ops` section first when the report does not have it yet.
    """
    full = report if "ops" in report else add_report_sections(layout, report)
    page = render_report_html(full).encode("utf-8")
    target = layout.reports_dir / _file_name(str(report.get("run_id", "run")))
    write_bytes_atomic(page, target)
    write_bytes_atomic(page, layout.reports_dir / LATEST)
    return target
