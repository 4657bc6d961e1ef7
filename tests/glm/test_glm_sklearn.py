"""Penalised GLMs against scikit-learn (same objective, same penalty) and against the
optimality conditions of the elastic-net problem; statsmodels' fit_regularized where comparable."""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.linear_model import (ElasticNet, GammaRegressor, LogisticRegression, PoissonRegressor,
                                  TweedieRegressor)
from sklearn.metrics import d2_tweedie_score
from scipy import special

from probkit.glm import GeneralizedLinearClassifier, GeneralizedLinearModel

RNG = np.random.RandomState(1)
N = 300
X = RNG.normal(size=(N, 4))
ETA = 0.3 + X @ [0.4, -0.3, 0.2, 0.0]
W = RNG.randint(1, 4, size=N).astype(float)
Y_COUNTS = RNG.poisson(np.exp(ETA)).astype(float)
Y_POS = RNG.gamma(2.0, np.exp(ETA) / 2.0)
Y_REAL = 1.0 + X @ [0.5, -0.3, 0.2, 0.0] + RNG.normal(size=N)
Y_BIN = (RNG.rand(N) < special.expit(ETA)).astype(int)
Y_MULTI = RNG.randint(0, 3, size=N) + (X[:, 0] > 0.3)
SK = dict(tol=1e-12, max_iter=10_000, solver="newton-cholesky")


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.02, 1.0])
@pytest.mark.parametrize("case", ["poisson", "gamma-log", "normal-identity", "normal-log"])
def test_l2_penalised_regressors_equal_sklearn(case, alpha, weighted):
    w = W if weighted else None
    sk, ours, y = {
        "poisson": (PoissonRegressor(alpha=alpha, **SK), GeneralizedLinearModel("poisson", alpha=alpha), Y_COUNTS),
        "gamma-log": (GammaRegressor(alpha=alpha, **SK), GeneralizedLinearModel("gamma", "log", alpha=alpha), Y_POS),
        "normal-identity": (TweedieRegressor(power=0, link="identity", alpha=alpha, **SK),
                            GeneralizedLinearModel("normal", alpha=alpha), Y_REAL),
        "normal-log": (TweedieRegressor(power=0, link="log", alpha=alpha, **SK),
                       GeneralizedLinearModel("normal", "log", alpha=alpha), Y_POS),
    }[case]
    sk.fit(X, y, sample_weight=w)
    ours.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.predict(X), sk.predict(X), rtol=1e-7)
    np.testing.assert_allclose(ours.score(X, y, sample_weight=w), sk.score(X, y, sample_weight=w), rtol=1e-8)
    assert ours.bse_ is None


def test_d2_score_is_sklearns_d2_tweedie():
    m = GeneralizedLinearModel("poisson").fit(X, Y_COUNTS)
    np.testing.assert_allclose(m.score(X, Y_COUNTS), d2_tweedie_score(Y_COUNTS, m.predict(X), power=1), rtol=1e-10)
    np.testing.assert_allclose(m.score(X, Y_COUNTS), 1 - m.deviance_ / m.null_deviance_, rtol=1e-12)
    g = GeneralizedLinearModel("gamma", "log").fit(X, Y_POS)
    np.testing.assert_allclose(g.score(X, Y_POS, sample_weight=W),
                               d2_tweedie_score(Y_POS, g.predict(X), power=2, sample_weight=W), rtol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_logistic_regression_equals_sklearn_with_alpha_from_C(C, weighted):
    w = W if weighted else None
    total = N if w is None else w.sum()
    for y in (Y_BIN, Y_MULTI):
        sk = LogisticRegression(C=C, **SK).fit(X, y, sample_weight=w)
        ours = GeneralizedLinearClassifier(alpha=1.0 / (C * total)).fit(X, y, sample_weight=w)
        np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.intercept_, sk.intercept_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(ours.decision_function(X), sk.decision_function(X), rtol=1e-6, atol=1e-9)
        assert np.array_equal(ours.predict(X), sk.predict(X))
        np.testing.assert_allclose(ours.score(X, y), sk.score(X, y))


def test_unpenalised_logistic_equals_sklearn_without_penalty():
    for y in (Y_BIN, Y_MULTI):
        sk = LogisticRegression(C=np.inf, **SK).fit(X, y, sample_weight=W)
        ours = GeneralizedLinearClassifier().fit(X, y, sample_weight=W)
        np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.intercept_, sk.intercept_, rtol=1e-6, atol=1e-9)


