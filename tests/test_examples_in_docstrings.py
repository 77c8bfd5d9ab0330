"""The examples in the docstrings run, and every public object has a one-line summary.

One doctest test per module of the installed package (found with ``pkgutil.walk_packages``),
so a broken example points at its module; one summary test per module that defines a public object.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import torch_lottery


def _module_names() -> list[str]:
    names = ["torch_lottery"]
    broken: list[str] = []  # packages walk_packages could not import: their test fails on import
    for info in pkgutil.walk_packages(torch_lottery.__path__, prefix="torch_lottery.", onerror=broken.append):
        names.append(info.name)
    return sorted(set(names + broken))


MODULES = _module_names()


def _public_objects() -> dict[str, object]:
    """The classes and functions of ``torch_lottery.__all__`` (constants and ``__version__`` aside)."""
    out = {}
    for name in torch_lottery.__all__:
        obj = getattr(torch_lottery, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            out[name] = obj
    return out


PUBLIC = _public_objects()
HOMES = sorted({obj.__module__ for obj in PUBLIC.values()})  # the modules that define an object of __all__


def _summary_problem(obj: object) -> str | None:
    """Return why ``obj``'s own docstring lacks a one-line summary, or None if it has one."""
    raw = obj.__doc__  # not inspect.getdoc: a docstring inherited from a base class does not count
    if not raw or not raw.strip():
        return "has no docstring"
    lines = inspect.cleandoc(raw).splitlines()
    first = lines[0]
    if not first.strip():
        return "docstring starts with a blank line"
    if not first.rstrip().endswith("."):
        return f"summary line does not end a sentence (it goes on to the next line?): {first!r}"
    if len(lines) > 1 and lines[1].strip():
        return f"summary is not followed by a blank line: {first!r} / {lines[1]!r}"
    return None


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    if module_name == "torch_lottery.lightning":
        pytest.importorskip("lightning")  # the module of the optional extra
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module_name}"
    source = inspect.getsource(module)
    if ">>>" in source:
        assert result.attempted > 0, f"{module_name} has examples but doctest found none"


@pytest.mark.parametrize("module_name", HOMES)
def test_public_objects_have_a_one_line_summary(module_name):
    module = importlib.import_module(module_name)
    problems = [
        f"torch_lottery.{name} {problem}"
        for name, obj in PUBLIC.items()
        if obj.__module__ == module.__name__ and (problem := _summary_problem(obj)) is not None
    ]
    assert problems == []


def test_every_public_object_is_checked_in_some_module():
    homes = {name: obj.__module__ for name, obj in PUBLIC.items()}
    assert set(homes.values()) <= set(MODULES), homes
    # The public API is the documented core; a sanity check that the walk saw it.
    for name in ("LotteryMagnitude", "global_magnitude", "RewindPoint", "random_reinit"):
        assert name in PUBLIC


def test_summary_check_catches_bad_docstrings():
    """Guards the checker itself."""

    def none():
        pass

    def wrapped():
        """Return a value that is described over
        two lines without a break."""

    def good():
        """Return one thing.

        More text.
        """

    class Child(torch_lottery.RewindPoint):
        pass

    assert _summary_problem(none) == "has no docstring"
    assert "goes on" in _summary_problem(wrapped)
    assert _summary_problem(good) is None
    assert _summary_problem(Child) == "has no docstring"
