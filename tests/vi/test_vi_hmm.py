"""VariationalHMM: hmmlearn parity, exact evidence, the enumerated ELBO, VB-EM vs SVI vs NUTS, bad input."""

import pickle

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from hmmlearn.vhmm import VariationalCategoricalHMM, VariationalGaussianHMM
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from probkit import CategoricalHMM, GaussianHMM, PoissonHMM, VariationalHMM
from probkit.vi.models import HMMSVI
from tests.vi._exact import (
    dirichlet_multinomial,
    hmm_log_evidence,
    hmm_path_log_likelihood,
    nw_log_marginal,
    normal_gamma_log_marginal,
    poisson_gamma_log_marginal,
)


def gaussian_data(n=300, lengths=(100, 120, 80), seed=0, d=2):
    gen = GaussianHMM(3, covariance_type="full")
    gen.startprob_ = np.array([0.5, 0.3, 0.2])
    gen.transmat_ = np.array([[0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.15, 0.15, 0.7]])
    gen.means_ = np.array([[0.0] * d, [3.0] * d, [0.0] * (d - 1) + [4.0]])
    gen.covars_ = np.stack([np.eye(d) * 0.5] * 3)
    X, _ = gen.sample(n, random_state=seed)
    return X, list(lengths)


def categorical_data(n=300, seed=0):
    gen = CategoricalHMM(2)
    gen.startprob_ = np.array([0.6, 0.4])
    gen.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    gen.emissionprob_ = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    X, _ = gen.sample(n, random_state=seed)
    return X, [n // 2, n - n // 2]


def poisson_data(n=40, seed=0):
    gen = PoissonHMM(2)
    gen.startprob_ = np.array([0.5, 0.5])
    gen.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    gen.lambdas_ = np.array([[1.0], [7.0]])
    X, _ = gen.sample(n, random_state=seed)
    return X, [n // 2, n - n // 2]


# ---------------------------------------------------------------------------------------------- hmmlearn
def test_gaussian_full_parity_with_hmmlearn():
    """From the same initial posteriors (hmmlearn's own initialisation, copied), both reach the same
    posteriors; the bounds differ by the constant n d log(2 pi) / 2 that hmmlearn leaves out."""
    X, lengths = gaussian_data()
    init = VariationalGaussianHMM(3, covariance_type="full", random_state=1)
    init._init(X, lengths)
    names = ["startprob_posterior_", "transmat_posterior_", "means_posterior_", "beta_posterior_", "dof_posterior_",
             "scale_posterior_"]
    ref = VariationalGaussianHMM(3, covariance_type="full", n_iter=25, tol=-np.inf, init_params="")
    for name in names + ["startprob_prior_", "transmat_prior_", "means_prior_", "beta_prior_", "dof_prior_",
                         "scale_prior_"]:
        setattr(ref, name, np.copy(getattr(init, name)))
    ref._covars_ = init._covars_.copy()
    ref.fit(X, lengths)
    ours = VariationalHMM(3, n_iter=25, tol=-np.inf, init_params="")
    for name in names:
        setattr(ours, name, np.copy(getattr(init, name)))
    ours.fit(X, lengths=lengths)
    for name in names:
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, err_msg=name)
    np.testing.assert_allclose(ours.covars_, ref.covars_, rtol=1e-8)
    offset = np.asarray(ours.elbo_history_) - np.asarray(ref.monitor_.history)
    # (the first bound is about -5e9 from hmmlearn's broad initial posterior: compare relatively)
    np.testing.assert_allclose(offset, -0.5 * X.size * np.log(2 * np.pi), rtol=0,
                               atol=1e-8 + 1e-12 * np.abs(ref.monitor_.history).max())
    np.testing.assert_array_equal(ours.predict(X, lengths=lengths), ref.predict(X, lengths=lengths))
    np.testing.assert_allclose(ours.predict_proba(X, lengths=lengths), ref.predict_proba(X, lengths=lengths), atol=1e-8)


def test_categorical_parity_with_hmmlearn():
    X, lengths = categorical_data()
    init = VariationalCategoricalHMM(2, random_state=3, n_features=3)
    init._init(X, lengths)
    names = ["startprob_posterior_", "transmat_posterior_", "emissionprob_posterior_"]
    ref = VariationalCategoricalHMM(2, n_iter=30, tol=-np.inf, init_params="", n_features=3)
    for name in names + ["startprob_prior_", "transmat_prior_", "emissionprob_prior_"]:
        setattr(ref, name, np.copy(getattr(init, name)))
    ref.fit(X, lengths)
    ours = VariationalHMM(2, emission="categorical", n_iter=30, tol=-np.inf, init_params="", n_features=3)
    for name in names:
        setattr(ours, name, np.copy(getattr(init, name)))
    ours.fit(X, lengths=lengths)
    for name in names:
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, err_msg=name)
    np.testing.assert_allclose(ours.elbo_history_, ref.monitor_.history, rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(X, lengths=lengths), ref.predict(X, lengths=lengths))


