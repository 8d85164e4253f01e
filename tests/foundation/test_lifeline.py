"""A bound worker ends when its parent is killed, by the watchdog alone (the portable
path, without the Linux death signal), and refuses to write meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from foundation.lifeline import ParentGoneError, check_parent, parent_gone

ROOT = Path(__file__).resolve().parents[2]
PARENT = """
import multiprocessing, sys, time
from pathlib import Path

def worker(beat: str) -> None:
    import os
    from foundation.lifeline import bind_to_parent
    bind_to_parent(death_signal=False)
    Path(beat + ".pid").write_text(str(os.getpid()))
    while True:
        Path(beat).write_text(str(time.time()))
        time.sleep(0.05)

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=worker, args=(sys.argv[1],))
    child.start()
    child.join()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_the_watchdog_ends_a_worker_whose_parent_was_killed(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    script = tmp_path / "parent.py"  # spawn re-imports the main module: a file, not -c
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(beat)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not beat.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat.exists(), "the worker never started"
    child = int(Path(f"{beat}.pid").read_text())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    time.sleep(1.5)
    assert not alive(child), "the worker outlived its parent"
    last = beat.stat().st_mtime_ns
    time.sleep(0.3)
    assert beat.stat().st_mtime_ns == last


def test_an_unbound_process_may_write() -> None:
    assert not parent_gone()
    check_parent("anything")  # no error outside a pool worker
    assert issubclass(ParentGoneError, Exception)
