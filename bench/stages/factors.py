"""Stage 4: the P + G backfill over every weekly calc date, against a loop reference.

Product: `compute_factors(layout, "all", mode="backfill", freq="weekly")` on the process
pool, on a clone of the prepared cache. Reference: `bench.stages.factor_reference`, a
pandas loop per calc date and per stock, timed on a few calc dates and extrapolated to
all of them (its one-off loading counted once). The speed-up target is on CPU time
(the product's process and its pool workers; the loop's process), which does not flip
with the machine's load as wall times do; the wall-time ratio is reported beside it.
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import in_child
from bench.context import StageContext
from bench.figures import Figure, StageResult, Target, median, ratio
from bench.stages.factor_reference import ReferenceJob, run_reference
from bench.workdir import clone_cache

TITLE = "P + G backfill over all weekly calc dates, against a pandas loop"
NEEDS_DATA = True
SPEEDUP_TARGET = 100.0  # CPU time of the loop / CPU time of the product
BUDGET_S = 60.0  # the product's budget at 5,000 stocks x 15 years
BUDGET_MARGIN = 2.0  # the wall-time bound allows a shared, loaded machine this factor


@dataclass(frozen=True)
class BackfillJob:
    """Backfills repeated on fresh clones of `source`."""

    source: Path
    scratch: Path
    reps: int
    workers: int


def backfill_repeatedly(job: BackfillJob) -> dict[str, Any]:
    """In the child: `reps` backfills, each on a fresh clone; seconds and sizes."""
    from cache.layout import CacheLayout
    from pipeline.factor_step import compute_factors

    seconds: list[float] = []
    cpu_seconds: list[float] = []
    facts: dict[str, Any] = {}
    for rep in range(job.reps):
        clone = clone_cache(job.source, job.scratch / f"backfill-{rep}")
        cpu = _cpu_with_children()
        started = time.perf_counter()
        done = compute_factors(
            CacheLayout(clone),
            "all",
            mode="backfill",
            freq="weekly",
            executor="process",
            workers=job.workers,
        )
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(_cpu_with_children() - cpu)
        facts = {"dates": done.dates_computed, "rows": done.rows_written}
        shutil.rmtree(clone)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "facts": facts}


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (the pool's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run(ctx: StageContext) -> StageResult:
    """Time the backfill (median of `reps`) and the reference on a few dates."""
    data = ctx.data()
    scenario = ctx.scenario
    result = StageResult("factors", TITLE)
    product = in_child(
        backfill_repeatedly, BackfillJob(data.base, ctx.scratch, ctx.reps, scenario.workers)
    )
    reference = in_child(run_reference, ReferenceJob(data.base, scenario.reference_dates))
    result.add_timings({"backfill": product.value["seconds"]})
    backfill_cpu = median(product.value["cpu_seconds"])
    result.peak_rss_mb = {"backfill": product.peak_rss_mb, "loop reference": reference.peak_rss_mb}
    backfill_s = result.median("backfill")
    found, ref = product.value["facts"], reference.value
    per_p, per_g = median(ref["p_s"]), median(ref["g_s"])
    extrapolated = ref["setup_s"] + per_p * found["dates"]["p"] + per_g * found["dates"]["g"]
    extrapolated_cpu = (
        ref["setup_cpu_s"]
        + median(ref["p_cpu_s"]) * found["dates"]["p"]
        + median(ref["g_cpu_s"]) * found["dates"]["g"]
    )
    result.timings |= {"reference_p_per_date": ref["p_s"], "reference_g_per_date": ref["g_s"]}
    result.figures += [
        Figure(
            "P + G backfill",
            round(backfill_s, 2),
            "s",
            detail=f"{found['dates']['p']} P and {found['dates']['g']} G calc dates, "
            f"{found['rows']['p'] + found['rows']['g']:,} rows",
        ),
        Figure(
            "loop reference, extrapolated",
            round(extrapolated, 1),
            "s",
            detail=f"{len(ref['dates'])} dates timed: P {per_p:.3f} s + G {per_g:.3f} s "
            f"per date, loading {ref['setup_s']:.1f} s",
        ),
        Figure(
            "speed-up over the loop",
            ratio(extrapolated_cpu, backfill_cpu),
            "x",
            Target(">=", SPEEDUP_TARGET),
            f"CPU time: loop {extrapolated_cpu:,.0f} s (extrapolated) / product "
            f"{backfill_cpu:.1f} s (its process and pool workers)",
        ),
        Figure(
            "speed-up over the loop, wall time",
            ratio(extrapolated, backfill_s),
            "x",
            detail="moves with the machine's load while each side runs",
        ),
        Figure(
            "reference agrees with product",
            round(min(ref["p_agreement"], ref["g_agreement"]), 4),
            "",
            detail=f"share of rows with equal scores: P {ref['p_agreement']:.4f}, "
            f"G {ref['g_agreement']:.4f}",
        ),
    ]
    pit = ctx.earlier.get("pit")
    if pit is not None and pit.error is None and "full_build" in pit.timings:
        combined = pit.median("full_build") + backfill_s
        result.figures.append(
            Figure(
                "PIT full build + P + G backfill",
                round(combined, 2),
                "s",
                Target(
                    "<",
                    BUDGET_S * BUDGET_MARGIN,
                    f"{BUDGET_S:g} s budget for 5,000 stocks x 15 years, x{BUDGET_MARGIN:g} "
                    "for a shared machine",
                ),
            )
        )
    else:
        result.notes.append("The combined PIT + P + G figure needs the pit stage in the run.")
    result.add_rss_figure("backfill")
    result.facts = {"product": found, "reference_dates": ref["dates"]}
    result.notes += [
        f"Product: `compute_factors(layout, 'all', mode='backfill', freq='weekly', "
        f"executor='process', workers={scenario.workers})` on a clone of the cache of "
        f"{data.day} (cloning not timed).",
        "Reference: `bench/stages/factor_reference.py`, pandas, a loop per calc date and "
        "per stock (indicator history filtered to t, industry at t), cross-sections with "
        f"pandas; timed on {len(ref['dates'])} calc dates spread over the history "
        f"({', '.join(ref['dates'])}), extrapolated to all calc dates; G reads the "
        "product's stored P history (what a G script would read).",
    ]
    return result