# ---------------------------------------------------------------------------------------------- the bound
@pytest.mark.parametrize("emission, cov", [("gaussian", "full"), ("gaussian", "diag"), ("gaussian", "tied"),
                                           ("gaussian", "spherical"), ("categorical", None), ("poisson", None)])
def test_bound_never_decreases(emission, cov):
    X, lengths = {"gaussian": gaussian_data, "categorical": categorical_data, "poisson": poisson_data}[emission]()
    kw = {} if cov is None else {"covariance_type": cov}
    vh = VariationalHMM(3, emission=emission, n_iter=60, tol=1e-10, random_state=0, **kw).fit(X, lengths=lengths)
    h = vh.elbo_history_
    assert len(h) > 5 and np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    assert vh.lower_bound_ == h[-1]


TINY = [np.array([[0.1], [2.9], [3.2], [0.3]]), np.array([[3.1], [0.2], [-0.1]])]


def _evidence(emission, cov, vh, sequences):
    k = vh.n_components
    if emission == "categorical":
        alpha = vh.emissionprob_prior_
        em = lambda j, rows: dirichlet_multinomial(np.bincount(rows[:, 0].astype(int), minlength=alpha.shape[1]),  # noqa: E731
                                                   alpha[j])
    elif emission == "poisson":
        em = lambda j, rows: poisson_gamma_log_marginal(rows[:, 0], vh.lambdas_prior_[j, 0], vh.lambdas_weight_[j, 0])  # noqa: E731
    elif cov == "full":
        em = lambda j, rows: nw_log_marginal(rows, vh.means_prior_[j], vh.beta_prior_[j], vh.dof_prior_[j],  # noqa: E731
                                             vh.scale_prior_[j])
    else:
        em = lambda j, rows: sum(normal_gamma_log_marginal(rows[:, f], vh.means_prior_[j, f], vh.beta_prior_[j],  # noqa: E731
                                                           0.5 * vh.dof_prior_[j], 0.5 * vh.scale_prior_[j, f])
                                 for f in range(rows.shape[1]))
    return hmm_log_evidence(sequences, k, vh.startprob_prior_, vh.transmat_prior_, em)


@pytest.mark.parametrize("emission, cov", [("gaussian", "full"), ("gaussian", "diag"), ("categorical", None),
                                           ("poisson", None)])
def test_bound_below_exact_evidence(emission, cov):
    """Two short sequences, two states: the exact evidence sums all 2^7 state paths of conjugate
    marginals (Dirichlet-multinomial start and rows, Normal-Wishart / Normal-Gamma / Gamma-Poisson /
    Dirichlet emissions). The bound lies below it, and within a few nats (mean-field gap)."""
    seqs = [np.abs(np.round(s)) for s in TINY] if emission in ("categorical", "poisson") else TINY
    X = np.concatenate(seqs)
    kw = dict(n_components=2, emission=emission, n_iter=200, tol=1e-10, random_state=0, startprob_prior=1.0,
              transmat_prior=1.0)
    if emission == "gaussian":
        kw.update(covariance_type=cov, scale_prior=0.5, means_prior=1.5)
    if emission == "categorical":
        kw.update(n_features=4, emissionprob_prior=0.5)
    vh = VariationalHMM(**kw).fit(X, lengths=[4, 3])
    evidence = _evidence(emission, cov, vh, seqs)
    assert vh.lower_bound_ <= evidence + 1e-9
    assert vh.lower_bound_ > evidence - 3.0


