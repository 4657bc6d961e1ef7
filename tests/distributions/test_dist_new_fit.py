"""Maximum-likelihood fits of the new families: scipy's fitters, numerical optima of the
log-likelihood, statsmodels, weights as repeated rows, and EM from statistics."""

import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats

from probkit.datasets import load_earthquakes
from probkit.distributions import (
    InverseWishart,
    Laplace,
    MultivariateStudentT,
    NegativeBinomial,
    Poisson,
    StudentT,
    VonMises,
    Wishart,
)
from probkit.distributions.laplace import weighted_median
from probkit.distributions.von_mises import mean_resultant_inverse

_V = np.array([[2.0, 0.3], [0.3, 1.0]])


def _t_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return 1.5 + 2.0 * rng.standard_t(3.5, n)


def _close(a, b, rtol):
    for name in a.params:
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=rtol, atol=rtol, err_msg=name)


# ---------------------------------------------------------------------- Student t
def test_student_t_mle_is_the_numerical_optimum():
    x = _t_data()
    fit = StudentT().fit(x)

    def nll(theta):
        return -stats.t.logpdf(x, np.exp(theta[0]), theta[1], np.exp(theta[2])).sum()

    start = stats.t.fit(x)
    res = optimize.minimize(nll, [np.log(start[0]), start[1], np.log(start[2])], method="BFGS",
                            options={"gtol": 1e-10})
    np.testing.assert_allclose([float(fit.df), float(fit.loc), float(fit.scale)],
                               [np.exp(res.x[0]), res.x[1], np.exp(res.x[2])], rtol=1e-6)
    assert -nll([np.log(fit.df), fit.loc, np.log(fit.scale)]) >= -res.fun - 1e-8
    # the score vanishes at the fit
    grad = optimize.approx_fprime([np.log(fit.df), float(fit.loc), np.log(fit.scale)], nll, 1e-6)
    assert np.abs(grad).max() < 1e-3


def test_student_t_with_fixed_df_is_the_numerical_optimum():
    x = _t_data(seed=1)
    fit = StudentT(fixed_df=2.0).fit(x)
    assert float(fit.df) == 2.0
    res = optimize.minimize(lambda th: -stats.t.logpdf(x, 2.0, th[0], np.exp(th[1])).sum(), [np.median(x), 0.0],
                            method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-13, "maxiter": 20000})
    np.testing.assert_allclose([float(fit.loc), float(fit.scale)], [res.x[0], np.exp(res.x[1])], rtol=1e-6)


def test_multivariate_t_mle_is_the_numerical_optimum():
    rng = np.random.default_rng(2)
    X = stats.multivariate_t([0.0, 1.0], [[1.0, 0.4], [0.4, 2.0]], df=4.0).rvs(300, random_state=rng)
    fit = MultivariateStudentT().fit(X)

    def unpack(theta):
        L = np.array([[np.exp(theta[3]), 0.0], [theta[4], np.exp(theta[5])]])
        return np.exp(theta[0]), theta[1:3], L @ L.T

    def nll(theta):
        df, loc, shape = unpack(theta)
        return -stats.multivariate_t(loc, shape, df=df).logpdf(X).sum()

    L = np.linalg.cholesky(fit.scale_matrix)
    ours = np.r_[np.log(fit.df), fit.loc, np.log(L[0, 0]), L[1, 0], np.log(L[1, 1])]
    start = np.r_[np.log(10.0), X.mean(0), 0.0, 0.0, 0.0]
    res = optimize.minimize(nll, start, method="BFGS", options={"gtol": 1e-9})
    df, loc, shape = unpack(res.x)
    np.testing.assert_allclose(fit.df, df, rtol=1e-5)
    np.testing.assert_allclose(fit.loc, loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.scale_matrix, shape, rtol=1e-5, atol=1e-6)
    assert nll(ours) <= res.fun + 1e-7


