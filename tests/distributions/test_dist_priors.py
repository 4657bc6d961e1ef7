"""NormalGamma and NormalWishart: densities, sampling, KL, entropy, modes and VB expectations."""

import math

import numpy as np
import pytest
import torch
import torch.distributions as td
from scipy import optimize, special, stats

from probkit.distributions import NormalGamma, NormalWishart

NG_BATCH = dict(loc=[0.0, 1.5, -2.0], mean_precision=[1.0, 0.5, 3.0], concentration=[2.0, 4.5, 1.2],
                rate=[1.0, 3.0, 0.7])
NG_OTHER = dict(loc=[0.5, 1.0, 0.0], mean_precision=[2.0, 1.0, 1.0], concentration=[3.0, 2.0, 2.0],
                rate=[2.0, 1.0, 1.5])


def _ng_scipy_logpdf(params, mu, tau):
    m, k, a, b = (np.asarray(params[n]) for n in ("loc", "mean_precision", "concentration", "rate"))
    return stats.gamma(a, scale=1 / b).logpdf(tau) + stats.norm(m, 1 / np.sqrt(k * tau)).logpdf(mu)


def _ng_numpy_samples(params, n, seed):
    # Independent of probkit's samplers: numpy's gamma and normal.
    rng = np.random.default_rng(seed)
    m, k, a, b = (np.asarray(params[n_]) for n_ in ("loc", "mean_precision", "concentration", "rate"))
    tau = rng.gamma(a, 1 / b, size=(n, *a.shape))
    mu = rng.normal(m, 1 / np.sqrt(k * tau))
    return mu, tau


# ---------------------------------------------------------------------------- NormalGamma
def test_normal_gamma_log_prob_matches_scipy_batched():
    prior = NormalGamma(**NG_BATCH)
    mu, tau = _ng_numpy_samples(NG_BATCH, 20, 0)
    np.testing.assert_allclose(prior.log_prob(mu, tau), _ng_scipy_logpdf(NG_BATCH, mu, tau), rtol=1e-10)
    out = prior.log_prob(torch.as_tensor(mu), torch.as_tensor(tau))
    assert isinstance(out, torch.Tensor) and out.shape == (20, 3)


def test_normal_gamma_log_normalizer_formula():
    prior = NormalGamma(**NG_BATCH)
    m, k, a, b = (np.asarray(NG_BATCH[n]) for n in ("loc", "mean_precision", "concentration", "rate"))
    expected = special.gammaln(a) - a * np.log(b) + 0.5 * np.log(2 * np.pi / k)
    np.testing.assert_allclose(prior._log_normalizer().numpy(), expected, rtol=1e-13)


def test_normal_gamma_sample_moments_and_reproducibility():
    params = dict(loc=[0.0, 2.0], mean_precision=[1.0, 4.0], concentration=[3.0, 5.0], rate=[2.0, 1.0])
    prior = NormalGamma(**params)
    n = 40000
    mu, tau = prior.sample(n, random_state=0)
    assert mu.shape == tau.shape == (n, 2)
    a, b = np.array([3.0, 5.0]), np.array([2.0, 1.0])
    m, k = np.array([0.0, 2.0]), np.array([1.0, 4.0])
    var_tau = a / b ** 2
    var_mu = b / (k * (a - 1))  # marginal Student t
    np.testing.assert_array_less(np.abs(tau.mean(0) - a / b), 5 * np.sqrt(var_tau / n))
    np.testing.assert_array_less(np.abs(mu.mean(0) - m), 5 * np.sqrt(var_mu / n))
    np.testing.assert_array_less(np.abs(mu.var(0) - var_mu), 0.05 * var_mu)
    np.testing.assert_array_equal(prior.sample(5, random_state=3)[0], prior.sample(5, random_state=3)[0])


def test_normal_gamma_kl_equals_gamma_kl_plus_expected_normal_kl():
    # Chain rule: KL = KL(Gamma_1 || Gamma_2) + E_{tau ~ Gamma_1}[KL(N(m1, 1/(k1 tau)) || N(m2, 1/(k2 tau)))],
    # the first from torch, the second in closed form (linear in tau).
    p, q = NormalGamma(**NG_BATCH), NormalGamma(**NG_OTHER)
    f64 = dict(dtype=torch.float64)
    a1, b1 = torch.tensor(NG_BATCH["concentration"], **f64), torch.tensor(NG_BATCH["rate"], **f64)
    a2, b2 = torch.tensor(NG_OTHER["concentration"], **f64), torch.tensor(NG_OTHER["rate"], **f64)
    gamma_kl = td.kl_divergence(td.Gamma(a1, b1), td.Gamma(a2, b2)).numpy()
    m1, k1 = np.array(NG_BATCH["loc"]), np.array(NG_BATCH["mean_precision"])
    m2, k2 = np.array(NG_OTHER["loc"]), np.array(NG_OTHER["mean_precision"])
    e_tau = a1.numpy() / b1.numpy()
    normal_kl = 0.5 * (np.log(k1 / k2) + k2 / k1 + k2 * e_tau * (m1 - m2) ** 2 - 1)
    np.testing.assert_allclose(p.kl_divergence(q), gamma_kl + normal_kl, rtol=1e-10)
    np.testing.assert_allclose(p.kl_divergence(p), 0.0, atol=1e-12)


