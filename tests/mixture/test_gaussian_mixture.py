"""GaussianMixture against scikit-learn (the independent reference) and closed forms."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from probkit import GaussianMixture
from probkit.components import CollapsedComponentWarning, EmptyComponentWarning

COV_TYPES = ["full", "diag", "spherical", "tied"]


def blobs(seed=0, n=(150, 150, 100), d=3):
    rng = np.random.RandomState(seed)
    centres = rng.normal(0, 4, (len(n), d))
    scales = rng.uniform(0.5, 2.0, len(n))
    X = np.vstack([c + s * rng.normal(size=(m, d)) for c, s, m in zip(centres, scales, n)])
    return X[rng.permutation(len(X))]


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300)


def initial_precisions(cov_type, k, d, rng):
    if cov_type == "full":
        A = rng.normal(size=(k, d, d))
        return A @ np.transpose(A, (0, 2, 1)) + d * np.eye(d)
    if cov_type == "tied":
        A = rng.normal(size=(d, d))
        return A @ A.T + d * np.eye(d)
    if cov_type == "diag":
        return rng.uniform(0.5, 2.0, (k, d))
    return rng.uniform(0.5, 2.0, k)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_parity_with_sklearn_from_identical_initial_parameters(cov_type):
    X = blobs(1)
    rng = np.random.RandomState(3)
    k, d = 3, X.shape[1]
    init = dict(
        weights_init=rng.dirichlet(np.ones(k)),
        means_init=X[rng.choice(len(X), k, replace=False)],
        precisions_init=initial_precisions(cov_type, k, d, rng),
    )
    kw = dict(covariance_type=cov_type, max_iter=25, tol=0.0, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SkGaussianMixture(k, **kw).fit(X)
        ours = GaussianMixture(k, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ == 25
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        assert rel_err(getattr(ours, name), getattr(ref, name)) < 1e-6, name
    assert abs(ours.lower_bound_ - ref.lower_bound_) < 1e-6 * abs(ref.lower_bound_)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_allclose(ours.bic(X), ref.bic(X), rtol=1e-8)
    np.testing.assert_allclose(ours.aic(X), ref.aic(X), rtol=1e-8)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_data_far_from_the_origin_fit_as_scikit_learn_and_as_centred_data(cov_type):
    """The E-step's quadratic expansion stays accurate when the data sit far from the origin.

    The truth is the fit of the same data translated to the origin (densities do not change
    under translation); scikit-learn's own expanded diag/spherical/tied forms lose about
    1e-6 here, so it is compared at the origin only (the parity tests above).
    """
    offset = 1e5
    X = blobs(12)
    rng = np.random.RandomState(4)
    k = 3
    init = dict(weights_init=np.full(k, 1 / k), means_init=X[rng.choice(len(X), k, replace=False)],
                precisions_init=initial_precisions(cov_type, k, X.shape[1], rng))
    kw = dict(covariance_type=cov_type, max_iter=15, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        centred = GaussianMixture(k, **kw, **init).fit(X)
        far_init = dict(init, means_init=init["means_init"] + offset)
        far = GaussianMixture(k, **kw, **far_init).fit(X + offset)
    assert rel_err(far.means_ - offset, centred.means_) < 1e-9
    assert rel_err(far.covariances_, centred.covariances_) < 1e-7
    np.testing.assert_allclose(far.lower_bounds_, centred.lower_bounds_, rtol=1e-9)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_parity_with_sklearn_initialisers(cov_type, init_params):
    """Same random_state -> same initial draws -> same fit, convergence included."""
    X = blobs(2)
    kw = dict(covariance_type=cov_type, init_params=init_params, random_state=7, max_iter=200, tol=1e-6)
    ref = SkGaussianMixture(3, **kw).fit(X)
    ours = GaussianMixture(3, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ == ref.converged_
    assert rel_err(ours.means_, ref.means_) < 1e-6
    assert rel_err(ours.covariances_, ref.covariances_) < 1e-6
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("init_params", ["random_from_data", "k-means++"])
def test_parity_single_point_initialisers_untied(init_params):
    X = blobs(4)
    kw = dict(covariance_type="full", init_params=init_params, random_state=0, max_iter=100, tol=1e-8)
    ref = SkGaussianMixture(3, **kw).fit(X)
    ours = GaussianMixture(3, **kw).fit(X)
    assert rel_err(ours.means_, ref.means_) < 1e-6


def test_n_init_keeps_best_run_like_sklearn():
    X = blobs(5, n=(80, 80, 80, 80))
    kw = dict(n_init=4, init_params="random", random_state=11, max_iter=300, tol=1e-8)
    ref = SkGaussianMixture(4, **kw).fit(X)
    ours = GaussianMixture(4, **kw).fit(X)
    assert abs(ours.lower_bound_ - ref.lower_bound_) < 1e-8 * abs(ref.lower_bound_)
    assert rel_err(ours.means_, ref.means_) < 1e-6


def test_fit_predict_equals_fit_then_predict():
    X = blobs(6)
    for max_iter in [1, 3, 100]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a = GaussianMixture(3, random_state=0, max_iter=max_iter).fit_predict(X)
            b = GaussianMixture(3, random_state=0, max_iter=max_iter).fit(X).predict(X)
        np.testing.assert_array_equal(a, b)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), cov_type=st.sampled_from(COV_TYPES),
       d=st.integers(1, 3))
def test_em_log_likelihood_never_decreases(seed, k, cov_type, d):
    rng = np.random.RandomState(seed)
    X = rng.standard_t(df=3, size=(60, d)) + rng.randint(0, 3, size=(60, 1)) * 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(k, covariance_type=cov_type, init_params="random", random_state=seed,
                             max_iter=30, tol=0.0).fit(X)
    history = np.asarray(gm.lower_bounds_)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


def test_warm_start_continues_from_previous_fit():
    X = blobs(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = GaussianMixture(3, random_state=0, max_iter=10, tol=0).fit(X)
        warm = GaussianMixture(3, random_state=0, max_iter=5, tol=0, warm_start=True)
        warm.fit(X)
        warm.fit(X)
    np.testing.assert_allclose(warm.means_, full.means_, rtol=1e-10)


def test_sample_weight_equals_repeated_rows():
    X = blobs(8, n=(40, 40, 40))
    rng = np.random.RandomState(0)
    w = rng.randint(1, 4, len(X))
    init = dict(means_init=X[:3], weights_init=np.full(3, 1 / 3), precisions_init=np.stack([np.eye(3)] * 3))
    a = GaussianMixture(3, max_iter=20, tol=0, **init)
    b = GaussianMixture(3, max_iter=20, tol=0, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(X, sample_weight=w)
        b.fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-10)


def test_sample_moments_and_reproducibility():
    gm = GaussianMixture(2, random_state=0).fit(blobs(9, n=(200, 200)))
    X1, y1 = gm.sample(20000)
    X2, y2 = gm.sample(20000)
    np.testing.assert_array_equal(X1, X2)  # sample() uses the estimator's random_state, as scikit-learn
    for k in range(2):
        sel = X1[y1 == k]
        assert abs(len(sel) / len(X1) - gm.weights_[k]) < 0.015  # 3.5 sd of a binomial proportion
        np.testing.assert_allclose(sel.mean(0), gm.means_[k], atol=4 * np.sqrt(gm.covariances_[k].diagonal().max() / len(sel)))
        np.testing.assert_allclose(np.cov(sel.T), gm.covariances_[k], atol=0.1 * np.abs(gm.covariances_[k]).max())


def test_float32_and_torch_input():
    X = blobs(10)
    ref = GaussianMixture(3, random_state=0).fit(X)
    f32 = GaussianMixture(3, random_state=0, dtype="float32").fit(torch.tensor(X))
    assert f32.means_.dtype == np.float64
    np.testing.assert_allclose(np.sort(f32.means_[:, 0]), np.sort(ref.means_[:, 0]), atol=1e-3)


def test_pickle_and_clone_round_trip():
    X = blobs(11)
    gm = GaussianMixture(3, random_state=0).fit(X)
    gm2 = pickle.loads(pickle.dumps(gm))
    np.testing.assert_array_equal(gm.score_samples(X), gm2.score_samples(X))
    c = clone(gm)
    assert not hasattr(c, "means_") and c.get_params() == gm.get_params()


def test_collapsed_component_stays_positive_definite():
    # Three identical points form a component of zero spread: reg_covar keeps it valid.
    X = np.vstack([np.zeros((3, 2)), np.random.RandomState(0).normal(5, 1, (50, 2))])
    with pytest.warns(CollapsedComponentWarning, match=r"component\(s\) \[0\]"):
        gm = GaussianMixture(2, means_init=[[0, 0], [5, 5]], reg_covar=1e-6, random_state=0).fit(X)
    assert np.all(np.isfinite(gm.covariances_))
    assert np.all(np.linalg.eigvalsh(gm.covariances_) > 0)


def test_empty_component_keeps_parameters_with_warning():
    X = np.random.RandomState(0).normal(0, 1, (100, 1))
    far = [[0.0], [1e6]]
    with pytest.warns(EmptyComponentWarning):
        gm = GaussianMixture(2, means_init=far, max_iter=3, tol=0, random_state=0).fit(X)
    assert np.all(np.isfinite(gm.means_)) and np.all(np.isfinite(gm.covariances_))
    assert gm.means_[1, 0] == 1e6


@pytest.mark.parametrize(
    "kwargs, X, match",
    [
        ({}, np.array([[np.nan, 1.0], [1.0, 2.0]]), "NaN"),
        ({}, np.array([[np.inf, 1.0], [1.0, 2.0]]), "infinity"),
        ({}, np.arange(5.0), "2D array"),
        ({"n_components": 0}, np.ones((5, 2)), "'n_components' parameter of GaussianMixture must be an int"),
        ({"n_components": 6}, np.random.rand(5, 2), "n_samples >= n_components"),
        ({"covariance_type": "banana"}, np.random.rand(5, 2), "'covariance_type' parameter of GaussianMixture"),
        ({"init_params": "magic"}, np.random.rand(5, 2), "'init_params' parameter of GaussianMixture"),
        ({"reg_covar": -1.0}, np.random.rand(5, 2), "'reg_covar' parameter of GaussianMixture"),
        ({"reg_covar": np.nan}, np.random.rand(5, 2), "'reg_covar' parameter of GaussianMixture"),
        ({"verbose_interval": 0}, np.random.rand(5, 2), "'verbose_interval' parameter of GaussianMixture"),
        ({"means_init": "zeros"}, np.random.rand(5, 2), "'means_init' parameter of GaussianMixture"),
        ({"weights_init": [0.5, 0.6], "n_components": 2}, np.random.rand(5, 2), "normalized"),
        ({"weights_init": [1.0], "n_components": 2}, np.random.rand(5, 2), "weights"),
        ({"means_init": np.zeros((3, 2)), "n_components": 2}, np.random.rand(5, 2), "means"),
        ({"precisions_init": np.ones((2, 3, 3)), "n_components": 2}, np.random.rand(5, 2), "precisions"),
        ({"precisions_init": -np.stack([np.eye(2)] * 2), "n_components": 2}, np.random.rand(5, 2), "positive-definite"),
        ({"precisions_init": -np.ones((2, 2)), "covariance_type": "diag", "n_components": 2}, np.random.rand(5, 2), "positive"),
    ],
)
def test_bad_input_raises_clear_value_error(kwargs, X, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs).fit(X)


def test_bad_sample_weight_and_unfitted_use():
    X = np.random.RandomState(0).rand(10, 2)
    with pytest.raises(ValueError, match="sample_weight"):
        GaussianMixture(2).fit(X, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="sample_weight"):
        GaussianMixture(2).fit(X, sample_weight=np.zeros(10))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        GaussianMixture(2).predict(X)
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        gm.predict(np.ones((3, 3)))


def test_convergence_warning_when_max_iter_too_small():
    with pytest.warns(ConvergenceWarning):
        GaussianMixture(3, max_iter=1, tol=0, random_state=0).fit(blobs(12))


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_partial_fits_after_a_fit_blend_batch_statistics_about_one_reference_point(cov_type):
    """Two stepwise steps after fit: the running statistics of both batches add (same reference
    point for every batch) and give scipy-computed blended statistics' M-step."""
    from scipy.stats import multivariate_normal

    X, X1, X2 = blobs(13) + 50.0, blobs(14) + 50.0, blobs(15) + 50.0
    model = GaussianMixture(3, covariance_type=cov_type, random_state=0, reg_covar=0.0).fit(X)

    def params(m):
        cov = m.covariances_ if cov_type == "full" else np.stack([np.diag(c) for c in m.covariances_])
        return m.weights_, m.means_, cov

    def batch_stats(Xb, weights, means, covs):
        dens = np.column_stack([w * multivariate_normal(mu, c).pdf(Xb) for w, mu, c in zip(weights, means, covs)])
        resp = dens / dens.sum(1, keepdims=True)
        return resp.sum(0) / len(Xb), resp.T @ Xb / len(Xb), np.einsum("nk,ni,nj->kij", resp, Xb, Xb) / len(Xb)

    s1 = batch_stats(X1, *params(model))
    model.partial_fit(X1, learning_offset=0.0, learning_decay=1.0)
    s2 = batch_stats(X2, *params(model))
    model.partial_fit(X2, learning_offset=0.0, learning_decay=1.0)  # rho_2 = 1/2
    nk, sx, sxx = [(a + b) / 2 for a, b in zip(s1, s2)]
    means = sx / nk[:, None]
    covs = sxx / nk[:, None, None] - np.einsum("ki,kj->kij", means, means)
    if cov_type == "diag":
        covs = np.diagonal(covs, axis1=1, axis2=2)
    np.testing.assert_allclose(model.weights_, nk / nk.sum(), rtol=1e-9)
    np.testing.assert_allclose(model.means_, means, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, covs, rtol=1e-6)
