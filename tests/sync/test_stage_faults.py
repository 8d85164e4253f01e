"""`kill -9` of the compute stages as real processes: no worker of the killed run lives
on, no file is written after the kill, and a re-run equals a clean run; a second
instance of a stage is refused naming the holder; a dead sync shows as interrupted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from cache.layout import CacheLayout
from cache.locks import FileLocks
from tests.cli_runner import ah_killed, continue_after_crash, wait_stopped
from tests.postgres_server import PostgresServer
from tests.sync.conftest import ROOT, START, Served, ah, cache_rows, copy_cache, write_config
from tests.sync.reference import truth_rows

STAGES = {"pit": ("pit",), "factors": ("factors", "all")}
COMMANDS = {**STAGES, "run": ("run", "--stages", "pit")}  # `ah run` killed in its PIT stage
OUTPUT_LAYERS = ("pit", "factors")


def stage_config(folder: Path) -> Path:
    """A config for the compute stages of the cache in `folder/data` (two workers)."""
    path = folder / "alphahome.toml"
    path.write_text(f'[cache]\ndir = "{folder / "data"}"\n[run]\nworkers = 2\n')
    return path


def outputs(root: Path) -> dict[str, pl.DataFrame]:
    """Every PIT and factor file, as rows in a canonical order."""
    found = {}
    for layer in OUTPUT_LAYERS:
        for path in sorted((root / layer).rglob("*.parquet")):
            frame = pl.read_parquet(path)
            found[str(path.relative_to(root))] = frame.sort(frame.columns)
    return found


def assert_same_outputs(root: Path, clean: dict[str, pl.DataFrame]) -> None:
    got = outputs(root)
    assert sorted(got) == sorted(clean)
    for name, frame in clean.items():
        assert got[name].equals(frame), name


def run_stage(folder: Path, stage: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`ah <stage>` in its own session (so its workers can be found by process group)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "DATABASE"))}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "--config", str(stage_config(folder)),
         *COMMANDS[stage]],
        cwd=folder, env={**clean, **(env or {})}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(synced: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synced market with its PIT tables and factors built cleanly (copy it)."""
    folder = tmp_path_factory.mktemp("built")
    copy_cache(synced, folder)
    for stage in STAGES:
        proc = run_stage(folder, stage)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return folder


@pytest.mark.parametrize(
    ("stage", "point"),
    [
        ("pit", "shard:3"),  # mid-pool
        ("factors", "shard:2"),
        pytest.param("pit", "pit-plan:1", marks=pytest.mark.slow),  # planned, nothing written
        pytest.param("pit", "pit-written:1", marks=pytest.mark.slow),  # files, no state
        pytest.param("pit", "pit-state:1", marks=pytest.mark.slow),  # state, no views
        pytest.param("pit", "pit-report:1", marks=pytest.mark.slow),  # views, no report
        pytest.param("factors", "factors-plan:1", marks=pytest.mark.slow),
        pytest.param("factors", "factors-written:1", marks=pytest.mark.slow),
        pytest.param("factors", "factors-state:1", marks=pytest.mark.slow),
        pytest.param("factors", "factors-report:1", marks=pytest.mark.slow),
        pytest.param("run", "shard:4", marks=pytest.mark.slow),
    ],
)
def test_kill_9_of_a_stage_leaves_no_worker_no_late_file_and_reruns_clean(
    synced: Path, built: Path, tmp_path: Path, stage: str, point: str
) -> None:
    root = copy_cache(synced, tmp_path)
    if stage == "factors":  # the PIT tables are the factor step's input
        shutil.copytree(built / "data" / "pit", root / "pit")
        shutil.copytree(built / "data" / "state", root / "state", dirs_exist_ok=True)
    config = str(stage_config(tmp_path))
    ah_killed("--config", config, *COMMANDS[stage], cwd=tmp_path, root=root,
              env={"AH_TEST_CRASH_AT": point})  # fmt: skip

    rerun = run_stage(tmp_path, stage)
    _, err = rerun.communicate(timeout=300)
    if stage == "run":  # its exit status also judges the data's age against today
        assert "stage pit: success" in err, err
    else:
        assert rerun.returncode == 0, err
    clean = {k: v for k, v in outputs(built / "data").items() if k.split("/")[0] != "factors"}
    if stage == "factors":
        clean = outputs(built / "data")
    assert_same_outputs(root, clean)


@pytest.mark.parametrize("stage", ["pit", "factors", "load"])
def test_a_second_instance_of_a_stage_is_refused_naming_the_holder(
    tmp_path: Path, stage: str
) -> None:
    config = stage_config(tmp_path)
    locks = FileLocks(CacheLayout(tmp_path / "data"))
    locks.acquire([f"stage.{stage}"])
    try:
        args = {"pit": ("pit",), "factors": ("factors", "p"), "load": ("load",)}[stage]
        out = ah("--config", str(config), *args, cwd=tmp_path)
    finally:
        locks.release()
    assert out.returncode == 4, out.stderr
    line = out.stderr.strip()
    assert "\n" not in line
    assert f"stage {stage} is being run by pid {os.getpid()} on " in line
    assert " since 20" in line


