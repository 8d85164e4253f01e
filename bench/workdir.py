"""The harness's work folder: the prepared cache of a scenario, and cheap copies of it.

`$BENCH_WORK` (default /tmp/alphahome-bench) holds one folder per scenario:

- `base/`: the cache as of day D (the trade date before the scenario's today), built by
  the real pipeline: sync from the in-process simulator (source kind `sim`), full PIT
  build, P and G backfill;
- `next/`: `base` plus the sync of one more simulated day (the scenario's today): raw
  is one day ahead, PIT and factors are not yet rebuilt;
- `fingerprint.json`: the scenario parameters it was built for. The preparation is
  reused while they match, so a run only spends time on the measured stages.

Stages never write into these two caches: they work on clones, where every Parquet file
is a hard link (the cache replaces files by atomic rename, never in place, so a link
is never written through) and every other file (state, locks, catalogue) a copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bench.child import in_child
from bench.scenarios import DATA_TASKS, Scenario

WORK_ENV = "BENCH_WORK"
DEFAULT_WORK = Path("/tmp/alphahome-bench")
FINGERPRINT_FILE = "fingerprint.json"
CONFIG_FILE = "alphahome.toml"

Say = Callable[[str], None]


def work_root(scenario: Scenario) -> Path:
    """The scenario's folder under `$BENCH_WORK`."""
    return Path(os.environ.get(WORK_ENV) or DEFAULT_WORK).expanduser().absolute() / scenario.name


@dataclass(frozen=True)
class Prepared:
    """The prepared caches of a scenario and the two simulated days."""

    root: Path
    base: Path
    next: Path
    day: dt.date
    next_day: dt.date
    facts: dict[str, Any]


def clone_cache(source: Path, target: Path) -> Path:
    """A private copy of a cache: Parquet files hard-linked, everything else copied."""
    if target.exists():
        shutil.rmtree(target)
    for folder, _dirs, files in os.walk(source):
        here = Path(folder)
        there = target / here.relative_to(source)
        there.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.endswith(".parquet"):
                os.link(here / name, there / name)
            else:
                shutil.copy2(here / name, there / name)
    return target


def settings_text(scenario: Scenario, cache: Path, extra: str = "") -> str:
    """The TOML settings of a prepared cache (the simulator and the cache folder)."""
    return (
        f'[cache]\ndir = "{cache}"\n\n'
        '[source]\nkind = "sim"\n\n'
        f"[simulator]\nstocks = {scenario.stocks}\nstart = {scenario.start.isoformat()}\n"
        f"today = {scenario.today.isoformat()}\nseed = {scenario.seed}\n\n"
        f'[run]\nworkers = {scenario.workers}\nlog_level = "WARNING"\n' + extra
    )


def read_fingerprint(root: Path) -> dict[str, Any] | None:
    """The stored fingerprint document, or None."""
    path = root / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError:
        return None
    return doc


@contextlib.contextmanager
def preparation_lock(scenario: Scenario) -> Iterator[None]:
    """Hold the scenario's preparation lock (concurrent runs prepare one at a time)."""
    path = work_root(scenario).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepared(scenario: Scenario) -> Prepared | None:
    """The scenario's prepared caches when they exist and match its parameters."""
    root = work_root(scenario)
    doc = read_fingerprint(root)
    if doc is None or doc.get("fingerprint") != scenario.fingerprint():
        return None
    if doc.get("pit_version") != _pit_version():  # PIT tables of another layout
        return None
    if not (root / "base").is_dir() or not (root / "next").is_dir():
        return None
    return Prepared(
        root,
        root / "base",
        root / "next",
        dt.date.fromisoformat(doc["day"]),
        dt.date.fromisoformat(doc["next_day"]),
        doc.get("facts", {}),
    )


def _pit_version() -> int:
    """The layout version of the PIT tables the prepared base cache holds."""
    from pipeline.pit.step import STATE_VERSION

    return STATE_VERSION


