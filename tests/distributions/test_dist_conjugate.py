"""Conjugate priors: posteriors in closed form, MAP by numerical optimisation and the exact
log evidence by numerical integration (or exact predictive chains)."""

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from probkit.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    LogNormal,
    Multinomial,
    MultivariateNormal,
    Normal,
    NormalGamma,
    NormalWishart,
    Poisson,
)

X_COUNTS = np.array([0.0, 3.0, 1.0, 4.0, 2.0])
X_BINARY = np.array([1.0, 0.0, 1.0, 1.0])
X_REAL = np.array([0.3, -1.2, 2.1, 0.8])
X_POSITIVE = np.array([0.4, 1.7, 0.9])


# ---------------------------------------------------------------------------- posteriors
@pytest.mark.parametrize(
    "family,prior,X,expected",
    [
        (Poisson(), Gamma(concentration=2.0, rate=1.5), X_COUNTS,
         {"concentration": 2.0 + 10.0, "rate": 1.5 + 5}),
        (Exponential(), Gamma(concentration=2.0, rate=1.5), X_POSITIVE,
         {"concentration": 2.0 + 3, "rate": 1.5 + 3.0}),
        (Bernoulli(), Beta(concentration1=2.0, concentration0=3.0), X_BINARY,
         {"concentration1": 2.0 + 3, "concentration0": 3.0 + 1}),
        (Binomial(total_count=4), Beta(concentration1=2.0, concentration0=3.0), X_COUNTS[1:],
         {"concentration1": 2.0 + 10, "concentration0": 3.0 + 16 - 10}),
        (Geometric(), Beta(concentration1=2.0, concentration0=3.0), X_COUNTS,
         {"concentration1": 2.0 + 5, "concentration0": 3.0 + 10}),
        (Categorical(n_categories=3), Dirichlet(concentration=[1.0, 2.0, 0.5]), np.array([0.0, 2, 2, 1, 2]),
         {"concentration": [2.0, 3.0, 3.5]}),
        (Multinomial(), Dirichlet(concentration=[1.0, 2.0, 0.5]), np.array([[1.0, 0, 2], [0, 4, 1]]),
         {"concentration": [2.0, 6.0, 3.5]}),
    ],
    ids=["Poisson-Gamma", "Exponential-Gamma", "Bernoulli-Beta", "Binomial-Beta", "Geometric-Beta",
         "Categorical-Dirichlet", "Multinomial-Dirichlet"],
)
def test_posterior_equals_closed_form(family, prior, X, expected):
    post = family.posterior(X, prior)
    assert type(post) is type(prior)
    for name, value in expected.items():
        np.testing.assert_allclose(post.params[name], value, rtol=1e-12, err_msg=name)
    # Statistics and raw data give the same posterior.
    from_stats = family.posterior(family.summarize(X), prior)
    for name in expected:
        np.testing.assert_allclose(from_stats.params[name], post.params[name], rtol=1e-14)


def _normal_gamma_textbook(x, m0, k0, a0, b0):
    # Murphy (2007), "Conjugate Bayesian analysis of the Gaussian distribution", eqs. 86-89.
    n, xbar = len(x), x.mean()
    kn = k0 + n
    return {"loc": (k0 * m0 + n * xbar) / kn, "mean_precision": kn, "concentration": a0 + n / 2,
            "rate": b0 + 0.5 * ((x - xbar) ** 2).sum() + k0 * n * (xbar - m0) ** 2 / (2 * kn)}


@pytest.mark.parametrize("family,transform", [(Normal(), lambda x: x), (LogNormal(), np.log)], ids=["Normal", "LogNormal"])
def test_normal_gamma_posterior_equals_textbook(family, transform):
    x = X_POSITIVE if isinstance(family, LogNormal) else X_REAL
    prior = NormalGamma(loc=0.5, mean_precision=2.0, concentration=3.0, rate=1.5)
    post = family.posterior(x, prior)
    for name, value in _normal_gamma_textbook(transform(x), 0.5, 2.0, 3.0, 1.5).items():
        np.testing.assert_allclose(post.params[name], value, rtol=1e-12, err_msg=name)


