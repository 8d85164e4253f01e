"""Stage 7: the daily job, `ah run` one trade day later, against a full rebuild, two histories.

Start: a clone of the scenario's prepared cache `next` (bench/workdir.py: raw synced
through the scenario's today, PIT and factors as of the trade date before; Parquet
files hard-linked, so the prepared cache is never written). A first `ah run` as of
that today (reported, not measured against the targets) brings PIT, factors and the
DuckDB catalogue up to it: what the previous evening's job leaves. Then the simulated
day moves forward one trade day at a time (`[simulator] today` in the clone's
settings, and the same in-process simulator moved to it: the market does not depend
on today, so this is the same market one day on) and `ah run` runs end to end
(`pipeline.run.job.run_pipeline`: sync of the prepared cache's datasets, PIT, factors,
load into the embedded DuckDB catalogue) until a weekly calc date and a non-calc date
have each been measured.

Waits: the rate limiters' sleeps and the in-process simulator's serving time (the
source's side of every call, timed at its transport; concurrent calls count once: the
wall time during which some call was being answered). "Compute outside API waits" is
the run's wall time less both, and never less than the run's time outside the sync;
where serving overlaps the sync's own work it is a little less than the work itself. Per stage:
seconds and peak RSS of the process tree while it ran (`bench.meter`); "other" is
the run's own work outside the stages (the opening sweep, the report, metrics). The
in-process simulator's market is resident in the measured process, so it is counted
in every stage's peak from the sync on.

Reference, in the same child: the full rebuild, `ah run --full` (every stage) into an
empty cache from the same in-process simulator at the last measured day: the sync of
every dataset from scratch, then PIT, factors and the load into the embedded DuckDB
catalogue, one repetition (about twelve minutes at full scale on an idle machine, most
of it the sync; seconds on the small market). Its compute outside API waits is the
denominator of the 0.02x target (the daily run's over the rebuild's, like for like;
wall over wall in the detail). The simulator has no quota, which flatters the rebuild:
against the real service the sync of a full market takes hours. Then the incremented
cache is compared with the rebuilt one (`bench.samecache`: every raw dataset, PIT
table and factor table, same rows and values order-independently, `_fetched_at`
aside): "incremental equals full rebuild" is 1 when every dataset is the same, and the
detail names any that differ. The derived rebuild (`ah run --full --stages
pit,factors,load` of a clone of the final cache) is kept beside it as information.

Shorter history: the same days measured the same way on a market of as many stocks
whose history starts `SHORT_YEARS` years before today (half the scenario's history
when that is shorter), prepared once exactly like the scenario's own cache (the
pipeline's own sync from the simulator, full PIT build, P and G backfill, one more
day's sync) under `$BENCH_WORK/<scenario>-<years>y` and reused while its parameters
match. The simulator lists the same number of companies on its anchor day whatever
the start, so on the measured days both markets hold about the same stocks; only
the length of their history differs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import in_child
from bench.context import StageContext
from bench.figures import Figure, StageResult, Target, ratio
from bench.scenarios import DATA_TASKS, Scenario
from bench.workdir import CONFIG_FILE, clone_cache, prepare, settings_text

TITLE = "ah run one trade day later (a calc date, a non-calc date) vs a full rebuild, two histories"
NEEDS_DATA = True
COMPUTE_TARGET_S = 10.0
RATIO_TARGET = 0.02
HISTORY_TARGET = 1.5
SHORT_YEARS = 3.0
MAX_DAYS = 6  # trade days run at most to meet both a calc date and a non-calc date
CALENDAR_AHEAD_DAYS = 40
LABELS = ("calc date", "non-calc date")
REBUILD_STAGES = ("pit", "factors", "load")
DERIVED = "derived rebuild"
FULL = "full rebuild"


@dataclass(frozen=True)
class DailyJob:
    """One history: its market, its prepared cache and day, a scratch folder, and
    whether to measure the rebuild too."""

    scenario: Scenario
    prepared: Path
    day: dt.date
    scratch: Path
    rebuild: bool


def short_history(scenario: Scenario) -> Scenario:
    """The scenario's market with `SHORT_YEARS` of history (half its own when shorter)."""
    years = min(SHORT_YEARS, scenario.years / 2)
    start = scenario.today - dt.timedelta(days=round(years * 365.25))
    return dataclasses.replace(scenario, name=f"{scenario.name}-{years:g}y", start=start)


def week_ends(days: list[dt.date]) -> set[dt.date]:
    """The weekly calc dates among consecutive open days: the last of each ISO week
    (the last day of the list only when a later one shows its week is over)."""
    return {a for a, b in itertools.pairwise(days) if a.isocalendar()[:2] != b.isocalendar()[:2]}