def test_elastic_net_normal_equals_sklearn_elastic_net():
    for l1_ratio, alpha in [(0.5, 0.05), (1.0, 0.1), (0.2, 0.5)]:
        sk = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-15, max_iter=1_000_000).fit(X, Y_REAL, sample_weight=W)
        ours = GeneralizedLinearModel("normal", alpha=alpha, l1_ratio=l1_ratio).fit(X, Y_REAL, sample_weight=W)
        np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ours.intercept_, sk.intercept_, rtol=1e-7)
    # a strong lasso penalty zeroes coefficients exactly
    sparse = GeneralizedLinearModel("normal", alpha=0.3, l1_ratio=1.0).fit(X, Y_REAL)
    assert np.sum(sparse.coef_ == 0) >= 1


def _kkt_residual(grad, coef, alpha, l1_ratio):
    """Largest violation of the elastic-net optimality conditions of the coefficients."""
    g = grad + alpha * (1 - l1_ratio) * coef
    lam = alpha * l1_ratio
    nonzero = coef != 0
    return max(np.max(np.abs(g[nonzero] + lam * np.sign(coef[nonzero])), initial=0.0),
               np.max(np.abs(g[~nonzero]) - lam, initial=0.0))


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
def test_l1_fits_satisfy_the_optimality_conditions(l1_ratio):
    alpha = 0.05
    # Poisson, log link: gradient of half the mean deviance is -X'(w (y - mu)) / sum(w)
    m = GeneralizedLinearModel("poisson", alpha=alpha, l1_ratio=l1_ratio).fit(X, Y_COUNTS, sample_weight=W)
    resid = W * (Y_COUNTS - m.predict(X)) / W.sum()
    assert abs(resid.sum()) < 1e-10  # intercept: unpenalised
    assert _kkt_residual(-X.T @ resid, m.coef_, alpha, l1_ratio) < 1e-9
    # logistic
    c = GeneralizedLinearClassifier(alpha=alpha, l1_ratio=l1_ratio).fit(X, Y_BIN)
    resid = (Y_BIN - c.predict_proba(X)[:, 1]) / N
    assert abs(resid.sum()) < 1e-10
    assert _kkt_residual(-X.T @ resid, c.coef_[0], alpha, l1_ratio) < 1e-9
    assert np.any(c.coef_ == 0)
    # softmax: every class's coefficient row
    s = GeneralizedLinearClassifier(alpha=alpha, l1_ratio=l1_ratio).fit(X, Y_MULTI)
    K = len(s.classes_)
    onehot = np.eye(K)[Y_MULTI]
    resid = (onehot - s.predict_proba(X)) / N
    np.testing.assert_allclose(resid.sum(0), 0.0, atol=1e-10)
    for k in range(K):
        assert _kkt_residual(-X.T @ resid[:, k], s.coef_[k], alpha, l1_ratio) < 1e-9


def test_elastic_net_poisson_equals_statsmodels_fit_regularized():
    alpha, l1_ratio = 0.05, 0.5
    m = GeneralizedLinearModel("poisson", alpha=alpha, l1_ratio=l1_ratio).fit(X, Y_COUNTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sm.GLM(Y_COUNTS, sm.add_constant(X), family=sm.families.Poisson()).fit_regularized(
            alpha=np.r_[0.0, np.full(4, alpha)], L1_wt=l1_ratio, cnvrg_tol=1e-14, zero_tol=1e-12, maxiter=1000)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], r.params, atol=1e-6)