def test_normal_gamma_kl_and_entropy_match_monte_carlo():
    p, q = NormalGamma(**NG_BATCH), NormalGamma(**NG_OTHER)
    mu, tau = _ng_numpy_samples(NG_BATCH, 100000, 1)
    log_p = _ng_scipy_logpdf(NG_BATCH, mu, tau)
    log_q = _ng_scipy_logpdf(NG_OTHER, mu, tau)
    n = len(mu)
    diff = log_p - log_q
    np.testing.assert_array_less(np.abs(diff.mean(0) - p.kl_divergence(q)), 5 * diff.std(0) / np.sqrt(n))
    np.testing.assert_array_less(np.abs(-log_p.mean(0) - p.entropy()), 5 * log_p.std(0) / np.sqrt(n))


def test_normal_gamma_entropy_equals_gamma_entropy_plus_conditional_normal_entropy():
    prior = NormalGamma(**NG_BATCH)
    a, b, k = (np.array(NG_BATCH[n]) for n in ("concentration", "rate", "mean_precision"))
    expected = (stats.gamma(a, scale=1 / b).entropy() + 0.5 * np.log(2 * np.pi * np.e / k)
                - 0.5 * (special.digamma(a) - np.log(b)))
    np.testing.assert_allclose(prior.entropy(), expected, rtol=1e-12)


def test_normal_gamma_vb_expectations_match_monte_carlo():
    prior = NormalGamma(**NG_BATCH)
    mu, tau = _ng_numpy_samples(NG_BATCH, 200000, 2)
    n = len(mu)
    for value, samples in [
        (prior.expected_precision(), tau),
        (prior.expected_log_precision(), np.log(tau)),
        (prior.expected_precision_times_mean(), tau * mu),
        (prior.expected_precision_times_mean_sq(), tau * mu * mu),
    ]:
        assert value.shape == (3,)
        np.testing.assert_array_less(np.abs(samples.mean(0) - value), 5 * samples.std(0) / np.sqrt(n))


def test_normal_gamma_mode_maximises_the_density():
    prior = NormalGamma(loc=0.7, mean_precision=2.0, concentration=3.0, rate=1.5)
    loc, precision = prior._mode()
    res = optimize.minimize(lambda t: np.inf if t[1] <= 0 else -float(prior.log_prob(t[0], t[1])), [0.0, 1.0],
                            method="Nelder-Mead", options={"xatol": 1e-11, "fatol": 1e-14})
    np.testing.assert_allclose([float(loc), float(precision)], res.x, rtol=1e-6)
    np.testing.assert_allclose(float(precision), (3.0 - 0.5) / 1.5, rtol=1e-14)
    with pytest.raises(ValueError, match="concentration > 1/2"):
        NormalGamma(loc=0.0, mean_precision=1.0, concentration=0.4, rate=1.0)._mode()


def test_normal_gamma_update_keeps_the_prior_for_zero_counts():
    prior = NormalGamma(loc=0.3, mean_precision=2.0, concentration=3.0, rate=1.5)
    post = prior._update(torch.tensor([0.0, 2.0], dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64),
                         torch.tensor([0.0, 5.0], dtype=torch.float64))
    for name, value in prior.params.items():
        np.testing.assert_allclose(post.params[name][0], value, rtol=1e-14)
    # second member: x = {1, 2}
    np.testing.assert_allclose(post.rate[1], 1.5 + 0.5 * (0.5 + 2.0 * 2 / 4 * (1.5 - 0.3) ** 2), rtol=1e-14)