@pytest.mark.parametrize("formulation", ["discrete_hmm", "markov", "probkit"])
def test_enumerated_elbo_is_exact_for_fixed_parameters(formulation):
    """With a point-mass guide on every continuous site the ELBO of each formulation is
    log p(X | theta) + log p(theta): the state paths are summed exactly (checked by enumeration)."""
    rng = np.random.RandomState(0)
    k, lengths = 2, [4, 3]
    x_seqs = [rng.poisson(3.0, (L, 1)).astype(float) for L in lengths]
    spec = HMMSVI("poisson", torch.full((k,), 0.8), torch.full((k, k), 1.2),
                  {"concentration": torch.full((k, 1), 2.0), "rate": torch.full((k, 1), 0.5)},
                  formulation=formulation)
    start = torch.tensor([0.3, 0.7], dtype=torch.float64)
    trans = torch.tensor([[0.6, 0.4], [0.25, 0.75]], dtype=torch.float64)
    rate = torch.tensor([[1.5], [5.0]], dtype=torch.float64)

    def guide(x, lengths, mask, batch_size=None):
        pyro.sample("startprob", dist.Delta(start, event_dim=1))
        with pyro.plate("states", k):
            pyro.sample("transmat", dist.Delta(trans, event_dim=1))
            pyro.sample("rate", dist.Delta(rate, event_dim=1))

    padded = torch.zeros(2, 4, 1, dtype=torch.float64)
    padded[0] = torch.as_tensor(x_seqs[0])
    padded[1, :3] = torch.as_tensor(x_seqs[1])
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    loss = TraceEnum_ELBO(max_plate_nesting=1) if formulation == "markov" else Trace_ELBO(max_plate_nesting=1)
    model = config_enumerate(spec.model) if formulation == "markov" else spec.model
    elbo = -loss.loss(model, guide, padded, torch.tensor(lengths), mask)
    log_lik = sum(hmm_path_log_likelihood(np.log(start.numpy()), np.log(trans.numpy()),
                                          stats.poisson(rate.numpy()[:, 0]).logpmf(xs)) for xs in x_seqs)
    log_prior = (stats.dirichlet(np.full(k, 0.8)).logpdf(start.numpy())
                 + sum(stats.dirichlet(np.full(k, 1.2)).logpdf(row) for row in trans.numpy())
                 + stats.gamma(2.0, scale=2.0).logpdf(rate.numpy()).sum())
    np.testing.assert_allclose(elbo, log_lik + log_prior, rtol=1e-8)


# ---------------------------------------------------------------------------------------------- VB-EM vs SVI vs NUTS
def test_vem_and_svi_agree():
    """Same model, same initial posterior. Tolerance: means within 0.1 (posterior sd ~0.07),
    transition probabilities within 0.05, same decoded states on >= 98% of steps. SVI's bound
    marginalises the paths exactly (no q(z) factor), so its optimum differs from VB-EM's by the
    path uncertainty only; the rest is stochastic-optimisation error."""
    X, lengths = gaussian_data(n=240, lengths=(120, 120))
    kw = dict(n_components=3, covariance_type="diag", random_state=0)
    vem = VariationalHMM(**kw).fit(X, lengths=lengths)
    svi = VariationalHMM(inference="svi", num_steps=400, learning_rate=0.05, svi_tol=0.0, **kw).fit(X, lengths=lengths)
    np.testing.assert_allclose(svi.means_, vem.means_, atol=0.1)
    np.testing.assert_allclose(svi.transmat_, vem.transmat_, atol=0.05)
    assert np.mean(svi.predict(X, lengths=lengths) == vem.predict(X, lengths=lengths)) >= 0.98
    assert abs(svi.lower_bound_ - vem.lower_bound_) < 0.01 * abs(vem.lower_bound_)
    assert svi.elbo_history_.shape == (400,)
    for key in ("startprob", "transmat", "emission"):
        assert type(svi.posterior_[key]) is type(vem.posterior_[key])


