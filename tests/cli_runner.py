"""`ah` as a user runs it: `python cli.py ARGS` in a subprocess, with a clean environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def user_environment(env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without its AH_/TUSHARE/DATABASE variables, plus `env`."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("AH_", "TUSHARE", "DATABASE"))
    }
    return {**clean, **(env or {})}


def ah(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    sigint_ignored: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `ah ARGS` in `cwd` without the caller's AH_/TUSHARE/DATABASE variables;
    `sigint_ignored` starts it as a script's background job is started (SIGINT ignored)."""
    command = [sys.executable, str(ROOT / "cli.py"), *args]
    if sigint_ignored:
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    return subprocess.run(
        command,
        cwd=cwd,
        env=user_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def file_times(root: Path) -> dict[str, int]:
    """Every file under `root` (temporary ones too) with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def ah_killed(
    *args: str, cwd: Path, root: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `ah ARGS` in a session of its own with a crash point set in `env`, check it
    was killed (SIGKILL), then that 2 s later no process of it is alive and no file
    under `root` was written after the kill."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=cwd, env=user_environment(env), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    at_kill = file_times(root)
    time.sleep(2)
    assert not group_alive(proc.pid), "a process of the killed run is still alive"
    assert file_times(root) == at_kill, "a file was written after the kill"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def process_state(pid: int) -> str:
    """The one-letter state of a process (`T` when stopped), from /proc."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_stopped(proc: subprocess.Popen[str], what: str, timeout: float = 120) -> None:
    """Block until `proc` has stopped itself (SIGSTOP at an `AH_TEST_CRASH_AT=...:stop`
    point); a process that ends first, or never stops, fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    while process_state(proc.pid) != "T":
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the process never reached {what}"
        time.sleep(0.05)


def continue_after_crash(proc: subprocess.Popen[str], password: str) -> tuple[str, str]:
    """Let a loader stopped at a crash point go on after its server died: it must fail
    with exactly one `error:` line naming the lost connection, no traceback and no
    password; its stdout and stderr."""
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "lost the connection to PostgreSQL" in errors[0] and "error: unexpected" not in err, err
    assert password not in out + err
    return out, err
