"""Each package names its public surface in `__all__`, and the surface is what it says.

Like httpx's exported-members test: `__all__` is sorted and unique, every name in it
resolves, a lazy surface lists exactly `__all__`, and every class or function that a
package's `__init__` defines or re-exports from its own modules is in `__all__`.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.foundation.product import packages


def test_every_package_is_found() -> None:
    assert {"foundation", "pipeline.sync", "pipeline.sources.simulator", "cache", "sinks"} <= set(
        packages()
    )


@pytest.mark.parametrize("name", packages())
def test_package_surface(name: str) -> None:
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert list(exported) == sorted(set(exported)), "__all__ sorted, no repeats"
    for member in exported:
        assert getattr(package, member, None) is not None, f"{name}.{member} does not resolve"
    if "__getattr__" in vars(package):  # a lazy surface lists exactly what it exports
        assert dir(package) == sorted(exported)
    own = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "") == name
    }
    assert own <= set(exported), (
        f"defined in {name} but not exported: {sorted(own - set(exported))}"
    )


def test_a_lazy_surface_refuses_an_unknown_name() -> None:
    import pipeline

    with pytest.raises(AttributeError, match="no_such_stage"):
        _ = pipeline.no_such_stage
    assert not hasattr(pipeline, "no_such_stage")