def test_batched_posterior_equals_one_posterior_per_weight_vector():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    resp = rng.random((30, 3))
    prior = NormalGamma(loc=0.0, mean_precision=1.0, concentration=2.0, rate=2.0)
    batched = Normal().posterior(Normal().summarize(x, resp), prior)
    assert batched.batch_shape == (3,)
    for k in range(3):
        single = Normal().posterior(Normal().summarize(x, resp[:, k]), prior)
        for name in single.params:
            np.testing.assert_allclose(batched.params[name][k], single.params[name], rtol=1e-12)


def test_normal_wishart_posterior_matches_scikit_learn():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    rng = np.random.default_rng(1)
    X = rng.multivariate_normal([1.0, -2.0], [[1.0, 0.4], [0.4, 2.0]], size=25)
    m0, k0, nu0 = np.array([0.5, 0.0]), 0.7, 3.5
    cov0 = np.array([[1.5, 0.2], [0.2, 0.8]])
    post = MultivariateNormal().posterior(X, NormalWishart(loc=m0, mean_precision=k0, degrees_of_freedom=nu0,
                                                           covariance=cov0))
    # One component: every responsibility is 1, so sklearn's variational update is the posterior.
    bgmm = BayesianGaussianMixture(n_components=1, mean_prior=m0, mean_precision_prior=k0,
                                   degrees_of_freedom_prior=nu0, covariance_prior=cov0, reg_covar=0.0,
                                   max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgmm.fit(X)
    np.testing.assert_allclose(post.loc, bgmm.means_[0], rtol=1e-12)
    np.testing.assert_allclose(post.mean_precision, bgmm.mean_precision_[0], rtol=1e-12)
    np.testing.assert_allclose(post.degrees_of_freedom, bgmm.degrees_of_freedom_[0], rtol=1e-12)
    # sklearn stores the posterior inverse scale divided by the degrees of freedom.
    np.testing.assert_allclose(post.covariance / post.degrees_of_freedom, bgmm.covariances_[0], rtol=1e-10)


def test_mvn_posterior_with_shifted_statistics_equals_unshifted():
    X = np.random.default_rng(2).normal(size=(10, 2)) + 50.0
    prior = NormalWishart(loc=[50.0, 50.0], mean_precision=1.0, degrees_of_freedom=4.0, covariance=np.eye(2))
    plain = MultivariateNormal().posterior(X, prior)
    shifted = MultivariateNormal(stats_shift=X.mean(0)).posterior(X, prior)
    for name in plain.params:
        np.testing.assert_allclose(shifted.params[name], plain.params[name], rtol=1e-10)


# ---------------------------------------------------------------------------- MAP
def _argmax_scalar(log_post, lo, hi):
    res = optimize.minimize_scalar(lambda t: -log_post(t), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-12})
    return res.x


@pytest.mark.parametrize(
    "family,prior,X,param,log_lik,log_prior,bounds",
    [
        (Poisson(), Gamma(concentration=2.0, rate=1.5), X_COUNTS, "rate",
         lambda t, X: stats.poisson(t).logpmf(X).sum(), lambda t: stats.gamma(2.0, scale=1 / 1.5).logpdf(t),
         (1e-6, 20)),
        (Exponential(), Gamma(concentration=2.0, rate=1.5), X_POSITIVE, "rate",
         lambda t, X: stats.expon(scale=1 / t).logpdf(X).sum(), lambda t: stats.gamma(2.0, scale=1 / 1.5).logpdf(t),
         (1e-6, 20)),
        (Bernoulli(), Beta(concentration1=2.0, concentration0=3.0), X_BINARY, "probs",
         lambda t, X: stats.bernoulli(t).logpmf(X).sum(), lambda t: stats.beta(2.0, 3.0).logpdf(t), (1e-9, 1 - 1e-9)),
        (Binomial(total_count=4), Beta(concentration1=2.0, concentration0=3.0), X_COUNTS[1:], "probs",
         lambda t, X: stats.binom(4, t).logpmf(X).sum(), lambda t: stats.beta(2.0, 3.0).logpdf(t), (1e-9, 1 - 1e-9)),
        (Geometric(), Beta(concentration1=2.0, concentration0=3.0), X_COUNTS, "probs",
         lambda t, X: stats.geom(t, loc=-1).logpmf(X).sum(), lambda t: stats.beta(2.0, 3.0).logpdf(t),
         (1e-9, 1 - 1e-9)),
    ],
    ids=["Poisson", "Exponential", "Bernoulli", "Binomial", "Geometric"],
)
def test_map_maximises_the_log_posterior(family, prior, X, param, log_lik, log_prior, bounds):
    fit = family.fit(X, prior=prior)
    best = _argmax_scalar(lambda t: log_lik(t, X) + log_prior(t), *bounds)
    np.testing.assert_allclose(getattr(fit, param), best, rtol=1e-6)


