"""AlphaHome's script flags on `ah sync`, `ah state`, `ah tasks` and `ah pit`, each feeding
its config key above the file and the environment (flags are the top layer)."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

from foundation.config import load_settings
from tests.sync.conftest import START, Served, ah, write_config


def test_flags_sit_above_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "alphahome.toml"
    config.write_text('[run]\nbatch_size = 3\nmax_retries = 1\n[state]\ndir = "elsewhere"\n')
    env = {"AH_RUN_BATCH_SIZE": "5", "AH_STATE_BACKEND": "files"}
    flags = {"run.batch_size": 9, "state.backend": "postgres", "state.dir": tmp_path / "s"}
    settings = load_settings(config, env=env, flags=flags)
    assert settings.run.batch_size == 9 and settings.origins["run.batch_size"] == "flag"
    assert settings.state.backend == "postgres" and settings.state.dir == tmp_path / "s"
    assert settings.run.max_retries == 1 and settings.origins["run.max_retries"] == "file"
    assert load_settings(config, env=env).run.batch_size == 5


def test_batch_size_and_state_dir_on_the_command_line(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(stocks=20)
    config = write_config(tmp_path, served.url)
    state = tmp_path / "state-elsewhere"
    args = ("--config", str(config), "sync", "weekly", "--start", START.isoformat())
    flags = ("--batch-size", "4", "--state-dir", str(state))
    # weekly for 20 stocks: one call per stock, committed four at a time by the flag
    crashed = ah(*args, *flags, cwd=tmp_path, env={"AH_TEST_CRASH_AT": "state:3"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(json.loads((state / "tasks/weekly.json").read_text())["plan_done"]) == 8
    assert not (tmp_path / "data/state/tasks").exists()  # the state went to --state-dir
    assert (state / "locks/weekly.lock").exists()
    shown = ah("--config", str(config), "state", "show", "--state-dir", str(state), "--json",
               cwd=tmp_path)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert [doc["task"] for doc in json.loads(shown.stdout)] == ["weekly"]
    served.sim.reset_calls()
    resumed = ah(*args, "--state-dir", str(state), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert served.sim.calls["weekly"] == 20 - 8  # resumed from the moved state


def test_max_retries_and_retry_delay_on_the_command_line(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    def failing_sync(*flags: str) -> tuple[Served, str]:
        served = serve(stocks=20, fault_rate=1.0, slow_response_s=0.0)  # every request fails
        config = write_config(tmp_path, served.url)  # the file says max_retries = 8
        out = ah("--config", str(config), "--log-level", "DEBUG", "sync", "stock_basic", *flags,
                 cwd=tmp_path)  # fmt: skip
        assert out.returncode != 0
        return served, out.stderr

    served, _ = failing_sync("--max_retries", "2", "--retry-delay", "0")
    assert served.sim.calls["trade_cal"] == 3  # one call and two retries
    served, log = failing_sync("--max-retries", "1", "--retry_delay", "2")
    assert served.sim.calls["trade_cal"] == 2
    delays = [float(d) for d in re.findall(r"; retry 1 in ([\d.]+) s", log)]
    assert delays and all(1.0 <= d <= 3.0 for d in delays), log[-500:]  # 2 s, jittered


def test_use_db_state_selects_the_postgres_backend(tmp_path: Path) -> None:
    out = ah("sync", "daily", "--source", "sim", "--use-db-state", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: state.backend = 'postgres' needs database.url (or DATABASE_URL)"
    )
    out = ah("tasks", "--use-db-state", cwd=tmp_path)
    assert out.returncode == 2 and "state.backend = 'postgres'" in out.stderr


def test_pit_parallel_flag_and_unknown_target(tmp_path: Path) -> None:
    out = ah("pit", "--parallel", "--executor", "inline", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--parallel" in out.stderr
    out = ah("pit", "--target", "balance,cashflow", cwd=tmp_path)
    assert out.returncode == 2 and "'cashflow'" in out.stderr