def test_univariate_and_multivariate_t_agree_in_one_dimension():
    x = _t_data(200, seed=3)
    uni = StudentT().fit(x)
    multi = MultivariateStudentT().fit(x[:, None])
    np.testing.assert_allclose(multi.df, uni.df, rtol=1e-7)
    np.testing.assert_allclose(multi.loc[0], uni.loc, rtol=1e-7)
    np.testing.assert_allclose(np.sqrt(multi.scale_matrix[0, 0]), uni.scale, rtol=1e-7)
    np.testing.assert_allclose(multi.log_prob(x[:, None]), uni.log_prob(x), rtol=1e-6)
    np.testing.assert_allclose(multi.entropy(), uni.entropy(), rtol=1e-6)


def test_em_from_statistics_converges_to_the_fit():
    # The EM step a mixture or HMM runs (summarize under the current parameters, from_stats)
    # has the MLE as its fixed point.
    x = _t_data(300, seed=4)
    current = StudentT()
    current = current.from_stats(current.summarize(x))
    lls = []
    for _ in range(250):
        current = current.from_stats(current.summarize(x))
        lls.append(float(current.log_prob(x).sum()))
    assert np.all(np.diff(lls) >= -1e-9)  # monotone (ECM)
    _close(current, StudentT().fit(x), rtol=1e-6)


def test_weights_are_repeated_rows():
    rng = np.random.default_rng(5)
    x = _t_data(60, seed=5)
    w = rng.integers(0, 4, 60)
    w[0] = 2
    for make in [StudentT, lambda: StudentT(fixed_df=3.0)]:
        _close(make().fit(x, sample_weight=w.astype(float)), make().fit(np.repeat(x, w)), rtol=1e-8)
    X = np.c_[x, rng.normal(size=60) + x]
    _close(MultivariateStudentT().fit(X, sample_weight=w.astype(float)),
           MultivariateStudentT().fit(np.repeat(X, w, axis=0)), rtol=1e-8)
    counts = rng.negative_binomial(3, 0.3, 60)
    _close(NegativeBinomial().fit(counts, sample_weight=w.astype(float)), NegativeBinomial().fit(np.repeat(counts, w)),
           rtol=1e-10)
    angles = VonMises(loc=1.0, concentration=2.0).sample(60, random_state=0)
    _close(VonMises().fit(angles, sample_weight=w.astype(float)), VonMises().fit(np.repeat(angles, w)), rtol=1e-10)
    _close(Laplace().fit(x, sample_weight=w.astype(float)), Laplace().fit(np.repeat(x, w)), rtol=1e-12)
    mats = Wishart(df=5.0, scale_matrix=_V).sample(60, random_state=1)
    for cls in [Wishart, InverseWishart]:
        _close(cls().fit(mats, sample_weight=w.astype(float)), cls().fit(np.repeat(mats, w, axis=0)), rtol=1e-10)


def test_latent_statistics_are_additive_over_chunks():
    rng = np.random.default_rng(6)
    x = _t_data(50, seed=6)
    resp = rng.random((50, 2))
    for d, data in [(StudentT(df=[3.0, 8.0], loc=[0.0, 1.0], scale=[1.0, 2.0]), x),
                    (Laplace(loc=[0.0, 1.0], scale=[1.0, 2.0]), x),
                    (NegativeBinomial(total_count=[2.0, 5.0], probs=[0.3, 0.5]), np.round(np.abs(x) * 3)),
                    (MultivariateStudentT(df=[3.0, 8.0], loc=np.zeros((2, 2)), scale_matrix=np.stack([np.eye(2)] * 2)),
                     np.c_[x, x ** 2 / 10])]:
        whole = d.summarize(data, resp)
        parts = d.summarize(data[:20], resp[:20]) + d.summarize(data[20:], resp[20:])
        for key in whole:
            np.testing.assert_allclose(parts[key].numpy(), whole[key].numpy(), rtol=1e-12, atol=1e-12)
        # the batched EM step of member k is member k's own EM step on its responsibilities
        batched = d.from_stats(whole)
        for k in range(2):
            member = type(d)(**{name: value[k] for name, value in d.params.items()}, **d._options())
            alone = member.from_stats(member.summarize(data, resp[:, k]))
            for name, value in alone.params.items():
                np.testing.assert_allclose(batched.params[name][k], value, rtol=1e-12, err_msg=name)