def test_categorical_and_multinomial_map_maximise_the_log_posterior():
    alpha = np.array([2.0, 3.0, 1.5])
    prior = Dirichlet(concentration=alpha)
    x = np.array([0, 2, 2, 1, 2, 0, 2])
    counts = np.bincount(x, minlength=3)

    def neg_log_post(p12):
        p = np.array([p12[0], p12[1], 1 - p12.sum()])
        if np.any(p <= 0):
            return np.inf
        return -(counts @ np.log(p) + stats.dirichlet(alpha).logpdf(p))

    res = optimize.minimize(neg_log_post, [1 / 3, 1 / 3], method="Nelder-Mead",
                            options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 4000})
    best = np.array([res.x[0], res.x[1], 1 - res.x.sum()])
    np.testing.assert_allclose(Categorical(n_categories=3).fit(x, prior=prior).probs, best, rtol=1e-6)
    # The same counts as one multinomial row have the same posterior mode.
    np.testing.assert_allclose(Multinomial().fit(counts[None].astype(float), prior=prior).probs, best, rtol=1e-6)


def test_normal_map_is_the_joint_mode_in_mean_and_precision():
    prior = NormalGamma(loc=0.5, mean_precision=2.0, concentration=3.0, rate=1.5)

    def neg_log_post(theta):
        mu, tau = theta
        if tau <= 0:
            return np.inf
        sd = 1 / np.sqrt(tau)
        return -(stats.norm(mu, sd).logpdf(X_REAL).sum() + stats.gamma(3.0, scale=1 / 1.5).logpdf(tau)
                 + stats.norm(0.5, 1 / np.sqrt(2.0 * tau)).logpdf(mu))

    res = optimize.minimize(neg_log_post, [0.0, 1.0], method="Nelder-Mead",
                            options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 4000})
    fit = Normal().fit(X_REAL, prior=prior)
    np.testing.assert_allclose([fit.loc, fit.scale ** -2], res.x, rtol=1e-6)
    lfit = LogNormal().fit(np.exp(X_REAL), prior=prior)
    np.testing.assert_allclose([lfit.loc, lfit.scale], [fit.loc, fit.scale], rtol=1e-12)


def test_mvn_map_is_the_joint_mode_in_mean_and_precision():
    X = np.array([[0.5, 1.0], [1.5, -0.5], [-0.3, 0.2], [0.9, 0.8]])
    m0, k0, nu0, cov0 = np.array([0.0, 0.5]), 1.5, 4.0, np.array([[1.0, 0.3], [0.3, 2.0]])
    prior = NormalWishart(loc=m0, mean_precision=k0, degrees_of_freedom=nu0, covariance=cov0)
    wishart = stats.wishart(df=nu0, scale=np.linalg.inv(cov0))

    def unpack(theta):
        return theta[:2], np.array([[theta[2], theta[3]], [theta[3], theta[4]]])

    def neg_log_post(theta):
        mu, lam = unpack(theta)
        if np.any(np.linalg.eigvalsh(lam) <= 0):
            return np.inf
        cov = np.linalg.inv(lam)
        # Density over (mu, the 3 free entries of the symmetric precision), as the Wishart's.
        return -(stats.multivariate_normal(mu, cov).logpdf(X).sum() + wishart.logpdf(lam)
                 + stats.multivariate_normal(m0, cov / k0).logpdf(mu))

    fit = MultivariateNormal().fit(X, prior=prior)
    lam = np.linalg.inv(fit.covariance)
    start = np.array([0.0, 0.0, 1.0, 0.0, 1.0])
    res = optimize.minimize(neg_log_post, start, method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000, "maxfev": 20000})
    mu_best, lam_best = unpack(res.x)
    np.testing.assert_allclose(fit.mean, mu_best, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lam, lam_best, rtol=1e-5, atol=1e-7)


