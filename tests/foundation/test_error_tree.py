"""Every error the product raises is in the one tree (`foundation.errors.AlphahomeError`).

The check reads the source of every product module (cli.py, foundation, pipeline,
factors, sinks, cache), finds each `raise`, resolves what it raises to the object the
imported module binds under that name, and requires an `AlphahomeError` subclass. A
bare `raise`, and raising the exception an `except ... as name` caught (or a value
computed from it, such as the first leaf of an exception group), are re-raises and
pass; constructing a new exception inside an `except` is checked like any other.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from foundation.errors import (
    AlphahomeError,
    AlreadyRunningError,
    AuthenticationError,
    InternalError,
    UsageError,
)
from tests.foundation.product import ROOT, module_name, product_files

# Deliberate exceptions, each with its reason. Keep this list (nearly) empty.
ALLOWED: dict[tuple[str, str], str] = {
    ("pipeline/sources/simulator/transport.py", "httpx.ReadTimeout"): (
        "an httpx transport reports a timeout as httpx does; the Tushare client converts "
        "httpx.TimeoutException into TransientError, and this is how the simulator tests it"
    ),
    ("foundation/exports.py", "AttributeError"): (
        "a module's __getattr__ (PEP 562) must raise AttributeError for an unknown name, "
        "or hasattr() and from-imports break"
    ),
}
CLI_EXITS = (typer.Exit, SystemExit)  # how cli.py ends with a status it chose


@dataclass(frozen=True)
class Raise:
    """One `raise` statement: where, its source text, and what it was found to raise."""

    where: str
    text: str
    problem: str | None  # None: in the tree (or a re-raise)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _caught_names(tree: ast.AST) -> dict[int, set[str]]:
    """For each `raise` inside `except ... as e`: `e` and the names assigned from it there."""
    caught: dict[int, set[str]] = {}
    for handler in ast.walk(tree):
        if not isinstance(handler, ast.ExceptHandler) or handler.name is None:
            continue
        tainted = {handler.name}
        body = ast.Module(body=handler.body, type_ignores=[])
        for node in ast.walk(body):
            if isinstance(node, ast.Assign) and _names(node.value) & tainted:
                for target in node.targets:
                    tainted |= _names(target)
        for node in ast.walk(body):
            if isinstance(node, ast.Raise):
                caught.setdefault(id(node), set()).update(tainted)
    return caught


_MISSING = object()


def _resolve(expr: ast.expr, module: types.ModuleType) -> object:
    """The object `expr` (a name or dotted name) denotes in `module`, or `_MISSING`."""
    if isinstance(expr, ast.Name):
        value = getattr(module, expr.id, _MISSING)
        return getattr(builtins, expr.id, _MISSING) if value is _MISSING else value
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, module)
        return _MISSING if base is _MISSING else getattr(base, expr.attr, _MISSING)
    return _MISSING


def _returned_class(func: object) -> object:
    """The class a function's return annotation names (for `raise make_error(...)`)."""
    try:
        hint = typing.get_type_hints(func).get("return", _MISSING)
    except (NameError, TypeError):
        return _MISSING
    return hint


def _in_tree(cls: object, *, cli: bool) -> bool:
    if not isinstance(cls, type):
        return False
    return issubclass(cls, AlphahomeError) or (cli and issubclass(cls, CLI_EXITS))


def check_module(source: str, module: types.ModuleType, where: str) -> list[Raise]:
    """Every `raise` of `source` (the text of `module`), each with its problem or None."""
    tree = ast.parse(source)
    caught = _caught_names(tree)
    cli = where == "cli.py"
    found: list[Raise] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise):
            continue
        text = ast.get_source_segment(source, node) or ast.dump(node)
        here = f"{where}:{node.lineno}"
        if node.exc is None:
            found.append(Raise(here, text, None))  # bare re-raise
            continue
        exc = node.exc
        target = exc.func if isinstance(exc, ast.Call) else exc
        obj = _resolve(target, module)
        label = ast.unparse(target)
        if isinstance(obj, type):
            ok = _in_tree(obj, cli=cli) or (where, label) in ALLOWED
            problem = None if ok else f"raises {obj.__module__}.{obj.__qualname__}"
        elif _names(exc) & caught.get(id(node), set()):
            problem = None  # re-raises what the enclosing `except` caught
        elif callable(obj) and isinstance(exc, ast.Call):
            made = _returned_class(obj)
            ok = _in_tree(made, cli=cli)
            problem = None if ok else f"raises what {label}() returns, annotated {made!r}"
        else:
            problem = f"cannot tell what {label!r} is (raise a class of the tree by name)"
        found.append(Raise(here, text, problem))
    return found


def _load(path: Path) -> types.ModuleType:
    return importlib.import_module(module_name(path))


