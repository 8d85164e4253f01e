"""Stage 2: sync against the simulator's real HTTP server under a per-minute limit.

The server (`ah sim serve`, a separate process on loopback) enforces the scenario's
limit on every API; the client is configured with the same limit (`[tushare.limits]`),
as a user would. The subset: the calendar and listings plus `adj_factor` and
`daily_basic` over a window of trade dates; these two APIs cannot be asked for a date
range, so they need one call per trade date and bound the run's length. Figures:

- quota utilisation while the bound tasks ran = calls to the rate-bound APIs / (limit ×
  the minutes each of their tasks ran, summed), counted by the server: the pacing
  itself, without the run's start-up (calendar, listings) and its final catalogue
  rebuild; the same calls over the whole run's wall time are reported beside it;
- limit errors = requests the server refused for the per-minute limit;
- calls made (server count, every API) / the planner's minimum for the same data (the
  sum over tasks of the cheapest strategy's calls, as `ah sync --dry-run` plans them).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import in_child
from bench.context import StageContext
from bench.figures import Figure, StageResult, Target, ratio
from bench.scenarios import SYNC_RATE_BOUND, SYNC_TASKS, Scenario
from bench.workdir import open_days

TITLE = "sync from `ah sim serve` over HTTP under a per-minute limit"
NEEDS_DATA = False
UTILISATION_TARGET = 0.95
CALLS_TARGET = 1.02
SERVER_START_TIMEOUT_S = 120.0
SERVER_STOP_TIMEOUT_S = 10.0
TOKEN = "alphahome-sim"  # the simulator's default token
CONTEXT_APIS = ("trade_cal", "stock_basic", "daily")  # what the run itself asks first
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SyncJob:
    """What the child needs: the settings file, the window and the scenario."""

    config_file: Path
    scenario: Scenario


@contextlib.contextmanager
def served(scenario: Scenario, scratch: Path) -> Iterator[str]:
    """Run `ah sim serve` for the scenario's market on a free loopback port; yields its
    base URL once it listens and the market parts the run needs are built.

    Every simulator setting is given as a flag and `--config` names an empty file, so
    no `alphahome.toml` of the working directory changes the market or adds faults.
    """
    empty = scratch / "server.toml"
    empty.write_text("", "utf-8")
    command = [
        sys.executable,
        str(REPO / "cli.py"),
        "--config",
        str(empty),
        "sim",
        "serve",
        "--port=0",
        f"--stocks={scenario.stocks}",
        f"--start={scenario.start.isoformat()}",
        f"--today={scenario.today.isoformat()}",
        f"--seed={scenario.seed}",
        "--points=5000",
        f"--limit-per-min={scenario.sync_limit_per_min}",
        "--fault-rate=0",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=scratch)
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], SERVER_START_TIMEOUT_S)
        line = server.stdout.readline() if ready else ""
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            msg = f"ah sim serve did not start (said {line!r}, exit {server.poll()})"
            raise RuntimeError(msg)
        url = found.group(1)
        warm(url, scenario)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)  # serve_forever stops cleanly on it
        try:
            server.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=SERVER_START_TIMEOUT_S) as answer:
        doc: dict[str, Any] = json.loads(answer.read())
    return doc


def warm(url: str, scenario: Scenario) -> None:
    """One call to each rate-bound API, so the server builds the market parts they need
    before the measured run. The calls fall in the server's window, but the client
    paces about 2% under the limit, which leaves room for them; they are not counted
    in the run's figures (its counts are taken after)."""
    day = scenario.today.strftime("%Y%m%d")
    for api in SYNC_RATE_BOUND:
        answer = _post(url, {"api_name": api, "token": TOKEN, "params": {"trade_date": day}})
        if answer.get("code") != 0:
            msg = f"warming {api} on the simulator failed: {answer.get('msg')}"
            raise RuntimeError(msg)


def server_counts(url: str) -> dict[str, Any]:
    """The server's counters: {"calls": {api: n}, "outcomes": {api: {outcome: n}}}."""
    return _post(f"{url}/_sim/calls", {})


def settings_text(scenario: Scenario, url: str, cache: Path) -> str:
    """A user's settings for the served simulator: its URL, token and limits."""
    limits = "\n".join(
        f"{api} = {scenario.sync_limit_per_min}" for api in (*CONTEXT_APIS, *SYNC_RATE_BOUND)
    )
    return (
        f'[cache]\ndir = "{cache}"\n\n[source]\nkind = "tushare"\n\n'
        f'[tushare]\ntoken = "{TOKEN}"\nbase_url = "{url}"\npoints = 5000\n\n'
        f"[tushare.limits]\n{limits}\n\n"
        f'[run]\nworkers = {len(SYNC_TASKS)}\nlog_level = "WARNING"\n'
    )


