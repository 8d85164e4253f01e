"""`ah --version` and `ah --help` stay light: they import none of the heavy libraries
(the start-up figures are in the bench's `startup` stage; this guards the imports).
A subcommand's help builds typer's parameter adapters, which import pydantic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.foundation.product import ROOT

HEAVY = ("polars", "pyarrow", "duckdb", "numpy", "httpx", "pydantic", "rich.markdown",
         "anyio", "adbc_driver_manager", "foundation.config", "logging.handlers")  # fmt: skip

CHILD = """
import io, sys, contextlib
import cli
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main(sys.argv[1:])
print(code, sorted(m for m in sys.argv[0].split(",") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_nothing_heavy(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.replace("sys.argv[0]", repr(",".join(HEAVY))), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr
