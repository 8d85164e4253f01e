"""The HTML run report: sections, self-containment, escaping, and a real browser render."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cache.atomic import write_parquet_atomic
from factors.schema import P_SCHEMA
from pipeline.run.html import add_report_sections, stage_durations, write_run_report_html
from pipeline.run.report import TaskOutcome
from tests.ops.conftest import (
    TODAY,
    build_cache,
    factor_rows,
    make_report,
    open_days_between,
    save_report,
    write_bars,
)

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


def with_calls(report: dict[str, Any]) -> dict[str, Any]:
    """The report with the sync's calls, limits and wall time (quota use)."""
    calls = {"daily": 3, "trade_cal": 2}
    return {**report, "calls_by_api": calls, "limits_by_api": {"daily": 500, "trade_cal": None},
            "sync_seconds": 60.0}  # fmt: skip


def test_page_is_written_twice_and_self_contained(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "cache")
    report = with_calls(make_report())
    report["tasks"][0]["reason"] = "<script>alert('x')</script> & more"
    report["alerts"] = [
        {"kind": "failed_task", "subject": "moneyflow", "message": "failed: no permission"}
    ]
    path = write_run_report_html(cache.layout, report)
    assert path == cache.layout.reports_dir / "20240628T103000Z.html"
    latest = cache.layout.reports_dir / "latest.html"
    assert latest.read_bytes() == path.read_bytes()
    page = path.read_text(encoding="utf-8")
    assert "<script" not in page.replace("&lt;script&gt;", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert not re.search(r"<link|@import|url\(|src=", page)
    urls = set(re.findall(r"https?://[^\"' )]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    # outcomes, durations, history, stages, quota, rows per dataset, coverage, factors
    assert page.count("<svg") == 8
    assert "Quota use per API" in page
    assert "0.6% of 500 (3 calls)" in page  # daily: 3 calls of 500 a minute over a minute
    assert "2 calls (no limit)" in page and "distribution" not in page
    for task in ("trade_cal", "daily", "income", "moneyflow"):
        assert f">{task}<" in page
    assert "ALERT failed_task moneyflow" in page


def test_run_id_cannot_escape_the_reports_folder(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "cache")
    path = write_run_report_html(cache.layout, make_report("../../evil run"))
    assert path.parent == cache.layout.reports_dir and path.name == ".._.._evil_run.html"


def test_sections_are_added_without_touching_existing_keys(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "cache")
    holes = [dt.date(2024, 6, d) for d in (17, 18, 19, 20)]
    write_bars(cache.layout, "daily", [d for d in cache.daily_dates if d not in holes])
    for i in range(3):
        save_report(
            cache.layout, make_report(f"old{i}", dt.datetime(2024, 6, 20 + i, 10, tzinfo=dt.UTC))
        )
    older = [dt.date(2023, 12, 22), dt.date(2023, 12, 29)]  # a year file before the others
    frame = pl.DataFrame(factor_rows("p", older), schema=P_SCHEMA)
    write_parquet_atomic(frame, cache.layout.dataset_dir("factors", "p") / "2023.parquet")
    report = make_report()
    full = add_report_sections(cache.layout, report)
    assert {k: full[k] for k in report} == report
    ops = full["ops"]
    assert ops["as_of"] == TODAY.isoformat()
    assert [h["run_id"] for h in ops["history"]] == ["old0", "old1", "old2", report["run_id"]]
    coverage = {c["dataset"]: c for c in ops["coverage"]}
    daily = coverage["raw.daily"]
    expected = open_days_between(cache.daily_dates[0], TODAY)
    assert daily["dates"] == [d.isoformat() for d in expected]
    missing = [d.isoformat() for d in holes]
    assert daily["missing"] == missing
    assert daily["coverage"] == pytest.approx(1 - len(missing) / len(expected))
    assert {r for d, r in zip(daily["dates"], daily["rows"], strict=True) if d not in missing} == {
        4
    }
    assert coverage["raw.weekly"]["missing"] == []
    (p, g) = ops["factors"]
    assert (p["factor"], g["factor"]) == ("p", "g")
    shown = [*older, *cache.calc_dates][-12:]  # the newest twelve, across the year files
    assert p["dates"] == [d.isoformat() for d in shown]
    assert g["dates"] == [d.isoformat() for d in cache.calc_dates]
    rows = factor_rows("p", older) + factor_rows("p", cache.calc_dates)
    for day, n, scored in zip(p["dates"], p["rows"], p["scored"], strict=True):
        on_day = [r for r in rows if r["calc_date"].isoformat() == day]
        assert n == len(on_day) and scored == sum(r["p_score"] is not None for r in on_day)
    newest = cache.calc_dates[-1]
    assert p["newest"] == newest.isoformat()
    assert p["behind"] == len([d for d in open_days_between(newest, TODAY) if d > newest])
    datasets = {d["dataset"]: d for d in ops["datasets"]}
    assert datasets["raw.daily"]["rows"] == 4 * (len(cache.daily_dates) - len(holes))
    assert datasets["raw.daily"]["saved"] == 15000 and datasets["factors.p"]["saved"] == 0
    (sync,) = ops["stages"]["stages"]  # no compute stage ran in these runs
    assert sync == {"stage": "sync", "now": 42.0, "past": [42.0, 42.0, 42.0]}


def test_stage_durations_against_the_last_runs() -> None:
    def run(sync: float, pit: float | None) -> dict[str, Any]:
        tasks = [TaskOutcome("daily", "success", duration_s=sync / 2)]
        if pit is not None:
            tasks.append(TaskOutcome("pit", "success", strategy="stage", duration_s=pit))
        return {**make_report(tasks=tasks), "sync_seconds": sync}

    reports = [run(float(i), float(10 + i)) for i in range(12)] + [run(5.0, None)]
    stages = {s["stage"]: s for s in stage_durations(reports)["stages"]}
    assert stages["sync"]["now"] == 5.0 and stages["sync"]["past"] == [
        float(i) for i in range(2, 12)
    ]
    assert stages["pit"]["now"] is None and len(stages["pit"]["past"]) == 10
    assert "load" not in stages


def test_coverage_ends_at_the_data_as_of_date_not_the_run_day(tmp_path: Path) -> None:
    newest = dt.date(2024, 6, 24)  # the run finishes on the 28th: a lag is not a hole
    cache = build_cache(tmp_path / "cache", daily_until=newest)
    full = add_report_sections(cache.layout, make_report())
    assert full["ops"]["as_of"] == newest.isoformat()
    daily = next(c for c in full["ops"]["coverage"] if c["dataset"] == "raw.daily")
    assert daily["dates"][-1] == newest.isoformat()
    assert daily["missing"] == [] and daily["coverage"] == 1.0
    page = write_run_report_html(cache.layout, make_report()).read_text(encoding="utf-8")
    assert f"100.0% of {len(daily['dates'])} dates" in page


def test_empty_cache_still_renders(tmp_path: Path) -> None:
    from cache.layout import CacheLayout

    layout = CacheLayout(tmp_path / "empty")
    path = write_run_report_html(layout, make_report(tasks=[TaskOutcome("daily", "skipped")]))
    page = path.read_text()
    assert (
        "No per-trade-date datasets in the cache." in page
        and "No factor scores in the cache." in page
    )


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="ah-chromium-")
    try:
        return subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_headless_chromium_renders_the_charts(tmp_path: Path) -> None:
    cache = build_cache(tmp_path / "cache", daily_until=dt.date(2024, 6, 26))
    for i in range(4):
        save_report(
            cache.layout, make_report(f"old{i}", dt.datetime(2024, 6, 20 + i, 10, tzinfo=dt.UTC))
        )
    write_run_report_html(cache.layout, with_calls(make_report()))
    url = (cache.layout.reports_dir / "latest.html").as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 8 and dom.stdout.count("<rect") > 100
    shot = tmp_path / "report.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    data = shot.read_bytes()
    width, height, distinct = png_facts(data)
    assert (width, height) == (1280, 2000)
    assert len(data) > 30_000 and distinct > 100  # a blank page compresses to a few bytes