def test_map_on_the_boundary_and_without_an_interior_mode():
    # Beta(0.5, 3) after only failures: a_n = 0.5 < 1, the density peaks at p = 0.
    assert float(Bernoulli().fit(np.zeros(3), prior=Beta(concentration1=0.5, concentration0=3.0)).probs) == 0.0
    # No data weight and a U-shaped Beta(0.5, 0.5): no interior mode, the posterior mean is used.
    template = Bernoulli()
    empty = template.summarize(np.array([1.0, 0.0]), np.zeros(2))
    assert float(template.from_stats(empty, prior=Beta(concentration1=0.5, concentration0=0.5)).probs) == 0.5
    # Geometric probs must stay positive even when the posterior mode is at 0.
    geo = Geometric()
    p = float(geo.from_stats(geo.summarize(np.array([1.0]), np.zeros(1)),
                             prior=Beta(concentration1=0.5, concentration0=2.0)).probs)
    assert 0.0 < p < 1e-300
    # Dirichlet with every concentration <= 1: the posterior mean, for both Categorical and Multinomial.
    cat = Categorical(n_categories=3)
    flat = cat.from_stats(cat.summarize(np.array([0.0]), np.zeros(1)), prior=Dirichlet(concentration=[0.5, 0.5, 1.0]))
    np.testing.assert_allclose(flat.probs, [0.25, 0.25, 0.5])
    mult = Multinomial()
    flat = mult.from_stats(mult.summarize(np.array([[1.0, 0.0, 0.0]]), np.zeros(1)),
                           prior=Dirichlet(concentration=[0.5, 0.5, 1.0]))
    np.testing.assert_allclose(flat.probs, [0.25, 0.25, 0.5])


def test_map_without_a_conjugate_prior_is_a_type_error():
    with pytest.raises(TypeError, match="no tractable conjugate prior"):
        Beta().fit(np.array([0.2, 0.5]), prior=Dirichlet(concentration=[1.0, 1.0]))
    with pytest.raises(TypeError, match="no tractable conjugate prior"):
        MultivariateNormal(covariance_type="diag").posterior(np.zeros((2, 2)),
                                                             NormalWishart(loc=[0.0, 0.0], mean_precision=1.0,
                                                                           degrees_of_freedom=3.0,
                                                                           covariance=np.eye(2)))
    with pytest.raises(TypeError, match="must be a Beta"):
        Bernoulli().posterior(X_BINARY, Gamma(concentration=1.0, rate=1.0))
    with pytest.raises(ValueError, match="no parameters"):
        Bernoulli().posterior(X_BINARY, Beta())


# ---------------------------------------------------------------------------- evidence
def _log_integral_1d(log_f, lo, hi, centre):
    # Integrate exp(log_f - centre) so the integrand is O(1); add the offset back.
    value, err = integrate.quad(lambda t: np.exp(log_f(t) - centre), lo, hi, epsabs=0, epsrel=1e-11, limit=200)
    return np.log(value) + centre


