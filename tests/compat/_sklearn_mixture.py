"""scikit-learn's own mixture tests (``sklearn/mixture/tests``) on probkit's mixtures.

``GaussianMixture`` and ``BayesianGaussianMixture`` of :mod:`sklearn.mixture` are replaced by
:class:`probkit.GaussianMixture` and :class:`probkit.mixture.BayesianGaussianMixture` in the
test modules' namespaces (see ``_peer_suites.py``). Tests of scikit-learn's private helper
functions, and its array-API tests, exercise no probkit code and are not run; tests that reach
into scikit-learn's private estimator methods, and behaviour probkit does differently on
purpose, are listed in ``conftest.py`` with the reason.
"""

from __future__ import annotations

from probkit.mixture import BayesianGaussianMixture, GaussianMixture
from tests.compat._peer_suites import expose, load_peer_test_module

IMPORT_TIME = {
    ("sklearn.mixture", "GaussianMixture"): GaussianMixture,
    ("sklearn.mixture", "BayesianGaussianMixture"): BayesianGaussianMixture,
}


def load(name, namespace):
    """Expose ``sklearn.mixture.tests.<name>`` in ``namespace``, run on probkit."""
    module = load_peer_test_module("sklearn.mixture.tests", name, import_time=IMPORT_TIME, call_time={})
    expose(module, namespace, f"sklearn.mixture.tests.{name}")
