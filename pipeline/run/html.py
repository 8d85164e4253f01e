"""The run report as one static HTML page with inline SVG charts (opens offline, no JS).

`<cache>/reports/<run_id>.html` and `latest.html`: a summary, the alerts, task
durations coloured by outcome, run history (durations and success rates), the stage
durations against the last 10 runs, quota use per API over the sync, rows per dataset
(saved by this run, and in the cache), rows per trade date of each per-trade-date
dataset against the trading calendar up to the data's as-of date (cache/asof.py;
missing open days in red), and factor coverage (the share of each calc date's rows
with a score) and freshness (the newest calc date, open days behind the as-of date).
Scores are ranks (0–100, median 50 by construction), so their distribution says
nothing and is not drawn.

The page is rendered from the report dict alone; the facts it needs from the cache
(coverage, factor coverage, dataset rows, history) are added to the report as the
`ops` section by `add_report_sections`, which the orchestrator may also save in the JSON.
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
    behind_counter,
    cache_stats,
    dataset_files,
    file_facts,
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
STAGE_RUNS = 10
STAGE_NAMES = ("sync", "pit", "factors", "load")
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


def _newest_files(files: list[Path], column: str, dates: int) -> list[Path]:
    """The fewest files, newest first by their footers' `column` ranges, that together
    hold at least `dates` distinct values of `column` no older than any file left out
    (all files when some footer has no range)."""
    ranges = []
    for path in files:
        facts = file_facts(path)
        if facts.date_column != column or facts.min_date is None or facts.max_date is None:
            return files
        ranges.append((facts.max_date, path))
    chosen: list[Path] = []
    seen: set[dt.date] = set()
    for _newest, path in sorted(ranges, key=lambda r: r[0], reverse=True):
        rest = [r for r in ranges if r[1] not in chosen and r[1] != path]
        chosen.append(path)
        seen |= set(pl.read_parquet(path, columns=[column]).get_column(column).unique())
        kept = sorted(seen)[-dates:] if len(seen) >= dates else []
        if kept and all(r[0] < kept[0] for r in rest):
            break
    return chosen


def factor_coverage(
    layout: CacheLayout, as_of: dt.date | None, last: int = SCORE_DATES
) -> list[dict[str, Any]]:
    """Per factor (p, g): on each of the last `last` calc dates, the rows and the share
    with a score; the newest calc date and the open days from it to `as_of`.

    Only the newest files holding those dates are read (by the calc dates their footers
    say they hold), not the whole history."""
    behind_by = behind_counter(trade_calendar(layout), as_of) if as_of is not None else None
    found = []
    for factor in ("p", "g"):
        files = _newest_files(dataset_files(layout, "factors", factor), "calc_date", last)
        if not files:
            continue
        score = pl.col(f"{factor}_score")
        frame = (
            scan_files(files)
            .group_by("calc_date")
            .agg(rows=pl.len(), scored=score.count())
            .sort("calc_date")
            .tail(last)
            .collect()
        )
        if frame.is_empty():
            continue
        newest = frame["calc_date"][-1]
        behind = behind_by("daily", newest) if behind_by is not None else None
        found.append(
            {
                "factor": factor,
                "dates": frame["calc_date"].cast(pl.String).to_list(),
                "rows": frame["rows"].to_list(),
                "scored": frame["scored"].to_list(),
                "newest": newest.isoformat(),
                "behind": behind,
            }
        )
    return found


def stage_durations(reports: Sequence[Mapping[str, Any]], runs: int = STAGE_RUNS) -> dict[str, Any]:
    """Per stage, this run's duration (the last report) and those of the `runs` runs
    before it that ran the stage. The sync's is its wall time (`sync_seconds`; tasks run
    concurrently), the others' the stage entry's duration."""

    def durations(report: Mapping[str, Any]) -> dict[str, float]:
        found: dict[str, float] = {}
        tasks = report.get("tasks") or []
        for t in tasks:
            if t.get("strategy") == "stage" and t.get("task") in STAGE_NAMES:
                found[t["task"]] = float(t.get("duration_s") or 0)
        if "sync" not in found and report.get("sync_seconds") is not None:
            found["sync"] = float(report["sync_seconds"])
        elif "sync" not in found and any(t.get("strategy") != "stage" for t in tasks):
            found["sync"] = max(
                float(t.get("duration_s") or 0) for t in tasks if t.get("strategy") != "stage"
            )
        return found

    *before, current = [durations(r) for r in reports] or [{}]
    stages = []
    for name in STAGE_NAMES:
        past = [d[name] for d in before if name in d][-runs:]
        if name in current or past:
            stages.append({"stage": name, "now": current.get(name), "past": past})
    return {"runs": runs, "stages": stages}


def dataset_rows(layout: CacheLayout, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per dataset in the cache: its rows, and the rows this run saved into it."""
    saved = {
        t.get("task"): int(t.get("rows_saved") or 0)
        for t in report.get("tasks") or []
        if t.get("strategy") != "stage"
    }
    return [
        {"dataset": s.key, "rows": s.rows, "saved": saved.get(s.name, 0) if s.layer == "raw" else 0}
        for s in cache_stats(layout)
    ]


