"""Every catalogued API in one sync: `ah sync --group all` on a small simulated market
ends with each task success, no_data or skipped for its points; every dataset is unique
on its key; `ah load` takes all of them into PostgreSQL; `ah tasks --all` lists them; a
`kill -9` in the middle re-runs to the same cache."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from cache.catalogue import raw_dataset
from cache.catalogue.apis import catalogue
from cache.layout import CacheLayout
from cache.views import open_catalog
from foundation.config import load_settings
from pipeline.sync.listing import list_tasks
from pipeline.sync.tasks import TASKS
from tests.sinks.helpers import fetch
from tests.sync.conftest import Served, ah, cache_rows, start_simulator, write_config

POINTS = 5000
FIRST = "2024-06-25"  # four trade days before the market's today (2024-06-28)
MARKET = {"stocks": 8, "start": dt.date(2024, 1, 2)}
ARGS = ("sync", "--group", "all", "--start", FIRST)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with contextlib.ExitStack() as stack:
        yield start_simulator(stack, **MARKET)


@pytest.fixture(scope="module")
def all_synced(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose cache holds a clean `ah sync --group all`."""
    folder = tmp_path_factory.mktemp("all")
    config = write_config(folder, served.url, points=POINTS)
    done = ah("--config", str(config), *ARGS, cwd=folder, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def report(root: Path) -> dict:
    return json.loads(sorted((root / "reports").glob("sync-*.json"))[-1].read_text())


def test_every_task_ends_done_or_skipped_for_its_points(all_synced: Path) -> None:
    outcomes = {t["task"]: t for t in report(all_synced / "data")["tasks"]}
    assert set(outcomes) == set(catalogue())
    for name, outcome in outcomes.items():
        needs = catalogue()[name].min_points or 0
        if needs > POINTS:
            assert outcome["status"] == "skipped", name
            assert f"needs {needs} points" in outcome["reason"], name
        else:
            assert outcome["status"] in ("success", "no_data"), (name, outcome["reason"])
    done = [n for n, o in outcomes.items() if o["status"] == "success"]
    assert len(done) >= 0.8 * len(outcomes)


def test_every_dataset_is_unique_on_its_key_and_has_its_duckdb_view(all_synced: Path) -> None:
    layout = CacheLayout(all_synced / "data")
    present = layout.datasets("raw")
    assert len(present) >= 180
    with open_catalog(layout.duckdb_path) as con:
        for name in present:
            spec = raw_dataset(name)
            frame = pl.read_parquet(layout.glob("raw", name))
            assert frame.columns == [*spec.columns, "_fetched_at"], name
            if spec.storage == "latest":
                assert frame.select(spec.key).unique().height == frame.height, name
            counted = con.execute(f'select count(*) from raw."{name}"').fetchone()
            assert counted == (frame.height,), name


def test_tasks_all_lists_every_api_with_area_points_and_permission(all_synced: Path) -> None:
    config = all_synced / "alphahome.toml"
    shown = ah("--config", str(config), "tasks", "--all", cwd=all_synced)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["task", "area", "points", "allowed"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(catalogue())
    assert rows["hk_income"][1:4] == ["hk", "15000", "no"]
    assert rows["fund_nav"][1:4] == ["fund", "2000", "yes"]
    assert rows["daily"][1] == "stock"
    default = list_tasks(load_settings(config, env={}))
    assert [r.task for r in default] == [t.name for t in TASKS]


def test_load_takes_every_synced_dataset_into_postgres(all_synced: Path, pg_url: str) -> None:
    config = all_synced / "alphahome.toml"
    extra = f'[database]\nurl = "{pg_url}"\n[sinks]\nraw_datasets = ["all"]\n'
    config.write_text(config.read_text() + extra)
    loaded = ah("--config", str(config), "load", cwd=all_synced, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    layout = CacheLayout(all_synced / "data")
    names = layout.datasets("raw")
    counts = " union all ".join(f"select '{n}', count(*) from raw.\"{n}\"" for n in names)
    in_postgres = dict(fetch(pg_url, counts))
    for name in names:
        assert in_postgres[name] == pl.read_parquet(layout.glob("raw", name)).height, name


def test_kill_9_mid_sync_reruns_to_the_same_cache(
    all_synced: Path, served: Served, tmp_path: Path
) -> None:
    config = write_config(tmp_path, served.url, points=POINTS)
    crashed = ah("--config", str(config), *ARGS, cwd=tmp_path, env={"AH_TEST_CRASH_AT": "fetch:80"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    rerun = ah("--config", str(config), *ARGS, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    clean, resumed = CacheLayout(all_synced / "data"), CacheLayout(tmp_path / "data")
    assert resumed.datasets("raw") == clean.datasets("raw")
    for name in clean.datasets("raw"):
        assert cache_rows(tmp_path / "data", name) == cache_rows(all_synced / "data", name), name
