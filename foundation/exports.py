"""Package surfaces that cost nothing until used.

A package's `__init__` names its public surface in `__all__` and maps each name to the
module that defines it; the module is imported on first access (PEP 562), so `import
cache.layout` or `ah --version` does not drag in DuckDB, Polars or the simulator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, resolving each name of `table` from the
    module it names (`{"run_sync": "pipeline.sync.runner"}`)."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
