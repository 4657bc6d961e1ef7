"""Warnings raised inside probkit name the user's line (probkit.utils._warnings.warn_user everywhere).

Truth: the file and line recorded by the warnings module, against this file.
"""

import ast
import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import probkit
from probkit import GaussianHMM, GaussianMixture, LinearGaussianSSM
from probkit.distributions import StudentT

PACKAGE = os.path.dirname(os.path.abspath(probkit.__file__))


def test_no_module_calls_warnings_warn_directly():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            if path.endswith(os.path.join("utils", "_warnings.py")):
                continue
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "warn"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "warnings"):
                    offenders.append(f"{os.path.relpath(path, PACKAGE)}:{node.lineno}")
    assert not offenders, "use probkit.utils._warnings.warn_user: " + ", ".join(offenders)


def test_convergence_warnings_point_at_the_callers_line():
    X = np.random.RandomState(0).standard_t(3, size=(200, 1))
    cases = [
        lambda: GaussianMixture(3, max_iter=1, random_state=0).fit(X),
        lambda: GaussianHMM(3, n_iter=1, random_state=0).fit(X),
        lambda: StudentT(max_iter=1).fit(X[:, 0]),
        lambda: LinearGaussianSSM(1, n_iter=2, random_state=0).fit(X),
    ]
    for case in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            case()
        relevant = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        assert relevant, case
        assert all(w.filename == __file__ for w in relevant), [(w.filename, w.lineno) for w in relevant]
