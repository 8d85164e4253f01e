"""`ah` as a user runs it: `python cli.py ARGS` in a subprocess, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ah(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `ah ARGS` in `cwd` without the caller's AH_/TUSHARE/DATABASE variables."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("AH_", "TUSHARE", "DATABASE"))
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