def open_days(scenario: Scenario) -> list[dt.date]:
    """The scenario market's SSE trade dates up to its today, oldest first."""
    from pipeline.sources.simulator import Simulator, SimulatorConfig

    calendar = Simulator(
        SimulatorConfig(
            stocks=scenario.stocks, start=scenario.start, today=scenario.today, seed=scenario.seed
        )
    ).ground_truth("trade_cal", exchange="SSE")
    days = calendar.filter(pl.col("is_open").cast(pl.Int64) == 1).get_column("cal_date")
    return sorted(d for d in days.to_list() if d <= scenario.today)


def _sync(config: Path, label: str, facts: dict[str, Any]) -> None:
    from foundation.config import load_settings
    from pipeline.sync.runner import SyncRequest, run_sync

    settings = load_settings(config_file=config, env={})
    started = time.perf_counter()
    report = run_sync(settings, SyncRequest(tasks=DATA_TASKS, progress=False))
    facts[f"{label}_sync_s"] = round(time.perf_counter() - started, 1)
    facts[f"{label}_sync_calls"] = sum(report.calls_by_api.values())
    bad = [f"{t.task}: {t.status} {t.reason}" for t in report.tasks if t.status != "success"]
    if bad:
        msg = f"preparing the cache: sync of {label} did not succeed: {'; '.join(bad)}"
        raise RuntimeError(msg)


def build(scenario: Scenario) -> dict[str, Any]:
    """Build the scenario's caches from scratch (runs in a child process); the facts.

    The simulator is anchored on the scenario's today; the first sync sees it as of the
    trade date before, the second as of today.
    """
    from bench.simsource import sync_from
    from cache.layout import CacheLayout
    from pipeline.factor_step import compute_factors
    from pipeline.pit.step import build_pit
    from pipeline.sources.simulator import Simulator, SimulatorConfig

    root = work_root(scenario)
    if root.exists():
        shutil.rmtree(root)
    base, following = root / "base", root / "next"
    base.mkdir(parents=True)
    simulator = Simulator(
        SimulatorConfig(
            stocks=scenario.stocks, start=scenario.start, today=scenario.today, seed=scenario.seed
        )
    )
    days = open_days(scenario)
    if days[-1] != scenario.today:
        msg = f"scenario {scenario.name}: today {scenario.today} is not a trade date"
        raise ValueError(msg)
    day, next_day = days[-2], days[-1]
    facts: dict[str, Any] = {}
    (base / CONFIG_FILE).write_text(settings_text(scenario, base), "utf-8")
    simulator.set_today(day)
    with sync_from(simulator):
        _sync(base / CONFIG_FILE, "base", facts)
    layout = CacheLayout(base)
    started = time.perf_counter()
    build_pit(layout, ("all",), "full", "process", scenario.workers)
    facts["base_pit_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    compute_factors(layout, "all", mode="backfill", executor="process", workers=scenario.workers)
    facts["base_factors_s"] = round(time.perf_counter() - started, 1)
    clone_cache(base, following)
    (following / CONFIG_FILE).write_text(settings_text(scenario, following), "utf-8")
    simulator.set_today(next_day)
    with sync_from(simulator):
        _sync(following / CONFIG_FILE, "next", facts)
    facts["daily_rows"] = (
        pl.scan_parquet(layout.glob("raw", "daily")).select(pl.len()).collect().item()
    )
    doc = {
        "fingerprint": scenario.fingerprint(),
        "pit_version": _pit_version(),
        "scenario": scenario.market_key(),
        "day": day.isoformat(),
        "next_day": next_day.isoformat(),
        "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "facts": facts,
    }
    (root / FINGERPRINT_FILE).write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    return doc


def prepare(
    scenario: Scenario, say: Say, rebuild: bool = False
) -> tuple[Prepared | None, str | None, bool]:
    """The scenario's cache: reused when its fingerprint matches (unless `rebuild`),
    else built in a child.

    Returns (prepared or None, error or None, whether it was reused).
    """
    with preparation_lock(scenario):
        found = None if rebuild else prepared(scenario)
        if found is not None:
            say(f"reusing the prepared cache under {found.root}")
            return found, None, True
        say(f"preparing the cache under {work_root(scenario)} (sync, PIT, factors; once)")
        try:
            in_child(build, scenario)
        except Exception as exc:
            return None, f"preparing the cache failed: {exc}", False
        return prepared(scenario), None, False
