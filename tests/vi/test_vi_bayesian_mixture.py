"""BayesianGaussianMixture and BayesianMixture: scikit-learn parity, exact evidence, CAVI vs SVI vs NUTS."""

import pickle
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBGM
from sklearn.model_selection import GridSearchCV

from probkit import BayesianGaussianMixture, BayesianMixture
from probkit.distributions import Dirichlet, Gamma, NormalWishart
from probkit.vi.models import GaussianMixtureSVI
from tests.vi._exact import mixture_log_evidence

COV_TYPES = ["full", "tied", "diag", "spherical"]
WEIGHT_TYPES = ["dirichlet_process", "dirichlet_distribution"]


def blobs(seed=0, n=(70, 50, 40), sep=4.0):
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0], [sep, 0.0], [0.0, sep]])
    return np.vstack([c + rng.normal(0, 0.8, (m, 2)) for c, m in zip(centres, n)])


@pytest.mark.parametrize("weight_type", WEIGHT_TYPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_parity_with_sklearn(cov_type, weight_type):
    """Same priors, same random_state (same k-means start): same parameters, predictions and iterations."""
    X = blobs(1)
    kw = dict(n_components=4, covariance_type=cov_type, weight_concentration_prior_type=weight_type,
              random_state=2, max_iter=80, tol=1e-4, mean_precision_prior=0.5, degrees_of_freedom_prior=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SkBGM(**kw).fit(X)
        ours = BayesianGaussianMixture(**kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_", "mean_precision_",
                 "degrees_of_freedom_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, atol=1e-10, err_msg=name)
    conc_ours, conc_ref = ours.weight_concentration_, ref.weight_concentration_
    np.testing.assert_allclose(np.asarray(conc_ours), np.asarray(conc_ref), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-8)
    # the bounds differ by the constant terms scikit-learn drops (same constant every iteration)
    offsets = np.asarray(ours.lower_bounds_) - np.ravel(ref.lower_bounds_)
    assert np.ptp(offsets) < 1e-6 * abs(offsets[0])


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_bound_never_decreases(cov_type):
    X = blobs(2)
    bgm = BayesianGaussianMixture(n_components=6, covariance_type=cov_type, init_params="random", random_state=0,
                                  max_iter=200, tol=1e-8).fit(X)
    lb = np.asarray(bgm.lower_bounds_)
    assert len(lb) > 5
    assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))


def exact_bound_parts(bgm, X):
    """ELBO at a fixed point from the E-step form: sum_n logsumexp rho - KL(weights) - sum_k KL(NW_k)."""
    rho = bgm._estimate_weighted_log_prob(torch.as_tensor(X))
    k = bgm.n_components
    nu = bgm.degrees_of_freedom_
    post = NormalWishart(loc=bgm.means_, mean_precision=bgm.mean_precision_, degrees_of_freedom=nu,
                         covariance=bgm.covariances_ * nu[:, None, None])
    prior = NormalWishart(loc=bgm.mean_prior_, mean_precision=bgm.mean_precision_prior_,
                          degrees_of_freedom=bgm.degrees_of_freedom_prior_, covariance=bgm.covariance_prior_)
    kl_nw = float(np.sum(post.kl_divergence(prior)))
    if bgm.weight_concentration_prior_type == "dirichlet_distribution":
        kl_w = float(Dirichlet(concentration=bgm.weight_concentration_).kl_divergence(
            Dirichlet(concentration=np.full(k, bgm.weight_concentration_prior_))))
    else:
        from probkit.distributions import Beta

        a, b = bgm.weight_concentration_
        kl_w = float(np.sum(Beta(concentration1=a, concentration0=b).kl_divergence(
            Beta(concentration1=np.ones(k), concentration0=np.full(k, bgm.weight_concentration_prior_)))))
    return float(torch.logsumexp(rho, 1).sum()) - kl_w - kl_nw


@pytest.mark.parametrize("weight_type", WEIGHT_TYPES)
def test_bound_is_the_elbo_and_below_the_exact_evidence(weight_type):
    """Tiny data: the bound equals the ELBO written independently (KL divergences), lies below the
    exact log evidence (all 2^8 assignments, Normal-Wishart marginals), and is close to it
    when the two clusters are well apart (the only gap is the factorisation q(z) q(theta))."""
    X = np.array([[-2.1, 0.3], [-1.7, -0.2], [-2.4, 0.1], [-1.9, 0.5], [2.0, 1.1], [2.3, 0.8], [1.8, 1.4],
                  [2.2, 0.9]])
    priors = dict(mean_prior=np.zeros(2), mean_precision_prior=0.3, degrees_of_freedom_prior=3.0,
                  covariance_prior=0.5 * np.eye(2), weight_concentration_prior=0.8)
    bgm = BayesianGaussianMixture(n_components=2, weight_concentration_prior_type=weight_type, reg_covar=0.0,
                                  max_iter=500, tol=1e-12, random_state=0, **priors).fit(X)
    np.testing.assert_allclose(bgm.lower_bound_, exact_bound_parts(bgm, X), rtol=1e-8)
    evidence = mixture_log_evidence(X, 2, weight_type, 0.8, np.zeros(2), 0.3, 3.0, 0.5 * np.eye(2))
    assert bgm.lower_bound_ <= evidence + 1e-9
    assert bgm.lower_bound_ > evidence - 1.0


def test_enumerated_elbo_equals_the_marginal_likelihood_for_fixed_parameters():
    """TraceEnum_ELBO with a point-mass guide on every continuous site sums the assignments
    exactly: its value is log p(X | theta) + log p(theta), computed here by hand."""
    X = torch.as_tensor(blobs(3, n=(6, 5, 4)))
    spec = GaussianMixtureSVI(3, "dirichlet_distribution", 0.7, np.zeros(2), 0.4, 3.0, np.eye(2))
    rng = np.random.RandomState(0)
    w = torch.as_tensor(rng.dirichlet(np.ones(3)))
    mu = torch.as_tensor(rng.normal(0, 2, (3, 2)))
    A = rng.normal(size=(3, 2, 2))
    prec = torch.as_tensor(A @ np.transpose(A, (0, 2, 1)) + np.eye(2))

    def guide(x, batch_size=None):
        with pyro.plate("components", 3):
            pyro.sample("precision", dist.Delta(prec, event_dim=2))
            pyro.sample("mean", dist.Delta(mu, event_dim=1))
        pyro.sample("weights", dist.Delta(w, event_dim=1))

    elbo = -TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(spec.model), guide, X)
    comp = torch.distributions.MultivariateNormal(mu, precision_matrix=prec)
    loglik = torch.logsumexp(comp.log_prob(X.unsqueeze(1)) + torch.log(w), 1).sum()
    log_prior = (torch.distributions.Dirichlet(torch.full((3,), 0.7, dtype=torch.float64)).log_prob(w)
                 + torch.distributions.Wishart(torch.tensor(3.0, dtype=torch.float64),
                                               precision_matrix=torch.eye(2, dtype=torch.float64)).log_prob(prec).sum()
                 + torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                                          precision_matrix=0.4 * prec).log_prob(mu).sum())
    np.testing.assert_allclose(elbo, float(loglik + log_prior), rtol=1e-10)