def add_report_sections(layout: CacheLayout, report: Mapping[str, Any]) -> dict[str, Any]:
    """The report with an added `ops` section: coverage, factor coverage, dataset rows,
    stage durations and run history. Existing keys are left as they are; the history
    includes this run."""
    reports = [r for r in load_reports(layout) if r.get("run_id") != report.get("run_id")]
    history = run_history([*reports, dict(report)])[-HISTORY_RUNS:]
    day = _as_of(layout, report)
    ops = {
        "as_of": day.isoformat() if day else None,
        "coverage": coverage(layout, day),
        "factors": factor_coverage(layout, day),
        "datasets": dataset_rows(layout, report),
        "stages": stage_durations([*reports, dict(report)]),
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


def _hbars(
    rows: Sequence[tuple[str, float, str, str, str]], label: str, empty: str, maximum: float
) -> str:
    """Horizontal bars: (name, value, bar colour, value text, tooltip) per row."""
    if not rows:
        return f"<p>{_e(empty)}</p>"
    left, right, row, top = 200, 200, 20, 6
    scale = (WIDTH - left - right) / (maximum or 1.0)
    body = []
    for i, (name, value, colour, shown, tip) in enumerate(rows):
        y = top + i * row
        body += [
            _text(left - 8, y + 12, name, "end", 11),
            _rect(left, y + 2, value * scale, row - 6, colour, tip),
            _text(left + value * scale + 6, y + 12, shown, "start", 11, "#444"),
        ]
    return _svg(top + len(rows) * row + 6, body, label)


def quota_chart(report: Mapping[str, Any]) -> str:
    """Per API called, the calls made over the quota of the sync's wall time (the
    per-minute limit times its minutes): how much of what was allowed the run used."""
    calls = report.get("calls_by_api") or {}
    limits = report.get("limits_by_api") or {}
    seconds = report.get("sync_seconds")
    rows = []
    for api, n in sorted(calls.items(), key=lambda kv: -kv[1]):
        limit = limits.get(api)
        if limit and seconds:
            quota = limit * max(float(seconds), 1.0) / 60
            share = min(n / quota, 1.0)
            colour = COLOURS["success"] if share < 0.9 else COLOURS["partial"]
            rows.append((api, share, colour, f"{share:.1%} of {quota:,.0f} ({n:,} calls)",
                         f"{api}: {n} calls, {limit}/min over {seconds:.0f} s"))  # fmt: skip
        else:
            rows.append((api, 0.0, "#b0bec5", f"{n:,} calls (no limit)", f"{api}: {n} calls"))
    return _hbars(rows, "quota use per API", "No API calls in this run.", 1.0)


def rows_chart(datasets: Sequence[Mapping[str, Any]]) -> str:
    """Per dataset, the rows in the cache (light) and the rows this run saved (dark)."""
    if not datasets:
        return "<p>No datasets in the cache.</p>"
    left, right, row, top = 200, 200, 18, 6
    most = max(d["rows"] for d in datasets) or 1
    scale = (WIDTH - left - right) / most
    body = []
    for i, d in enumerate(datasets):
        y = top + i * row
        saved = min(d["saved"], d["rows"])
        total = f"{d['rows']:,}" + (f" (+{d['saved']:,})" if d["saved"] else "")
        tip = f"{d['dataset']}: {d['rows']:,} rows"
        body += [
            _text(left - 8, y + 11, d["dataset"], "end", 11),
            _rect(left, y + 2, d["rows"] * scale, row - 5, "#90caf9", tip),
            _rect(left, y + 2, saved * scale, row - 5, BAR, f"saved by this run: {saved:,}"),
            _text(left + d["rows"] * scale + 6, y + 11, total, "start", 11, "#444"),
        ]
    return _svg(top + len(datasets) * row + 6, body, "rows per dataset")


def stages_chart(stages: Mapping[str, Any]) -> str:
    """Per stage, the range of the last runs' durations (grey), their median (black
    tick) and this run's (blue bar, red when over the range)."""
    found = stages.get("stages") or []
    if not found:
        return "<p>No stage durations yet.</p>"
    left, right, row, top = 200, 200, 30, 22
    longest = max([s["now"] or 0 for s in found] + [max(s["past"], default=0) for s in found])
    scale = (WIDTH - left - right) / (longest or 1.0)
    body = [_text(left, 14, f"grey: range of the last {stages.get('runs')} runs; tick: median",
                  "start", 11, "#666")]  # fmt: skip
    for i, s in enumerate(found):
        y = top + i * row
        body.append(_text(left - 8, y + 15, s["stage"], "end", 12))
        past = sorted(s["past"])
        if past:
            low, high, mid = past[0], past[-1], past[len(past) // 2]
            body += [
                _rect(left + low * scale, y + 2, (high - low) * scale, row - 8, "#cfd8dc",
                      f"{s['stage']}: {len(past)} runs, {_seconds(low)} to {_seconds(high)}"),
                _line(left + mid * scale, y, left + mid * scale, y + row - 4, "#212121", 2),
            ]  # fmt: skip
        if s["now"] is not None:
            over = bool(past) and s["now"] > past[-1]
            colour = COLOURS["failed"] if over else BAR
            median = _seconds(past[len(past) // 2]) if past else "-"
            end = left + max(s["now"], max(past, default=0)) * scale + 6
            body += [
                _rect(left, y + 8, s["now"] * scale, 8, colour, f"this run: {_seconds(s['now'])}"),
                _text(end, y + 15, f"{_seconds(s['now'])} (median {median})", "start", 11, "#444"),
            ]
    return _svg(top + len(found) * row + 6, body, "stage durations against the last runs")


def factor_chart(factors: Sequence[Mapping[str, Any]]) -> str:
    """Per factor, the share of each recent calc date's rows with a score, and its
    freshness (newest calc date, open days behind the data's as-of date)."""
    if not factors:
        return "<p>No factor scores in the cache.</p>"
    left, right, band, gap = 200, 20, 60, 34
    plot_w = WIDTH - left - right
    body: list[str] = []
    for k, f in enumerate(factors):
        top = 8 + k * (band + gap)
        n = len(f["dates"])
        slot = plot_w / max(n, 1)
        behind = "" if f["behind"] is None else f", {f['behind']} open days behind"
        body += [
            _text(left - 8, top + 24, f"factors.{f['factor']}", "end", 12),
            _text(left - 8, top + 40, "rows with a score", "end", 10, "#666"),
            _line(left, top + band, left + plot_w, top + band),
            _text(left + plot_w / 2, top + band + 14, f"newest {f['newest']}{behind}", "middle",
                  11, "#333"),
        ]  # fmt: skip
        for i, (date, rows, scored) in enumerate(
            zip(f["dates"], f["rows"], f["scored"], strict=True)
        ):
            share = scored / rows if rows else 0.0
            h = share * band
            colour = BAR if share >= 0.5 else COLOURS["partial"]
            x = left + i * slot
            body += [
                _rect(x + 1, top + band - h, max(slot - 2, 1), h, colour,
                      f"{date}: {scored:,} of {rows:,} rows scored ({share:.0%})"),
                _text(x + slot / 2, top + band - h - 3, f"{share:.0%}", "middle", 9, "#444"),
            ]  # fmt: skip
        body += [
            _text(left, top + band + 14, f["dates"][0], "start", 10, "#666"),
            _text(left + plot_w, top + band + 14, f["dates"][-1], "end", 10, "#666"),
        ]
    return _svg(8 + len(factors) * (band + gap), body, "factor coverage and freshness")


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
    sections = [
        f"<h1>alphahome run {_e(run_id)}</h1><p class=muted>{summary}</p>",
        "<h2>Alerts</h2>" + _alerts(report),
        "<h2>Outcomes</h2>" + outcomes_chart(tasks),
        "<h2>Task durations</h2>" + durations_chart(tasks),
        "<h2>Tasks</h2>" + _task_table(tasks),
        "<h2>Run history</h2>" + history_chart(ops.get("history") or []),
        "<h2>Stage durations against the last runs</h2>" + stages_chart(ops.get("stages") or {}),
        "<h2>Quota use per API over the sync</h2>" + quota_chart(report),
        "<h2>Rows per dataset</h2>" + rows_chart(ops.get("datasets") or []),
        "<h2>Rows per trade date against the calendar</h2>"
        + coverage_chart(ops.get("coverage") or []),
        "<h2>Factor coverage and freshness</h2>" + factor_chart(ops.get("factors") or []),
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