def test_normal_gamma_parameter_validation_and_access():
    with pytest.raises(ValueError, match="rate must be positive"):
        NormalGamma(loc=0.0, mean_precision=1.0, concentration=1.0, rate=-1.0)
    with pytest.raises(ValueError, match="needs all of"):
        NormalGamma(loc=0.0, mean_precision=1.0)
    with pytest.raises(ValueError, match="no parameters"):
        NormalGamma().log_prob(0.0, 1.0)
    with pytest.raises(ValueError, match="tau must be strictly positive"):
        NormalGamma(loc=0.0, mean_precision=1.0, concentration=1.0, rate=1.0).log_prob(0.0, 0.0)
    with pytest.raises(ValueError, match="mu contains NaN"):
        NormalGamma(loc=0.0, mean_precision=1.0, concentration=1.0, rate=1.0).log_prob(np.nan, 1.0)
    prior = NormalGamma(**NG_BATCH)
    assert isinstance(prior.loc, np.ndarray) and prior.batch_shape == (3,)
    assert prior.torch_params()["rate"].dtype == torch.float64
    assert "NormalGamma(loc=" in repr(prior)


# ---------------------------------------------------------------------------- NormalWishart
NW_BATCH = dict(
    loc=[[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]],
    mean_precision=[1.0, 2.5],
    degrees_of_freedom=[4.0, 6.5],
    covariance=[[[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]],
                [[1.0, -0.4, 0.0], [-0.4, 0.8, 0.1], [0.0, 0.1, 1.5]]],
)
NW_OTHER = dict(
    loc=[[0.5, 0.0, -1.0], [1.0, 0.5, 0.3]],
    mean_precision=[2.0, 1.0],
    degrees_of_freedom=[5.0, 3.5],
    covariance=[[[1.0, 0.1, 0.0], [0.1, 2.0, 0.3], [0.0, 0.3, 1.0]],
                [[0.7, 0.0, 0.1], [0.0, 1.1, 0.0], [0.1, 0.0, 0.9]]],
)


def _nw_scipy_samples(params, n, seed):
    """Independent draws: scipy's Wishart sampler, then numpy normals for the mean."""
    rng = np.random.default_rng(seed)
    means, precisions = [], []
    for m, k, nu, cov in zip(*(np.asarray(params[p]) for p in ("loc", "mean_precision", "degrees_of_freedom",
                                                                 "covariance"))):
        lam = stats.wishart(df=nu, scale=np.linalg.inv(cov)).rvs(n, random_state=rng)
        chol = np.linalg.cholesky(np.linalg.inv(k * lam))
        means.append(m + (chol @ rng.normal(size=(n, len(m), 1)))[..., 0])
        precisions.append(lam)
    return np.stack(means, 1), np.stack(precisions, 1)  # (n, K, d), (n, K, d, d)


def _nw_scipy_logpdf(params, mean, precision):
    out = []
    for j, (m, k, nu, cov) in enumerate(zip(*(np.asarray(params[p]) for p in ("loc", "mean_precision",
                                                                              "degrees_of_freedom", "covariance")))):
        lam = precision[:, j]
        wish = stats.wishart(df=nu, scale=np.linalg.inv(cov)).logpdf(np.moveaxis(lam, 0, -1))
        normal = np.array([stats.multivariate_normal(m, np.linalg.inv(k * L)).logpdf(mu)
                           for mu, L in zip(mean[:, j], lam)])
        out.append(wish + normal)
    return np.stack(out, -1)


def test_normal_wishart_log_prob_matches_scipy_batched():
    prior = NormalWishart(**NW_BATCH)
    mean, precision = _nw_scipy_samples(NW_BATCH, 15, 0)
    np.testing.assert_allclose(prior.log_prob(mean, precision), _nw_scipy_logpdf(NW_BATCH, mean, precision),
                               rtol=1e-10)


def _reduced(m, k, nu, c):
    # Wishart_1(W = 1/c, nu) is Gamma(nu/2, rate = c/2).
    return (NormalWishart(loc=[[x] for x in m], mean_precision=k, degrees_of_freedom=nu,
                          covariance=[[[x]] for x in c]),
            NormalGamma(loc=m, mean_precision=k, concentration=np.asarray(nu) / 2, rate=np.asarray(c) / 2))