@pytest.mark.parametrize(
    "family,prior,X,log_lik,log_prior,bounds",
    [
        (Poisson(), Gamma(concentration=2.0, rate=1.5), X_COUNTS,
         lambda t, X: stats.poisson(t).logpmf(X).sum(), lambda t: stats.gamma(2.0, scale=1 / 1.5).logpdf(t),
         (0, np.inf)),
        (Exponential(), Gamma(concentration=2.0, rate=1.5), X_POSITIVE,
         lambda t, X: stats.expon(scale=1 / t).logpdf(X).sum(), lambda t: stats.gamma(2.0, scale=1 / 1.5).logpdf(t),
         (0, np.inf)),
        (Bernoulli(), Beta(concentration1=2.0, concentration0=3.0), X_BINARY,
         lambda t, X: stats.bernoulli(t).logpmf(X).sum(), lambda t: stats.beta(2.0, 3.0).logpdf(t), (0, 1)),
        (Binomial(total_count=4), Beta(concentration1=0.7, concentration0=3.0), X_COUNTS[1:],
         lambda t, X: stats.binom(4, t).logpmf(X).sum(), lambda t: stats.beta(0.7, 3.0).logpdf(t), (0, 1)),
        (Geometric(), Beta(concentration1=2.0, concentration0=3.0), X_COUNTS,
         lambda t, X: stats.geom(t, loc=-1).logpmf(X).sum(), lambda t: stats.beta(2.0, 3.0).logpdf(t), (0, 1)),
    ],
    ids=["Poisson-Gamma", "Exponential-Gamma", "Bernoulli-Beta", "Binomial-Beta", "Geometric-Beta"],
)
def test_log_marginal_likelihood_equals_quadrature(family, prior, X, log_lik, log_prior, bounds):
    got = family.log_marginal_likelihood(X, prior)
    expected = _log_integral_1d(lambda t: log_lik(t, X) + log_prior(t), *bounds, centre=got)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_categorical_evidence_equals_the_polya_urn_chain_and_scipy():
    alpha = np.array([0.5, 2.0, 1.5])
    x = np.array([2, 0, 2, 1, 2, 2, 0])
    got = Categorical(n_categories=3).log_marginal_likelihood(x, Dirichlet(concentration=alpha))
    # Chain rule with the predictive p(x_i = k | x_<i) = (alpha_k + c_k) / (sum alpha + i).
    counts = np.zeros(3)
    chain = 0.0
    for i, symbol in enumerate(x):
        chain += np.log((alpha[symbol] + counts[symbol]) / (alpha.sum() + i))
        counts[symbol] += 1
    np.testing.assert_allclose(got, chain, rtol=1e-12)
    # The sequence probability is the Dirichlet-multinomial of the counts without its coefficient.
    dm = stats.dirichlet_multinomial(alpha, len(x)).logpmf(counts)
    coefficient = stats.multinomial(len(x), np.full(3, 1 / 3)).logpmf(counts) - len(x) * np.log(1 / 3)
    np.testing.assert_allclose(got, dm - coefficient, rtol=1e-12)