def test_cavi_and_svi_agree():
    """Same model, same start, two algorithms. Tolerance: weights within 0.03 and the occupied
    components' means within 0.1 (their posterior sd is about 0.8 / sqrt(20) = 0.18). SVI sums
    z out instead of factorising q(z), so its optimum differs from CAVI's by the posterior
    uncertainty of the assignments, negligible for clusters this far apart; the rest is
    stochastic-optimisation error."""
    X = blobs(4, n=(25, 20, 15))
    kw = dict(n_components=3, weight_concentration_prior_type="dirichlet_distribution", random_state=0, reg_covar=0.0)
    cavi = BayesianGaussianMixture(tol=1e-8, max_iter=300, **kw).fit(X)
    svi = BayesianGaussianMixture(inference="svi", num_steps=250, learning_rate=0.03, svi_tol=0.0, **kw).fit(X)
    np.testing.assert_allclose(svi.weights_, cavi.weights_, atol=0.03)
    np.testing.assert_allclose(svi.means_, cavi.means_, atol=0.1)
    np.testing.assert_allclose(svi.precisions_, cavi.precisions_, rtol=0.15, atol=0.1)
    np.testing.assert_array_equal(svi.predict(X), cavi.predict(X))
    assert len(svi.elbo_history_) == svi.n_iter_ == 250
    # both bound the same evidence; the enumerated bound is at least as tight at the optimum
    assert abs(svi.lower_bound_ - cavi.lower_bound_) < 0.01 * abs(cavi.lower_bound_)


