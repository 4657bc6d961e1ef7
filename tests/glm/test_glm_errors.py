"""Bad input gets clear errors; separation, rank deficiency and non-convergence are reported."""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from probkit.distributions import Binomial, Categorical
from probkit.glm import GeneralizedLinearClassifier, GeneralizedLinearModel, PerfectSeparationError

X = np.arange(8.0).reshape(-1, 1)
RNG = np.random.RandomState(3)
XR = RNG.normal(size=(60, 2))
YC = RNG.poisson(2.0, size=60).astype(float)


@pytest.mark.parametrize("family, y, match", [
    ("gamma", [1, 2, 0, 3, 4, 5, 6, 7], "strictly positive for the gamma family"),
    ("exponential", [1, 2, -1, 3, 4, 5, 6, 7], "strictly positive"),
    ("poisson", [1, 2, -1, 3, 4, 5, 6, 7], "non-negative integer counts.*negative values such as -1"),
    ("poisson", [1, 2, 1.5, 3, 4, 5, 6, 7], "non-integer values such as 1.5"),
    ("negative_binomial", [1, 2, 0.5, 3, 4, 5, 6, 7], "non-integer"),
    ("bernoulli", [0, 1, 2, 1, 0, 1, 0, 1], "0/1 outcomes"),
    ("binomial", [0, 1, 1.2, 1, 0, 1, 0, 1], r"proportions of successes in \[0, 1\]"),
])
def test_responses_outside_the_support_are_rejected(family, y, match):
    link = "log" if family == "negative_binomial" else "canonical"
    with pytest.raises(ValueError, match=match):
        GeneralizedLinearModel(family=family, link=link).fit(X, y)


@pytest.mark.parametrize("y", [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 1]],
                         ids=["complete", "complete-uneven", "quasi-single"])
def test_separated_binary_data_raise_without_penalty_and_fit_with_one(y):
    with pytest.raises(PerfectSeparationError, match="perfectly separated.*alpha > 0"):
        GeneralizedLinearClassifier().fit(X, y)
    with pytest.raises(PerfectSeparationError):
        GeneralizedLinearModel(family="bernoulli").fit(X, y)
    clf = GeneralizedLinearClassifier(alpha=0.1).fit(X, y)
    assert np.all(np.isfinite(clf.coef_)) and clf.converged_


def test_quasi_complete_separation_is_detected():
    # x = 3 holds both outcomes; below only 0, above only 1: the MLE is still infinite.
    Xq = np.array([[0.0], [1.0], [2.0], [3.0], [3.0], [4.0], [5.0], [6.0]])
    with pytest.raises(PerfectSeparationError):
        GeneralizedLinearClassifier().fit(Xq, [0, 0, 0, 0, 1, 1, 1, 1])
    # a separated class among three
    with pytest.raises(PerfectSeparationError, match="classes are perfectly separated"):
        GeneralizedLinearClassifier().fit(X, [0, 1, 0, 1, 0, 1, 0, 2])


def test_overlapping_classes_are_not_reported_as_separated():
    clf = GeneralizedLinearClassifier().fit(X, [0, 1, 0, 0, 1, 0, 1, 1])
    r = sm.Logit([0, 1, 0, 0, 1, 0, 1, 1], sm.add_constant(X)).fit(disp=0, tol=1e-14, method="newton")
    np.testing.assert_allclose(np.r_[clf.intercept_, clf.coef_[0]], r.params, rtol=1e-8)


