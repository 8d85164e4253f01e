"""`python -m bench --scenario small|full [--stages …] [--reps N] [--out bench/results]`.

Runs the scenario's stages, prints the table, writes `latest-<scenario>.json` and
`.md` under `--out`. The cache the stages read is prepared once per scenario under
`$BENCH_WORK` (default /tmp/alphahome-bench) and reused while the scenario's
parameters are unchanged; `--rebuild` prepares it anew (after a pipeline change).
Exits 0 when every stage ran (misses included: the harness reports, it does not
judge), 1 when a stage could not run, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.report import render_table, write_results
from bench.runner import STAGE_NAMES, run_bench
from bench.scenarios import SCENARIOS, scenario


def parse_stages(values: list[str] | None) -> list[str]:
    """Stage names from `--stages a b` or `--stages a,b` (default: all, in order)."""
    if not values:
        return list(STAGE_NAMES)
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        msg = f"unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGE_NAMES)}"
        raise argparse.ArgumentTypeError(msg)
    return names


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print, save; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="small")
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help=", ".join(STAGE_NAMES))
    parser.add_argument("--reps", type=int, help="repetitions (default: the scenario's)")
    parser.add_argument("--out", default="bench/results", help="folder for the results")
    parser.add_argument("--rebuild", action="store_true", help="prepare the cache anew")
    args = parser.parse_args(argv)
    try:
        stages = parse_stages(args.stages)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    chosen = scenario(args.scenario)
    reps = args.reps or chosen.reps
    if reps < 1:
        parser.error(f"--reps must be at least 1, got {reps}")
    doc = run_bench(chosen, stages, reps, args.rebuild)
    json_path, md_path = write_results(doc, Path(args.out))
    print(render_table(doc))
    print(f"\nresults: {json_path} and {md_path}")
    return 1 if doc["summary"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