# ---------------------------------------------------------------------- negative binomial
def test_negative_binomial_fit_matches_statsmodels_and_the_profile_optimum():
    sm = pytest.importorskip("statsmodels.api")
    _, counts = load_earthquakes()
    fit = NegativeBinomial().fit(counts)
    res = sm.NegativeBinomial(counts, np.ones(len(counts))).fit(disp=0, method="newton", tol=1e-12, maxiter=200)
    mean = np.exp(res.params[0])
    r = 1.0 / res.params[1]  # NB2: variance = mean + alpha mean^2, alpha = 1 / r
    np.testing.assert_allclose(float(fit.total_count), r, rtol=1e-6)
    np.testing.assert_allclose(float(fit.total_count * (1 - fit.probs) / fit.probs), mean, rtol=1e-6)
    profile = optimize.minimize_scalar(
        lambda log_r: -stats.nbinom(np.exp(log_r), np.exp(log_r) / (np.exp(log_r) + counts.mean())).logpmf(counts).sum(),
        bracket=(0.0, 5.0), tol=1e-12)
    np.testing.assert_allclose(float(fit.total_count), np.exp(profile.x), rtol=1e-6)


def test_earthquake_counts_are_over_dispersed_for_a_poisson():
    _, counts = load_earthquakes()
    assert counts.var() > 2 * counts.mean()
    nb = NegativeBinomial().fit(counts)
    pois = Poisson().fit(counts)
    gain = nb.log_prob(counts).sum() - pois.log_prob(counts).sum()
    # one extra parameter; the likelihood-ratio statistic is far beyond any chi-square(1) quantile
    assert 2 * gain > stats.chi2(1).ppf(1 - 1e-9)
    np.testing.assert_allclose(nb.log_prob(counts).sum(),
                               stats.nbinom(nb.total_count, nb.probs).logpmf(counts).sum(), rtol=1e-12)


def test_negative_binomial_with_fixed_total_count_and_em_from_statistics():
    rng = np.random.default_rng(7)
    counts = rng.negative_binomial(4, 0.25, 500)
    fixed = NegativeBinomial(fixed_total_count=4.0).fit(counts)
    np.testing.assert_allclose(float(fixed.probs), 4.0 / (4.0 + counts.mean()), rtol=1e-12)
    current = NegativeBinomial()
    current = current.from_stats(current.summarize(counts))  # method of moments
    lls = []
    for _ in range(400):
        current = current.from_stats(current.summarize(counts))
        lls.append(float(current.log_prob(counts).sum()))
    assert np.all(np.diff(lls) >= -1e-9)
    _close(current, NegativeBinomial().fit(counts), rtol=1e-6)


def test_negative_binomial_without_over_dispersion_goes_to_the_poisson_limit():
    fit = NegativeBinomial().fit(np.array([2, 3, 2, 3, 2, 3]))
    assert float(fit.total_count) >= 1e7
    with pytest.raises(ValueError, match="every weighted count is 0"):
        NegativeBinomial().fit(np.zeros(5))


# ---------------------------------------------------------------------- von Mises
def test_von_mises_mle_matches_scipy_and_inverts_the_bessel_ratio():
    angles = VonMises(loc=2.5, concentration=4.0).sample(500, random_state=0) + 2 * np.pi  # any branch
    fit = VonMises().fit(angles)
    c, s = np.cos(angles).mean(), np.sin(angles).mean()
    r = np.hypot(c, s)
    np.testing.assert_allclose(special.i1e(fit.concentration) / special.i0e(fit.concentration), r, rtol=1e-13)
    np.testing.assert_allclose(float(fit.loc), stats.circmean(angles, high=np.pi, low=-np.pi), rtol=1e-12)
    kappa, loc, _ = stats.vonmises.fit(angles, fscale=1)
    np.testing.assert_allclose(float(fit.concentration), kappa, rtol=1e-10)