def _open_days_after(simulator: Any, day: dt.date) -> list[dt.date]:
    """The SSE open days after `day` in the next `CALENDAR_AHEAD_DAYS` calendar days."""
    import polars as pl

    before = simulator.today
    simulator.set_today(day + dt.timedelta(days=CALENDAR_AHEAD_DAYS))
    try:
        calendar = simulator.ground_truth("trade_cal", exchange="SSE")
    finally:
        simulator.set_today(before)
    opened = calendar.filter(pl.col("is_open").cast(pl.Int64) == 1).get_column("cal_date")
    return sorted(d for d in opened.to_list() if d > day)


def _configure(scenario: Scenario, cache: Path, day: dt.date) -> Path:
    """Write the cache's settings with `[simulator] today = day`; their path."""
    config = cache / CONFIG_FILE
    config.write_text(settings_text(dataclasses.replace(scenario, today=day), cache), "utf-8")
    return config


def _run(
    config: Path, simulator: Any, full: bool = False, stages: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """One `ah run` in this process, metered: wall, waits, seconds and peak per stage."""
    from bench.meter import StageMeter, metered_stages
    from bench.simsource import Waits, sync_from
    from foundation.config import load_settings
    from pipeline.run.job import STAGES, RunRequest, run_pipeline
    from pipeline.sync.runner import SyncRequest

    settings = load_settings(config_file=config, env={})
    request = RunRequest(
        stages=stages or STAGES, source="sim", full=full, progress=False,
        sync=SyncRequest(tasks=DATA_TASKS, progress=False),
    )  # fmt: skip
    waits = Waits()
    with StageMeter() as meter, metered_stages(meter), sync_from(simulator, waits):
        started = time.perf_counter()
        result = run_pipeline(settings, request)
        wall = time.perf_counter() - started
    failed = [f"{t.task}: {t.reason}" for t in result.report.tasks if t.status == "failed"]
    if failed:
        msg = f"ah run failed: {'; '.join(failed)}"
        raise RuntimeError(msg)
    seconds = dict(meter.seconds)
    seconds["other"] = wall - sum(seconds.values())
    outside_sync = wall - seconds.get("sync", 0.0)
    return {
        "wall_s": round(wall, 3),
        "compute_s": round(max(wall - waits.total_s, outside_sync), 3),
        "limiter_wait_s": round(waits.limiter_s, 3),
        "serving_s": round(waits.serving_s, 3),
        "stages_s": {name: round(s, 3) for name, s in seconds.items()},
        "peak_rss_mb": meter.peak_mb(),
        "notes": [t.reason for t in result.report.tasks if t.task in REBUILD_STAGES],
    }


def run_days(job: DailyJob) -> dict[str, Any]:
    """In the child: the catch-up run, one run per trade day until a calc date and a
    non-calc date are measured, then (when asked) the rebuild; their measurements."""
    from pipeline.sources.simulator import Simulator, SimulatorConfig

    scenario = job.scenario
    cache = clone_cache(job.prepared, job.scratch / "daily")
    simulator = Simulator(
        SimulatorConfig(
            stocks=scenario.stocks, start=scenario.start, today=job.day, seed=scenario.seed
        )
    )
    following = _open_days_after(simulator, job.day)
    calc_dates = week_ends([job.day, *following])
    runs: dict[str, Any] = {"catch-up": _run(_configure(scenario, cache, job.day), simulator)}
    runs["catch-up"]["day"] = job.day.isoformat()
    extra = 0
    for day in following[:MAX_DAYS]:
        simulator.set_today(day)
        measured = _run(_configure(scenario, cache, day), simulator) | {"day": day.isoformat()}
        label = LABELS[0] if day in calc_dates else LABELS[1]
        if label in runs:
            extra += 1
            label = f"more days {extra}"
        runs[label] = measured
        if all(name in runs for name in LABELS):
            break
    if job.rebuild:
        rebuilt = clone_cache(cache, job.scratch / "rebuild")
        config = _configure(scenario, rebuilt, simulator.today)
        runs[DERIVED] = _run(config, simulator, full=True, stages=REBUILD_STAGES)
        shutil.rmtree(rebuilt)
        runs[FULL] = full_rebuild(scenario, cache, job.scratch / "full", simulator)
    return runs


def full_rebuild(scenario: Scenario, cache: Path, fresh: Path, simulator: Any) -> dict[str, Any]:
    """`ah run --full` into an empty cache from the simulator as it is now (every stage:
    sync of every dataset from scratch, PIT, factors, load), measured; then whether the
    incremented `cache` holds the same data (`bench.samecache`)."""
    from bench.samecache import differences

    fresh.mkdir(parents=True)
    measured = _run(_configure(scenario, fresh, simulator.today), simulator, full=True)
    started = time.perf_counter()
    compared, found = differences(cache, fresh)
    measured["day"] = simulator.today.isoformat()
    measured["compared"] = compared
    measured["differences"] = [d.text() for d in found]
    measured["compare_s"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(fresh)
    return measured


def _detail(run: dict[str, Any]) -> str:
    stages = ", ".join(f"{name} {s:.2f} s" for name, s in run["stages_s"].items())
    waits = f"waits: limiter {run['limiter_wait_s']:.2f} s, simulator {run['serving_s']:.2f} s"
    return f"{run.get('day', '')} {stages}; {waits}".strip()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _history(scenario: Scenario) -> str:
    return f"{scenario.years:g} years"


def run(ctx: StageContext) -> StageResult:
    """Measure the daily runs on the scenario's history and on the shorter one."""
    data = ctx.data()
    result = StageResult("daily", TITLE)
    long = in_child(
        run_days, DailyJob(ctx.scenario, data.next, data.next_day, ctx.scratch / "long", True)
    )
    runs = long.value
    short_scenario = short_history(ctx.scenario)
    short_data, error, _reused = prepare(short_scenario, _say)
    if short_data is None:
        msg = f"the {short_scenario.name} cache: {error}"
        raise RuntimeError(msg)
    short = in_child(
        run_days,
        DailyJob(
            short_scenario, short_data.next, short_data.next_day, ctx.scratch / "short", False
        ),
    )
    shorts = short.value
    derived, full = runs[DERIVED], runs[FULL]
    long_name, short_name = _history(ctx.scenario), _history(short_scenario)
    result.add_timings({label: [r["wall_s"]] for label, r in runs.items()})
    result.add_timings({f"{short_name}: {label}": [r["wall_s"]] for label, r in shorts.items()})
    for prefix, measured_runs in (("", runs), (f"{short_name}: ", shorts)):
        for label, measured in measured_runs.items():
            for stage, mb in measured["peak_rss_mb"].items():
                result.peak_rss_mb[f"{prefix}{label}: {stage}"] = mb
    result.figures += [
        Figure("full rebuild (ah run --full, empty cache)", round(full["wall_s"], 2), "s",
               detail=_detail(full)),
        Figure("full rebuild: compute outside API waits", round(full["compute_s"], 2), "s"),
        Figure(
            "incremental equals full rebuild", float(not full["differences"]), "",
            Target("==", 1, "every raw, PIT and factor table, `_fetched_at` aside"),
            f"{full['compared']} datasets compared in {full['compare_s']:.1f} s"
            + "".join(f"; {d}" for d in full["differences"]),
        ),
        Figure("derived rebuild (--full pit, factors, load)", round(derived["wall_s"], 2), "s",
               detail=_detail(derived)),
    ]  # fmt: skip
    for label in LABELS:
        day, other = runs[label], shorts[label]
        result.figures += [
            Figure(f"{label}: ah run", round(day["wall_s"], 2), "s", detail=_detail(day)),
            Figure(
                f"{label}: compute outside API waits",
                round(day["compute_s"], 2),
                "s",
                Target("<=", COMPUTE_TARGET_S, "set for 5,000 stocks x 15 years"),
            ),
            Figure(
                f"{label}: / full rebuild",
                ratio(day["compute_s"], full["compute_s"]),
                "x",
                Target("<=", RATIO_TARGET, "compute outside API waits, both"),
                f"wall: {day['wall_s']:.2f} s / {full['wall_s']:.2f} s = "
                f"{ratio(day['wall_s'], full['wall_s']):.4f}x",
            ),
            Figure(f"{label}: / derived rebuild", ratio(day["compute_s"], derived["wall_s"]), "x"),
            Figure(
                f"{label}: full history / short history",
                ratio(day["compute_s"], other["compute_s"]),
                "x",
                Target("<=", HISTORY_TARGET),
                f"{long_name} {day['compute_s']:.2f} s, {short_name} {other['compute_s']:.2f} s "
                f"({_detail(other)})",
            ),
        ]  # fmt: skip
    result.add_rss_figure()
    result.facts = {label: runs[label] for label in runs} | {
        f"{short_name}: {label}": shorts[label] for label in shorts
    }
    result.notes = [
        f"A clone of the prepared cache ({ctx.scenario.stocks} stocks, {long_name}: raw "
        f"through {data.next_day}); catch-up `ah run` as of {data.next_day} "
        f"({runs['catch-up']['wall_s']:.1f} s), then {runs[LABELS[0]]['day']} (a weekly "
        f"calc date) and {runs[LABELS[1]]['day']}; source: the in-process simulator moved "
        "to each day; sink: the embedded DuckDB catalogue.",
        f"Full rebuild (one repetition): `ah run --full` into an empty cache from the same "
        f"in-process simulator at {full['day']} (sync of every dataset from scratch, PIT, "
        f"factors, load; {full['wall_s']:.0f} s), then compared with the incremented cache, "
        "dataset by dataset (DuckDB EXCEPT ALL both ways, `_fetched_at` aside). The "
        "simulator has no quota, which flatters the rebuild: the real service's quota "
        "makes its sync hours. Derived rebuild (info): `--full --stages pit,factors,load` "
        "on a clone of the final cache.",
        f"Short history: the same days on the {short_scenario.name} market (history from "
        f"{short_scenario.start}), its own prepared cache (built by the pipeline's sync).",
        "Peak RSS per stage and run in `peak_rss_mb`; it includes the in-process "
        "simulator's market (resident from the sync on).",
    ]
    return result
