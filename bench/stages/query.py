"""Stage 6: the analyst's queries through DuckDB over the cache, against a full scan.

Through the cache's own catalogue (`alphahome.duckdb`, views over the Parquet files,
opened read-only as an analyst would): one stock's whole daily history, and one trade
date's cross-section of the market, each fetched as Arrow; against a full scan, which
reads every value of every column of the dataset (a sum of hashes, so nothing can be
answered from the file statistics). The ratio says how much of the data the selective
query avoided reading.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import in_child
from bench.context import StageContext
from bench.figures import Figure, StageResult, Target, ratio

TITLE = "analyst queries through DuckDB over the cache, against a full scan"
NEEDS_DATA = True
HISTORY_TARGET = 0.05
VIEW = "raw.daily"


@dataclass(frozen=True)
class QueryJob:
    """The cache, the cross-section's date and the repetitions."""

    cache: Path
    day: dt.date
    reps: int


def _timed(con: Any, sql: str, params: list[Any], reps: int) -> tuple[list[float], int]:
    """Seconds of `reps` runs after one warm-up run, and the rows it returned."""
    rows = con.sql(sql, params=params).to_arrow_table().num_rows
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        con.sql(sql, params=params).to_arrow_table()
        seconds.append(time.perf_counter() - started)
    return seconds, rows


def run_queries(job: QueryJob) -> dict[str, Any]:
    """In the child: the three queries through the catalogue, `reps` times each."""

    from cache.layout import CacheLayout
    from cache.views import open_catalog

    layout = CacheLayout(job.cache)
    con = open_catalog(layout.duckdb_path)
    try:
        con.execute("SET enable_progress_bar = false")
        stock = con.execute(
            f"SELECT ts_code FROM {VIEW} GROUP BY ts_code ORDER BY count(*) DESC, ts_code LIMIT 1"
        ).fetchone()[0]
        columns = [row[0] for row in con.execute(f"DESCRIBE {VIEW}").fetchall()]
        scan = ", ".join(f'sum(hash("{c}"))' for c in columns)
        history, history_rows = _timed(
            con, f"SELECT * FROM {VIEW} WHERE ts_code = ? ORDER BY trade_date", [stock], job.reps
        )
        section, section_rows = _timed(
            con, f"SELECT * FROM {VIEW} WHERE trade_date = ?", [job.day], job.reps
        )
        full, _ = _timed(con, f"SELECT count(*), {scan} FROM {VIEW}", [], job.reps)
        total = con.execute(f"SELECT count(*) FROM {VIEW}").fetchone()[0]
    finally:
        con.close()
    return {
        "seconds": {"history": history, "cross_section": section, "full_scan": full},
        "stock": stock,
        "history_rows": history_rows,
        "section_rows": section_rows,
        "rows": total,
    }


def run(ctx: StageContext) -> StageResult:
    """Time the three queries (median of `reps` after a warm-up each)."""
    from cache.atomic import ROW_GROUP_ROWS

    data = ctx.data()
    result = StageResult("query", TITLE)
    reps = max(ctx.reps, 3)
    child = in_child(run_queries, QueryJob(data.base, data.day, reps))
    found = child.value
    result.add_timings(found["seconds"])
    result.peak_rss_mb["queries"] = child.peak_rss_mb
    history, section = result.median("history"), result.median("cross_section")
    full = result.median("full_scan")
    result.figures += [
        Figure(
            "one stock's history",
            round(history * 1000, 2),
            "ms",
            detail=f"{found['stock']}, {found['history_rows']:,} rows",
        ),
        Figure(
            "one date's cross-section",
            round(section * 1000, 2),
            "ms",
            detail=f"{data.day}, {found['section_rows']:,} rows",
        ),
        Figure("full scan", round(full * 1000, 2), "ms", detail=f"{found['rows']:,} rows"),
        Figure(
            "history / full scan",
            ratio(history, full),
            "x",
            Target("<=", HISTORY_TARGET),
        ),
        Figure("cross-section / full scan", ratio(section, full), "x"),
    ]
    result.add_rss_figure()
    result.facts = {k: v for k, v in found.items() if k != "seconds"}
    result.notes = [
        f"`cache.views.open_catalog('<cache>/alphahome.duckdb')` (read-only), view `{VIEW}` "
        "(read_parquet over every file of the dataset, row groups of "
        f"{ROW_GROUP_ROWS:,} rows); each query run once to warm the "
        f"OS cache, then timed {reps} times, results fetched as Arrow.",
        "History: `SELECT * … WHERE ts_code = ? ORDER BY trade_date` for the stock with the "
        "most rows; cross-section: `WHERE trade_date = ?` for day D; full scan: "
        "`SELECT count(*), sum(hash(col)) …` over every column.",
    ]
    return result
