"""Benchmark: a P + G backfill over weekly calc dates of a large synthetic market.

Run: .venv/bin/python -m tests.factors.bench_factors [--stocks 5000] [--years 15]
[--executor process] [--workers 2]. Prints the size of the inputs and outputs and the
seconds spent generating, writing and computing; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import polars as pl

from pipeline.factor_step import compute_factors
from tests.factors.synthetic import synthetic_market, write_cache


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    """Generate, write and backfill; print the timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stocks", type=int, default=5000)
    parser.add_argument("--years", type=int, default=15)
    parser.add_argument("--executor", default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--freq", default="weekly", choices=["weekly", "monthly", "daily"])
    args = parser.parse_args()
    last = dt.date(2024, 12, 31)
    # the generator adds two years of reports before `first`: `years` years in all
    first = dt.date(last.year - args.years + 3, 1, 1)
    started = time.perf_counter()
    market = synthetic_market(args.stocks, first, last, seed=1)
    generated = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        layout = write_cache(Path(folder), market)
        written = time.perf_counter()
        cpu_before = _cpu_seconds()
        result = compute_factors(
            layout,
            mode="backfill",
            freq=args.freq,
            executor=args.executor,
            workers=args.workers,
        )
        done = time.perf_counter()
        cpu = _cpu_seconds() - cpu_before
        span = (
            pl.scan_parquet(layout.glob("factors", "p"))
            .select(pl.len(), pl.col("calc_date").min().alias("lo"), pl.col("calc_date").max())
            .collect()
            .row(0)
        )
    print(
        f"stocks={args.stocks} years={args.years} freq={args.freq} "
        f"executor={args.executor} workers={args.workers}\n"
        f"pit.indicators rows={market.indicators.height} industry rows={market.industry.height}\n"
        f"calc dates p={result.dates_computed['p']} g={result.dates_computed['g']} "
        f"rows p={result.rows_written['p']} g={result.rows_written['g']} "
        f"(stored p={span[0]}, calc dates {span[1]} .. {span[2]})\n"
        f"generate {generated - started:.1f}s  write cache {written - generated:.1f}s  "
        f"P+G backfill {done - written:.1f}s wall, {cpu:.1f}s CPU (this process and its pool)"
    )


if __name__ == "__main__":
    main()
