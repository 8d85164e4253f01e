"""A small synthetic cache for the ops tests: calendar, daily/weekly bars, statements,
PIT indicators and factor scores, written straight from plain Python lists."""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cache.atomic import write_parquet_atomic
from cache.layout import CacheLayout
from foundation.config import Settings, load_settings
from pipeline.run.report import SyncReport, TaskOutcome

TODAY = dt.date(2024, 6, 28)  # a Friday, the last open day of its week and month
FIRST = dt.date(2024, 1, 2)
HOLIDAYS = {
    dt.date(2024, 1, 1),
    *(dt.date(2024, 2, d) for d in range(9, 17)),
    dt.date(2024, 4, 4),
    dt.date(2024, 4, 5),
    *(dt.date(2024, 5, d) for d in range(1, 4)),
    dt.date(2024, 6, 10),
}
CODES = ("000001.SZ", "300750.SZ", "600000.SH", "600519.SH")
FETCHED = dt.datetime(2024, 6, 28, 12, tzinfo=dt.UTC)


def all_days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def is_open(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in HOLIDAYS


def open_days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [d for d in all_days(start, end) if is_open(d)]


def last_open_per_week(days: list[dt.date]) -> list[dt.date]:
    by_week: dict[tuple[int, int], dt.date] = {}
    for d in days:
        key = d.isocalendar()[:2]
        if key not in by_week or d > by_week[key]:
            by_week[key] = d
    return sorted(by_week.values())


def write_calendar(layout: CacheLayout, end: dt.date = dt.date(2024, 12, 31)) -> None:
    rows = [
        {
            "exchange": exchange,
            "cal_date": d,
            "is_open": "1" if is_open(d) else "0",
            "pretrade_date": None,
            "_fetched_at": FETCHED,
        }
        for exchange in ("SSE", "SZSE")
        for d in all_days(dt.date(2024, 1, 1), end)
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "exchange": pl.String,
            "cal_date": pl.Date,
            "is_open": pl.String,
            "pretrade_date": pl.Date,
            "_fetched_at": pl.Datetime("us", "UTC"),
        },
    )
    write_parquet_atomic(frame, layout.dataset_dir("raw", "trade_cal") / "data.parquet")


BAR_SCHEMA = {
    "ts_code": pl.String,
    "trade_date": pl.Date,
    "close": pl.Float64,
    "vol": pl.Float64,
    "_fetched_at": pl.Datetime("us", "UTC"),
}


def write_bars(
    layout: CacheLayout, name: str, dates: list[dt.date], codes: tuple[str, ...] = CODES
) -> None:
    """One file per month (a partitioned dataset), rows sorted by (ts_code, trade_date)."""
    by_month: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for code in codes:
        for i, d in enumerate(dates):
            row = {
                "ts_code": code,
                "trade_date": d,
                "close": 10.0 + i,
                "vol": 100.0,
                "_fetched_at": FETCHED,
            }
            by_month.setdefault((d.year, d.month), []).append(row)
    for (year, month), rows in by_month.items():
        frame = pl.DataFrame(rows, schema=BAR_SCHEMA).sort("ts_code", "trade_date")
        target = layout.dataset_dir("raw", name) / f"year={year}" / f"{month:02d}.parquet"
        write_parquet_atomic(frame, target)


INCOME_SCHEMA = {
    "ts_code": pl.String,
    "ann_date": pl.Date,
    "f_ann_date": pl.Date,
    "end_date": pl.Date,
    "report_type": pl.String,
    "revenue": pl.Float64,
    "update_flag": pl.String,
    "_fetched_at": pl.Datetime("us", "UTC"),
}


def income_rows() -> list[dict[str, Any]]:
    rows = []
    for code in CODES:
        rows.append(
            {
                "ts_code": code,
                "ann_date": dt.date(2024, 4, 20),
                "f_ann_date": dt.date(2024, 4, 20),
                "end_date": dt.date(2024, 3, 31),
                "report_type": "1",
                "revenue": 100.0,
                "update_flag": "0",
                "_fetched_at": FETCHED,
            }
        )
        rows.append(
            {**rows[-1], "ann_date": dt.date(2024, 5, 10), "revenue": 101.0, "update_flag": "1"}
        )
    return rows


def write_income(layout: CacheLayout, rows: list[dict[str, Any]]) -> None:
    frame = pl.DataFrame(rows, schema=INCOME_SCHEMA).sort("ts_code", "end_date", "ann_date")
    write_parquet_atomic(frame, layout.dataset_dir("raw", "income") / "2024.parquet")


INDICATOR_SCHEMA = {
    "ts_code": pl.String,
    "knowledge_date": pl.Date,
    "end_date": pl.Date,
    "vis_date": pl.Date,
    "ann_date": pl.Date,
    "gpa": pl.Float64,
}


def indicator_rows() -> list[dict[str, Any]]:
    return [
        {
            "ts_code": code,
            "knowledge_date": known,
            "end_date": dt.date(2024, 3, 31),
            "vis_date": known,
            "ann_date": known,
            "gpa": 30.0 + i,
        }
        for i, code in enumerate(CODES)
        for known in (dt.date(2024, 4, 20), dt.date(2024, 5, 10))
    ]


def write_indicators(layout: CacheLayout, rows: list[dict[str, Any]]) -> None:
    frame = pl.DataFrame(rows, schema=INDICATOR_SCHEMA).sort("ts_code", "knowledge_date")
    write_parquet_atomic(frame, layout.dataset_dir("pit", "indicators") / "data.parquet")


