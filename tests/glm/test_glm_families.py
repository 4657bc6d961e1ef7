"""GLM families and links: canonical links are the probkit distributions' natural parameters,
derivatives match finite differences, deviances and log-likelihoods match scipy."""

import numpy as np
import pytest
import torch
from scipy import stats

from probkit.distributions import NegativeBinomial
from probkit.glm import LINKS
from probkit.glm._families import resolve_glm_family
from probkit.glm._links import NegativeBinomialLink

MU = {
    "normal": np.array([-2.0, 0.3, 4.0]),
    "poisson": np.array([0.2, 1.5, 30.0]),
    "gamma": np.array([0.2, 1.5, 30.0]),
    "exponential": np.array([0.2, 1.5, 30.0]),
    "bernoulli": np.array([0.01, 0.4, 0.97]),
    "geometric": np.array([0.2, 1.5, 30.0]),
}


@pytest.mark.parametrize("name", [*MU, "negbin-3"])
def test_canonical_link_is_the_natural_parameter_of_the_probkit_distribution(name):
    family = resolve_glm_family(NegativeBinomial(fixed_total_count=3.0)) if name == "negbin-3" \
        else resolve_glm_family(name)
    mu = MU.get(name, MU["poisson"])
    theta = family.natural_parameter(mu)  # read off probkit's distribution at unit dispersion
    np.testing.assert_allclose(family.canonical_link().link(mu), family.canonical_sign * theta, rtol=1e-12)
    # the variance function is the derivative of the mean in the natural parameter: V = d mu / d theta
    h = 1e-6
    dtheta = (family.natural_parameter(mu * (1 + h)) - family.natural_parameter(mu * (1 - h))) / (2 * h * mu)
    np.testing.assert_allclose(1.0 / dtheta, family.variance(mu), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(LINKS) + ["negative_binomial"])
def test_link_inverse_and_derivative(name):
    link = NegativeBinomialLink(2.5) if name == "negative_binomial" else LINKS[name]()
    eta = {"inverse": np.array([0.1, 1.0, 3.0]), "negative_binomial": np.array([-3.0, -0.5, -0.01])}.get(
        name, np.array([-2.0, 0.1, 1.5]))
    mu = link.inverse(eta)
    np.testing.assert_allclose(link.link(mu), eta, rtol=1e-10, atol=1e-12)
    h = 1e-6
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.inverse_derivative(eta), numeric, rtol=1e-7)
    np.testing.assert_allclose(link.log_inverse_derivative(eta), np.log(np.abs(numeric)), rtol=1e-6, atol=1e-9)
    if name in ("logit", "probit", "cloglog"):
        np.testing.assert_allclose(link.log_inverse(eta), np.log(mu), rtol=1e-12)
        np.testing.assert_allclose(link.log1m_inverse(eta), np.log1p(-mu), rtol=1e-12)


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog"])
def test_binary_links_keep_log_probabilities_finite_far_in_the_tails(name):
    link = LINKS[name]()
    eta = np.array([-40.0, -10.0, 10.0, 40.0])
    if name == "logit":
        np.testing.assert_allclose(link.log_inverse(eta), -np.log1p(np.exp(-eta)), rtol=1e-12)
    if name == "probit":
        np.testing.assert_allclose(link.log_inverse(eta), stats.norm.logcdf(eta), rtol=1e-12)
        np.testing.assert_allclose(link.log1m_inverse(eta), stats.norm.logsf(eta), rtol=1e-12)
    assert np.all(np.isfinite(link.log_inverse(eta))) and np.all(np.isfinite(link.log1m_inverse(eta)))
    assert np.all(np.isfinite(link.log_inverse_derivative(eta)))


def test_unit_deviances_are_twice_the_log_likelihood_ratio_to_the_saturated_model():
    y = np.array([0.0, 1.0, 3.0, 7.0])
    mu = np.array([0.5, 2.0, 2.5, 9.0])
    cases = {
        "poisson": lambda m: stats.poisson.logpmf(y, m),
        "negbin": lambda m: stats.nbinom.logpmf(y, 2.0, 2.0 / (2.0 + m)),
    }
    for name, logpmf in cases.items():
        fam = resolve_glm_family(NegativeBinomial(fixed_total_count=2.0) if name == "negbin" else name)
        saturated = logpmf(np.maximum(y, 1e-300))
        np.testing.assert_allclose(fam.unit_deviance(y, mu), 2 * (saturated - logpmf(mu)), rtol=1e-10, atol=1e-12)
    yp = np.array([0.5, 1.0, 3.0])
    mp = np.array([1.0, 0.7, 4.0])
    gamma = resolve_glm_family("gamma")
    # at shape 1 (unit dispersion) the Gamma is the exponential distribution
    ratio = 2 * (stats.expon.logpdf(yp, scale=yp) - stats.expon.logpdf(yp, scale=mp))
    np.testing.assert_allclose(gamma.unit_deviance(yp, mp), ratio, rtol=1e-12)
    binom = resolve_glm_family("binomial")
    yb, mb = np.array([0.0, 0.3, 1.0]), np.array([0.2, 0.5, 0.9])
    n = 10
    lr = 2 * (stats.binom.logpmf(n * yb, n, yb) - stats.binom.logpmf(n * yb, n, mb)) / n
    np.testing.assert_allclose(binom.unit_deviance(yb, mb), lr, rtol=1e-10)


def test_log_likelihoods_come_from_the_probkit_distributions_and_match_scipy():
    y = np.array([0.5, 1.2, 3.0])
    mu = np.array([1.0, 0.8, 2.0])
    phi = 0.4
    np.testing.assert_allclose(resolve_glm_family("gamma").log_likelihood(y, mu, phi),
                               stats.gamma.logpdf(y, 1 / phi, scale=phi * mu), rtol=1e-12)
    np.testing.assert_allclose(resolve_glm_family("normal").log_likelihood(y, mu, phi),
                               stats.norm.logpdf(y, mu, np.sqrt(phi)), rtol=1e-12)
    counts = np.array([0.0, 2.0, 5.0])
    np.testing.assert_allclose(resolve_glm_family(NegativeBinomial(fixed_total_count=1.5)).log_likelihood(
        counts, mu, 1.0), stats.nbinom.logpmf(counts, 1.5, 1.5 / (1.5 + mu)), rtol=1e-12)
    dist = resolve_glm_family("poisson").distribution(mu)
    assert type(dist).__name__ == "Poisson" and torch.allclose(dist.torch_params()["rate"], torch.as_tensor(mu))
