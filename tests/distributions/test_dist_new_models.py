"""The new families inside mixtures and HMMs, robust t-mixtures, and zero density outside a
restricted support in mixtures of several families."""

import warnings

import numpy as np
import pytest
from scipy import stats

from probkit.distributions import Beta, Gamma, LogNormal, Normal, StudentT
from probkit.hmm import HMM
from probkit.mixture import GaussianMixture, MixtureModel


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _outlier_data(seed=0):
    rng = np.random.RandomState(seed)
    return np.r_[rng.normal([0, 0], 1, (400, 2)), rng.normal([8, 0], 1, (400, 2)), rng.uniform(-30, 40, (40, 2))]


def test_t_mixture_recovers_clusters_with_outliers_where_a_gaussian_mixture_fails():
    X = _outlier_data()
    truth = np.array([[0.0, 0.0], [8.0, 0.0]])
    # Both models keep the best of five starts (k-means on data with outliers often puts one
    # centre among the outliers).
    mt = _quiet(lambda: MixtureModel(family="multivariate_t", n_components=2, n_init=5, random_state=0, tol=1e-5,
                                     max_iter=300).fit(X))
    locs = np.array([c.loc for c in mt.components_])
    locs = locs[np.argsort(locs[:, 0])]
    # 400 points per cluster: standard errors of the locations ~0.05
    np.testing.assert_allclose(locs, truth, atol=0.25)
    for c in mt.components_:
        # unit covariance: the shape matrix of a t is the covariance times (df - 2) / df
        assert np.abs(np.linalg.eigvalsh(c.scale_matrix)).max() < 1.5
    gm = GaussianMixture(2, n_init=5, random_state=0).fit(X)
    distance = np.abs(gm.means_[:, None, :] - truth[None]).max(-1).min(1)
    assert distance.max() > 2.0  # some Gaussian component is far from both clusters
    assert mt.score(X) > gm.score(X)


def test_t_mixture_em_never_decreases_and_matches_its_density():
    X = _outlier_data(1)[:, :1]
    mt = _quiet(lambda: MixtureModel(family="student_t", n_components=2, random_state=1, tol=0, max_iter=60).fit(X))
    assert np.all(np.diff(mt.lower_bounds_) >= -1e-9)
    w, comps = mt.weights_, mt.components_
    manual = np.logaddexp(*[np.log(w[k]) + stats.t(comps[k].df, comps[k].loc, comps[k].scale).logpdf(X[:, 0])
                            for k in range(2)])
    np.testing.assert_allclose(mt.score_samples(X), manual, rtol=1e-10)


def test_t_components_downweight_outliers_by_their_latent_scales():
    # The M-step of a t component is a weighted Gaussian fit with weights resp * E[u | x].
    x = np.r_[np.random.RandomState(2).normal(0, 1, 200), 50.0, -60.0]
    d = StudentT(df=3.0, loc=0.0, scale=1.0)
    u = d.sufficient_statistics(x)["u"]
    assert u[-2:].max() < 0.01 and u[:200].min() > 0.1
    step = d.from_stats(d.summarize(x))
    np.testing.assert_allclose(float(step.loc), np.sum(u * x) / np.sum(u), rtol=1e-12)


@pytest.mark.parametrize("family, data, check", [
    ("student_t", lambda rng: np.r_[rng.standard_t(4, 300) - 6, rng.standard_t(4, 300) + 6],
     lambda comps: np.allclose(sorted(float(c.loc) for c in comps), [-6, 6], atol=0.3)),
    ("negative_binomial", lambda rng: np.r_[rng.negative_binomial(3, 0.6, 300), rng.negative_binomial(20, 0.2, 300)],
     lambda comps: np.allclose(sorted(float(c.total_count * (1 - c.probs) / c.probs) for c in comps), [2, 80], rtol=0.15)),
    ("von_mises", lambda rng: np.r_[rng.vonmises(-2.0, 8.0, 300), rng.vonmises(1.5, 8.0, 300)],
     lambda comps: np.allclose(sorted(float(c.loc) for c in comps), [-2.0, 1.5], atol=0.05)),
    ("laplace", lambda rng: np.r_[rng.laplace(-5, 1.0, 300), rng.laplace(5, 0.5, 300)],
     lambda comps: np.allclose(sorted(float(c.loc) for c in comps), [-5, 5], atol=0.2)),
])
def test_scalar_families_as_mixture_components_and_hmm_emissions(family, data, check):
    x = data(np.random.default_rng(3)).astype(float).reshape(-1, 1)
    mm = _quiet(lambda: MixtureModel(family=family, n_components=2, random_state=0, tol=1e-8, max_iter=300).fit(x))
    assert check(mm.components_)
    np.testing.assert_allclose(mm.weights_, [0.5, 0.5], atol=0.05)
    assert np.all(np.diff(mm.lower_bounds_) >= -1e-8)
    Xs, ys = mm.sample(50, random_state=0)
    assert Xs.shape == (50, 1)
    hmm = _quiet(lambda: HMM(emission=family, n_components=2, n_iter=40, random_state=0).fit(x))
    comps = [hmm.emission_.__class__(**{k: v[i] for k, v in hmm.emission_params_.items()},
                                     **hmm.emission_._options()) for i in range(2)]
    assert check(comps)
    assert hmm.score(x) > -np.inf


