"""Online decoding of HMMs: the running filter against a log-space forward recursion written here.

The reference computes ``log alpha_t`` from scipy's log-densities, so it shares no code
with probkit's kernels; the running filter must match it at every step, however the
observations are grouped into updates.
"""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm, poisson

from probkit import HMM, CategoricalHMM, GaussianHMM, PoissonHMM

ATOL = 1e-10


def reference_filter(start, transmat, log_emission):
    """Filtered probabilities and the running log-likelihood log p(x_1..x_t) of every step."""
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(start), np.log(transmat)
    filtered, running = [], []
    log_alpha = log_start + log_emission[0]
    for t in range(len(log_emission)):
        if t:
            log_alpha = logsumexp(log_alpha[:, None] + log_trans, axis=0) + log_emission[t]
        total = logsumexp(log_alpha)
        filtered.append(np.exp(log_alpha - total))
        running.append(total)
    return np.array(filtered), np.array(running)


def _gaussian_full():
    model = GaussianHMM(3, covariance_type="full")
    model.startprob_ = np.array([0.5, 0.3, 0.2])
    model.transmat_ = np.array([[0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    model.means_ = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    model.covars_ = np.array([[[1.0, 0.3], [0.3, 1.0]], [[1.5, 0.0], [0.0, 0.7]], [[1.0, -0.4], [-0.4, 2.0]]])
    return model


def _gaussian_log_emission(model, X):
    return np.column_stack([multivariate_normal(m, c).logpdf(X) for m, c in zip(model.means_, model.full_covars_)])


def _run_stream(stream, X, sizes):
    """Feed X as single observations (size 0) and blocks; return every step's filtered row and running log-likelihood."""
    rows, running, start = [], [], 0
    for size in sizes:
        if size == 0:
            proba = stream.update(X[start])
            assert proba.shape == (stream.model.n_components,)
            rows.append(proba[None])
            start += 1
        else:
            block = stream.update(X[start:start + size])
            rows.append(block)
            start += size
        running.extend([np.nan] * (rows[-1].shape[0] - 1) + [stream.log_likelihood])
    assert start == len(X)
    return np.vstack(rows), np.array(running)


SIZES = [0] * 40 + [1, 7, 50] + [0] * 3 + [99]  # 200 steps: single observations and blocks


@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_gaussian_stream_equals_forward_recursion_at_every_step(implementation):
    model = _gaussian_full().set_params(implementation=implementation)
    X, _ = model.sample(200, random_state=0)
    filtered, running = _run_stream(model.filter_stream(), X, SIZES)
    ref_filtered, ref_running = reference_filter(model.startprob_, model.transmat_, _gaussian_log_emission(model, X))
    np.testing.assert_allclose(filtered, ref_filtered, rtol=0, atol=ATOL)
    known = ~np.isnan(running)
    np.testing.assert_allclose(running[known], ref_running[known], rtol=1e-12, atol=ATOL)
    np.testing.assert_allclose(running[-1], model.score(X), rtol=1e-12)


def test_poisson_stream_with_missing_values_and_a_torch_emission():
    rng = np.random.RandomState(1)
    start, trans = np.array([0.6, 0.4]), np.array([[0.9, 0.1], [0.25, 0.75]])
    rates = np.array([[1.0, 4.0], [6.0, 0.5]])
    X = rng.poisson(3.0, size=(150, 2)).astype(float)
    X[rng.rand(*X.shape) < 0.15] = np.nan
    log_emission = np.nansum(np.where(np.isnan(X)[:, None, :], np.nan,
                                      poisson(rates[None]).logpmf(np.nan_to_num(X)[:, None, :])), axis=2)
    ref_filtered, ref_running = reference_filter(start, trans, log_emission)
    numpy_path = PoissonHMM(2, missing="marginalize")
    numpy_path.startprob_, numpy_path.transmat_, numpy_path.lambdas_ = start, trans, rates
    filtered, running = _run_stream(numpy_path.filter_stream(), X, [0] * 50 + [25, 1, 74])
    np.testing.assert_allclose(filtered, ref_filtered, rtol=0, atol=ATOL)
    np.testing.assert_allclose(running[-1], ref_running[-1], rtol=1e-12)
    # the generic HMM's emissions run in torch
    generic = HMM(emission="normal", n_components=2)
    generic.set_params(n_iter=200, tol=1e-6).fit(np.random.RandomState(2).normal(size=(60, 1)))
    y = np.random.RandomState(3).normal(size=(80, 1))
    stream = generic.filter_stream()
    filtered, running = _run_stream(stream, y, [0] * 30 + [50])
    whole = generic.predict_proba(y)  # smoothing agrees with filtering at the last step
    np.testing.assert_allclose(filtered[-1], whole[-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(running[-1], generic.score(y), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_categorical_structural_zeros_and_an_impossible_observation():
    model = CategoricalHMM(3, n_features=3)
    model.startprob_ = np.array([1.0, 0.0, 0.0])
    model.transmat_ = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    model.emissionprob_ = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9]])
    X, _ = model.sample(120, random_state=4)
    log_emission = np.log(np.maximum(model.emissionprob_[:, X[:, 0]].T, 1e-300))
    log_emission[model.emissionprob_[:, X[:, 0]].T == 0] = -np.inf
    ref_filtered, ref_running = reference_filter(model.startprob_, model.transmat_, log_emission)
    stream = model.filter_stream()
    filtered, running = _run_stream(stream, X, [0] * 60 + [60])
    np.testing.assert_allclose(filtered, ref_filtered, rtol=0, atol=ATOL)
    np.testing.assert_allclose(running[-1], ref_running[-1], rtol=1e-12)
    # the chain starts in state 0 and moves to 0 or 1, neither of which emits symbol 2
    fresh = model.filter_stream()
    fresh.update([0])
    before = fresh.filtered_proba.copy()
    with pytest.raises(ValueError, match="zero probability"):
        fresh.update([2])
    np.testing.assert_array_equal(fresh.filtered_proba, before)
    assert fresh.n_steps == 1


def test_a_long_stream_stays_normalised_and_equals_the_forward_pass():
    model = GaussianHMM(4, covariance_type="diag")
    model.startprob_ = np.full(4, 0.25)
    model.transmat_ = np.full((4, 4), 0.02) + np.eye(4) * 0.92
    model.means_ = np.array([[-3.0], [-1.0], [1.0], [3.0]])
    model.covars_ = np.full((4, 1), 0.8)
    X, _ = model.sample(100_000, random_state=5)
    rng = np.random.RandomState(6)
    sizes = [0] * 1000
    while sum(s or 1 for s in sizes) < len(X):
        sizes.append(int(min(rng.randint(1, 400), len(X) - sum(s or 1 for s in sizes))))
    filtered, running = _run_stream(model.filter_stream(), X, sizes)
    assert np.isfinite(filtered).all() and np.isfinite(running[~np.isnan(running)]).all()
    np.testing.assert_allclose(filtered.sum(1), 1.0, rtol=0, atol=1e-12)
    data = model._validate_sequences(X, None, reset=False)
    _, forward = model._forward_filter(data, model._log_emission(data))
    np.testing.assert_allclose(filtered, np.asarray(forward), rtol=0, atol=ATOL)
    np.testing.assert_allclose(running[-1], model.score(X), rtol=1e-12)


def test_reset_predict_and_parameters_read_at_every_update():
    model = _gaussian_full()
    X, _ = model.sample(30, random_state=7)
    stream = model.filter_stream()
    np.testing.assert_array_equal(stream.predict_proba(), model.startprob_)
    first = stream.update(X)
    np.testing.assert_allclose(stream.predict_proba(), first[-1] @ model.transmat_, rtol=1e-15)
    np.testing.assert_allclose(stream.reset().update(X), first, rtol=0, atol=0)
    assert stream.n_steps == 30
    # new parameters (as partial_fit leaves them) apply from the next step on
    model.means_ = model.means_ + 0.5
    step = stream.update(X[0])
    predicted = first[-1] @ model.transmat_
    log_joint = np.log(predicted) + _gaussian_log_emission(model, X[:1])[0]
    np.testing.assert_allclose(step, np.exp(log_joint - logsumexp(log_joint)), rtol=0, atol=ATOL)
    model.transmat_ = np.full((3, 3), 0.5)
    with pytest.raises(ValueError, match="transmat_"):
        stream.update(X[1])


def test_wrong_number_of_features_names_X():
    model = _gaussian_full()
    stream = model.filter_stream()
    with pytest.raises(ValueError, match="X does not fit the model's parameters"):
        stream.update(np.zeros(3))  # a model set by hand learns n_features from its first rows
    assert stream.update(np.zeros(2)).shape == (3,)
    with pytest.raises(ValueError, match="X has 3 features"):
        stream.update(np.zeros((4, 3)))
    assert stream.n_steps == 1


def test_filter_runs_beside_partial_fit():
    truth = _gaussian_full()
    model = GaussianHMM(3, covariance_type="full", random_state=0)
    model.partial_fit(truth.sample(300, random_state=8)[0])
    stream = model.filter_stream()
    X = truth.sample(40, random_state=9)[0]
    stream.update(X[:20])
    before = stream.filtered_proba.copy()
    model.partial_fit(truth.sample(300, random_state=10)[0])
    step = stream.update(X[20])
    log_joint = np.log(before @ model.transmat_) + _gaussian_log_emission(model, X[20:21])[0]
    np.testing.assert_allclose(step, np.exp(log_joint - logsumexp(log_joint)), rtol=0, atol=ATOL)


def test_models_whose_rows_depend_on_the_past_or_on_inputs_have_no_filter_stream():
    from probkit import ARHMM, InputDrivenHMM, VariationalHMM

    # lagged rows (ARHMM), input-driven transitions and variational posteriors are not the base's forward pass
    for model in (ARHMM(2), InputDrivenHMM(2), VariationalHMM(2)):
        assert not hasattr(model, "filter_stream"), type(model).__name__
    assert hasattr(PoissonHMM(2), "filter_stream")
