"""MixtureModel (any family) against independent numpy EM implementations."""

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from probkit import GaussianMixture, MixtureModel
from probkit.distributions import Gamma, MultivariateNormal, Normal, Poisson
from probkit.em.init import initial_responsibilities
from probkit.em.init import INIT_SMOOTHING


def numpy_poisson_mixture_em(x, resp, n_iter):
    """Textbook EM for a Poisson mixture, written independently of probkit."""
    lls = []
    for _ in range(n_iter):
        nk = resp.sum(0)
        weights = nk / len(x)
        rates = resp.T @ x / nk
        logp = stats.poisson(rates[None, :]).logpmf(x[:, None]) + np.log(weights)
        lse = logsumexp(logp, axis=1)
        lls.append(lse.mean())
        resp = np.exp(logp - lse[:, None])
    return weights, rates, lls


def test_poisson_mixture_matches_numpy_em():
    rng = np.random.RandomState(0)
    x = np.r_[rng.poisson(3, 200), rng.poisson(12, 150), rng.poisson(30, 50)].astype(float)
    X = x.reshape(-1, 1)
    resp0 = initial_responsibilities(X, 3, "kmeans", np.random.RandomState(5))
    resp0 = (1 - INIT_SMOOTHING) * resp0 + INIT_SMOOTHING / 3
    # probkit's initial parameters are the reference's first M-step, so 40 probkit
    # iterations are 41 reference M-steps.
    w_ref, r_ref, ll_ref = numpy_poisson_mixture_em(x, resp0, 41)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm = MixtureModel(family="poisson", n_components=3, max_iter=40, tol=0, random_state=5).fit(X)
    np.testing.assert_allclose(mm.weights_, w_ref, rtol=1e-8)
    np.testing.assert_allclose([float(c.rate) for c in mm.components_], r_ref, rtol=1e-8)
    # probkit reports the log-likelihood of each E-step, i.e. before that iteration's M-step.
    np.testing.assert_allclose(mm.lower_bounds_, ll_ref[:40], rtol=1e-10)


def test_gaussian_family_reaches_the_gaussian_mixture_optimum():
    rng = np.random.RandomState(1)
    X = np.r_[rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (100, 2))]
    gm = GaussianMixture(2, covariance_type="diag", random_state=0, tol=1e-10, max_iter=500).fit(X)
    mm = MixtureModel(family=MultivariateNormal(covariance_type="diag", reg_covar=1e-6), n_components=2,
                      random_state=0, tol=1e-10, max_iter=500).fit(X)
    order_a = np.argsort(gm.means_[:, 0])
    order_b = np.argsort([c.mean[0] for c in mm.components_])
    np.testing.assert_allclose(gm.means_[order_a], np.array([c.mean for c in mm.components_])[order_b], atol=1e-6)
    np.testing.assert_allclose(gm.score(X), mm.score(X), rtol=1e-8)


def test_mixed_families_recover_generating_parameters():
    rng = np.random.RandomState(2)
    x = np.r_[rng.normal(2.0, 0.3, 1500), rng.gamma(8.0, 1.0, 1500)].reshape(-1, 1)
    # Which cluster each listed family takes depends on the start: n_init keeps the best.
    mm = MixtureModel(components=[Normal(), Gamma()], n_init=4, init_params="kmeans", random_state=0,
                      tol=1e-8, max_iter=500).fit(x)
    normal, gamma = mm.components_
    assert isinstance(normal, Normal) and isinstance(gamma, Gamma)
    # 1500 samples per component: standard errors ~0.01 for the normal, ~0.3 for the gamma shape.
    assert abs(float(normal.loc) - 2.0) < 0.05 and abs(float(normal.scale) - 0.3) < 0.03
    assert abs(float(gamma.concentration) - 8.0) < 1.2 and abs(float(gamma.concentration / gamma.rate) - 8.0) < 0.2
    np.testing.assert_allclose(mm.weights_, [0.5, 0.5], atol=0.03)
    # score_samples is the mixture density
    manual = np.logaddexp(np.log(mm.weights_[0]) + normal.log_prob(x[:, 0]),
                          np.log(mm.weights_[1]) + gamma.log_prob(x[:, 0]))
    np.testing.assert_allclose(mm.score_samples(x), manual, rtol=1e-12)