def test_scalar_latent_family_over_several_columns_is_a_product():
    rng = np.random.default_rng(4)
    X = np.r_[np.c_[rng.standard_t(3, 300) - 5, rng.standard_t(3, 300) + 5],
              np.c_[rng.standard_t(3, 300) + 5, rng.standard_t(3, 300) - 5]]
    mm = _quiet(lambda: MixtureModel(family="student_t", n_components=2, random_state=0, tol=1e-8, max_iter=300).fit(X))
    locs = np.array([c.loc for c in mm.components_])
    np.testing.assert_allclose(locs[np.argsort(locs[:, 0])], [[-5, 5], [5, -5]], atol=0.3)
    w, comps = mm.weights_, mm.components_
    manual = np.logaddexp(*[np.log(w[k]) + stats.t(comps[k].df, comps[k].loc, comps[k].scale).logpdf(X).sum(1)
                            for k in range(2)])
    np.testing.assert_allclose(mm.score_samples(X), manual, rtol=1e-10)


@pytest.mark.parametrize("family", ["wishart", "inverse_wishart"])
def test_matrix_families_take_flattened_rows(family):
    A = stats.wishart(5, np.eye(2)).rvs(200, random_state=0)
    B = stats.wishart(30, np.diag([0.05, 1.0])).rvs(200, random_state=1)
    X = np.r_[A, B].reshape(400, 4)
    mm = _quiet(lambda: MixtureModel(family=family, n_components=2, random_state=0, tol=1e-8).fit(X))
    labels = mm.predict(X)
    assert min(np.mean(labels[:200] == labels[0]), np.mean(labels[200:] == labels[-1])) > 0.95
    assert labels[0] != labels[-1]
    assert mm.sample(3, random_state=0)[0].shape == (3, 4)
    hmm = _quiet(lambda: HMM(emission=family, n_components=2, n_iter=20, random_state=0).fit(X))
    assert hmm.emission_params_["scale_matrix"].shape == (2, 2, 2)
    with pytest.raises(ValueError, match="p \\* p columns"):
        MixtureModel(family=family, n_components=2).fit(np.ones((10, 3)))


# ---------------------------------------------------------------------- supports in mixed-family mixtures
def test_gamma_component_gives_zero_density_to_negative_values():
    rng = np.random.RandomState(5)
    x = np.r_[rng.normal(-2.0, 0.7, 600), rng.gamma(6.0, 1.0, 600)].reshape(-1, 1)
    mm = _quiet(lambda: MixtureModel(components=[Normal(), Gamma()], n_init=3, random_state=0, tol=1e-9,
                                     max_iter=500).fit(x))
    normal, gamma = mm.components_
    assert abs(float(normal.loc) + 2.0) < 0.1 and abs(float(gamma.concentration / gamma.rate) - 6.0) < 0.2
    lp_gamma = np.where(x[:, 0] > 0, stats.gamma(gamma.concentration, scale=1 / gamma.rate).logpdf(
        np.where(x[:, 0] > 0, x[:, 0], 1.0)), -np.inf)
    manual = np.logaddexp(np.log(mm.weights_[0]) + normal.log_prob(x[:, 0]), np.log(mm.weights_[1]) + lp_gamma)
    np.testing.assert_allclose(mm.score_samples(x), manual, rtol=1e-12)
    resp = mm.predict_proba(x)
    assert np.all(resp[x[:, 0] <= 0, 1] == 0)
    # The Gamma component is the weighted fit on the points it can explain: a fixed point of EM.
    positive = x[:, 0] > 0
    refit = Gamma().fit(x[positive, 0], sample_weight=resp[positive, 1])
    np.testing.assert_allclose(refit.concentration, gamma.concentration, rtol=1e-4)


def test_several_restricted_supports_and_the_all_outside_error():
    rng = np.random.RandomState(6)
    x = np.r_[rng.beta(2, 5, 300), rng.lognormal(1.5, 0.3, 300)].reshape(-1, 1)
    mm = _quiet(lambda: MixtureModel(components=[Beta(), LogNormal()], random_state=0, tol=1e-8).fit(x))
    beta, lognormal = mm.components_
    assert abs(float(lognormal.loc) - 1.5) < 0.1
    assert np.all(mm.predict(x[x[:, 0] > 1]) == 1)
    with pytest.raises(ValueError, match="outside the support of every component"):
        MixtureModel(components=[Beta(), LogNormal()]).fit(np.r_[x, [[-0.5]]])
    with pytest.raises(ValueError, match="outside the support of every component"):
        mm.predict(np.array([[-1.0]]))
    with pytest.raises(ValueError, match="outside the support of every component"):
        mm.score_samples(np.array([[0.5], [-1.0]]))
    with pytest.raises(ValueError, match="no sample lies in the support of component 1"):
        MixtureModel(components=[Normal(), Gamma()]).fit(-x)
    # discrete families stay strict (counts cannot be mixed with densities)
    with pytest.raises(ValueError, match="integer"):
        MixtureModel(components=[Normal(), "poisson"]).fit(np.array([[0.5], [1.0], [2.0]]))
    # a single family keeps its own message
    with pytest.raises(ValueError, match="strictly positive"):
        MixtureModel(family="gamma", n_components=2).fit(np.array([[1.0], [2.0], [-1.0]]))