def test_rank_deficient_designs_name_the_columns():
    with pytest.raises(ValueError, match=r"rank-deficient: rank 2 < 3 columns.*X\[:, 0\], X\[:, 1\].*alpha > 0"):
        GeneralizedLinearModel().fit(np.c_[X, 2 * X], YC[:8])
    with pytest.raises(ValueError, match=r"intercept, X\[:, 1\]"):
        GeneralizedLinearModel("poisson").fit(np.c_[X, np.ones(8)], YC[:8])
    with pytest.raises(ValueError, match=r"zero on every sample"):
        GeneralizedLinearModel("poisson", fit_intercept=False).fit(np.c_[X, np.zeros(8)], YC[:8])
    with pytest.raises(ValueError, match="from 1 sample"):
        GeneralizedLinearModel().fit(X[:1], [1.0])
    with pytest.raises(ValueError, match="rank-deficient"):
        GeneralizedLinearClassifier().fit(np.c_[XR, XR[:, 0] - XR[:, 1]], RNG.randint(0, 3, 60))
    # a penalty makes the coefficients identifiable: the ridge splits them equally
    m = GeneralizedLinearModel(alpha=0.1).fit(np.c_[X, X], YC[:8])
    np.testing.assert_allclose(m.coef_[0], m.coef_[1], rtol=1e-10)


def test_invalid_parameters_and_families():
    cases = [
        (GeneralizedLinearModel(alpha=-1.0), r"'alpha' parameter of GeneralizedLinearModel must be a float in the "
                                             r"range \[0.0, inf\)"),
        (GeneralizedLinearModel(alpha=np.nan), "'alpha' parameter of GeneralizedLinearModel"),
        (GeneralizedLinearModel(alpha=np.inf), "'alpha' parameter of GeneralizedLinearModel"),
        (GeneralizedLinearModel(alpha=True), "'alpha' parameter of GeneralizedLinearModel"),
        (GeneralizedLinearModel(l1_ratio=1.5), r"'l1_ratio' parameter of GeneralizedLinearModel must be a float in "
                                               r"the range \[0.0, 1.0\]"),
        (GeneralizedLinearModel(tol=0), r"'tol' parameter of GeneralizedLinearModel must be a float in the range "
                                        r"\(0.0, inf\)"),
        (GeneralizedLinearModel(max_iter=0), r"'max_iter' parameter of GeneralizedLinearModel must be an int in the "
                                             r"range \[1, inf\)"),
        (GeneralizedLinearModel(max_iter=True), "'max_iter' parameter of GeneralizedLinearModel"),
        (GeneralizedLinearModel(fit_intercept="yes"), "'fit_intercept' parameter of GeneralizedLinearModel"),
        (GeneralizedLinearClassifier(alpha=-1.0), "'alpha' parameter of GeneralizedLinearClassifier"),
        (GeneralizedLinearClassifier(verbose=-1), "'verbose' parameter of GeneralizedLinearClassifier"),
        (GeneralizedLinearModel(family="weibull"), "unknown GLM family 'weibull'"),
        (GeneralizedLinearModel(family="categorical"), "use GeneralizedLinearClassifier"),
        (GeneralizedLinearModel(family=Categorical), "use GeneralizedLinearClassifier"),
        (GeneralizedLinearModel(family=Binomial(total_count=5)), "proportion of successes"),
        (GeneralizedLinearModel(family="poisson", link="logit"), "link 'logit' is not available for the poisson"),
        (GeneralizedLinearModel(family="poisson", link="cubic"), "not available"),
        (GeneralizedLinearModel(family="negative_binomial"), "use link='log'"),
        (GeneralizedLinearClassifier(family="poisson"), "not a family of class labels"),
        (GeneralizedLinearClassifier(family="bernoulli"), "Only binary classification is supported.*got 3 classes"),
        (GeneralizedLinearClassifier(link="probit"), "only its canonical link"),
    ]
    y3 = np.arange(8) % 3
    for est, match in cases:
        y = y3 if isinstance(est, GeneralizedLinearClassifier) else YC[:8]
        with pytest.raises(ValueError, match=match):
            est.fit(X, y)
    with pytest.raises(TypeError, match="'link' parameter of GeneralizedLinearModel must be an instance of 'str'"):
        GeneralizedLinearModel(link=None).fit(X, YC[:8])


