"""Every product module imports where POSIX-only modules do not exist (Windows).

A child interpreter refuses `fcntl` and `resource` (and forgets them if already loaded),
then imports cli.py and every module of the layer packages; `ah --version` must answer.
"""

from __future__ import annotations

import subprocess
import sys

from tests.foundation.product import ROOT, module_name, product_files

POSIX_ONLY = ("fcntl", "resource")

CHILD = """
import importlib, importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ImportError(f"No module named {name!r} (refused: not on this platform)")
        return None

sys.meta_path.insert(0, Refuse())
for name in BLOCKED:
    sys.modules.pop(name, None)
failed = []
for module in sys.argv[2:]:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        failed.append(f"{module}: {exc}")
import cli
code = cli.main(["--version"])
leaked = sorted(BLOCKED & set(sys.modules))
print("\\n".join(failed) or "all imported", code, leaked, sep="\\n")
"""


def test_every_module_imports_without_posix_only_modules() -> None:
    modules = [module_name(p) for p in product_files()]
    assert "cache.locks" in modules and "pipeline.ops.health" in modules
    out = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(POSIX_ONLY), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("alphahome "), out  # `ah --version` printed
    assert out[1:] == ["all imported", "0", "[]"], "\n".join(out)
