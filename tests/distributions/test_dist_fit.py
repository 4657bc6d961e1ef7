"""Maximum-likelihood fits: weights, closed forms, scipy's fitters and additivity of the statistics."""

import numpy as np
import pytest
import torch
from _dist_cases import CASE_IDS, CASES
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats

from probkit.distributions import (
    Beta,
    Dirichlet,
    Gamma,
    Independent,
    LogNormal,
    MultivariateNormal,
    Normal,
    Poisson,
    SufficientStats,
)


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


def _assert_same_params(a, b, rtol=1e-10, atol=1e-12):
    assert set(a.params) == set(b.params)
    for name in a.params:
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=rtol, atol=atol, err_msg=name)


def test_integer_weights_equal_repeated_rows(case):
    rng = np.random.default_rng(0)
    X = case.data(rng, 30)
    weights = rng.integers(0, 4, size=30)
    weights[0] = 2  # at least one positive weight
    weighted = case.unfitted().fit(X, sample_weight=weights.astype(float))
    repeated = case.unfitted().fit(np.repeat(X, weights, axis=0))
    _assert_same_params(weighted, repeated, rtol=1e-9)


def test_batched_weights_fit_each_batch_member_separately(case):
    # Responsibilities of shape (n, 2) give a batch of 2 fits, each the weighted fit.
    rng = np.random.default_rng(1)
    X = case.data(rng, 40)
    resp = rng.random((40, 2)) + 0.05
    template = case.unfitted()
    batched = template.from_stats(template.summarize(X, resp))
    assert tuple(batched.batch_shape) == (2,)
    for k in range(2):
        single = case.unfitted().fit(X, sample_weight=resp[:, k])
        for name, value in single.params.items():
            got = batched.params[name]
            if case.name == "MultivariateNormal-tied" and name == "covariance":
                continue  # pooled over the batch by design; see test_dist_mvn
            np.testing.assert_allclose(got[k], value, rtol=1e-9, atol=1e-12, err_msg=name)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(n1=st.integers(1, 25), n2=st.integers(1, 25), seed=st.integers(0, 2**31 - 1), weighted=st.booleans())
def test_statistics_are_additive_over_chunks(n1, n2, seed, weighted):
    rng = np.random.default_rng(seed)
    for case in CASES:
        X1, X2 = case.data(rng, n1), case.data(rng, n2)
        w1 = rng.random(n1) if weighted else None
        w2 = rng.random(n2) if weighted else None
        dist = case.make()  # fitted: the Categorical alphabet is fixed by the parameters
        whole = dist.summarize(np.concatenate([X1, X2]), None if not weighted else np.concatenate([w1, w2]))
        parts = dist.summarize(X1, w1) + dist.summarize(X2, w2)
        assert isinstance(parts, SufficientStats) and set(parts) == set(whole)
        for key in whole:
            np.testing.assert_allclose(parts[key].numpy(), whole[key].numpy(), rtol=1e-10, atol=1e-10,
                                       err_msg=f"{case.name}: {key}")


def test_scaling_the_statistics_does_not_change_the_fit(case):
    X = case.data(np.random.default_rng(2), 30)
    template = case.unfitted()
    stats_ = template.summarize(X)
    _assert_same_params(template.from_stats(stats_), template.from_stats(3.0 * stats_), rtol=1e-9)


def _closed_form(name, X):
    if name == "Normal":
        return {"loc": X.mean(), "scale": X.std()}
    if name == "Poisson":
        return {"rate": X.mean()}
    if name == "Exponential":
        return {"rate": 1 / X.mean()}
    if name == "Bernoulli":
        return {"probs": X.mean()}
    if name == "Binomial":
        return {"probs": X.mean() / 7}
    if name == "Geometric":
        return {"probs": 1 / (1 + X.mean())}
    if name == "Categorical":
        return {"probs": np.bincount(X.astype(int), minlength=3) / len(X)}
    if name.startswith("Multinomial"):
        return {"probs": X.sum(0) / X.sum()}
    if name == "LogNormal":
        return {"loc": np.log(X).mean(), "scale": np.log(X).std()}
    if name == "MultivariateNormal-full":
        return {"mean": X.mean(0), "covariance": np.cov(X.T, bias=True)}
    if name == "MultivariateNormal-diag":
        return {"mean": X.mean(0), "covariance": X.var(0)}
    if name == "MultivariateNormal-spherical":
        return {"mean": X.mean(0), "covariance": X.var(0).mean()}
    if name == "MultivariateNormal-tied":
        return {"mean": X.mean(0), "covariance": np.cov(X.T, bias=True)}
    if name == "Independent":
        return {"0.loc": X[:, 0].mean(), "0.scale": X[:, 0].std(), "1.rate": X[:, 1].mean(),
                "2.probs": np.bincount(X[:, 2].astype(int), minlength=3) / len(X)}
    return None


