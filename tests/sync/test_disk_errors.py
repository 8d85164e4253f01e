"""A disk that refuses writes during `ah sync` (a file-size limit on the process, which
fails writes with EFBIG as a full disk fails them with ENOSPC): one line naming the
path, a non-zero exit, no traceback, the data already there intact, and a later run
completes."""

from __future__ import annotations

import datetime as dt
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from foundation.config import load_settings
from pipeline.sync.runner import SyncRequest, run_sync
from tests.cli_runner import user_environment
from tests.sync.conftest import ROOT, Served, cache_rows, write_config
from tests.sync.reference import truth_rows

START = dt.date(2024, 1, 1)


def ah_limited(
    config: Path, *args: str, max_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if max_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    env = user_environment(None)
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "--config", str(config), *args],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=180,
        preexec_fn=limit, check=False,
    )  # fmt: skip


def test_a_refused_write_is_one_line_and_keeps_the_data(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    config = write_config(tmp_path, served.url)
    data = tmp_path / "data"
    settings = load_settings(config, env={})
    first = run_sync(settings, SyncRequest(tasks=("weekly",), start=START, progress=False))
    assert first.exit_code == 0
    weekly = cache_rows(data, "weekly")
    refused = ah_limited(
        config, "sync", "daily", "weekly", "--start", f"{START:%Y%m%d}", max_bytes=8192
    )
    assert refused.returncode == 1, refused.stderr
    output = refused.stdout + refused.stderr
    assert "Traceback" not in output and 'File "' not in output
    last = refused.stderr.splitlines()[-1]
    assert last.startswith(f"error: cannot write {data}") and "file size limit" in last
    assert "daily: failed (StorageError: cannot write" in refused.stderr
    assert cache_rows(data, "weekly") == weekly
    assert not [p for p in data.rglob("*") if p.name.startswith(".") and p.is_file()]
    again = run_sync(settings, SyncRequest(tasks=("daily",), start=START, progress=False))
    assert again.exit_code == 0
    assert cache_rows(data, "daily") == truth_rows(served.sim, "daily", START)