def test_normal_wishart_in_one_dimension_is_normal_gamma():
    nw, ng = _reduced([0.5, -1.0], [2.0, 0.7], [3.0, 5.5], [1.4, 0.6])
    nw2, ng2 = _reduced([0.0, 1.0], [1.0, 1.5], [2.5, 4.0], [1.0, 2.0])
    mu, tau = _ng_numpy_samples(ng.params, 10, 3)
    np.testing.assert_allclose(nw.log_prob(mu[..., None], tau[..., None, None]), ng.log_prob(mu, tau), rtol=1e-12)
    np.testing.assert_allclose(nw._log_normalizer().numpy(), ng._log_normalizer().numpy(), rtol=1e-12)
    np.testing.assert_allclose(nw.kl_divergence(nw2), ng.kl_divergence(ng2), rtol=1e-10)
    np.testing.assert_allclose(nw.entropy(), ng.entropy(), rtol=1e-12)
    np.testing.assert_allclose(nw.expected_precision()[..., 0, 0], ng.expected_precision(), rtol=1e-12)
    np.testing.assert_allclose(nw.expected_log_det_precision(), ng.expected_log_precision(), rtol=1e-12)
    loc_nw, prec_nw = nw._mode()
    loc_ng, prec_ng = ng._mode()
    # Joint modes differ in form ((nu - d) W vs (a - 1/2) / b) but agree for d = 1.
    np.testing.assert_allclose(prec_nw[..., 0, 0].numpy(), prec_ng.numpy(), rtol=1e-12)
    np.testing.assert_allclose(loc_nw[..., 0].numpy(), loc_ng.numpy(), rtol=1e-12)
    count = torch.tensor([3.0, 0.0], dtype=torch.float64)
    sx = torch.tensor([1.2, 0.0], dtype=torch.float64)
    sxx = torch.tensor([2.5, 0.0], dtype=torch.float64)
    post_nw = nw._update(count, sx[:, None], sxx[:, None, None])
    post_ng = ng._update(count, sx, sxx)
    np.testing.assert_allclose(post_nw.covariance[:, 0, 0] / 2, post_ng.rate, rtol=1e-12)
    np.testing.assert_allclose(post_nw.loc[:, 0], post_ng.loc, rtol=1e-12)


def test_normal_wishart_sample_moments_and_reproducibility():
    # Degrees of freedom high enough (nu - d - 1 > 0 and a marginal t with df >= 5) for the
    # mean's covariance and its sampling error to be finite.
    params = dict(NW_BATCH, degrees_of_freedom=[7.0, 9.5])
    prior = NormalWishart(**params)
    n = 20000
    mean, precision = prior.sample(n, random_state=0)
    assert mean.shape == (n, 2, 3) and precision.shape == (n, 2, 3, 3)
    se = precision.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(precision.mean(0) - prior.expected_precision()), 5 * se)
    np.testing.assert_array_less(np.abs(mean.mean(0) - np.asarray(params["loc"])), 5 * mean.std(0) / np.sqrt(n))
    for j in range(2):
        # Cov(mean) = E[(kappa Λ)^{-1}] = covariance / (kappa (nu - d - 1)); the empirical covariance
        # of 20000 heavy-tailed (t, df >= 5) draws is within about 5% of it.
        expected = np.asarray(params["covariance"][j]) / (params["mean_precision"][j]
                                                          * (params["degrees_of_freedom"][j] - 4))
        np.testing.assert_allclose(np.cov(mean[:, j].T), expected, rtol=0.1, atol=0.05 * np.abs(expected).max())
    np.testing.assert_array_equal(prior.sample(3, random_state=7)[1], prior.sample(3, random_state=7)[1])
    assert np.all(np.linalg.eigvalsh(precision) > 0)


def test_normal_wishart_kl_entropy_and_expectations_match_monte_carlo():
    p, q = NormalWishart(**NW_BATCH), NormalWishart(**NW_OTHER)
    n = 20000
    mean, precision = _nw_scipy_samples(NW_BATCH, n, 1)
    log_p = p.log_prob(mean, precision)  # agrees with scipy (test above)
    log_q = q.log_prob(mean, precision)
    diff = log_p - log_q

    def close(samples, value):
        np.testing.assert_array_less(np.abs(samples.mean(0) - value), 5 * samples.std(0) / np.sqrt(n) + 1e-12)

    close(diff, p.kl_divergence(q))
    close(-log_p, p.entropy())
    close(np.linalg.slogdet(precision)[1], p.expected_log_det_precision())
    X = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]])
    maha = np.einsum("nkd,nkde,nke->nk", X[0] - mean, precision, X[0] - mean)
    close(maha, p.expected_mahalanobis(X)[0])
    maha = np.einsum("nkd,nkde,nke->nk", X[1] - mean, precision, X[1] - mean)
    close(maha, p.expected_mahalanobis(X)[1])
    np.testing.assert_allclose(p.kl_divergence(p), 0.0, atol=1e-10)