def sync_window(job: SyncJob) -> dict[str, Any]:
    """In the child: sync the subset over the window's trade dates; what the run did."""
    from foundation.config import load_settings
    from pipeline.sync.runner import SyncRequest, run_sync

    first = open_days(job.scenario)[-job.scenario.sync_trade_dates]
    settings = load_settings(config_file=job.config_file, env={})
    started = time.perf_counter()
    report = run_sync(settings, SyncRequest(tasks=SYNC_TASKS, start=first, progress=False))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "first_date": first.isoformat(),
        "tasks": {
            t.task: {
                "status": t.status,
                "reason": t.reason,
                "strategy": t.strategy,
                "calls": t.calls,
                "planned": t.calls_estimated,
                "rate_limited": t.rate_limited,
                "seconds": t.duration_s,
            }
            for t in report.tasks
        },
        "client_calls": report.calls_by_api,
    }


def _delta(after: dict[str, Any], before: dict[str, Any]) -> tuple[dict[str, int], int]:
    calls = {api: n - before["calls"].get(api, 0) for api, n in after["calls"].items()}
    limited = 0
    for api, outcomes in after["outcomes"].items():
        earlier = before["outcomes"].get(api, {})
        limited += outcomes.get("rate_limited", 0) - earlier.get("rate_limited", 0)
    return {api: n for api, n in calls.items() if n}, limited


def run(ctx: StageContext) -> StageResult:
    """One sync of the window (a minute or so of calls: not repeated)."""
    scenario = ctx.scenario
    result = StageResult("sync", TITLE)
    cache = ctx.scratch / "cache"
    config_file = ctx.scratch / "alphahome.toml"
    with served(scenario, ctx.scratch) as url:
        config_file.write_text(settings_text(scenario, url, cache), "utf-8")
        before = server_counts(url)
        child = in_child(sync_window, SyncJob(config_file, scenario))
        after = server_counts(url)
    found = child.value
    calls, limit_errors = _delta(after, before)
    failed = [f"{n}: {t['status']} {t['reason']}" for n, t in found["tasks"].items()
              if t["status"] != "success"]  # fmt: skip
    if failed:
        msg = f"the sync did not succeed: {'; '.join(failed)}"
        raise RuntimeError(msg)
    minutes = found["seconds"] / 60
    limit = scenario.sync_limit_per_min
    bound_calls = sum(calls.get(api, 0) for api in SYNC_RATE_BOUND)
    utilisation = ratio(bound_calls, limit * len(SYNC_RATE_BOUND) * minutes)
    task_minutes = sum(found["tasks"][api]["seconds"] for api in SYNC_RATE_BOUND) / 60
    while_calling = ratio(bound_calls, limit * task_minutes)
    planned = sum(t["planned"] for t in found["tasks"].values())
    made = sum(calls.values())
    result.timings["sync_run"] = [found["seconds"]]
    result.peak_rss_mb["sync client"] = child.peak_rss_mb
    result.figures += [
        Figure(
            "quota utilisation while the bound tasks ran",
            while_calling,
            "",
            Target(">=", UTILISATION_TARGET),
            f"{bound_calls} calls to {', '.join(SYNC_RATE_BOUND)} at {limit}/min each "
            f"over the tasks' own {task_minutes * 60:.1f} s (summed)",
        ),
        Figure(
            "quota utilisation over the whole run",
            utilisation,
            "",
            detail=f"the same calls over the run's {found['seconds']:.1f} s, start-up and "
            "the final catalogue rebuild included",
        ),
        Figure("limit errors", limit_errors, "", Target("<=", 0), "refused by the server"),
        Figure(
            "calls made / minimum",
            ratio(made, planned),
            "x",
            Target("<=", CALLS_TARGET),
            f"{made} made (server count), {planned} in the cheapest plan",
        ),
        Figure("sync wall time", round(found["seconds"], 2), "s"),
    ]
    result.add_rss_figure()
    result.facts = {
        "limit_per_min": limit,
        "window_first_date": found["first_date"],
        "trade_dates": scenario.sync_trade_dates,
        "server_calls": calls,
        "tasks": found["tasks"],
    }
    result.notes = [
        f"Server: `ah sim serve --limit-per-min {limit}` (the simulator's HTTP server) in "
        "its own process on loopback; one warm-up call per rate-bound API before the run "
        "builds the market parts, so the run never waits for a cold market.",
        f"Client: `run_sync` with `source.kind = tushare`, `base_url` = the server, "
        f"`[tushare.limits]` = {limit}/min for every API it calls; tasks "
        f"{', '.join(SYNC_TASKS)} from {found['first_date']} "
        f"({scenario.sync_trade_dates} trade dates, so about "
        f"{scenario.sync_trade_dates / limit:.1f} min of calls); one run, not repeated.",
        "The targeted utilisation counts the bound tasks' own durations (from their "
        "first call to their last merge), not the run's start-up (calendar, listings) "
        "nor its final catalogue rebuild; the whole-run figure is a lower bound beside "
        "it. Calls and limit errors are the server's counts of this run.",
    ]
    return result