def test_nuts_reference_against_cavi():
    """NUTS (assignments enumerated) on tiny 1-D data: the variational posterior means of the
    component means match the sampled ones, VI's posterior sd is not larger than NUTS' (mean
    field under-disperses), and the predictive log-likelihoods agree."""
    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(-3, 0.7, (20, 1)), rng.normal(3, 0.7, (16, 1))]
    kw = dict(n_components=2, weight_concentration_prior_type="dirichlet_distribution", random_state=0, reg_covar=0.0)
    cavi = BayesianGaussianMixture(tol=1e-8, max_iter=200, **kw).fit(X)
    nuts = BayesianGaussianMixture(inference="nuts", num_samples=100, warmup_steps=60, **kw).fit(X)
    draws = nuts.posterior_samples_["means"][:, :, 0]   # (S, 2)
    vi_sd = np.sqrt(cavi.covariances_[:, 0, 0] / cavi.mean_precision_)
    # Monte Carlo standard error of 100 (correlated) draws is ~0.15 sd; allow 0.4 sd.
    assert np.all(np.abs(draws.mean(0) - cavi.means_[:, 0]) < 0.4 * draws.std(0))
    assert np.all(vi_sd < 1.3 * draws.std(0)) and np.all(vi_sd > 0.5 * draws.std(0))
    np.testing.assert_allclose(nuts.weights_, cavi.weights_, atol=0.08)
    vi_pred = cavi.predictive_log_prob(X).mean()
    assert abs(nuts.score(X) - vi_pred) < 0.05
    assert nuts.predict(X).tolist() == cavi.predict(X).tolist()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predictive_log_prob_is_the_student_t_mixture():
    """One component: the predictive density integrates the Normal-Wishart posterior; check it
    against a Monte Carlo average of normal densities over posterior draws."""
    rng = np.random.RandomState(1)
    X = rng.normal(size=(15, 2))
    bgm = BayesianGaussianMixture(n_components=1, weight_concentration_prior_type="dirichlet_distribution",
                                  reg_covar=0.0, max_iter=3, tol=0.0).fit(X)
    nu = bgm.degrees_of_freedom_
    post = NormalWishart(loc=bgm.means_, mean_precision=bgm.mean_precision_, degrees_of_freedom=nu,
                         covariance=bgm.covariances_ * nu[:, None, None])
    mean, prec = post.sample(20000, random_state=0)
    Y = np.array([[0.0, 0.0], [1.5, -1.0]])
    dens = torch.distributions.MultivariateNormal(torch.as_tensor(mean[:, 0]),
                                                  precision_matrix=torch.as_tensor(prec[:, 0]))
    mc = np.log(np.exp(dens.log_prob(torch.as_tensor(Y)[:, None]).numpy()).mean(1))
    np.testing.assert_allclose(bgm.predictive_log_prob(Y), mc, atol=0.02)


