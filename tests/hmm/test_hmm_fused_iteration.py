"""The fused EM iteration of Gaussian HMMs against the general path.

``GaussianHMM._em_fused_iteration`` runs each Baum-Welch iteration (E-step, Dirichlet MAP
start and transition rows, Gaussian M-step) as one compiled call. The truth is the
general path of the same estimator -- ``_em_expectation`` then ``_em_maximization``, whose
numpy M-step the hmmlearn parity tests check -- run on the same data from the same start:
every parameter and every log-likelihood of the history must agree to float64 rounding,
with default and non-default priors, structural zeros, states without data, several
sequences, inputs above the small-problem size and both forward-backward implementations.
"""

import warnings

import numpy as np
import pytest

from probkit import GaussianHMM
from probkit.em import engine
from probkit.hmm import EmptyStateWarning
from probkit.inference._lazy_numba import numba_backend
from tests.hmm.test_hmm_hmmlearn_parity import gaussian_params, random_chain

pytestmark = [pytest.mark.skipif(numba_backend() is None, reason="numba is not installed"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]

COVARIANCE_TYPES = ("diag", "spherical", "full", "tied")


def start_parameters(covariance_type, k, d, rng):
    startprob, transmat = random_chain(rng, k)
    means, covars = gaussian_params(rng, covariance_type, k, d)
    return {"startprob_": startprob, "transmat_": transmat, "means_": means, "covars_": covars}


def data(k, d, lengths, seed):
    rng = np.random.RandomState(seed)
    centres = rng.normal(0.0, 3.0, (k, d))
    states = rng.randint(k, size=sum(lengths))
    return centres[states] + rng.normal(size=(sum(lengths), d))


def fit_both(options, start, X, lengths, model_class=GaussianHMM):
    """(fused fit, warnings), (general fit, warnings) of ``model_class`` from the same start."""
    owner = next(c for c in model_class.__mro__ if "_em_fused_iteration" in vars(c))
    results = []
    for fused in (True, False):
        model = model_class(init_params="", tol=-np.inf, **options)
        for name, value in start.items():
            setattr(model, name, np.array(value, copy=True))
        calls = []
        original = owner._em_fused_iteration

        def spy(self, data, original=original, fused=fused):
            iteration = original(self, data) if fused else None
            calls.append(iteration is not None)
            return iteration

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            owner._em_fused_iteration = spy
            try:
                model.fit(X, lengths=lengths)
            finally:
                owner._em_fused_iteration = original
        assert calls == [fused]
        results.append((model, [(w.category, str(w.message)) for w in caught]))
    return results


def assert_same_fit(fused, general, names=("startprob_", "transmat_", "means_", "covars_"), *, atol=1e-12,
                    history_rtol=1e-12):
    """The parameters ``names``, the log-likelihood history and the iteration count agree."""
    for name in names:
        a, b = getattr(fused, name), getattr(general, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=atol, err_msg=name)
    np.testing.assert_allclose(fused.monitor_.history, general.monitor_.history, rtol=history_rtol)
    assert fused.n_iter_ == general.n_iter_


@pytest.mark.parametrize("implementation", ["scaling", "log"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_default_priors_match_general_path(covariance_type, implementation):
    k, d, lengths = 3, 2, [120, 80, 50]
    start = start_parameters(covariance_type, k, d, np.random.RandomState(0))
    X = data(k, d, lengths, seed=1)
    (fused, w_fused), (general, w_general) = fit_both(
        dict(n_components=k, covariance_type=covariance_type, implementation=implementation, n_iter=15),
        start, X, lengths)
    assert_same_fit(fused, general)
    assert w_fused == w_general


@pytest.mark.parametrize("implementation", ["scaling", "log"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_large_input_on_one_worker_matches_general_path(covariance_type, implementation, monkeypatch):
    # Above the small-problem size the iteration applies unless forward-backward would split
    # the sequences over several worker threads (buffers kept across iterations, emissions
    # exponentiated by numpy); where it would, the general path threads its steps instead.
    from probkit.inference import _numba_backend
    from probkit.utils import threads

    k, d, lengths = 4, 3, [6000, 4000, 3000]
    assert sum(lengths) * k > _numba_backend._FUSED_MAX_SIZE
    start = start_parameters(covariance_type, k, d, np.random.RandomState(11))
    X = data(k, d, lengths, seed=12)
    options = dict(n_components=k, covariance_type=covariance_type, implementation=implementation, n_iter=4)
    monkeypatch.setitem(threads._settings, "workers", 1)
    (fused, w_fused), (general, w_general) = fit_both(options, start, X, lengths)
    assert_same_fit(fused, general)
    assert w_fused == w_general
    monkeypatch.setitem(threads._settings, "workers", 2)
    model = GaussianHMM(init_params="", **options)
    for name, value in start.items():
        setattr(model, name, np.array(value, copy=True))
    model._check_options()

    def fused_iteration(lengths):
        return model._em_fused_iteration(model._validate_sequences(X, lengths, reset=True, training=True))

    # two workers: three sequences worth threading go the general way; one sequence, which
    # forward-backward never splits, stays on the one-call iteration
    monkeypatch.setattr(_numba_backend, "_MIN_WORK_FOR_THREADS", 0)
    assert fused_iteration(lengths) is None
    assert fused_iteration(None) is not None


PRIORS = {
    "diag": dict(means_prior=np.array([[0.5, -1.0], [1.0, 0.0], [2.0, 1.0]]), means_weight=np.array([0.5, 2.0, 1.0]),
                 covars_prior=np.array([0.1, 0.3, 0.2]), covars_weight=np.array([[2.0, 3.0], [1.5, 1.0], [4.0, 2.5]])),
    "spherical": dict(means_prior=1.0, means_weight=3.0, covars_prior=np.array([0.1, 0.3, 0.2]),
                      covars_weight=np.array([2.0, 3.0, 0.5])),
    "full": dict(means_prior=0.5, means_weight=np.array([0.5, 2.0, 1.0]), covars_prior=np.array([0.1, 0.3, 0.2]),
                 covars_weight=np.array([4.0, 2.0, 6.0])),
    "tied": dict(means_prior=np.array([1.0, -1.0]), means_weight=2.0,
                 covars_prior=np.array([[0.5, 0.1], [0.1, 0.3]]), covars_weight=5.0),
}


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_priors_and_parameter_subsets_match_general_path(covariance_type):
    k, d, lengths = 3, 2, [150]
    start = start_parameters(covariance_type, k, d, np.random.RandomState(2))
    X = data(k, d, lengths, seed=3)
    for params in ("stmc", "tc", "sm", "c"):
        (fused, _), (general, _) = fit_both(
            dict(n_components=k, covariance_type=covariance_type, n_iter=8, params=params,
                 startprob_prior=np.array([2.0, 1.0, 3.0]), transmat_prior=1.5, **PRIORS[covariance_type]),
            start, X, lengths)
        assert_same_fit(fused, general)
        if "s" not in params:
            np.testing.assert_array_equal(fused.startprob_, start["startprob_"])
        if "m" not in params:
            np.testing.assert_array_equal(fused.means_, start["means_"])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_structural_zeros_and_state_without_data_match_general_path(covariance_type):
    # state 2 can never be entered: its statistics are empty, its transition row keeps its values
    k, d, lengths = 3, 2, [60, 40]
    start = start_parameters(covariance_type, k, d, np.random.RandomState(4))
    start["startprob_"] = np.array([0.5, 0.5, 0.0])
    start["transmat_"] = np.array([[0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.2, 0.3, 0.5]])
    X = data(k, d, lengths, seed=5)
    (fused, w_fused), (general, w_general) = fit_both(
        dict(n_components=k, covariance_type=covariance_type, n_iter=5), start, X, lengths)
    assert_same_fit(fused, general)
    assert w_fused == w_general
    assert any(category is EmptyStateWarning and "[2]" in message for category, message in w_fused)
    np.testing.assert_array_equal(fused.transmat_[2], start["transmat_"][2])
    np.testing.assert_array_equal(fused.means_[2], start["means_"][2])
    assert np.all(fused.transmat_[:2, 2] == 0) and fused.startprob_[2] == 0


def test_hmmlearn_compat_model_takes_the_fused_path_with_the_same_result():
    from probkit.compat.hmmlearn import hmm

    k, d, lengths = 2, 2, [200]
    start = start_parameters("full", k, d, np.random.RandomState(6))
    X = data(k, d, lengths, seed=7)
    fits = []
    for fused in (True, False):
        model = hmm.GaussianHMM(k, covariance_type="full", init_params="", n_iter=6, tol=-np.inf)
        for name, value in start.items():
            setattr(model, name, np.array(value, copy=True))
        made = []
        original = model._em_fused_iteration
        model._em_fused_iteration = lambda data: made.append(original(data) if fused else None) or made[-1]
        fits.append(model.fit(X, lengths))
        assert len(made) == 1 and (made[0] is not None) == fused
    np.testing.assert_allclose(fits[0].covars_, fits[1].covars_, rtol=1e-10)
    np.testing.assert_allclose(fits[0].means_, fits[1].means_, rtol=1e-10)
    assert fits[0].covars_.shape == (k, d, d)


def test_general_path_where_the_fused_iteration_does_not_apply(monkeypatch):
    k, d = 2, 1
    X = data(k, d, [100], seed=8)
    X[5, 0] = np.nan
    model = GaussianHMM(k, missing="marginalize", n_iter=2, random_state=0)
    model._check_options()
    assert model._em_fused_iteration(model._validate_sequences(X, None, reset=True, training=True)) is None

    class CustomMstep(GaussianHMM):
        def _mstep_emission(self, stats, post_sum):
            super()._mstep_emission(stats, post_sum)

    custom = CustomMstep(k, n_iter=2, random_state=0)
    custom._check_options()
    X = data(k, d, [100], seed=8)
    assert custom._em_fused_iteration(custom._validate_sequences(X, None, reset=True, training=True)) is None
    # inside distributed EM the statistics are all-reduced between the steps: the hooks run
    reduced = []
    with engine.em_hooks(all_reduce=lambda estep: reduced.append(estep) or estep):
        GaussianHMM(k, n_iter=3, tol=-np.inf, random_state=0).fit(X)
    assert len(reduced) == 3 and all(estep.stats is not None for estep in reduced)


def test_compiled_dirichlet_rows_match_dirichlet_map_rows():
    from probkit.distributions.dirichlet import dirichlet_map_rows
    from probkit.inference import _numba_kernels as nk

    rng = np.random.RandomState(9)
    previous = rng.dirichlet(np.ones(5), size=6)
    previous[previous < 0.1] = 0.0           # structural zeros
    previous /= previous.sum(1, keepdims=True)
    counts = rng.uniform(0, 3, (6, 5))
    counts[2] = 0.0                          # a row without mass keeps its values
    for prior in (1.0, 0.5, rng.uniform(0.5, 3.0, 5), rng.uniform(0.5, 3.0, (6, 5))):
        expected, n_empty = dirichlet_map_rows(previous, counts, prior)
        out = np.empty_like(previous)
        got = nk.dirichlet_map_rows_block(previous, counts, np.broadcast_to(prior, (6, 5)).copy(), True, out)
        np.testing.assert_allclose(out, expected, rtol=1e-14, atol=0)
        assert got == n_empty


def test_validation_fast_path_agrees_with_validate_data():
    # C-contiguous float64 rows skip scikit-learn's validate_data; a Fortran-ordered copy goes through it
    X = data(2, 2, [100], seed=10)
    fast = GaussianHMM(2, n_iter=3, random_state=0).fit(X)
    general = GaussianHMM(2, n_iter=3, random_state=0).fit(np.asfortranarray(X))
    assert fast.n_features_in_ == general.n_features_in_ == 2
    np.testing.assert_array_equal(fast.means_, general.means_)
    assert fast.score(X) == general.score(np.asfortranarray(X))
    with pytest.raises(ValueError, match="X has 3 features, but GaussianHMM is expecting 2"):
        fast.score(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        GaussianHMM(2).fit(np.full((5, 2), np.nan))
