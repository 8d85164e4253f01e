"""`make bench`'s entry point on the tiny scenario: every stage reports figures and targets.

This keeps the harness from rotting as the pipeline changes; it asserts nothing about
speed (benchmarks are `make bench`, never timed assertions in tests).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.runner import STAGE_NAMES
from bench.scenarios import DATA_TASKS
from tests.postgres_server import PostgresServer

# Figures each stage must report with a target (the gaps issue 9 tracks).
TARGETED = {
    "simulator": {
        "daily, one trade date (full market), CPU",
        "income_vip, one period, CPU",
        "peak RSS",
    },
    "sync": {
        "quota utilisation while the bound tasks ran",
        "limit errors",
        "calls made / minimum",
        "peak RSS",
    },
    "pit": {"peak RSS"},
    "factors": {"speed-up over the loop", "PIT full build + P + G backfill", "peak RSS"},
    "load": {
        "initial: throughput / raw COPY",
        "initial: throughput / psycopg COPY from Parquet",
        "partition: throughput / DELETE + raw COPY",
        "upsert: throughput / DELETE + raw COPY",
        "initial load speed / to_sql",
        "same table as raw COPY",
        "peak RSS",
    },
    "query": {"history / full scan", "peak RSS"},
    "startup": {"ah --version", "ah --help", "ah tasks"},
    "daily": {
        "incremental equals full rebuild",
        "calc date: compute outside API waits",
        "calc date: / full rebuild",
        "calc date: full history / short history",
        "non-calc date: compute outside API waits",
        "non-calc date: / full rebuild",
        "non-calc date: full history / short history",
        "peak RSS",
    },
}


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_run_reports_every_stage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_server: PostgresServer,
) -> None:
    monkeypatch.setenv("BENCH_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("TEST_DATABASE_URL", postgres_server.url)  # the load stage's server
    out_dir = tmp_path / "results"

    code = main(["--scenario", "tiny", "--reps", "1", "--out", str(out_dir)])

    printed = capsys.readouterr().out
    doc = json.loads((out_dir / "latest-tiny.json").read_text("utf-8"))
    assert code == 0, printed
    assert list(doc["stages"]) == list(STAGE_NAMES)
    for name, stage in doc["stages"].items():
        assert stage["error"] is None, f"{name}: {stage['error']}"
        figures = {f["name"]: f for f in stage["figures"]}
        for figure in figures.values():
            assert isinstance(figure["value"], int | float), (name, figure)
            assert math.isfinite(figure["value"]), (name, figure)
            assert (figure["status"] == "info") == (figure["target"] is None), (name, figure)
        missing = TARGETED[name] - set(figures)
        assert not missing, f"{name} lacks {missing}"
        for wanted in TARGETED[name]:
            assert figures[wanted]["target"], (name, wanted)
            assert figures[wanted]["status"] in ("PASS", "MISS"), (name, wanted)
    targeted = [f for s in doc["stages"].values() for f in s["figures"] if f["target"]]
    assert doc["summary"] == {
        "pass": sum(f["status"] == "PASS" for f in targeted),
        "miss": sum(f["status"] == "MISS" for f in targeted),
        "errors": 0,
    }
    # the references compute what the product computes
    load = {f["name"]: f for f in doc["stages"]["load"]["figures"]}
    assert load["same table as raw COPY"]["value"] == 1
    factors = {f["name"]: f for f in doc["stages"]["factors"]["figures"]}
    assert factors["reference agrees with product"]["value"] >= 0.99
    # the daily-incremented cache equals a full rebuild from an empty cache
    daily = {f["name"]: f for f in doc["stages"]["daily"]["figures"]}
    assert daily["incremental equals full rebuild"]["value"] == 1, daily
    assert doc["stages"]["daily"]["facts"]["full rebuild"]["compared"] >= len(DATA_TASKS) + 2
    # the table was printed and the Markdown holds it
    for name in STAGE_NAMES:
        assert f"\n{name} " in printed
    assert "quota utilisation" in printed and "history / full scan" in printed
    markdown = (out_dir / "latest-tiny.md").read_text("utf-8")
    assert "| stage | figure | value | target | status |" in markdown
    assert markdown.count("\n| load |") == len(doc["stages"]["load"]["figures"])
