"""Unpenalised GLMs against statsmodels on the same data: coefficients, standard errors,
deviance, null deviance, log-likelihood, AIC/BIC and the dispersion estimate."""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.discrete.discrete_model import MNLogit, NegativeBinomial as SMNegativeBinomial

from probkit.distributions import Gamma, NegativeBinomial
from probkit.glm import GeneralizedLinearClassifier, GeneralizedLinearModel

links = sm.families.links
RNG = np.random.RandomState(0)
N = 400
X = RNG.normal(size=(N, 3))
XC = sm.add_constant(X)
ETA = 0.4 + X @ [0.3, -0.25, 0.1]
WEIGHTS = RNG.randint(1, 4, size=N).astype(float)
Y = {
    "poisson": RNG.poisson(np.exp(ETA)).astype(float),
    "poisson_linear": RNG.poisson(6.0 + X @ [1.0, -0.8, 0.5]).astype(float),
    "gamma": RNG.gamma(3.0, np.exp(ETA) / 3.0),
    "normal": 1.0 + X @ [0.5, -0.3, 0.2] + RNG.normal(size=N),
    "positive_normal": np.exp(ETA) + 0.3 * RNG.normal(size=N),
    "bernoulli": (RNG.rand(N) < 1 / (1 + np.exp(-ETA))).astype(float),
    "counts_nb": RNG.negative_binomial(2.0, 2.0 / (2.0 + np.exp(ETA))).astype(float),
}

# name: (probkit family, link, response, statsmodels family)
CASES = {
    "poisson-log": ("poisson", "canonical", "poisson", sm.families.Poisson()),
    "poisson-identity": ("poisson", "identity", "poisson_linear", sm.families.Poisson(links.Identity())),
    "gamma-inverse": ("gamma", "canonical", "gamma", sm.families.Gamma()),
    "gamma-log": ("gamma", "log", "gamma", sm.families.Gamma(links.Log())),
    "normal-identity": ("normal", "canonical", "normal", sm.families.Gaussian()),
    "normal-log": ("normal", "log", "positive_normal", sm.families.Gaussian(links.Log())),
    "bernoulli-logit": ("bernoulli", "canonical", "bernoulli", sm.families.Binomial()),
    "bernoulli-probit": ("bernoulli", "probit", "bernoulli", sm.families.Binomial(links.Probit())),
    "bernoulli-cloglog": ("bernoulli", "cloglog", "bernoulli", sm.families.Binomial(links.CLogLog())),
    "negbin-fixed-log": (NegativeBinomial(fixed_total_count=2.0), "log", "counts_nb",
                         sm.families.NegativeBinomial(alpha=0.5)),
    "negbin-fixed-canonical": (NegativeBinomial(fixed_total_count=2.0), "canonical", "counts_nb",
                               sm.families.NegativeBinomial(alpha=0.5, link=links.NegativeBinomial(alpha=0.5))),
}