def test_offset_exposure_and_class_count_errors():
    with pytest.raises(ValueError, match=r"offset must have shape \(8,\)"):
        GeneralizedLinearModel("poisson").fit(X, YC[:8], offset=np.zeros(3))
    with pytest.raises(ValueError, match="exposure must be positive"):
        GeneralizedLinearModel("poisson").fit(X, YC[:8], exposure=np.r_[np.ones(7), 0.0])
    with pytest.raises(ValueError, match="needs the log link"):
        GeneralizedLinearModel("normal").fit(X, YC[:8], exposure=np.ones(8))
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        GeneralizedLinearClassifier().fit(X, np.ones(8))
    with pytest.raises(ValueError, match=r"offset must have shape \(8, 3\)"):
        GeneralizedLinearClassifier().fit(X, np.arange(8) % 3, offset=np.zeros(8))
    clf = GeneralizedLinearClassifier(alpha=0.1).fit(X, np.arange(8) % 2)
    with pytest.raises(ValueError, match="unseen in fit"):
        clf.deviance(X, np.arange(8) % 3)


def test_unfitted_and_wrong_shapes():
    with pytest.raises(NotFittedError):
        GeneralizedLinearModel().predict(X)
    with pytest.raises(NotFittedError):
        GeneralizedLinearClassifier().predict_proba(X)
    m = GeneralizedLinearModel("poisson").fit(XR, YC)
    with pytest.raises(ValueError, match="features"):
        m.predict(X)
    with pytest.raises(ValueError, match="NaN"):
        GeneralizedLinearModel().fit(np.r_[XR[:-1], [[np.nan, 0.0]]], YC)


def test_non_convergence_warns():
    y = RNG.gamma(2.0, np.exp(XR @ [1.0, -1.0]))
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 iteration"):
        m = GeneralizedLinearModel("gamma", "log", max_iter=1).fit(XR, y)
    assert not m.converged_


def test_gamma_inverse_link_stays_in_its_domain():
    # statsmodels' IRLS may end at negative means with the inverse link; the line search
    # keeps every fitted mean positive and reaches a point where the score vanishes.
    rng = np.random.RandomState(5)
    Xg = rng.normal(size=(300, 4))
    y = rng.gamma(2.0, np.exp(0.5 + Xg @ [0.3, -0.2, 0.1, 0.0]) / 2.0)
    w = rng.randint(1, 4, size=300).astype(float)
    m = GeneralizedLinearModel("gamma").fit(Xg, y, sample_weight=w)
    mu = m.predict(Xg)
    assert np.all(mu > 0)
    # score of the inverse link: X1' (w (y - mu) (-mu**2) / mu**2) = 0
    X1 = np.c_[np.ones(300), Xg]
    np.testing.assert_allclose(X1.T @ (w * (y - mu)), 0.0, atol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sm.GLM(y, X1, family=sm.families.Gamma(), freq_weights=w).fit(tol=1e-14)
    assert m.deviance_ <= r.deviance + 1e-9


def test_torch_tensors_are_accepted():
    a = GeneralizedLinearModel("poisson").fit(torch.as_tensor(XR), torch.as_tensor(YC))
    b = GeneralizedLinearModel("poisson").fit(XR, YC)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.predict(torch.as_tensor(XR)), b.predict(XR))


def test_classifier_methods_agree():
    y = np.array(["a", "b", "c"])[RNG.randint(0, 3, 60)]
    clf = GeneralizedLinearClassifier(alpha=0.01).fit(XR, y)
    logp = clf.predict_log_proba(XR)
    np.testing.assert_allclose(np.exp(logp), clf.predict_proba(XR), rtol=1e-12)
    np.testing.assert_allclose(clf.predict_proba(XR).sum(1), 1.0)
    assert np.array_equal(clf.predict(XR), clf.classes_[clf.decision_function(XR).argmax(1)])
    np.testing.assert_allclose(clf.deviance(XR, y), -2 * logp[np.arange(60), np.searchsorted(clf.classes_, y)].sum())
    np.testing.assert_allclose(clf.deviance(XR, y), clf.deviance_, rtol=1e-10)
    m = GeneralizedLinearModel("poisson").fit(XR, YC)
    np.testing.assert_allclose(m.deviance(XR, YC), m.deviance_, rtol=1e-12)