@pytest.mark.parametrize("r", [1e-8, 0.05, 0.5, 0.53, 0.84, 0.86, 0.99, 0.99999])
def test_bessel_ratio_inverse_to_1e_10(r):
    kappa = float(mean_resultant_inverse(torch.tensor(r, dtype=torch.float64)))
    ref = optimize.brentq(lambda k: special.i1e(k) / special.i0e(k) - r, 1e-12, 1e8, xtol=1e-300, rtol=1e-15)
    np.testing.assert_allclose(kappa, ref, rtol=1e-10)


# ---------------------------------------------------------------------- Laplace
def test_laplace_mle_is_median_and_mean_absolute_deviation():
    rng = np.random.default_rng(8)
    for n in (201, 200):
        x = rng.laplace(1.0, 2.0, n)
        fit = Laplace().fit(x)
        loc, scale = stats.laplace.fit(x)
        np.testing.assert_allclose([float(fit.loc), float(fit.scale)], [loc, scale], rtol=1e-12)
    w = rng.random(200)
    fit = Laplace().fit(x, sample_weight=w)
    # brute force over the candidates: the weighted L1 objective is piecewise linear with kinks at the samples
    objective = np.abs(x[:, None] - x[None, :]).T @ w
    best = x[np.argmin(objective)]
    np.testing.assert_allclose(float(fit.loc), best, rtol=1e-12)
    np.testing.assert_allclose(float(fit.scale), w @ np.abs(x - best) / w.sum(), rtol=1e-12)
    assert weighted_median([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]) == np.median([1.0, 2.0, 3.0, 4.0])


def test_laplace_em_from_statistics_reaches_the_median():
    x = np.random.default_rng(9).laplace(-1.0, 0.5, 301)
    current = Laplace()
    current = current.from_stats(current.summarize(x))
    lls = []
    for _ in range(300):
        current = current.from_stats(current.summarize(x))
        lls.append(float(current.log_prob(x).sum()))
    assert np.all(np.diff(lls) >= -1e-9)  # minorise-maximise never decreases the likelihood
    _close(current, Laplace().fit(x), rtol=1e-9)


# ---------------------------------------------------------------------- Wishart family
@pytest.mark.parametrize("cls, ref", [(Wishart, stats.wishart), (InverseWishart, stats.invwishart)])
def test_matrix_mle_is_the_profile_optimum(cls, ref):
    X = cls(df=6.0, scale_matrix=_V).sample(400, random_state=3)
    fit = cls().fit(X)
    mean_stat = X.mean(0) if cls is Wishart else np.linalg.inv(X).mean(0)

    def scale_for(df):
        return mean_stat / df if cls is Wishart else df * np.linalg.inv(mean_stat)

    res = optimize.minimize_scalar(lambda log_df: -ref(1 + np.exp(log_df), scale_for(1 + np.exp(log_df)))
                                   .logpdf(X.transpose(1, 2, 0)).sum(), bracket=(0.0, 2.0), tol=1e-12)
    df = 1 + np.exp(res.x)
    np.testing.assert_allclose(float(fit.df), df, rtol=1e-7)
    np.testing.assert_allclose(fit.scale_matrix, scale_for(df), rtol=1e-7)
    # the full likelihood is not improved by perturbing the scale matrix either
    base = ref(float(fit.df), fit.scale_matrix).logpdf(X.transpose(1, 2, 0)).sum()
    for delta in (np.eye(2) * 1e-3, np.array([[0.0, 1e-3], [1e-3, 0.0]])):
        assert ref(float(fit.df), fit.scale_matrix + delta).logpdf(X.transpose(1, 2, 0)).sum() <= base
        assert ref(float(fit.df), fit.scale_matrix - delta).logpdf(X.transpose(1, 2, 0)).sum() <= base


def test_degenerate_samples_are_reported():
    with pytest.raises(ValueError, match="no spread"):
        Wishart().fit(np.stack([np.eye(2)] * 3))
    with pytest.raises(ValueError, match="all angles are equal"):
        VonMises().fit(np.full(4, 0.3))
    with pytest.raises(ValueError, match="zero spread"):
        Laplace().fit(np.ones(4))
    with pytest.raises(ValueError, match="zero spread"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            StudentT().fit(np.ones(4))