def test_two_svi_models_in_one_process_and_sklearn_tools():
    X = blobs(5, n=(20, 15, 15))[np.random.RandomState(0).permutation(50)]
    a = BayesianGaussianMixture(n_components=2, inference="svi", num_steps=30, random_state=0).fit(X)
    # (b also exercises mini-batches of rows and vectorised particles)
    b = BayesianGaussianMixture(n_components=3, inference="svi", num_steps=30, batch_size=20, num_particles=2,
                                weight_concentration_prior_type="dirichlet_distribution", random_state=0).fit(X + 100.0)
    assert a.means_.shape == (2, 2) and b.means_.shape == (3, 2)
    assert np.all(b.means_ > 90) and np.all(a.means_ < 10)
    assert len(pyro.get_param_store()) == 0
    again = clone(a).fit(X)
    np.testing.assert_allclose(again.means_, a.means_)
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_allclose(restored.predict_proba(X), a.predict_proba(X))
    grid = GridSearchCV(BayesianGaussianMixture(max_iter=50, random_state=0),
                        {"n_components": [1, 3], "weight_concentration_prior_type": WEIGHT_TYPES}, cv=2).fit(X)
    assert grid.best_params_["n_components"] == 3


def test_warm_start_and_n_init():
    X = blobs(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = BayesianGaussianMixture(n_components=3, max_iter=2, warm_start=True, random_state=0).fit(X)
        bound_after_2 = first.lower_bound_
        first.fit(X)
    assert first.lower_bound_ >= bound_after_2 - 1e-9
    single = BayesianGaussianMixture(n_components=5, random_state=0).fit(X)
    multi = BayesianGaussianMixture(n_components=5, n_init=4, random_state=0).fit(X)
    assert multi.lower_bound_ >= single.lower_bound_ - 1e-9


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_concentration_prior=0.0), r"'weight_concentration_prior' parameter .* must be None or a float in "
                                           r"the range \(0.0, inf\)"),
    (dict(weight_concentration_prior=-1.0), "'weight_concentration_prior' parameter"),
    (dict(weight_concentration_prior=np.inf), "'weight_concentration_prior' parameter"),
    (dict(mean_precision_prior=0.0), "'mean_precision_prior' parameter"),
    (dict(mean_precision_prior=True), "'mean_precision_prior' parameter"),
    (dict(degrees_of_freedom_prior=-1.0), "'degrees_of_freedom_prior' parameter"),
    (dict(degrees_of_freedom_prior=np.nan), "'degrees_of_freedom_prior' parameter"),
    (dict(degrees_of_freedom_prior=0.5), "greater than n_features - 1"),
    (dict(covariance_prior=np.eye(3)), "covariance_prior must have shape"),
    (dict(covariance_prior=-np.eye(2)), "positive-definite"),
    (dict(covariance_type="diag", covariance_prior=[1.0, -1.0]), "should be positive"),
    (dict(mean_prior=[0.0, 0.0, 0.0]), "mean_prior must have shape"),
    (dict(weight_concentration_prior_type="pitman_yor"), "weight_concentration_prior_type"),
    (dict(inference="laplace"), "'inference' parameter of BayesianGaussianMixture must be a str among"),
    (dict(covariance_type="spherical", covariance_prior=np.ones(2)), "covariance_prior must be a positive number"),
    (dict(covariance_type="spherical", covariance_prior=0.0), "'covariance_prior' parameter"),
    # booleans are no counts (scikit-learn's Interval alone would take True for 1)
    (dict(n_init=True), "'n_init' parameter"),
    (dict(max_iter=-1), "'max_iter' parameter"),
    (dict(tol=-1e-3), "'tol' parameter"),
    (dict(reg_covar=np.nan), "'reg_covar' parameter"),
    # the SVI and NUTS options are checked whatever the inference (as every option, once per fit)
    (dict(num_steps=0), "'num_steps' parameter"),
    (dict(batch_size=1.5), "'batch_size' parameter"),
    (dict(num_samples=0), "'num_samples' parameter"),
    (dict(warmup_steps=-1), "'warmup_steps' parameter"),
    (dict(inference="svi", covariance_type="diag"), "needs covariance_type='full'"),
    (dict(covariance_type="banded"), "covariance_type"),
    (dict(inference="svi", learning_rate=0.0), "learning_rate"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianGaussianMixture(n_components=2, **kwargs).fit(blobs(0, n=(10, 10, 10)))


def test_nan_input_and_unfitted():
    X = blobs(0, n=(10, 10, 10))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        BayesianGaussianMixture(n_components=2).fit(X)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BayesianGaussianMixture().predict(np.zeros((2, 2)))


@pytest.mark.parametrize("lr", [10.0, 1e3])
def test_svi_divergence_stops_with_the_step(lr):
    # An absurd learning rate throws the guide's parameters out of their domain in one step.
    with pytest.raises(FloatingPointError, match="at step 2"):
        BayesianGaussianMixture(n_components=2, inference="svi", num_steps=50, learning_rate=lr,
                                random_state=0).fit(blobs(0, n=(10, 10, 10)))


# ---------------------------------------------------------------------------------------------- any family
def test_bayesian_mixture_of_poissons_and_categoricals():
    rng = np.random.RandomState(0)
    counts = np.r_[rng.poisson(1.5, (120, 2)), rng.poisson(9.0, (80, 2))]
    bm = BayesianMixture(family="poisson", n_components=5, n_init=2, random_state=0).fit(counts)
    big = bm.weights_ > 0.05
    assert big.sum() == 2
    rates = np.sort(np.array([c.rate for c in bm.components_])[big][:, 0])
    np.testing.assert_allclose(rates, [1.5, 9.0], rtol=0.15)
    assert np.all(np.diff(bm.lower_bounds_) >= -1e-9)
    # three categorical columns per row (one symbol alone would make any mixture unidentifiable)
    symbols = np.r_[rng.choice(4, (150, 3), p=[0.7, 0.1, 0.1, 0.1]), rng.choice(4, (150, 3), p=[0.05, 0.05, 0.1, 0.8])]
    cat = BayesianMixture(family="categorical", n_components=2, random_state=0).fit(symbols)
    probs = np.array([c.probs[0] for c in cat.components_])    # column 0 of each component
    np.testing.assert_allclose(np.sort(probs[:, 0]), [0.05, 0.7], atol=0.06)
    assert cat.predict_proba(symbols).shape == (300, 2)


def test_bayesian_mixture_bad_input():
    counts = np.random.RandomState(0).poisson(3, (20, 1)).astype(float)
    with pytest.raises(ValueError, match="non-negative integer"):
        BayesianMixture(family="poisson", n_components=2).fit(-counts)
    with pytest.raises(TypeError, match="must be a Gamma"):
        BayesianMixture(family="poisson", n_components=2, prior=Dirichlet(concentration=[1.0, 1.0])).fit(counts)
    with pytest.raises(ValueError, match="broadcast"):
        BayesianMixture(family="poisson", n_components=2, prior=Gamma(concentration=[1.0, 1.0, 1.0],
                                                                      rate=1.0)).fit(counts)
    with pytest.raises(ValueError, match="no conjugate prior"):
        BayesianMixture(family="gamma", n_components=2).fit(counts + 1)
    with pytest.raises(ValueError, match="'weight_concentration_prior' parameter of BayesianMixture"):
        BayesianMixture(family="poisson", n_components=2, weight_concentration_prior=-2).fit(counts)
    with pytest.raises(ValueError, match="'n_components' parameter of BayesianMixture"):
        BayesianMixture(family="poisson", n_components=True).fit(counts)
    with pytest.raises(ValueError, match="'init_params' parameter of BayesianMixture"):
        BayesianMixture(family="poisson", n_components=2, init_params="spectral").fit(counts)
