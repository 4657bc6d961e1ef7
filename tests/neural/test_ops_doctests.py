"""The ``>>>`` examples in the docstrings of probkit.neural.ops run and give what they show."""

import doctest
import importlib

import pytest

MODULES = ["selective_scan", "wkv", "conv"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"probkit.neural.ops.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