def _sm_fit(y, family, start=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.GLM(y, XC, family=family, **kw).fit(tol=1e-14, maxiter=500, start_params=start)


def _theta(m):
    return np.r_[m.intercept_, m.coef_]


def _assert_matches(m, r, llf=True):
    np.testing.assert_allclose(_theta(m), r.params, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(np.r_[m.intercept_bse_, m.bse_], r.bse, rtol=1e-7)
    np.testing.assert_allclose(m.deviance_, r.deviance, rtol=1e-9)
    np.testing.assert_allclose(m.null_deviance_, r.null_deviance, rtol=1e-9)
    np.testing.assert_allclose(m.pearson_chi2_, r.pearson_chi2, rtol=1e-8)
    np.testing.assert_allclose(m.dispersion_, r.scale, rtol=1e-8)
    np.testing.assert_allclose(m.df_resid_, r.df_resid)
    if llf:
        np.testing.assert_allclose(m.llf_, r.llf, rtol=1e-9)
        np.testing.assert_allclose(m.aic_, r.aic, rtol=1e-9)
        np.testing.assert_allclose(m.bic_, r.bic, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "freq-weights"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_unpenalised_fit_equals_statsmodels(name, weighted):
    family, link, response, sm_family = CASES[name]
    y = Y[response]
    w = WEIGHTS if weighted else None
    m = GeneralizedLinearModel(family=family, link=link).fit(X, y, sample_weight=w)
    assert m.converged_
    # statsmodels' IRLS can step out of the domain of the inverse and canonical
    # negative-binomial links (negative means); start it at probkit's optimum there.
    start = _theta(m) if link == "canonical" and name.split("-")[0] in ("gamma", "negbin") else None
    r = _sm_fit(y, sm_family, start=start, **({"freq_weights": w} if weighted else {}))
    _assert_matches(m, r)
    np.testing.assert_allclose(m.predict(X), r.fittedvalues, rtol=1e-7)


def test_fixed_dispersion_families_use_the_fixed_scale():
    y = Y["gamma"]
    for family, scale in [("exponential", 1.0), (Gamma(fixed_concentration=4.0), 0.25)]:
        m = GeneralizedLinearModel(family=family, link="log").fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = sm.GLM(y, XC, family=sm.families.Gamma(links.Log())).fit(tol=1e-14, scale=scale)
        np.testing.assert_allclose(_theta(m), r.params, rtol=1e-7)
        np.testing.assert_allclose(np.r_[m.intercept_bse_, m.bse_], r.bse, rtol=1e-7)
        assert m.dispersion_ == scale
        np.testing.assert_allclose(m.llf_, r.llf_scaled(scale=scale), rtol=1e-10)


def test_binomial_proportions_equal_two_column_counts():
    trials = RNG.randint(1, 15, size=N)
    successes = RNG.binomial(trials, 1 / (1 + np.exp(-ETA)))
    m = GeneralizedLinearModel(family="binomial").fit(X, successes / trials, sample_weight=trials)
    r = _sm_fit(np.column_stack([successes, trials - successes]), sm.families.Binomial())
    _assert_matches(m, r)
    # the var_weights form of statsmodels gives the same coefficients and errors
    r_var = _sm_fit(successes / trials, sm.families.Binomial(), var_weights=trials)
    np.testing.assert_allclose(_theta(m), r_var.params, rtol=1e-8)
    np.testing.assert_allclose(np.r_[m.intercept_bse_, m.bse_], r_var.bse, rtol=1e-8)


def test_offset_and_exposure_equal_statsmodels():
    y = Y["poisson"]
    exposure = RNG.uniform(0.5, 3.0, size=N)
    offset = RNG.normal(scale=0.2, size=N)
    m = GeneralizedLinearModel(family="poisson").fit(X, y, offset=offset, exposure=exposure)
    r = _sm_fit(y, sm.families.Poisson(), offset=offset, exposure=exposure)
    _assert_matches(m, r)
    np.testing.assert_allclose(m.predict(X, offset=offset, exposure=exposure), r.fittedvalues, rtol=1e-8)
    g = GeneralizedLinearModel(family="gamma", link="log").fit(X, Y["gamma"], offset=offset)
    _assert_matches(g, _sm_fit(Y["gamma"], sm.families.Gamma(links.Log()), offset=offset))


def test_no_intercept_equals_statsmodels_without_constant():
    y = Y["poisson"]
    m = GeneralizedLinearModel(family="poisson", fit_intercept=False).fit(X, y)
    r = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-14)
    np.testing.assert_allclose(m.coef_, r.params, rtol=1e-8)
    np.testing.assert_allclose(m.bse_, r.bse, rtol=1e-8)
    assert m.intercept_ == 0.0 and m.intercept_bse_ is None
    np.testing.assert_allclose([m.deviance_, m.llf_, m.aic_], [r.deviance, r.llf, r.aic], rtol=1e-10)


def test_estimated_negative_binomial_equals_statsmodels_nb2():
    y = Y["counts_nb"]
    m = GeneralizedLinearModel(family="negative_binomial", link="log").fit(X, y)
    r = SMNegativeBinomial(y, XC, loglike_method="nb2").fit(method="newton", tol=1e-14, maxiter=200, disp=0)
    np.testing.assert_allclose(_theta(m), r.params[:-1], rtol=1e-7)
    np.testing.assert_allclose(1.0 / m.total_count_, r.params[-1], rtol=1e-7)
    np.testing.assert_allclose([m.llf_, m.aic_, m.bic_], [r.llf, r.aic, r.bic], rtol=1e-10)
    # standard errors of the coefficients at the estimated total_count (treated as known)
    g = _sm_fit(y, sm.families.NegativeBinomial(alpha=1.0 / m.total_count_))
    np.testing.assert_allclose(np.r_[m.intercept_bse_, m.bse_], g.bse, rtol=1e-7)
    np.testing.assert_allclose([m.deviance_, m.null_deviance_], [g.deviance, g.null_deviance], rtol=1e-9)


def test_weights_equal_repeated_rows():
    reps = WEIGHTS.astype(int)
    idx = np.repeat(np.arange(N), reps)
    for family, link, response in [("poisson", "canonical", "poisson"), ("gamma", "log", "gamma"),
                                   ("normal", "canonical", "normal"), ("negative_binomial", "log", "counts_nb")]:
        y = Y[response]
        a = GeneralizedLinearModel(family=family, link=link).fit(X, y, sample_weight=WEIGHTS)
        b = GeneralizedLinearModel(family=family, link=link).fit(X[idx], y[idx])
        np.testing.assert_allclose(_theta(a), _theta(b), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose([a.deviance_, a.llf_, a.aic_, a.bic_, a.dispersion_],
                                   [b.deviance_, b.llf_, b.aic_, b.bic_, b.dispersion_], rtol=1e-9)


@pytest.mark.parametrize("link, model", [("canonical", sm.Logit), ("probit", sm.Probit)])
def test_binary_classifier_equals_statsmodels_logit_and_probit(link, model):
    labels = np.where(Y["bernoulli"] > 0, "yes", "no")
    clf = GeneralizedLinearClassifier(link=link).fit(X, labels)
    r = model(Y["bernoulli"], XC).fit(method="newton", tol=1e-14, disp=0)
    assert list(clf.classes_) == ["no", "yes"]
    np.testing.assert_allclose(np.r_[clf.intercept_, clf.coef_[0]], r.params, rtol=1e-8)
    # standard errors from the Fisher (expected) information, as statsmodels' GLM; its
    # discrete Probit inverts the observed Hessian, which differs for a non-canonical link
    g = _sm_fit(Y["bernoulli"], sm.families.Binomial(links.Probit() if link == "probit" else links.Logit()))
    np.testing.assert_allclose(np.r_[clf.intercept_bse_, clf.bse_[0]], g.bse, rtol=1e-8)
    if link == "canonical":
        np.testing.assert_allclose(np.r_[clf.intercept_bse_, clf.bse_[0]], r.bse, rtol=1e-8)
    np.testing.assert_allclose([clf.llf_, clf.aic_, clf.bic_], [r.llf, r.aic, r.bic], rtol=1e-10)
    np.testing.assert_allclose(clf.null_deviance_, -2 * r.llnull, rtol=1e-10)
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], r.predict(XC), rtol=1e-8)
    np.testing.assert_allclose(clf.deviance(X, labels), -2 * r.llf, rtol=1e-10)


def test_softmax_classifier_equals_statsmodels_mnlogit():
    y = RNG.randint(0, 3, size=N) + (X[:, 0] > 0.5)
    clf = GeneralizedLinearClassifier().fit(X, y)
    r = MNLogit(y, XC).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    B = np.column_stack([clf.intercept_, clf.coef_])  # (K, q), symmetric: columns sum to 0
    np.testing.assert_allclose(B.sum(0), 0.0, atol=1e-12)
    np.testing.assert_allclose((B[1:] - B[0]).T, r.params, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose([clf.llf_, clf.aic_, clf.bic_], [r.llf, r.aic, r.bic], rtol=1e-10)
    np.testing.assert_allclose(clf.null_deviance_, -2 * r.llnull, rtol=1e-10)
    np.testing.assert_allclose(clf.predict_proba(X), r.predict(XC), rtol=1e-8, atol=1e-14)
    # standard errors of the centred coefficients: the covariance of statsmodels' contrasts
    # against class 0, carried through the centring map
    K, q = B.shape
    cov_ref = np.asarray(r.cov_params())  # ordered class-major: (class 1: q params), (class 2: q params)
    to_centred = np.kron(np.eye(K) - 1.0 / K, np.eye(q))[:, q:]  # free rows are classes 1..K-1
    bse = np.sqrt(np.diag(to_centred @ cov_ref @ to_centred.T)).reshape(K, q)
    np.testing.assert_allclose(clf.intercept_bse_, bse[:, 0], rtol=1e-7)
    np.testing.assert_allclose(clf.bse_, bse[:, 1:], rtol=1e-7)
