"""The examples in bench's docstrings run and give what they show (found by grep, so a new example runs too)."""

import doctest
import importlib
from pathlib import Path

import pytest

import bench

ROOT = Path(bench.__file__).resolve().parent
WITH_EXAMPLES = sorted(
    ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
    for p in ROOT.rglob("*.py")
    if ">>>" in p.read_text(encoding="utf-8")
)


def test_the_docstring_examples_are_found():
    assert {"bench.harness.stats", "bench.data.base"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>>' but no example ran"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail (see the output above)"