def competition_ranks(scores: list[float | None]) -> list[int | None]:
    """Rank descending, ties share the smallest rank, nulls stay null (plain loop)."""
    ranks: list[int | None] = []
    for s in scores:
        if s is None:
            ranks.append(None)
            continue
        ranks.append(1 + sum(1 for o in scores if o is not None and o > s))
    return ranks


P_SCHEMA = {
    "ts_code": pl.String,
    "calc_date": pl.Date,
    "p_score": pl.Float64,
    "p_rank": pl.Int64,
    "s_gpa": pl.Float64,
    "end_date": pl.Date,
    "ann_date": pl.Date,
}
G_SCHEMA = {
    "ts_code": pl.String,
    "calc_date": pl.Date,
    "g_score": pl.Float64,
    "g_rank": pl.Int64,
    "rank_em": pl.Float64,
    "end_date": pl.Date,
    "ann_date": pl.Date,
}


def factor_rows(
    factor: str, calc_dates: list[dt.date], stocks: int = 12, seed: int = 3
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for day in calc_dates:
        codes = [f"{600000 + i:06d}.SH" for i in range(stocks)]
        scores: list[float | None] = [round(rng.uniform(0, 100), 6) for _ in codes]
        scores[-1] = None  # one stock without a score
        scores[1] = scores[0]  # a tie
        for code, score, rank in zip(codes, scores, competition_ranks(scores), strict=True):
            row = {
                "ts_code": code,
                "calc_date": day,
                f"{factor}_score": score,
                f"{factor}_rank": rank,
                "end_date": dt.date(2024, 3, 31),
                "ann_date": min(day, dt.date(2024, 4, 20)),
            }
            row["s_gpa" if factor == "p" else "rank_em"] = 50.0
            rows.append(row)
    return rows


def write_factor(layout: CacheLayout, factor: str, rows: list[dict[str, Any]]) -> None:
    schema = P_SCHEMA if factor == "p" else G_SCHEMA
    frame = pl.DataFrame(rows, schema=schema).sort("calc_date", "ts_code")
    write_parquet_atomic(frame, layout.dataset_dir("factors", factor) / "2024.parquet")


@dataclass
class SyntheticCache:
    """The layout and what was written into it."""

    layout: CacheLayout
    daily_dates: list[dt.date]
    calc_dates: list[dt.date]
    written: dict[str, int] = field(default_factory=dict)


def build_cache(root: Path, daily_until: dt.date = TODAY) -> SyntheticCache:
    layout = CacheLayout(root)
    write_calendar(layout)
    daily = open_days_between(FIRST, daily_until)
    write_bars(layout, "daily", daily)
    weekly = last_open_per_week(open_days_between(FIRST, TODAY))
    write_bars(layout, "weekly", weekly)
    write_income(layout, income_rows())
    write_indicators(layout, indicator_rows())
    calc = weekly[-8:]
    write_factor(layout, "p", factor_rows("p", calc))
    write_factor(layout, "g", factor_rows("g", calc, seed=4))
    return SyntheticCache(layout, daily, calc)


@pytest.fixture
def synthetic(tmp_path: Path) -> SyntheticCache:
    """A fresh synthetic cache as of TODAY under tmp_path/cache."""
    return build_cache(tmp_path / "cache")


def make_settings(root: Path, config: Path | None = None, **flags: Any) -> Settings:
    """Settings for a cache root, without reading the real environment or ./alphahome.toml."""
    if config is None:
        config = root.parent / "alphahome.toml"
        if not config.exists():
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text("")
    all_flags = {"cache.dir": str(root), **{k.replace("__", "."): v for k, v in flags.items()}}
    return load_settings(config, None, all_flags, env={})


def make_report(
    run_id: str = "20240628T103000Z",
    started: dt.datetime = dt.datetime(2024, 6, 28, 10, 30, tzinfo=dt.UTC),
    tasks: list[TaskOutcome] | None = None,
) -> dict[str, Any]:
    """A run report in the sync's own JSON format (SyncReport.to_dict)."""
    outcomes = tasks or [
        TaskOutcome(
            "trade_cal", "success", duration_s=1.5, calls=2, rows_fetched=500, rows_saved=500
        ),
        TaskOutcome(
            "daily",
            "success",
            duration_s=42.0,
            calls=3,
            rows_fetched=15000,
            rows_saved=15000,
            retries=1,
        ),
        TaskOutcome("income", "no_data", duration_s=5.0, calls=4),
        TaskOutcome(
            "moneyflow", "failed", reason="no permission", duration_s=0.5, calls=1, errors=["40203"]
        ),
    ]
    total = sum(t.duration_s for t in outcomes)
    report = SyncReport(
        run_id=run_id,
        started=started.isoformat(timespec="seconds"),
        source="sim",
        cache_dir="/tmp/cache",
        arguments={},
        success_rate_alert=0.8,
        finished=(started + dt.timedelta(seconds=total)).isoformat(timespec="seconds"),
        tasks=outcomes,
        duration_s=total,
        market_today=TODAY.isoformat(),
    )
    return report.to_dict()


def save_report(layout: CacheLayout, report: dict[str, Any]) -> Path:
    path = layout.reports_dir / f"sync-{report['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """Requests a loopback server received."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def http_server() -> Iterator[
    Callable[[Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]], tuple[str, Received]]
]:
    """Start loopback JSON servers: `start(answer)` -> (url, received), where
    `answer(body)` -> (HTTP status, JSON payload)."""
    servers: list[ThreadingHTTPServer] = []

    def start(
        answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
    ) -> tuple[str, Received]:
        received = Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                received.bodies.append(body)
                received.paths.append(self.path)
                status, payload = answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
