"""Stage 1: the simulator answers the two heaviest requests fast.

One full-market `daily` for a trade date and one `income_vip` for a report period,
timed through `Simulator.handle` (the whole protocol but the socket) by the simulator's
own `pipeline.sources.simulator.bench.measure`, after a first (cold) request that builds
the market parts. The targets are on CPU time of the serving process (every thread),
which another load on the machine does not inflate; the wall times are facts.
"""

from __future__ import annotations

from typing import Any

from bench.child import in_child
from bench.context import StageContext
from bench.figures import Figure, StageResult, Target
from bench.scenarios import Scenario

TITLE = "one full-market daily and one income_vip period, served"
NEEDS_DATA = False
DAILY_TARGET_MS = 50.0  # CPU
INCOME_TARGET_MS = 100.0  # CPU


def measure_requests(job: tuple[Scenario, int]) -> dict[str, Any]:
    """In the child: the simulator's own benchmark of the scenario's market."""
    from pipeline.sources.simulator import SimulatorConfig
    from pipeline.sources.simulator.bench import measure

    scenario, reps = job
    config = SimulatorConfig(
        stocks=scenario.stocks, start=scenario.start, today=scenario.today, seed=scenario.seed
    )
    return measure(config, repeats=reps)


def run(ctx: StageContext) -> StageResult:
    """Time the two requests (median of `reps` after a cold one)."""
    result = StageResult("simulator", TITLE)
    reps = max(ctx.reps, 3)
    child = in_child(measure_requests, (ctx.scenario, reps))
    found = child.value
    result.peak_rss_mb["requests"] = child.peak_rss_mb
    daily_ms = found["daily_one_date_cpu_s"] * 1000
    income_ms = found["income_vip_one_period_cpu_s"] * 1000
    result.figures += [
        Figure(
            "daily, one trade date (full market), CPU",
            round(daily_ms, 2),
            "ms",
            Target("<", DAILY_TARGET_MS),
            f"{found['daily_rows']} rows; wall {found['daily_one_date_s'] * 1000:.1f} ms",
        ),
        Figure(
            "income_vip, one period, CPU",
            round(income_ms, 2),
            "ms",
            Target("<=", INCOME_TARGET_MS),
            f"{found['income_vip_rows']} rows; wall "
            f"{found['income_vip_one_period_s'] * 1000:.1f} ms",
        ),
        Figure("first (cold) daily, builds the market", found["cold_daily_s"], "s"),
    ]
    result.add_rss_figure()
    result.facts = {k: v for k, v in found.items() if k != "peak_rss_mb"}
    result.notes = [
        "Timed through `Simulator.handle` (request parsing, query, JSON answer; no "
        "socket) by `pipeline.sources.simulator.bench.measure`; median of "
        f"{reps} warm requests after one cold request that builds the market. The "
        "figures are CPU time of the process (`time.process_time`, every thread), so "
        "another load on the machine does not move them; wall times are in the details.",
        "`daily` asks one trade date (the scenario's today) for the whole market; "
        "`income_vip` the last annual period (kept per period after its first request, "
        "filtered by today at request time).",
    ]
    return result