def all_raises() -> list[Raise]:
    found: list[Raise] = []
    for path in product_files():
        where = str(path.relative_to(ROOT))
        found.extend(check_module(path.read_text("utf-8"), _load(path), where))
    return found


def test_every_raise_in_the_product_raises_a_class_of_the_tree() -> None:
    found = all_raises()
    assert len(found) > 100  # the walk did find the product's raise statements
    bad = [f"{r.where}: {r.text!r} {r.problem}" for r in found if r.problem]
    assert not bad, "raises outside foundation.errors.AlphahomeError:\n" + "\n".join(bad)


def test_the_allowed_exceptions_are_still_needed() -> None:
    texts = {(r.where.split(":")[0], r.text) for r in all_raises()}
    for where, label in ALLOWED:
        assert any(w == where and label in t for w, t in texts), (where, label)


def test_the_check_catches_a_raise_outside_the_tree() -> None:
    source = (
        "from foundation.errors import UsageError\n"
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError('no')\n"
        "    try:\n"
        "        g()\n"
        "    except KeyError as exc:\n"
        "        raise RuntimeError(str(exc)) from exc\n"
        "    except OSError as exc:\n"
        "        raise exc\n"
        "    except TypeError:\n"
        "        raise\n"
        "    raise UsageError('bad')\n"
        "def g():\n"
        "    e = make()\n"
        "    raise e\n"
    )
    module = types.ModuleType("synthetic")
    exec(compile(source, "synthetic", "exec"), module.__dict__)
    problems = {r.text: r.problem for r in check_module(source, module, "synthetic.py")}
    assert problems["raise ValueError('no')"] == "raises builtins.ValueError"
    assert problems["raise RuntimeError(str(exc)) from exc"] == "raises builtins.RuntimeError"
    assert problems["raise exc"] is None and problems["raise"] is None
    assert problems["raise UsageError('bad')"] is None
    assert problems["raise e"] is not None  # a variable not caught here: unknown


def test_every_exception_class_of_the_product_is_in_the_tree() -> None:
    outside = []
    for path in product_files():
        module = _load(path)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and obj.__module__ == module.__name__
                and issubclass(obj, BaseException)
                and not issubclass(obj, AlphahomeError)
            ):
                outside.append(f"{module.__name__}.{name}")
    assert not outside


def test_exit_codes_are_set_only_in_foundation_errors() -> None:
    assert AlphahomeError.exit_code == 1 and InternalError.exit_code == 1
    assert UsageError.exit_code == 2
    assert AuthenticationError.exit_code == 3
    assert AlreadyRunningError.exit_code == 4
    setters = []
    for path in product_files():
        if path == ROOT / "foundation" / "errors.py":
            continue
        module = _load(path)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            cls = getattr(module, node.name, None) if isinstance(node, ast.ClassDef) else None
            if isinstance(node, ast.ClassDef) and inspect.isclass(cls):
                if not issubclass(cls, BaseException):
                    continue  # e.g. a run result carrying the exit status it implies
                for stmt in node.body:
                    targets = (
                        stmt.targets
                        if isinstance(stmt, ast.Assign)
                        else [stmt.target]
                        if isinstance(stmt, ast.AnnAssign)
                        else []
                    )
                    if any(isinstance(t, ast.Name) and t.id == "exit_code" for t in targets):
                        setters.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not setters


@pytest.mark.parametrize(
    ("dotted", "code"),
    [
        ("foundation.config.ConfigError", 2),
        ("pipeline.executor.ExecutorSpecError", 2),
        ("pipeline.pit.step.PitRequestError", 2),
        ("pipeline.pit.step.PitBuildError", 1),
        ("pipeline.sources.simulator.config.SimulatorConfigError", 2),
        ("cache.catalogue.apis.UnknownApiError", 2),
        ("sinks.admin.RenameRefusedError", 2),
        ("pipeline.sources.tushare.errors.AuthError", 3),
        ("cache.locks.LockHeld", 4),
        ("sinks.postgres.LoadError", 1),
    ],
)
def test_each_class_takes_the_exit_code_of_its_kind(dotted: str, code: int) -> None:
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AlphahomeError) and cls.exit_code == code


def test_unknown_api_is_still_a_key_error_with_a_plain_message() -> None:
    from cache.catalogue.apis import UnknownApiError, api_spec

    with pytest.raises(KeyError) as err:
        api_spec("no_such_api")
    assert isinstance(err.value, UnknownApiError)
    assert str(err.value) == "unknown api 'no_such_api'"


def test_the_tree_docstring_names_every_kind() -> None:
    doc = sys.modules["foundation.errors"].__doc__ or ""
    for cls in (AlphahomeError, UsageError, AuthenticationError, AlreadyRunningError):
        assert f"{cls.__name__} " in doc and f" {cls.exit_code} " in doc