def test_em_never_decreases_for_generic_families():
    rng = np.random.RandomState(3)
    x = rng.gamma(2.0, 2.0, 400).reshape(-1, 1) + 0.01
    for fam in ["gamma", "normal"]:
        mm = MixtureModel(family=fam, n_components=3, init_params="random", random_state=0, max_iter=40, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mm.fit(x)
        assert np.all(np.diff(mm.lower_bounds_) >= -1e-10)


def test_sample_shapes_and_labels():
    rng = np.random.RandomState(4)
    counts = np.r_[rng.poisson(2, 100), rng.poisson(20, 100)].reshape(-1, 1)
    mm = MixtureModel(family="poisson", n_components=2, random_state=0).fit(counts)
    Xs, ys = mm.sample(500, random_state=1)
    assert Xs.shape == (500, 1) and ys.shape == (500,)
    hi = int(np.argmax([float(c.rate) for c in mm.components_]))
    assert Xs[ys == hi].mean() > 10


@pytest.mark.parametrize(
    "kwargs, X, error, match",
    [
        ({"family": "zeta"}, np.ones((5, 1)), ValueError, "unknown family"),
        ({"family": "poisson", "components": [Poisson()]}, np.ones((5, 1)), ValueError, "not both"),
        ({"family": "poisson"}, -np.ones((5, 1)), ValueError, "non-negative integer"),
        ({"family": "poisson"}, np.full((5, 1), 0.5), ValueError, "integer"),
        ({"family": "gamma"}, np.zeros((5, 1)), ValueError, "positive"),
        ({"components": [Poisson(), Poisson()]}, np.ones((5, 2)), ValueError, "one column"),
        ({"family": 3.0}, np.ones((5, 1)), TypeError, "family"),
        ({"components": Poisson()}, np.ones((5, 1)), TypeError, "'components' parameter of MixtureModel"),
        ({"components": []}, np.ones((5, 1)), ValueError, "components must be a non-empty list"),
        ({"family": "poisson", "tol": -1.0}, np.ones((5, 1)), ValueError, "'tol' parameter of MixtureModel"),
    ],
)
def test_bad_input(kwargs, X, error, match):
    with pytest.raises(error, match=match):
        MixtureModel(**kwargs).fit(X)


def test_predict_rejects_out_of_support_values():
    mm = MixtureModel(family="poisson", n_components=1).fit(np.arange(10).reshape(-1, 1))
    with pytest.raises(ValueError, match="non-negative"):
        mm.predict(np.array([[-1.0]]))


def test_scalar_family_over_several_columns_is_a_product():
    rng = np.random.RandomState(5)
    X = np.r_[rng.poisson([1, 20], (200, 2)), rng.poisson([15, 2], (200, 2))]
    mm = MixtureModel(family="poisson", n_components=2, random_state=0).fit(X)
    rates = np.array([c.rate for c in mm.components_])
    assert rates.shape == (2, 2)
    order = np.argsort(rates[:, 0])
    np.testing.assert_allclose(rates[order], [[1, 20], [15, 2]], rtol=0.15)
    # the density is the product over columns
    w, comps = mm.weights_, mm.components_
    manual = np.logaddexp(*[np.log(w[k]) + stats.poisson(comps[k].rate).logpmf(X).sum(1) for k in range(2)])
    np.testing.assert_allclose(mm.score_samples(X), manual, rtol=1e-12)


def test_default_family_is_a_full_covariance_gaussian():
    X = np.random.RandomState(0).normal(size=(200, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]])
    default = MixtureModel(n_components=1).fit(X)
    explicit = MixtureModel(family="gaussian", n_components=1).fit(X)
    np.testing.assert_allclose(default.score_samples(X), explicit.score_samples(X), rtol=0, atol=1e-12)
    # the maximum-likelihood covariance plus the registry default reg_covar=1e-6 on the diagonal
    np.testing.assert_allclose(default.components_[0].covariance, np.cov(X.T, bias=True) + 1e-6 * np.eye(2), rtol=1e-10)
    with pytest.raises(ValueError, match="not both"):
        MixtureModel(family="normal", components=["normal"]).fit(X)
