"""Stage 7: the daily job, `ah run` after one more simulated day, against a rebuild.

The stage builds its own cache day by day from one in-process simulator (the scenario's
market, source kind `sim`): a first `ah run` as of the trade date before the last
weekly calc date before the scenario's today, then one `ah run` with the simulated
day moved to that calc date and one with it moved to the next trade date (not a calc
date). Each is `pipeline.run.job.run_pipeline` end to end (sync of the scenario's
datasets, PIT, factors, load into the embedded DuckDB catalogue), timed per stage; the
API waits are the rate limiters' sleeps. The reference, measured in the same run: the
derived rebuild (`ah run --full --stages pit,factors,load`) of a clone of the final
cache.
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
from bench.scenarios import DATA_TASKS, Scenario
from bench.workdir import CONFIG_FILE, clone_cache, open_days, settings_text

TITLE = "ah run after one more simulated day (a calc date, a non-calc date) vs a rebuild"
NEEDS_DATA = False
COMPUTE_TARGET_S = 10.0
RATIO_TARGET = 0.02
COMPUTE_STAGES = ("pit", "factors", "load")


@dataclass(frozen=True)
class DailyJob:
    """The scenario and the folder the stage's caches live in."""

    scenario: Scenario
    scratch: Path


def the_days(days: list[dt.date]) -> tuple[dt.date, dt.date, dt.date]:
    """(first day, the calc date after it, the trade date after that): the last weekly
    calc date (a week's last trade date) that has a trade date after it."""
    for i in range(len(days) - 2, 0, -1):
        if days[i].isocalendar()[:2] != days[i + 1].isocalendar()[:2]:
            return days[i - 1], days[i], days[i + 1]
    msg = "the scenario's market has no full week of trade dates"
    raise ValueError(msg)


def _run(config: Path, full: bool = False, stages: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One `ah run` in this process: wall seconds, seconds per stage, API waits."""
    from foundation.config import load_settings
    from pipeline.run.job import STAGES, RunRequest, run_pipeline
    from pipeline.sync.runner import SyncRequest

    settings = load_settings(config_file=config, env={})
    chosen = stages or STAGES
    request = RunRequest(
        stages=chosen, source="sim", full=full, progress=False,
        sync=SyncRequest(tasks=DATA_TASKS, progress=False),
    )  # fmt: skip
    started = time.perf_counter()
    result = run_pipeline(settings, request)
    wall = time.perf_counter() - started
    tasks = result.report.tasks
    failed = [f"{t.task}: {t.reason}" for t in tasks if t.status == "failed"]
    if failed:
        msg = f"ah run failed: {'; '.join(failed)}"
        raise RuntimeError(msg)
    stage_s = {t.task: t.duration_s for t in tasks if t.task in COMPUTE_STAGES}
    sync_s = wall - sum(stage_s.values()) if "sync" in chosen else 0.0
    return {"wall_s": wall, "stages_s": {"sync": sync_s, **stage_s}, "notes": [
        t.reason for t in tasks if t.task in COMPUTE_STAGES
    ]}  # fmt: skip


def run_days(job: DailyJob) -> dict[str, Any]:
    """In the child: the first run, the two daily runs, the rebuild; their timings."""
    from bench.simsource import sync_from
    from pipeline.sources.simulator import Simulator, SimulatorConfig

    scenario = job.scenario
    first, calc_day, plain_day = the_days(open_days(scenario))
    cache = job.scratch / "daily"
    cache.mkdir(parents=True)
    config = cache / CONFIG_FILE
    config.write_text(settings_text(scenario, cache), "utf-8")
    simulator = Simulator(
        SimulatorConfig(
            stocks=scenario.stocks, start=scenario.start, today=scenario.today, seed=scenario.seed
        )
    )
    waits: list[float] = []
    runs: dict[str, Any] = {}
    for label, day in (("first", first), ("calc date", calc_day), ("non-calc date", plain_day)):
        simulator.set_today(day)
        with sync_from(simulator, waits):
            runs[label] = _run(config) | {"day": day.isoformat()}
        runs[label]["api_wait_s"] = sum(waits)
        waits.clear()
    rebuilt = clone_cache(cache, job.scratch / "rebuild")
    (rebuilt / CONFIG_FILE).write_text(settings_text(scenario, rebuilt), "utf-8")
    runs["rebuild"] = _run(rebuilt / CONFIG_FILE, full=True, stages=COMPUTE_STAGES)
    runs["rebuild"]["api_wait_s"] = 0.0
    return runs


def _detail(run: dict[str, Any]) -> str:
    stages = ", ".join(f"{name} {s:.2f} s" for name, s in run["stages_s"].items())
    return f"{run.get('day', '')} {stages}; API waits {run['api_wait_s']:.2f} s".strip()


def run(ctx: StageContext) -> StageResult:
    """Time the two daily runs and the rebuild (one repetition each: the days move on)."""
    result = StageResult("daily", TITLE)
    child = in_child(run_days, DailyJob(ctx.scenario, ctx.scratch))
    runs = child.value
    result.peak_rss_mb["daily runs"] = child.peak_rss_mb
    rebuild_s = runs["rebuild"]["wall_s"]
    result.add_timings({label: [r["wall_s"] for r in (runs[label],)] for label in runs})
    result.figures.append(
        Figure("derived rebuild (--full pit, factors, load)", round(rebuild_s, 2), "s",
               detail=_detail(runs["rebuild"]))
    )  # fmt: skip
    for label in ("calc date", "non-calc date"):
        day = runs[label]
        compute = day["wall_s"] - day["api_wait_s"]
        result.figures += [
            Figure(f"{label}: ah run", round(day["wall_s"], 2), "s", detail=_detail(day)),
            Figure(
                f"{label}: compute outside API waits",
                round(compute, 2),
                "s",
                Target("<=", COMPUTE_TARGET_S, "set for 5,000 stocks x 15 years"),
            ),
            Figure(f"{label}: / rebuild", ratio(compute, rebuild_s), "x",
                   Target("<=", RATIO_TARGET)),
        ]  # fmt: skip
    result.add_rss_figure()
    result.facts = {label: runs[label] for label in runs}
    result.notes = [
        f"One in-process simulator ({ctx.scenario.stocks} stocks from "
        f"{ctx.scenario.start}), sync of the prepared cache's datasets; first run as of "
        f"{runs['first']['day']} ({runs['first']['wall_s']:.1f} s), then "
        f"{runs['calc date']['day']} (a weekly calc date) and "
        f"{runs['non-calc date']['day']}. Sink: the embedded DuckDB catalogue. Rebuild: "
        "`--full --stages pit,factors,load` on a clone of the final cache.",
    ]
    return result
