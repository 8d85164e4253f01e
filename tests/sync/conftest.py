"""Fixtures of the sync tests: the simulator served over loopback HTTP, settings pointing
at it as a `tushare` source, `ah` as a subprocess, and the reference comparison."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cache.layout import CacheLayout
from foundation.config import Settings, load_settings
from pipeline.sources.simulator import Simulator, SimulatorConfig
from tests.cli_runner import ah as run_ah

ROOT = Path(__file__).resolve().parents[2]
SIM_TOKEN = "alphahome-sim"
START = dt.date(2023, 1, 1)
TODAY = dt.date(2024, 6, 28)


@dataclass
class Served:
    """A running simulator and where it listens."""

    sim: Simulator
    url: str


MARKET = {"stocks": 40, "start": START, "today": TODAY, "limit_per_min": 0}


def start_simulator(
    stack: contextlib.ExitStack, clock: Callable[[], float] = time.time, **overrides: Any
) -> Served:
    """A simulator of the test market (deterministic: same config, same data), served;
    `clock` drives its rate limits."""
    sim = Simulator(SimulatorConfig(**{**MARKET, **overrides}), clock=clock)
    server = sim.serve()
    stack.callback(server.stop)
    return Served(sim, server.url)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start simulators (stopped after the test): `serve(stocks=40, ...)`."""
    with contextlib.ExitStack() as stack:
        yield lambda **overrides: start_simulator(stack, **overrides)


@pytest.fixture(scope="session")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder whose `data/` holds a full sync of the test market at TODAY (shared:
    copy it before changing it)."""
    from pipeline.sync.runner import SyncRequest, run_sync

    folder = tmp_path_factory.mktemp("synced")
    with contextlib.ExitStack() as stack:
        served = start_simulator(stack)
        report = run_sync(
            settings_for(folder, served.url), SyncRequest(start=START, progress=False)
        )
        assert report.exit_code == 0, report.render()
    yield folder


def copy_cache(synced: Path, folder: Path) -> Path:
    """A private copy of the shared synced cache under `folder`; returns its root."""
    shutil.copytree(synced / "data", folder / "data")
    return folder / "data"


def write_config(
    folder: Path,
    url: str,
    *,
    token: str = SIM_TOKEN,
    points: int = 5000,
    limits: dict[str, int] | None = None,
    timeout_s: float = 15.0,
    run: str = "",
    extra: str = "",
) -> Path:
    """An alphahome.toml pointing at a served simulator as the `tushare` source
    (`run`: more lines of [run], `extra`: more tables)."""
    lines = [
        "[tushare]",
        f'base_url = "{url}"',
        f'token = "{token}"',
        f"points = {points}",
        f"timeout_s = {timeout_s}",
        "[source]",
        'kind = "tushare"',
        "[cache]",
        f'dir = "{folder / "data"}"',
        "[run]",
        "workers = 8",
        "retry_delay_s = 0.01",
        "max_retries = 8",
        run,
    ]
    if limits is not None:
        lines.append("[tushare.limits]")
        lines += [f"{api} = {n}" for api, n in limits.items()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "alphahome.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def settings_for(folder: Path, url: str, **kwargs: Any) -> Settings:
    """Settings read from a config written by `write_config` (no environment)."""
    return load_settings(write_config(folder, url, **kwargs), env={})


def ah(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python cli.py ARGS` in `cwd`, without the caller's AH_/TUSHARE/DATABASE variables."""
    return run_ah(*args, cwd=cwd, env=env, timeout=timeout)


def cache_rows(root: Path, name: str) -> set[tuple[Any, ...]]:
    """A dataset's rows as a set of tuples (`_fetched_at` left out), in column-name order."""
    glob = str(CacheLayout(root).dataset_dir("raw", name) / "**" / "*.parquet")
    frame = pl.read_parquet(glob).drop("_fetched_at")
    return {tuple(row) for row in frame.select(sorted(frame.columns)).iter_rows()}