def test_mle_equals_the_closed_form(case):
    X = case.data(np.random.default_rng(3), 60)
    expected = _closed_form(case.name, X)
    if expected is None:
        pytest.skip("no closed form: checked against scipy below")
    fit = case.unfitted().fit(X)
    for name, value in expected.items():
        np.testing.assert_allclose(fit.params[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("shape,rate", [(0.3, 2.0), (2.5, 0.5), (40.0, 10.0)])
def test_gamma_mle_matches_scipy(shape, rate):
    x = np.random.default_rng(4).gamma(shape, 1 / rate, 300)
    a, _, scale = stats.gamma.fit(x, floc=0)
    fit = Gamma().fit(x)
    np.testing.assert_allclose(fit.concentration, a, rtol=1e-6)
    np.testing.assert_allclose(fit.rate, 1 / scale, rtol=1e-6)


@pytest.mark.parametrize("a,b", [(0.4, 0.6), (2.0, 5.0), (30.0, 12.0)])
def test_beta_mle_matches_scipy(a, b):
    x = np.random.default_rng(5).beta(a, b, 300)
    ref_a, ref_b, _, _ = stats.beta.fit(x, floc=0, fscale=1)
    fit = Beta().fit(x)
    np.testing.assert_allclose([fit.concentration1, fit.concentration0], [ref_a, ref_b], rtol=1e-6)
    # and the likelihood equations hold to rounding
    m1, m0 = np.log(x).mean(), np.log1p(-x).mean()
    total = special.digamma(fit.concentration1 + fit.concentration0)
    np.testing.assert_allclose(special.digamma(fit.concentration1) - total, m1, rtol=1e-12)
    np.testing.assert_allclose(special.digamma(fit.concentration0) - total, m0, rtol=1e-12)


def test_beta_batched_newton_fits_each_member():
    rng = np.random.default_rng(6)
    x = rng.beta(1.5, 3.0, 200)
    resp = np.column_stack([np.ones(200), rng.random(200), (x > 0.3).astype(float)])
    template = Beta()
    batched = template.from_stats(template.summarize(x, resp))
    for k in range(3):
        single = Beta().fit(x, sample_weight=resp[:, k])
        np.testing.assert_allclose(batched.concentration1[k], single.concentration1, rtol=1e-10)
        np.testing.assert_allclose(batched.concentration0[k], single.concentration0, rtol=1e-10)


def _dirichlet_mle_by_root_finding(x):
    # Solve the score equations digamma(a_k) - digamma(sum a) = mean(log x_k) with scipy,
    # started from the moment-matching estimate (independent of probkit's initialisation).
    mean_log = np.log(x).mean(0)
    m, v = x.mean(0), x.var(0)
    start = m * (m[0] * (1 - m[0]) / v[0] - 1)
    def score(log_alpha):
        alpha = np.exp(log_alpha)
        return special.digamma(alpha) - special.digamma(alpha.sum()) - mean_log

    sol = optimize.root(score, np.log(start), method="hybr", tol=1e-13)
    # hybr may stop at rounding level and report failure; judge it by its residual instead
    assert np.abs(score(sol.x)).max() < 1e-11
    return np.exp(sol.x)


@pytest.mark.parametrize("alpha", [[0.3, 0.5, 0.2], [2.0, 5.0, 3.0, 1.0], [150.0, 60.0, 90.0]])
def test_dirichlet_mle_matches_root_finding(alpha):
    x = np.random.default_rng(7).dirichlet(alpha, 400)
    x = np.clip(x, 1e-300, None)
    x /= x.sum(1, keepdims=True)
    fit = Dirichlet().fit(x)
    np.testing.assert_allclose(fit.concentration, _dirichlet_mle_by_root_finding(x), rtol=1e-6)
    # The fitted log-likelihood (scipy's) beats small perturbations of the estimate.
    best = stats.dirichlet(fit.concentration).logpdf(x.T).sum()
    for delta in (1.001, 0.999):
        assert stats.dirichlet(fit.concentration * delta).logpdf(x.T).sum() < best


@settings(max_examples=20, deadline=None, derandomize=True)
@given(a=st.floats(0.2, 20.0), b=st.floats(0.2, 20.0), n=st.integers(5, 60), seed=st.integers(0, 2**31 - 1))
def test_beta_and_dirichlet_mle_solve_the_likelihood_equations(a, b, n, seed):
    rng = np.random.default_rng(seed)
    x = np.clip(rng.beta(a, b, n), 1e-12, 1 - 1e-12)
    m1, m0 = np.log(x).mean(), np.log1p(-x).mean()
    if np.exp(m1) + np.exp(m0) >= 1 - 1e-9:
        return  # numerically no spread: the MLE diverges
    fit = Beta().fit(x)
    total = special.digamma(fit.concentration1 + fit.concentration0)
    np.testing.assert_allclose(special.digamma(fit.concentration1) - total, m1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(special.digamma(fit.concentration0) - total, m0, rtol=1e-9, atol=1e-9)
    # A 2-category Dirichlet is the same model.
    dfit = Dirichlet().fit(np.column_stack([x, 1 - x]))
    np.testing.assert_allclose(dfit.concentration, [fit.concentration1, fit.concentration0], rtol=1e-7)


def test_gamma_shape_mle_solves_its_equation_at_extreme_shapes():
    for shape in (0.02, 500.0):
        x = np.random.default_rng(8).gamma(shape, 1.0, 500)
        x = x[x > 0]
        fit = Gamma().fit(x)
        s = np.log(x.mean()) - np.log(x).mean()
        np.testing.assert_allclose(np.log(fit.concentration) - special.digamma(fit.concentration), s, rtol=1e-10)


def test_min_scale_floors_degenerate_normal_and_lognormal_fits():
    assert float(Normal(min_scale=0.1).fit(np.ones(4)).scale) == 0.1
    assert float(LogNormal(min_scale=0.2).fit(np.full(3, 2.0)).scale) == 0.2
    with pytest.raises(ValueError, match="min_scale"):
        Normal().fit(np.ones(4))
    with pytest.raises(ValueError, match="min_scale"):
        LogNormal().fit(np.full(3, 2.0))


def test_min_rate_floors_an_all_zero_poisson_fit():
    assert float(Poisson(min_rate=1e-3).fit(np.zeros(5)).rate) == 1e-3
    with pytest.raises(ValueError, match="min_rate"):
        Poisson().fit(np.zeros(5))


def test_fit_returns_self_and_keeps_options():
    d = MultivariateNormal(covariance_type="diag", reg_covar=1e-3)
    X = np.random.default_rng(9).normal(size=(20, 2))
    assert d.fit(X) is d
    np.testing.assert_allclose(d.covariance, X.var(0) + 1e-3, rtol=1e-12)
    ind = Independent([Normal(), Poisson()])
    assert ind.fit(np.column_stack([X[:, 0], np.arange(20)])) is ind and ind.is_fitted


def test_fit_accepts_torch_tensors():
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert float(Poisson().fit(x).rate) == pytest.approx(7 / 3)


@pytest.mark.parametrize(
    "make,data",
    [
        (lambda: Gamma(concentration=torch.tensor(1.0), rate=torch.tensor(1.0)),
         lambda rng: rng.gamma(2.0, 1.0, 300)),
        (lambda: Beta(concentration1=torch.tensor(1.0), concentration0=torch.tensor(1.0)),
         lambda rng: rng.beta(2.0, 3.0, 300)),
        (lambda: Dirichlet(concentration=torch.ones(3)), lambda rng: rng.dirichlet([2.0, 3.0, 4.0], 300)),
    ],
    ids=["Gamma", "Beta", "Dirichlet"],
)
def test_float32_fits_stay_float32_and_agree_with_float64(make, data):
    # A float32 distribution refits in float32; its iterative MLE must still converge
    # (tolerances adapt to the dtype) to the float64 answer up to float32 resolution.
    X = data(np.random.default_rng(10))
    single = make()
    assert single.dtype == torch.float32
    fit32 = single.fit(torch.as_tensor(X, dtype=torch.float32))
    fit64 = type(single)().fit(X)
    assert fit32.dtype == torch.float32
    for name, value in fit64.params.items():
        assert fit32.params[name].dtype == np.float32
        np.testing.assert_allclose(fit32.params[name], value, rtol=1e-4, err_msg=name)
