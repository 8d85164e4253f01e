"""Benchmark: the two requests the simulator must answer fast, timed through `handle`.

`measure(config)` returns seconds for building the market parts on first use (cold),
then the median of repeated full-market `daily` for one trade date and `income_vip`
for one period, each as wall time and as CPU time of this process (every thread:
polars works on several), and the peak resident memory of the process. The CPU time
is the figure to compare across runs: the wall time grows with whatever else the
machine runs.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from foundation.errors import AlphahomeError
from pipeline.sources.simulator.config import SimulatorConfig
from pipeline.sources.simulator.simulator import Simulator


def _body(config: SimulatorConfig, api: str, params: dict[str, str]) -> bytes:
    return json.dumps(
        {"api_name": api, "token": config.token, "params": params, "fields": ""}
    ).encode()


def _timed(simulator: Simulator, body: bytes) -> tuple[float, float, int]:
    """Wall and CPU seconds of one request through `handle`, and its row count."""
    cpu, start = time.process_time(), time.perf_counter()
    status, _, reply = simulator.handle("/", body)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    answer = json.loads(reply)
    if status != 200 or answer["code"] != 0:
        msg = f"benchmark request failed: {status} {answer.get('msg')}"
        raise AlphahomeError(msg)
    return elapsed, used, len(answer["data"]["items"])


def measure(config: SimulatorConfig, repeats: int = 5) -> dict[str, Any]:
    """Timings (seconds) and sizes of the benchmark requests for `config`."""
    simulator = Simulator(config)
    trade_date = config.today.strftime("%Y%m%d")
    period = f"{config.today.year - 1}1231"
    daily = _body(config, "daily", {"trade_date": trade_date})
    income = _body(config, "income_vip", {"period": period})
    cold_daily, _, _ = _timed(simulator, daily)
    cold_income, _, _ = _timed(simulator, income)
    daily_runs = [_timed(simulator, daily) for _ in range(repeats)]
    income_runs = [_timed(simulator, income) for _ in range(repeats)]
    return {
        "stocks": config.stocks,
        "years": round((config.today - config.start).days / 365.25, 1),
        "cold_daily_s": round(cold_daily, 3),
        "cold_income_vip_s": round(cold_income, 3),
        "daily_one_date_s": round(statistics.median(t for t, _, _ in daily_runs), 4),
        "daily_one_date_cpu_s": round(statistics.median(c for _, c, _ in daily_runs), 4),
        "daily_rows": daily_runs[0][2],
        "income_vip_one_period_s": round(statistics.median(t for t, _, _ in income_runs), 4),
        "income_vip_one_period_cpu_s": round(statistics.median(c for _, c, _ in income_runs), 4),
        "income_vip_rows": income_runs[0][2],
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process (None where `resource` does not exist)."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    import datetime as dt

    print(
        json.dumps(
            measure(
                SimulatorConfig(stocks=5000, start=dt.date(2009, 7, 1), today=dt.date(2024, 6, 28))
            ),
            indent=2,
        )
    )