def test_nuts_reference_against_vem():
    """Poisson HMM on 60 steps: NUTS (paths summed by the forward algorithm) against VB-EM.
    Posterior means of the rates within 0.5 NUTS sd (Monte Carlo error of 80 draws ~0.2 sd),
    VB-EM's sd not larger than 1.3x NUTS' (mean field under-disperses), and the
    posterior-predictive scores within 1 nat."""
    X, lengths = poisson_data()
    kw = dict(n_components=2, emission="poisson", random_state=0)
    vem = VariationalHMM(**kw).fit(X, lengths=lengths)
    nuts = VariationalHMM(inference="nuts", num_samples=80, warmup_steps=50, **kw).fit(X, lengths=lengths)
    draws = nuts.posterior_samples_["rate"][:, :, 0]
    a, b = vem.lambdas_posterior_
    vi_mean, vi_sd = a[:, 0] / b[:, 0], np.sqrt(a[:, 0]) / b[:, 0]
    assert np.all(np.abs(draws.mean(0) - vi_mean) < 0.5 * draws.std(0))
    assert np.all(vi_sd < 1.3 * draws.std(0))
    assert abs(nuts.score(X, lengths=lengths) - vem.score(X, lengths=lengths)) < 1.0


def test_posterior_predictive_score():
    X, lengths = poisson_data()
    vh = VariationalHMM(2, emission="poisson", random_state=0).fit(X, lengths=lengths)
    s1 = vh.score(X, lengths=lengths)
    assert s1 == vh.score(X, lengths=lengths)  # seeded by random_state
    plug_in = PoissonHMM(2)
    plug_in.startprob_, plug_in.transmat_, plug_in.lambdas_ = vh.startprob_, vh.transmat_, vh.lambdas_
    # averaging over the posterior costs a little against the posterior-mean plug-in, not much
    assert plug_in.score(X, lengths=lengths) - 5.0 < s1 < plug_in.score(X, lengths=lengths) + 1.0
    Xs, states = vh.sample(50, random_state=0)
    assert Xs.shape == (50, 1) and states.shape == (50,) and np.all(Xs >= 0)


# ---------------------------------------------------------------------------------------------- API and bad input
def test_svi_isolation_clone_pickle():
    X, lengths = categorical_data(n=80)
    a = VariationalHMM(2, emission="categorical", inference="svi", num_steps=20, random_state=0).fit(X, lengths=lengths)
    b = VariationalHMM(3, emission="categorical", inference="svi", num_steps=20, random_state=0).fit(X, lengths=lengths)
    assert a.transmat_.shape == (2, 2) and b.transmat_.shape == (3, 3)
    assert len(pyro.get_param_store()) == 0
    again = clone(a).fit(X, lengths=lengths)
    np.testing.assert_allclose(again.transmat_, a.transmat_)
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(X, lengths=lengths), a.predict(X, lengths=lengths))
    sub = VariationalHMM(2, emission="categorical", inference="svi", num_steps=20, batch_size=1,
                         random_state=0).fit(X, lengths=lengths)
    assert np.isfinite(sub.elbo_history_).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(inference="gibbs"), "The .inference. parameter of VariationalHMM must be a str among"),
    (dict(emission="student"), "The .emission. parameter of VariationalHMM"),
    (dict(covariance_type="banded"), "The .covariance_type. parameter of VariationalHMM"),
    (dict(covariance_type="tied", dof_prior=[3.0, 3.0]), r"dof_prior must broadcast to shape \(\)"),
    (dict(covariance_type="tied", dof_prior=0.5), "dof_prior must be greater than n_features - 1"),
    (dict(covariance_type="tied", scale_prior=np.ones((2, 2))), "scale_prior must hold symmetric positive-definite"),
    (dict(covariance_type="tied", scale_prior=np.stack([np.eye(2)] * 2)), "scale_prior must broadcast to shape"),
    (dict(covariance_type="spherical", scale_prior=[1.0, -1.0]), "scale_prior must be positive"),
    (dict(covariance_type="spherical", dof_prior=0.0), "dof_prior must be positive"),
    (dict(covariance_type="spherical", inference="svi"), "covariance_type='spherical' needs inference='vem'"),
    (dict(covariance_type="tied", inference="nuts"), "covariance_type='tied' needs inference='vem'"),
    (dict(hmm_formulation="scan"), "The .hmm_formulation. parameter of VariationalHMM"),
    (dict(startprob_prior=-1.0), "startprob_prior must be positive"),
    (dict(transmat_prior=np.ones((3, 3))), "transmat_prior must broadcast"),
    (dict(dof_prior=0.5), "dof_prior must be greater than n_features - 1"),
    (dict(beta_prior=0.0), "beta_prior must be positive"),
    (dict(scale_prior=-np.eye(2)), "positive-definite"),
    (dict(inference="svi", learning_rate=-1.0), "learning_rate"),
])
def test_bad_input(kwargs, match):
    X, lengths = gaussian_data(n=60, lengths=(30, 30))
    with pytest.raises(ValueError, match=match):
        VariationalHMM(2, **kwargs).fit(X, lengths=lengths)


