"""Conjugate priors added with the new families, against numerical integration of prior x likelihood."""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from probkit.distributions import Beta, Gamma, Laplace, NegativeBinomial, StudentT


def _numerical_posterior(log_joint, low, high):
    """Log evidence, posterior mean and mode of a scalar parameter by quadrature."""
    peak = optimize.minimize_scalar(lambda t: -log_joint(t), bounds=(low, high), method="bounded",
                                    options={"xatol": 1e-12})
    shift = -peak.fun
    z = integrate.quad(lambda t: np.exp(log_joint(t) - shift), low, high, points=[peak.x], epsabs=0, epsrel=1e-12,
                       limit=400)[0]
    mean = integrate.quad(lambda t: t * np.exp(log_joint(t) - shift), low, high, points=[peak.x], epsabs=0,
                          epsrel=1e-12, limit=400)[0] / z
    return np.log(z) + shift, mean, peak.x


def test_gamma_rate_with_known_shape():
    x = np.random.default_rng(0).gamma(2.5, 1 / 1.7, 12)
    prior = Gamma(concentration=3.0, rate=2.0)
    d = Gamma(fixed_concentration=2.5)

    def log_joint(rate):
        return stats.gamma(2.5, scale=1 / rate).logpdf(x).sum() + stats.gamma(3.0, scale=1 / 2.0).logpdf(rate)

    log_z, mean, mode = _numerical_posterior(log_joint, 1e-6, 20.0)
    post = d.posterior(x, prior)
    np.testing.assert_allclose(float(post.concentration / post.rate), mean, rtol=1e-9)
    np.testing.assert_allclose(d.log_marginal_likelihood(x, prior), log_z, rtol=1e-9)
    fit = Gamma(fixed_concentration=2.5).fit(x, prior=prior)
    np.testing.assert_allclose(float(fit.rate), mode, rtol=1e-7)
    assert float(fit.concentration) == 2.5
    np.testing.assert_allclose(float(Gamma(fixed_concentration=2.5).fit(x).rate), 2.5 / x.mean(), rtol=1e-12)


def test_negative_binomial_probs_with_known_total_count():
    counts = np.random.default_rng(1).negative_binomial(3, 0.35, 15)
    prior = Beta(concentration1=2.0, concentration0=1.5)
    d = NegativeBinomial(fixed_total_count=3.0)

    def log_joint(p):
        return stats.nbinom(3.0, p).logpmf(counts).sum() + stats.beta(2.0, 1.5).logpdf(p)

    log_z, mean, mode = _numerical_posterior(log_joint, 1e-9, 1 - 1e-9)
    post = d.posterior(counts, prior)
    np.testing.assert_allclose(float(post.concentration1 / (post.concentration1 + post.concentration0)), mean,
                               rtol=1e-9)
    np.testing.assert_allclose(d.log_marginal_likelihood(counts, prior), log_z, rtol=1e-9)
    np.testing.assert_allclose(float(NegativeBinomial(fixed_total_count=3.0).fit(counts, prior=prior).probs), mode,
                               rtol=1e-7)


def test_families_without_a_conjugate_prior_say_so():
    beta = Beta(concentration1=1.0, concentration0=1.0)
    with pytest.raises(TypeError, match="fixed_total_count"):
        NegativeBinomial().fit(np.array([1, 2, 3]), prior=beta)
    with pytest.raises(TypeError, match="no tractable conjugate prior"):
        StudentT().fit(np.array([1.0, 2.0, 3.0]), prior=beta)
    with pytest.raises(TypeError, match="no tractable conjugate prior"):
        Laplace().fit(np.array([1.0, 2.0, 3.0]), prior=beta)
    with pytest.raises(TypeError, match="no tractable conjugate prior"):
        Gamma().fit(np.array([1.0, 2.0, 3.0]), prior=Gamma(concentration=1.0, rate=1.0))