def test_a_killed_sync_shows_interrupted_with_when_and_where(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(stocks=20)
    config = write_config(tmp_path, served.url)
    args = ("sync", "daily", "--start", START.isoformat())
    crashed = ah("--config", str(config), *args, cwd=tmp_path, env={"AH_TEST_CRASH_AT": "state:2"})
    assert crashed.returncode == -signal.SIGKILL
    state_dir = tmp_path / "data" / "state"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    shown = ah("--config", str(config), "state", "show", "daily", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "status: interrupted" in shown.stdout
    assert "status: running" not in shown.stdout
    assert re.search(r"reason: pid \d+ on \S+ stopped without finishing \(started 20", shown.stdout)
    holder = FileLocks(CacheLayout(tmp_path / "data"))
    holder.acquire(["daily"])  # a live holder: the same state reads as running
    try:
        shown = ah("--config", str(config), "state", "show", "daily", cwd=tmp_path)
    finally:
        holder.release()
    assert "status: running" in shown.stdout


def raw_outputs(root: Path) -> dict[str, pl.DataFrame]:
    """Every raw, PIT and factor file without `_fetched_at`, rows in a canonical order."""
    found = {}
    for layer in ("raw", *OUTPUT_LAYERS):
        for path in sorted((root / layer).rglob("*.parquet")):
            frame = pl.read_parquet(path)
            frame = frame.drop([c for c in frame.columns if c == "_fetched_at"])
            found[str(path.relative_to(root))] = frame.sort(frame.columns)
    return found


def files_line(health: str) -> str:
    """The `files` line of `ah health` (its other checks judge freshness against today)."""
    return next(line for line in health.splitlines() if line.startswith("files "))


def test_damaged_partitions_and_state_are_reported_survived_and_repaired(
    built: Path, tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()  # the market the shared cache was synced from
    config = write_config(tmp_path, served.url)
    root = copy_cache(built, tmp_path)
    clean = raw_outputs(built / "data")
    raw_part = sorted((root / "raw" / "daily").rglob("*.parquet"))[-2]
    pit_part = sorted((root / "pit" / "balance").glob("part-*.parquet"))[3]
    state_doc = root / "state" / "tasks" / "daily.json"
    stage_docs = [root / "state" / "pit.json", root / "state" / "factors.json"]
    damaged = [raw_part, pit_part, state_doc, *stage_docs]
    for path in damaged:
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    names = [str(p.relative_to(root)) for p in damaged]

    health = ah("--config", str(config), "health", cwd=tmp_path)
    assert health.returncode == 1
    verify = ah("--config", str(config), "verify", "--skip-sink", cwd=tmp_path)
    assert verify.returncode == 1
    for name in names:
        assert name in files_line(health.stdout), name
        assert name in verify.stdout, name

    two = {"AH_RUN_WORKERS": "2"}
    run = ah("--config", str(config), "run", "--stages", "pit,factors", cwd=tmp_path, env=two)
    assert "Traceback" not in run.stderr
    reports = list((root / "reports").glob("*.html"))
    assert reports, run.stdout[-2000:] + run.stderr[-2000:]
    assert "quarantined" in run.stdout
    alerts = json.loads(sorted((root / "reports").glob("sync-*.json"))[-1].read_text())["alerts"]
    assert {(a["kind"], a["subject"]) for a in alerts} >= {("damaged_file", "raw.daily")}
    assert "ALERT damaged_file raw.daily" in run.stderr

    served.sim.reset_calls()
    repair = ah("--config", str(config), "repair", cwd=tmp_path, env=two)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "repair: cache whole" in repair.stdout
    # daily.json was rebuilt from raw/: only the lost month and the refresh window
    synced_days = json.loads(sorted((root / "reports").glob("sync-*.json"))[-1].read_text())
    assert 15 < synced_days["tasks"][0]["units_total"] < 30, synced_days["tasks"]
    assert served.sim.calls["daily"] <= 4
    got = raw_outputs(root)
    assert sorted(got) == sorted(clean)
    for name, frame in clean.items():
        assert got[name].equals(frame), name
    health = ah("--config", str(config), "health", cwd=tmp_path)
    assert files_line(health.stdout).split()[1] == "ok", health.stdout
    assert ah("--config", str(config), "verify", "--skip-sink", cwd=tmp_path).returncode == 0


def test_a_stray_pit_delta_is_named_by_verify_and_mended_by_repair(
    built: Path, tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    config = write_config(tmp_path, served.url)
    root = copy_cache(built, tmp_path)
    clean = raw_outputs(built / "data")
    folder = root / "pit" / "indicators"
    stray = folder / "delta-000099-00-00.parquet"  # e.g. restored from an older copy
    shutil.copyfile(sorted(folder.glob("part-*.parquet"))[0], stray)  # its rows twice

    verify = ah("--config", str(config), "verify", "--skip-sink", cwd=tmp_path)
    assert verify.returncode == 1 and "FAIL stray" in verify.stdout, verify.stdout
    assert "pit/indicators/delta-000099-00-00.parquet" in verify.stdout
    repair = ah("--config", str(config), "repair", cwd=tmp_path, env={"AH_RUN_WORKERS": "2"})
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "rebuilt PIT: 64 buckets" in repair.stdout and "repair: cache whole" in repair.stdout

    assert not stray.exists()
    got = raw_outputs(root)
    assert sorted(got) == sorted(clean)
    for name, frame in clean.items():
        assert got[name].equals(frame), name
    assert ah("--config", str(config), "verify", "--skip-sink", cwd=tmp_path).returncode == 0


@pytest.mark.postgres
@pytest.mark.parametrize(
    "point",
    [
        "load-commit:3",  # inside a partition's transaction, before COMMIT
        pytest.param("load-ddl:2", marks=pytest.mark.slow),  # a table made, no rows yet
        # a new table's parallel streams committed to its staging table, not in place
        pytest.param("load-staged:1", marks=pytest.mark.slow),
        pytest.param("load-partition:17", marks=pytest.mark.slow),  # right after a COMMIT
        pytest.param("load-table:3", marks=pytest.mark.slow),  # a table done, others not
        pytest.param("load-report:1", marks=pytest.mark.slow),  # loaded, no report yet
    ],
)
def test_kill_9_of_a_load_then_a_rerun_equals_the_cache(
    built: Path, tmp_path: Path, pg_url: str, point: str
) -> None:
    root = copy_cache(built, tmp_path)
    config = stage_config(tmp_path)
    database = f'[database]\nurl = "{pg_url}"\nload_streams = 2\n'  # new tables in 2 streams
    config.write_text(config.read_text() + database)
    ah_killed("--config", str(config), "load", cwd=tmp_path, root=root,
              env={"AH_TEST_CRASH_AT": point})  # fmt: skip
    rerun = ah("--config", str(config), "load", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    loaded = [
        f"{layer}.{p.name}"
        for layer in OUTPUT_LAYERS
        for p in (tmp_path / "data" / layer).iterdir()
    ]
    verify = ah("--config", str(config), "verify", *loaded, cwd=tmp_path)
    assert "drift" not in verify.stdout, verify.stdout
    assert verify.returncode == 0, verify.stdout


@pytest.mark.postgres
def test_postgres_crashing_mid_load_then_a_rerun_equals_the_cache(
    built: Path, tmp_path: Path, crashable_server: PostgresServer
) -> None:
    """The database dies (`pg_ctl stop -m immediate`) while a load is inside a
    partition's transaction: the load fails with one line, and after the server's
    recovery a re-run leaves every table equal to the cache."""
    server = crashable_server
    root = copy_cache(built, tmp_path)
    config = stage_config(tmp_path)
    database = f'[database]\nurl = "{server.url}"\nload_streams = 2\n'
    config.write_text(config.read_text() + database)
    load = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "--config", str(config), "load"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "AH_TEST_CRASH_AT": "load-commit:3:stop"},
    )  # fmt: skip
    wait_stopped(load, "its third partition")
    server.crash()
    continue_after_crash(load, server.url.split(":")[2].split("@")[0])  # the password
    server.start()
    rerun = ah("--config", str(config), "load", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    loaded = [f"{layer}.{p.name}" for layer in OUTPUT_LAYERS for p in (root / layer).iterdir()]
    verify = ah("--config", str(config), "verify", *loaded, cwd=tmp_path)
    assert "drift" not in verify.stdout, verify.stdout
    assert verify.returncode == 0, verify.stdout


def test_sync_full_replaces_an_unreadable_partition(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(stocks=20)
    config = write_config(tmp_path, served.url)
    args = ("--config", str(config), "sync", "daily", "--start", START.isoformat())
    assert ah(*args, cwd=tmp_path).returncode == 0
    part = sorted((tmp_path / "data" / "raw" / "daily").rglob("*.parquet"))[3]
    part.write_bytes(part.read_bytes()[:64])
    again = ah(*args, "--full", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert cache_rows(tmp_path / "data", "daily") == truth_rows(served.sim, "daily", START)
    moved = list((tmp_path / "data" / "quarantine" / "raw" / "daily").rglob("*.bad"))
    assert [p.name.split(".")[0] for p in moved] == [part.stem]


def test_verify_names_deleted_pit_and_factor_files_and_the_stages_rebuild_them(
    built: Path, tmp_path: Path
) -> None:
    root = copy_cache(built, tmp_path)
    config = stage_config(tmp_path)
    part = sorted((root / "pit" / "balance").glob("part-*.parquet"))[5]
    part.unlink()
    shutil.rmtree(root / "factors" / "g")
    verify = ah("--config", str(config), "verify", "--skip-sink", cwd=tmp_path)
    assert verify.returncode == 1
    assert f"pit/balance/{part.name} is missing" in verify.stdout
    assert "factors/g is missing" in verify.stdout
    for stage in STAGES:
        proc = run_stage(tmp_path, stage)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert_same_outputs(root, outputs(built / "data"))
    assert ah("--config", str(config), "verify", "--skip-sink", cwd=tmp_path).returncode == 0
