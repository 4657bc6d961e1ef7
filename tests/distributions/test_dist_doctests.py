"""The ``>>>`` examples in the docstrings of probkit.distributions run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "probkit.distributions",
    "probkit.distributions.base",
    "probkit.distributions._sampling",
    "probkit.distributions.normal",
    "probkit.distributions.mvn",
    "probkit.distributions.poisson",
    "probkit.distributions.gamma",
    "probkit.distributions.categorical",
    "probkit.distributions.discrete",
    "probkit.distributions.continuous",
    "probkit.distributions.dirichlet",
    "probkit.distributions.independent",
    "probkit.distributions.priors",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"


def test_every_public_class_and_function_has_an_example():
    import probkit.distributions as dists

    missing = [name for name in dists.__all__
               if callable(getattr(dists, name)) and ">>>" not in (getattr(dists, name).__doc__ or "")]
    assert not missing, f"no >>> example in the docstrings of {missing}"
