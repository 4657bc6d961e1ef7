"""The ``>>>`` examples in the docstrings of the backbones and their layers run as shown."""

import doctest
import importlib

import pytest

MODULES = [
    "probkit.neural.backbones",
    "probkit.neural.layers.base",
    "probkit.neural.layers.recurrent",
    "probkit.neural.layers.mamba",
    "probkit.neural.layers.rwkv",
    "probkit.neural.layers.gated_cnn",
    "probkit.neural.layers.transformer",
    "probkit.neural.layers.s4d",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
