"""Peer test suites run on probkit: seeding, deselection, and the deliberate differences.

``EXPECTED_FAILURES`` maps ``"<peer module>::<test id>"`` to the reason probkit fails that
test on purpose; each is marked ``xfail(strict=True)``, so a test that starts to pass must
be removed from the list. The reasons are the differences documented in
``docs/coming_from.rst``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

# hmmlearn's tests draw from numpy's global generator (its own conftest seeds it randomly
# once per session); each test here starts from the same seed, whatever the test order.
SEED = int(os.environ.get("PROBKIT_PEER_SUITE_SEED", "0"))

# Tests that touch no probkit code (the peer's own helper functions and compiled kernels,
# scikit-learn's array-API dispatch): prefixes of the test ids, with the reason.
_HMMC = "calls hmmlearn's compiled forward-backward / Viterbi kernels directly"
_SK_PRIVATE = "tests a private scikit-learn helper function, not the estimator"
NOT_RUN = {
    "hmmlearn.tests.test_base::TestBaseAgainstWikipedia::test_do_": _HMMC,
    **{f"sklearn.mixture.tests.test_gaussian_mixture::{name}": _SK_PRIVATE
       for name in ("test_suffstat_sk_full", "test_suffstat_sk_tied", "test_suffstat_sk_diag",
                    "test_gaussian_suffstat_sk_spherical", "test_compute_log_det_cholesky",
                    "test_gaussian_mixture_log_probabilities")},
    **{f"sklearn.mixture.tests.test_bayesian_mixture::{name}": _SK_PRIVATE
       for name in ("test_log_dirichlet_norm", "test_log_wishart_norm")},
    "sklearn.mixture.tests.test_gaussian_mixture::test_gaussian_mixture_array_api_compliance":
        "scikit-learn's array-API dispatch (skipped by scikit-learn itself without array-api-compat)",
    "sklearn.mixture.tests.test_gaussian_mixture::test_gaussian_mixture_raises_where_array_api_not_implemented":
        "scikit-learn's array-API dispatch (skipped by scikit-learn itself without array-api-compat)",
}

_VI = "hmmlearn.tests.test_variational_gaussian::"


def _sampler_stream(value):
    return ("the expected value is a property of hmmlearn's random stream: probkit samples the state path first "
            "and the emissions after it, so the same random_state draws other sequences (fitting the compat model "
            f"on hmmlearn's sample gives {value}: tests/compat/test_hmmlearn_api.py)")


EXPECTED_FAILURES: dict[str, str] = {
    **{f"{_VI}{cls}::test_fit_mcgrory_titterington1d[{impl}]": _sampler_stream(value)
       for cls, value in (("TestFull", 1.4105853), ("TestDiagonal", 1.4105853), ("TestTied", 1.4774256),
                          ("TestSpherical", 1.4105853))
       for impl in ("scaling", "log")},
    **{f"hmmlearn.tests.test_gmm_hmm_multisequence::test_gmmhmm_multi_sequence_fit_invariant_to_sequence_ordering"
       f"[{impl}-diag]": "EM reaches a different local optimum for one of the six sequence orders: probkit's k-means "
                         "initialisation draws its seeds from one random stream (hmmlearn reseeds every k-means "
                         "call); started from hmmlearn's initial parameters, probkit's EM reaches the same optimum "
                         "for all six orders (tests/compat/test_hmmlearn_api.py)"
       for impl in ("scaling", "log")},
    "hmmlearn.tests.test_gmm_hmm_new::TestGMMHMM_MultiSequence::test_chunked[full]":
        "fits on one sequence and on five chunks of it are different problems; after 10 iterations of probkit's "
        "exact M-step their covariances differ by 1.8e-3 (hmmlearn's generalised M-step: 0.9e-3) against the "
        "test's 1e-3 tolerance",
    "hmmlearn.tests.test_gaussian_hmm::TestGaussianHMMWithSphericalCovars::test_underflow_from_scaling[scaling]":
        "hmmlearn's scaling forward pass raises on underflow; probkit's recomputes the affected sequence in "
        "log space, so the fit succeeds",
    # scikit-learn
    "sklearn.mixture.tests.test_gaussian_mixture::test_check_weights":
        "scikit-learn's message prints the minimum weight as 'max value' and the maximum as 'min value' (the test "
        "matches that); probkit prints them the right way round",
    "sklearn.mixture.tests.test_gaussian_mixture::test_gaussian_mixture_setting_best_params":
        "with reg_covar=0 two components collapse onto single points after one step: their variance is zero up "
        "to rounding (scikit-learn's rounding leaves 4e-16 > 0); probkit's statistics leave no positive variance "
        "and it reports the ill-defined covariance",
    **{f"sklearn.mixture.tests.test_gaussian_mixture::test_gaussian_mixture_precisions_init[{ct}]":
       "calls scikit-learn's private GaussianMixture._set_parameters"
       for ct in ("full", "tied", "diag", "spherical")},
    "sklearn.mixture.tests.test_gaussian_mixture::test_gaussian_mixture_all_init_does_not_estimate_gaussian_"
    "parameters": "counts the calls of scikit-learn's private _estimate_gaussian_parameters, which probkit does not "
                  "use (probkit does not estimate them either when all initial parameters are given)",
    "sklearn.mixture.tests.test_bayesian_mixture::test_compare_covar_type":
        "calls scikit-learn's private BayesianGaussianMixture._initialize_parameters and _m_step",
}


_NOT_RUN_PREFIXES = tuple(NOT_RUN)


def _key(item):
    label = getattr(item.module, "PEER_TEST_MODULE", None)
    if label is None:
        return None
    return label + "::" + item.nodeid.split("::", 1)[1]


def pytest_collection_modifyitems(config, items):
    kept, deselected = [], []
    for item in items:
        key = _key(item) if isinstance(item, pytest.Function) else None
        if key is not None and key.startswith(_NOT_RUN_PREFIXES):
            deselected.append(item)
            continue
        if key in EXPECTED_FAILURES:
            item.add_marker(pytest.mark.xfail(reason=EXPECTED_FAILURES[key], strict=True))
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True)
def _seed_global_generators():
    np.random.seed(SEED)
    random.seed(SEED)


# scikit-learn's tests take these fixtures from scikit-learn's own conftest (defaults: float64, seed 42).
@pytest.fixture
def global_dtype():
    return np.float64


@pytest.fixture
def global_random_seed():
    return 42


@pytest.fixture(autouse=True)
def _one_native_thread():
    # The suites run k-means hundreds of times on a few hundred rows; OpenMP threads only add
    # start-up and spin-wait time there (results do not depend on the thread count).
    with threadpool_limits(limits=1):
        yield