def test_multinomial_evidence_equals_the_dirichlet_multinomial_chain():
    alpha = np.array([0.5, 2.0, 1.5])
    rows = np.array([[1.0, 0.0, 3.0], [2.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    got = Multinomial().log_marginal_likelihood(rows, Dirichlet(concentration=alpha))
    # p(x_1, x_2, x_3) = DM(x_1; alpha) DM(x_2; alpha + x_1) DM(x_3; alpha + x_1 + x_2), from scipy.
    chain, seen = 0.0, np.zeros(3)
    for row in rows:
        chain += stats.dirichlet_multinomial(alpha + seen, row.sum()).logpmf(row)
        seen += row
    np.testing.assert_allclose(got, chain, rtol=1e-12)


def _normal_gamma_evidence_by_dblquad(log_lik, prior, y, centre):
    """log of the double integral of likelihood x NormalGamma prior density over (mu, tau).

    The integration box is chosen from the textbook posterior of the (transformed) data ``y``:
    40 posterior standard deviations in tau and, given tau, in mu; the mass outside is
    below double precision, and a wrong box could only make the test fail.
    """
    m, k, a, b = (float(prior.params[n]) for n in ("loc", "mean_precision", "concentration", "rate"))
    post = _normal_gamma_textbook(y, m, k, a, b)
    tau_mean = post["concentration"] / post["rate"]
    tau_hi = tau_mean + 40 * np.sqrt(post["concentration"]) / post["rate"]

    def mu_lo(tau):
        return post["loc"] - 40 / np.sqrt(post["mean_precision"] * tau)

    def mu_hi(tau):
        return post["loc"] + 40 / np.sqrt(post["mean_precision"] * tau)

    log_gamma_norm = a * math.log(b) - math.lgamma(a)

    def integrand(mu, tau):
        # Textbook densities written out with math: scipy's frozen objects are far too slow
        # for the ~1e5 evaluations of a double quadrature.
        log_prior = (log_gamma_norm + (a - 1) * math.log(tau) - b * tau
                     + 0.5 * math.log(k * tau / (2 * math.pi)) - 0.5 * k * tau * (mu - m) ** 2)
        return math.exp(log_lik(mu, tau) + log_prior - centre)

    value, _ = integrate.dblquad(integrand, 0, tau_hi, mu_lo, mu_hi, epsabs=0, epsrel=1e-9)
    return np.log(value) + centre


def _normal_log_lik(y, mu, tau):
    # sum_i log N(y_i | mu, 1/tau), written out (checked against scipy below)
    n = len(y)
    return 0.5 * n * math.log(tau / (2 * math.pi)) - 0.5 * tau * float(((y - mu) ** 2).sum())


def test_normal_log_lik_helper_matches_scipy():
    np.testing.assert_allclose(_normal_log_lik(X_REAL, 0.3, 2.0), stats.norm(0.3, 2.0 ** -0.5).logpdf(X_REAL).sum(),
                               rtol=1e-13)


def test_normal_evidence_equals_double_quadrature():
    prior = NormalGamma(loc=0.5, mean_precision=2.0, concentration=3.0, rate=1.5)
    got = Normal().log_marginal_likelihood(X_REAL, prior)
    expected = _normal_gamma_evidence_by_dblquad(
        lambda mu, tau: _normal_log_lik(X_REAL, mu, tau), prior, X_REAL, got)
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_lognormal_evidence_equals_double_quadrature():
    # density of x = density of log x under N(mu, 1/tau) divided by x
    log_jacobian = float(np.log(X_POSITIVE).sum())
    prior = NormalGamma(loc=0.0, mean_precision=1.0, concentration=2.0, rate=1.0)
    got = LogNormal().log_marginal_likelihood(X_POSITIVE, prior)
    expected = _normal_gamma_evidence_by_dblquad(
        lambda mu, tau: _normal_log_lik(np.log(X_POSITIVE), mu, tau) - log_jacobian, prior,
        np.log(X_POSITIVE), got)
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_mvn_evidence_in_one_dimension_reduces_to_normal_gamma():
    # Wishart_1(W, nu) on a precision is Gamma(nu / 2, rate = 1 / (2 W)).
    m, k, nu, c = 0.5, 2.0, 3.0, 1.4
    nw = NormalWishart(loc=[m], mean_precision=k, degrees_of_freedom=nu, covariance=[[c]])
    ng = NormalGamma(loc=m, mean_precision=k, concentration=nu / 2, rate=c / 2)
    got = MultivariateNormal().log_marginal_likelihood(X_REAL[:, None], nw)
    np.testing.assert_allclose(got, Normal().log_marginal_likelihood(X_REAL, ng), rtol=1e-12)


def test_mvn_evidence_equals_the_student_t_predictive_chain():
    # p(x_1..x_n) = prod_i p(x_i | x_<i) with the Normal-Wishart predictive, a multivariate t
    # with nu - d + 1 degrees of freedom, location m and shape (kappa + 1) / (kappa (nu - d + 1)) W^{-1}
    # (Murphy 2007, eq. 232), evaluated by scipy with the posterior after each step.
    X = np.array([[0.5, 1.0], [1.5, -0.5], [-0.3, 0.2]])
    m, k, nu, cov = np.array([0.0, 0.5]), 1.5, 4.0, np.array([[1.0, 0.3], [0.3, 2.0]])
    got = MultivariateNormal().log_marginal_likelihood(X, NormalWishart(loc=m, mean_precision=k,
                                                                        degrees_of_freedom=nu, covariance=cov))
    chain, d = 0.0, 2
    for x in X:
        df = nu - d + 1
        chain += stats.multivariate_t(loc=m, shape=(k + 1) / (k * df) * cov, df=df).logpdf(x)
        # textbook one-point update
        diff = x - m
        cov = cov + k / (k + 1) * np.outer(diff, diff)
        m = (k * m + x) / (k + 1)
        k, nu = k + 1, nu + 1
    np.testing.assert_allclose(got, chain, rtol=1e-11)