def test_bad_data():
    X, lengths = gaussian_data(n=60, lengths=(30, 30))
    with pytest.raises(TypeError, match="lengths="):
        VariationalHMM(2).fit(X, lengths)
    bad = X.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VariationalHMM(2).fit(bad, lengths=lengths)
    with pytest.raises(ValueError, match="non-negative integer"):
        VariationalHMM(2, emission="poisson").fit(-np.ones((10, 1)))
    Xc, lc = categorical_data(n=40)
    vh = VariationalHMM(2, emission="categorical", n_features=3, random_state=0).fit(Xc, lengths=lc)
    with pytest.raises(ValueError, match="symbol 5"):
        vh.predict(np.array([[0], [5]]))
    with pytest.raises(ValueError, match="symbol"):
        VariationalHMM(2, emission="categorical", n_features=2).fit(Xc, lengths=lc)


def test_hand_set_start_and_transitions_are_validated_and_used():
    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(0, 1, (60, 1)), rng.normal(6, 1, (60, 1))]
    bad = VariationalHMM(2, init_params="", n_iter=1, random_state=0)
    bad.transmat_ = np.array([[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="transmat_ must sum to 1"):
        bad.fit(X)
    wrong_shape = VariationalHMM(2, init_params="", n_iter=1, random_state=0)
    wrong_shape.startprob_ = np.ones(3) / 3
    with pytest.raises(ValueError, match=r"startprob_ must have shape \(2,\)"):
        wrong_shape.fit(X)
    # a left-to-right chain set by hand stays left-to-right: its structural zeros are kept
    model = VariationalHMM(2, init_params="e", params="e", n_iter=5, random_state=0)
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.array([[0.95, 0.05], [0.0, 1.0]])
    model.fit(X)
    np.testing.assert_allclose(model.transmat_, [[0.95, 0.05], [0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(model.startprob_, [1.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------------------------------------- tied and spherical
def _fit_shared(cov, **kw):
    X, lengths = gaussian_data()
    return VariationalHMM(3, covariance_type=cov, n_iter=40, tol=1e-8, random_state=0, **kw).fit(X, lengths=lengths), X


def _gaussian_log_density(x, mean, precision):
    """log N(x | mean, inv(precision)) for stacked means (..., d) and precisions (..., d, d)."""
    d = x.shape[-1]
    diff = x - mean
    quad = np.einsum("...i,...ij,...j->...", diff, precision, diff)
    return 0.5 * (np.linalg.slogdet(precision)[1] - d * np.log(2 * np.pi) - quad)


def _draws_from(vh, which, n_draws, rng):
    """Draws of (means (S, K, d), log q or log p of the draw (S,), precisions (S, K, d, d)) from the
    prior or posterior of a tied / spherical model, written from the documented model with scipy."""
    means, beta = getattr(vh, f"means_{which}_"), getattr(vh, f"beta_{which}_")
    dof, scale = getattr(vh, f"dof_{which}_"), getattr(vh, f"scale_{which}_")
    k, d = means.shape
    if vh.covariance_type == "tied":  # Lambda ~ Wishart(dof, inv(scale)), mu_k | Lambda ~ N(m_k, inv(beta_k Lambda))
        wishart = stats.wishart(df=dof, scale=np.linalg.inv(scale))
        lam = wishart.rvs(size=n_draws, random_state=rng).reshape(n_draws, d, d)
        log_density = wishart.logpdf(np.moveaxis(lam, 0, -1)) if d > 1 else wishart.logpdf(lam[:, 0, 0])
        prec = np.broadcast_to(lam[:, None], (n_draws, k, d, d))
    else:  # tau_k ~ Gamma(d dof_k / 2, rate d scale_k / 2), mu_k | tau_k ~ N(m_k, I / (beta_k tau_k))
        gamma = stats.gamma(a=0.5 * d * dof, scale=2.0 / (d * scale))
        tau = gamma.rvs(size=(n_draws, k), random_state=rng)
        log_density = gamma.logpdf(tau).sum(1)
        prec = tau[..., None, None] * np.eye(d)
    chol = np.linalg.cholesky(np.linalg.inv(beta[:, None, None] * prec))
    mu = means + np.einsum("skij,skj->ski", chol, rng.standard_normal((n_draws, k, d)))
    return mu, prec, log_density


def _log_normal_part(vh, which, mu, prec):
    beta = getattr(vh, f"beta_{which}_")
    return _gaussian_log_density(mu, getattr(vh, f"means_{which}_"), beta[:, None, None] * prec).sum(1)


@pytest.mark.parametrize("cov", ["tied", "spherical"])
def test_shared_precision_expectations_match_monte_carlo(cov):
    """The expected log-densities of the E-step and the KL of the bound, against Monte Carlo
    averages over draws of the posterior written with scipy.stats from the documented model."""
    vh, X = _fit_shared(cov)
    rng = np.random.RandomState(1)
    mu, prec, log_q = _draws_from(vh, "posterior", 20000, rng)
    log_q = log_q + _log_normal_part(vh, "posterior", mu, prec)
    # the prior density at the posterior's draws
    prior_dof, prior_scale = vh.dof_prior_, vh.scale_prior_
    d = X.shape[1]
    if cov == "tied":
        lam = prec[:, 0]
        wishart = stats.wishart(df=prior_dof, scale=np.linalg.inv(prior_scale))
        log_p = wishart.logpdf(np.moveaxis(lam, 0, -1))
    else:
        tau = prec[:, :, 0, 0]
        log_p = stats.gamma(a=0.5 * d * prior_dof, scale=2.0 / (d * prior_scale)).logpdf(tau).sum(1)
    log_p = log_p + _log_normal_part(vh, "prior", mu, prec)

    fam = vh._family()
    post, prior = vh.posterior_["emission"], vh.prior_["emission"]
    kl = float(fam.kl(post, prior).sum())
    sample = log_q - log_p
    assert abs(kl - sample.mean()) < 5 * sample.std() / np.sqrt(len(sample)) + 1e-6

    x = X[[0, 57, 150, 299]]
    expected = fam.expected_log_likelihood(post, torch.as_tensor(x)).numpy()  # (4, K)
    log_dens = _gaussian_log_density(x[:, None, None, :], mu[None], prec[None])  # (4, S, K)
    mc, se = log_dens.mean(1), log_dens.std(1) / np.sqrt(log_dens.shape[1])
    assert np.all(np.abs(expected - mc) < 5 * se + 1e-6)


@pytest.mark.parametrize("cov", ["tied", "spherical"])
def test_strong_prior_at_the_truth_pins_the_covariances(cov):
    """A prior worth 10^6 observations at the generating parameters: the posterior means of the
    covariances (covars_) and of the means are the generating ones to about 300 / 10^6."""
    rng = np.random.RandomState(0)
    true_means = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 3.0]])
    gen = GaussianHMM(3, covariance_type=cov)
    gen.startprob_ = np.array([0.5, 0.3, 0.2])
    gen.transmat_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    gen.means_ = true_means
    true_covars = np.array([[1.0, 0.6], [0.6, 0.8]]) if cov == "tied" else np.array([0.5, 1.0, 2.0])
    gen.covars_ = true_covars
    X, _ = gen.sample(300, random_state=rng)
    strength = 1e6
    scale = true_covars * strength
    weak = VariationalHMM(3, covariance_type=cov, n_iter=30, random_state=0).fit(X)
    vh = VariationalHMM(3, covariance_type=cov, n_iter=30, random_state=0, means_prior=true_means,
                        beta_prior=strength, dof_prior=strength, scale_prior=scale).fit(X)
    assert vh.covars_.shape == true_covars.shape == weak.covars_.shape
    np.testing.assert_allclose(vh.covars_, true_covars, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(vh.means_, true_means, atol=2e-3)
    # the data alone leave them much further away (the check can fail)
    assert np.abs(weak.covars_ - true_covars).max() > 10 * np.abs(vh.covars_ - true_covars).max()


@pytest.mark.parametrize("cov", ["tied", "spherical"])
def test_shared_precision_shapes_score_sample_and_save(cov, tmp_path):
    from probkit.io import load, save

    vh, X = _fit_shared(cov)
    k, d = 3, X.shape[1]
    shapes = {"tied": {"covars_": (d, d), "scale_posterior_": (d, d), "dof_posterior_": ()},
              "spherical": {"covars_": (k,), "scale_posterior_": (k,), "dof_posterior_": (k,)}}[cov]
    for name, shape in shapes.items():
        assert np.shape(getattr(vh, name)) == shape, name
    np.testing.assert_allclose(vh.covars_, vh.scale_posterior_ / vh.dof_posterior_)
    # the posterior-mean parameters are a GaussianHMM of the same covariance type
    plug_in = GaussianHMM(3, covariance_type=cov)
    plug_in.startprob_, plug_in.transmat_, plug_in.means_, plug_in.covars_ = (vh.startprob_, vh.transmat_,
                                                                              vh.means_, vh.covars_)
    np.testing.assert_allclose(vh.score_samples(X)[0], plug_in.score_samples(X)[0], rtol=1e-10)
    s = vh.score(X)
    assert plug_in.score(X) - 10.0 < s < plug_in.score(X) + 1.0
    Xs, states = vh.sample(40, random_state=0)
    assert Xs.shape == (40, d) and np.all(np.isfinite(Xs))
    path = tmp_path / "model.pk"
    save(vh, path)
    restored = load(path)
    np.testing.assert_array_equal(restored.predict(X), vh.predict(X))
    np.testing.assert_allclose(restored.scale_posterior_, vh.scale_posterior_)
    # continuing the fit from the restored posterior (init_params="") keeps the bound increasing
    restored.set_params(init_params="", n_iter=3, tol=-np.inf)
    with pytest.warns(ConvergenceWarning):  # tol=-inf: every iteration runs
        restored.fit(X)
    assert restored.elbo_history_[0] >= vh.lower_bound_ - 1e-8 * abs(vh.lower_bound_)


@pytest.mark.parametrize("cov, name, value, match", [
    ("tied", "dof_posterior_", np.array([5.0, 5.0, 5.0]), r"dof_posterior_ must have shape \(\)"),
    ("tied", "scale_posterior_", np.stack([np.eye(2)] * 3), r"scale_posterior_ must have shape \(2, 2\)"),
    ("tied", "dof_posterior_", 0.5, "dof_posterior_ must be greater than n_features - 1"),
    ("spherical", "scale_posterior_", np.ones((3, 2)), r"scale_posterior_ must have shape \(3,\)"),
    ("spherical", "dof_posterior_", np.array([1.0, -1.0, 1.0]), "dof_posterior_ must hold positive"),
    ("spherical", "beta_posterior_", np.ones(2), r"beta_posterior_ must have shape \(3,\)"),
])
def test_hand_set_shared_precision_posteriors_are_validated(cov, name, value, match):
    vh, X = _fit_shared(cov)
    vh.set_params(init_params="")
    setattr(vh, name, value)
    with pytest.raises(ValueError, match=match):
        vh.fit(X)