def test_normal_wishart_expected_log_det_formula():
    prior = NormalWishart(**NW_BATCH)
    nu = np.array(NW_BATCH["degrees_of_freedom"])
    logdet_w = -np.linalg.slogdet(np.array(NW_BATCH["covariance"]))[1]
    expected = sum(special.digamma((nu + 1 - i) / 2) for i in range(1, 4)) + 3 * np.log(2) + logdet_w
    np.testing.assert_allclose(prior.expected_log_det_precision(), expected, rtol=1e-12)
    np.testing.assert_allclose(prior.expected_precision(),
                               nu[:, None, None] * np.linalg.inv(np.array(NW_BATCH["covariance"])), rtol=1e-12)


def test_normal_wishart_mode_maximises_the_density():
    prior = NormalWishart(loc=[0.3, -0.2], mean_precision=1.5, degrees_of_freedom=5.0,
                          covariance=[[1.0, 0.3], [0.3, 2.0]])
    loc, precision = prior._mode()

    def precision_of(theta):
        # Λ = L L^T with L lower triangular: every theta gives a valid precision, so BFGS
        # runs unconstrained; the maximiser in Λ does not depend on this parametrisation.
        L = np.array([[theta[2], 0.0], [theta[3], theta[4]]])
        return L @ L.T

    def neg(theta):
        return -float(prior.log_prob(theta[:2], precision_of(theta)))

    res = optimize.minimize(neg, [0.0, 0.0, 1.0, 0.0, 1.0], method="BFGS", options={"gtol": 1e-10})
    lam = precision.numpy()
    best = precision_of(res.x)
    np.testing.assert_allclose(loc.numpy(), res.x[:2], atol=1e-6)
    np.testing.assert_allclose(lam, best, rtol=1e-5)
    np.testing.assert_allclose(lam, 3.0 * np.linalg.inv([[1.0, 0.3], [0.3, 2.0]]), rtol=1e-12)
    with pytest.raises(ValueError, match="degrees_of_freedom > n_features"):
        NormalWishart(loc=[0.0, 0.0], mean_precision=1.0, degrees_of_freedom=1.5, covariance=np.eye(2))._mode()


def test_normal_wishart_update_equals_one_update_per_batch_member():
    prior = NormalWishart(loc=[0.0, 1.0], mean_precision=1.0, degrees_of_freedom=3.0, covariance=np.eye(2))
    rng = np.random.default_rng(4)
    X = rng.normal(size=(12, 2))
    resp = np.column_stack([rng.random(12), np.zeros(12)])
    count = torch.as_tensor(resp.sum(0))
    sx = torch.as_tensor(resp.T @ X)
    sxx = torch.as_tensor(np.einsum("nk,nd,ne->kde", resp, X, X))
    post = prior._update(count, sx, sxx)
    # member 0: weighted textbook update; member 1 (no data): the prior itself
    w = resp[:, 0]
    n, xbar = w.sum(), (w @ X) / w.sum()
    scatter = (w[:, None] * (X - xbar)).T @ (X - xbar)
    diff = xbar - np.array([0.0, 1.0])
    np.testing.assert_allclose(post.covariance[0], np.eye(2) + scatter + n / (1 + n) * np.outer(diff, diff),
                               rtol=1e-12)
    np.testing.assert_allclose(post.loc[0], (np.array([0.0, 1.0]) + w @ X) / (1 + n), rtol=1e-12)
    for name, value in prior.params.items():
        np.testing.assert_allclose(post.params[name][1], value, rtol=1e-14)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(degrees_of_freedom=0.5), "degrees_of_freedom must exceed"),
        (dict(covariance=[[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
        (dict(covariance=[[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (dict(covariance=np.eye(3)), "trailing shape"),
        (dict(mean_precision=0.0), "mean_precision must be positive"),
        (dict(loc=[0.0, np.nan]), "NaN"),
    ],
)
def test_normal_wishart_parameter_validation(kwargs, match):
    params = dict(loc=[0.0, 0.0], mean_precision=1.0, degrees_of_freedom=3.0, covariance=np.eye(2))
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        NormalWishart(**params)


def test_normal_wishart_input_validation():
    prior = NormalWishart(loc=[0.0, 0.0], mean_precision=1.0, degrees_of_freedom=3.0, covariance=np.eye(2))
    with pytest.raises(ValueError, match="mean must have trailing dimension 2"):
        prior.log_prob([0.0, 0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="precision must have trailing shape"):
        prior.log_prob([0.0, 0.0], np.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        prior.log_prob([0.0, 0.0], -np.eye(2))
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        prior.expected_mahalanobis(np.zeros(2))
    with pytest.raises(ValueError, match="n_samples"):
        prior.sample(0)
    assert math.isfinite(float(prior.log_prob([0.0, 0.0], np.eye(2))))
