"""The ops commands as an operator runs them: `ah …` in a subprocess, exit codes, output.

Marked slow: each `ah` start imports Polars and PyArrow (about a second on an idle box).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cache.locks import FileLocks
from tests.cli_runner import ah
from tests.ops.conftest import SyntheticCache


@pytest.mark.slow
def test_health_stats_and_verify(synthetic: SyntheticCache, tmp_path: Path) -> None:
    cache = str(synthetic.layout.root)
    out = ah("--cache-dir", cache, "health", "--json", "--stale-days", "1000", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["ok"] is True
    # the synthetic market stops on 2024-06-28: today it is stale
    out = ah("--cache-dir", cache, "health", cwd=tmp_path)
    assert out.returncode == 1 and "data raw.daily" in out.stdout and "FAIL" in out.stdout
    out = ah("--cache-dir", cache, "stats", "--json", cwd=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["datasets"][0]["key"] == "raw.daily"
    broken = next(synthetic.layout.dataset_dir("factors", "g").rglob("*.parquet"))
    broken.write_bytes(broken.read_bytes()[:100])
    out = ah("--cache-dir", cache, "verify", "factors.g", "daily", cwd=tmp_path)
    assert out.returncode == 1 and "FAIL corrupt" in out.stdout and broken.name in out.stdout
    out = ah("--cache-dir", cache, "verify", "factors.g", "daily", "--json", cwd=tmp_path)
    found = json.loads(out.stdout)
    assert out.returncode == 1 and found["ok"] is False
    assert set(found["datasets"]) == {"factors.g", "raw.daily"}
    assert [f["check"] for f in found["findings"]] == ["corrupt"]
    assert broken.name in found["findings"][0]["message"] + str(found["findings"][0]["examples"])
    out = ah("--cache-dir", cache, "verify", "nope", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: no dataset 'nope'")
    # a whole-cache verify is recorded and exported
    out = ah("--cache-dir", cache, "verify", "--skip-sink", cwd=tmp_path)
    assert out.returncode == 1 and "FAIL corrupt" in out.stdout
    metrics = (synthetic.layout.metrics_dir / "alphahome.prom").read_text()
    assert 'alphahome_verify_findings{check="corrupt"} 1' in metrics
    assert 'alphahome_verify_findings{check="gaps"} 0' in metrics
    # --quiet: only what failed or warned, and the verdict
    out = ah("--cache-dir", cache, "health", "--quiet", cwd=tmp_path)
    assert out.returncode == 1 and "data raw.daily" in out.stdout
    assert " ok " not in out.stdout and out.stdout.splitlines()[-1].startswith("health: FAIL")


@pytest.mark.slow
def test_backup_restore_and_schedule(synthetic: SyntheticCache, tmp_path: Path) -> None:
    cache = str(synthetic.layout.root)
    dest = str(tmp_path / "backups")
    out = ah("--cache-dir", cache, "backup", "--dest", dest, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("backup "), out.stderr
    locks = FileLocks(synthetic.layout)
    locks.acquire(["daily"])
    try:
        out = ah("--cache-dir", cache, "restore", "--dest", dest, cwd=tmp_path)
        assert out.returncode == 4 and "task daily is being synced by pid" in out.stderr
    finally:
        locks.release()
    out = ah("--cache-dir", cache, "restore", "--dest", dest, cwd=tmp_path)
    assert out.returncode == 0 and "restored" in out.stdout, out.stderr
    out = ah("--cache-dir", cache, "backup", "verify", "--dest", dest, cwd=tmp_path)
    assert out.returncode == 0 and ": ok, " in out.stdout, out.stderr
    out = ah("--cache-dir", cache, "backup", "list", "--dest", dest, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.count("\n") == 3  # title, header, one snapshot
    out = ah("--cache-dir", cache, "schedule", "--systemd", "--freq", "monthly", cwd=tmp_path)
    assert out.returncode == 0 and "OnCalendar=" in out.stdout and "--freq monthly" in out.stdout
    out = ah("--cache-dir", cache, "schedule", "--write", str(tmp_path / "u"), cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "u" / "alphahome.cron").is_file(), out.stderr
    out = ah("--cache-dir", cache, "schedule", "--due", "weekly", cwd=tmp_path)
    assert out.returncode in (0, 1) and "last trading day of its week" in out.stdout
