"""Docstrings assembled from shared fragments are complete and state each signature's own defaults."""

import ast
import importlib
import inspect
import pkgutil
import re

import pytest

import probkit
from probkit.utils._docstrings import DocFragments

DOCS = DocFragments(
    parameters={"loop": ["n_iter : int, default=$n_iter\n    Iterations.",
                         "tol : float, default=$tol\n    Threshold.",
                         "a, b : float, default=$a\n    Two at once."]},
    sections={"returns": "Returns\n-------\nfloat"},
)


def test_entries_follow_the_signature_of_a_function_and_of_a_class():
    @DOCS.fill
    def run(n_iter=5, tol=1e-4):
        """Run.

        Parameters
        ----------
        %(loop)s

        %(returns)s
        """

    # a, b is left out: ``run`` takes neither; powers of ten below 0.01 keep the form they are written in
    assert inspect.getdoc(run) == ("Run.\n\nParameters\n----------\nn_iter : int, default=5\n    Iterations.\n"
                                   "tol : float, default=1e-4\n    Threshold.\n\nReturns\n-------\nfloat")

    @DOCS.fill
    class Model:
        """Model.

        Parameters
        ----------
        %(loop)s
        """

        def __init__(self, a=0.5, b=2.0, tol=0.003):
            pass

        def score(self, X):
            """Score.

            %(returns)s
            """

    assert inspect.getdoc(Model) == ("Model.\n\nParameters\n----------\ntol : float, default=0.003\n    Threshold.\n"
                                     "a, b : float, default=0.5\n    Two at once.")
    assert inspect.getdoc(Model.score) == "Score.\n\nReturns\n-------\nfloat"


def test_a_misspelt_fragment_fails_at_decoration():
    def run():
        """Run.

        %(retruns)s
        """

    with pytest.raises(KeyError, match="retruns"):
        DOCS.fill(run)


def _documented():
    """Every class and function defined in probkit's modules, with its methods, that has a docstring."""
    for info in pkgutil.walk_packages(probkit.__path__, "probkit."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            # DocFragments' own docstring shows unfilled fragments
            if getattr(obj, "__module__", None) != info.name or obj is DocFragments:
                continue
            if inspect.isfunction(obj) and obj.__doc__:
                yield obj
            elif inspect.isclass(obj) and obj.__doc__:
                yield obj
                yield from (m for m in vars(obj).values() if inspect.isfunction(m) and m.__doc__)


def test_every_docstring_is_filled():
    for obj in _documented():
        doc = inspect.getdoc(obj)
        assert not re.search(r"^\s*%\(\w+\)s\s*$", doc, flags=re.M), f"unfilled placeholder in {obj.__qualname__}"
        assert not re.search(r"default=\$", doc), f"unfilled default in {obj.__qualname__}"


def test_every_class_docstring_states_its_own_defaults():
    checked = 0
    for cls in filter(inspect.isclass, _documented()):
        doc = inspect.getdoc(cls)
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if param.default is inspect.Parameter.empty:
                continue
            # single-parameter entries whose default is written as a literal
            for match in re.finditer(rf"^{name} : [^\n]*?, default=([^\n]*)$", doc, flags=re.M):
                try:
                    stated = ast.literal_eval(match.group(1))
                except (ValueError, SyntaxError):
                    continue
                assert stated == param.default and type(stated) is type(param.default), (
                    f"{cls.__module__}.{cls.__qualname__}: {name} documented default={match.group(1)}, "
                    f"signature default={param.default!r}")
                checked += 1
    assert checked > 400
