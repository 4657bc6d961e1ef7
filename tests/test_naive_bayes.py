"""NaiveBayes against scikit-learn's GaussianNB, MultinomialNB, BernoulliNB and CategoricalNB on the
same data, partial_fit against fit, and families without a scikit-learn counterpart against scipy."""

import numpy as np
import pytest
from scipy import special, stats
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.naive_bayes import BernoulliNB, CategoricalNB, GaussianNB, MultinomialNB

from probkit.distributions import Categorical, Gamma, Normal, Poisson
from probkit.naive_bayes import NaiveBayes

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_WINE, Y_WINE = load_wine(return_X_y=True)
X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
RNG = np.random.RandomState(0)


def _components(nb, name):
    return np.stack([getattr(c, name) for c in nb.distribution_.components], axis=1)


def _same_posteriors(a, b, X):
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), rtol=1e-10, atol=1e-12)
    # log-probabilities of hopeless classes reach -1e3: compare them relative to their size
    np.testing.assert_allclose(b.predict_log_proba(X), a.predict_log_proba(X), rtol=1e-10, atol=1e-10)
    assert np.array_equal(b.predict(X), a.predict(X))


@pytest.mark.parametrize("data", ["iris", "wine"])
@pytest.mark.parametrize("weighted", [False, True])
def test_normal_family_equals_gaussian_nb(data, weighted):
    X, y = (X_IRIS, Y_IRIS) if data == "iris" else (X_WINE, Y_WINE)
    w = RNG.randint(1, 4, size=len(y)).astype(float) if weighted else None
    a = GaussianNB().fit(X, y, sample_weight=w)
    b = NaiveBayes().fit(X, y, sample_weight=w)
    _same_posteriors(a, b, X)
    np.testing.assert_allclose(_components(b, "loc"), a.theta_, rtol=1e-12)
    np.testing.assert_allclose(_components(b, "scale") ** 2, a.var_, rtol=1e-10)
    np.testing.assert_allclose(b.epsilon_, a.epsilon_, rtol=1e-12)
    np.testing.assert_allclose(b.class_prior_, a.class_prior_, rtol=1e-14)
    np.testing.assert_allclose(b.class_count_, a.class_count_, rtol=1e-14)
    np.testing.assert_allclose(b.predict_joint_log_proba(X), a.predict_joint_log_proba(X), rtol=1e-10)


def test_gaussian_options_equal_gaussian_nb():
    prior = np.array([0.5, 0.3, 0.2])
    a = GaussianNB(priors=prior, var_smoothing=1e-3).fit(X_IRIS, Y_IRIS)
    b = NaiveBayes(class_prior=prior, var_smoothing=1e-3).fit(X_IRIS, Y_IRIS)
    _same_posteriors(a, b, X_IRIS)
    np.testing.assert_allclose(_components(b, "scale") ** 2, a.var_, rtol=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_multinomial_family_equals_multinomial_nb(alpha):
    for kwargs in ({}, {"fit_prior": False}, {"class_prior": np.full(10, 0.1)}):
        a = MultinomialNB(alpha=alpha, **kwargs).fit(X_DIGITS, Y_DIGITS)
        b = NaiveBayes("multinomial", alpha=alpha, **kwargs).fit(X_DIGITS, Y_DIGITS)
        _same_posteriors(a, b, X_DIGITS)
        np.testing.assert_allclose(np.log(b.distribution_.probs), a.feature_log_prob_, rtol=1e-12)
        np.testing.assert_allclose(b.class_log_prior_, a.class_log_prior_, rtol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_bernoulli_family_equals_bernoulli_nb(alpha):
    w = RNG.randint(1, 3, size=len(Y_DIGITS)).astype(float)
    a = BernoulliNB(alpha=alpha, binarize=4.0).fit(X_DIGITS, Y_DIGITS, sample_weight=w)
    b = NaiveBayes("bernoulli", alpha=alpha, binarize=4.0).fit(X_DIGITS, Y_DIGITS, sample_weight=w)
    _same_posteriors(a, b, X_DIGITS)
    np.testing.assert_allclose(np.log(_components(b, "probs")), a.feature_log_prob_, rtol=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_categorical_family_equals_categorical_nb(alpha):
    X = X_DIGITS[:, 10:40] // 4  # integer codes 0..4, some columns constant
    a = CategoricalNB(alpha=alpha).fit(X, Y_DIGITS)
    b = NaiveBayes("categorical", alpha=alpha).fit(X, Y_DIGITS)
    _same_posteriors(a, b, X)
    for j, comp in enumerate(b.distribution_.components):
        np.testing.assert_allclose(np.log(comp.probs), a.feature_log_prob_[j], rtol=1e-12, atol=1e-15)


def test_partial_fit_equals_fit_on_all_rows_and_sklearn():
    order = RNG.permutation(len(Y_IRIS))
    batches = np.array_split(order, 3)
    for family, peer in [("normal", GaussianNB(var_smoothing=0.0)), ("multinomial", MultinomialNB())]:
        X, y = (X_IRIS, Y_IRIS) if family == "normal" else (X_DIGITS[:150], Y_DIGITS[:150])
        nb = NaiveBayes(family, var_smoothing=0.0)
        for idx in batches:
            nb.partial_fit(X[idx], y[idx], classes=np.unique(y))
            peer.partial_fit(X[idx], y[idx], classes=np.unique(y))
        full = NaiveBayes(family, var_smoothing=0.0).fit(X[order], y[order])
        _same_posteriors(full, nb, X)
        _same_posteriors(peer, nb, X)
    # with a variance floor the floor comes from every row seen, so partial_fit == fit
    nb = NaiveBayes()
    for idx in batches:
        nb.partial_fit(X_IRIS[idx], Y_IRIS[idx], classes=[0, 1, 2])
    full = NaiveBayes().fit(X_IRIS, Y_IRIS)
    np.testing.assert_allclose(nb.epsilon_, full.epsilon_, rtol=1e-12)
    _same_posteriors(full, nb, X_IRIS)


def test_partial_fit_with_a_class_missing_from_the_first_batch():
    first = Y_IRIS < 2
    nb = NaiveBayes().partial_fit(X_IRIS[first], Y_IRIS[first], classes=[0, 1, 2])
    assert nb.class_prior_[2] == 0 and np.all(nb.predict(X_IRIS) < 2)
    nb.partial_fit(X_IRIS[~first], Y_IRIS[~first])
    _same_posteriors(NaiveBayes().fit(X_IRIS, Y_IRIS), nb, X_IRIS)


def test_mixed_families_equal_scipy_products():
    X = np.column_stack([X_IRIS[:, 0], (X_IRIS[:, 1] * 3).round(), X_IRIS[:, 2], (X_IRIS[:, 3] > 1).astype(int)])
    nb = NaiveBayes([Normal(), "poisson", Gamma(), Categorical()], var_smoothing=0.0, alpha=0.5).fit(X, Y_IRIS)
    jll = np.zeros((len(X), 3))
    for k in range(3):
        rows = X[Y_IRIS == k]
        n = len(rows)
        jll[:, k] += stats.norm.logpdf(X[:, 0], rows[:, 0].mean(), rows[:, 0].std())
        jll[:, k] += stats.poisson.logpmf(X[:, 1], rows[:, 1].mean())
        shape, _, scale = stats.gamma.fit(rows[:, 2], floc=0, method="MLE")
        jll[:, k] += stats.gamma.logpdf(X[:, 2], shape, scale=scale)
        probs = (np.bincount(rows[:, 3].astype(int), minlength=2) + 0.5) / (n + 1.0)  # Dirichlet(1.5) MAP
        jll[:, k] += np.log(probs[X[:, 3].astype(int)])
        jll[:, k] += np.log(n / len(X))
    np.testing.assert_allclose(nb.predict_joint_log_proba(X), jll, rtol=1e-6)
    np.testing.assert_allclose(nb.predict_log_proba(X), jll - special.logsumexp(jll, 1, keepdims=True),
                               rtol=1e-6, atol=1e-6)


def test_full_covariance_family_per_class():
    nb = NaiveBayes("gaussian").fit(X_IRIS, Y_IRIS)
    jll = np.column_stack([
        stats.multivariate_normal.logpdf(X_IRIS, X_IRIS[Y_IRIS == k].mean(0),
                                         np.cov(X_IRIS[Y_IRIS == k].T, bias=True) + 1e-6 * np.eye(4))
        + np.log(1 / 3) for k in range(3)])
    np.testing.assert_allclose(nb.predict_joint_log_proba(X_IRIS), jll, rtol=1e-8)


def test_feature_prior_gives_the_posterior_mode():
    counts = X_DIGITS[:, :8]
    prior = Gamma(concentration=2.0, rate=0.5)
    nb = NaiveBayes("poisson", feature_prior=prior).fit(counts, Y_DIGITS)
    for k in range(10):
        rows = counts[Y_DIGITS == k]
        expected = (rows.sum(0) + 2.0 - 1.0) / (len(rows) + 0.5)
        np.testing.assert_allclose(_components(nb, "rate")[k], expected, rtol=1e-12)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="X does not fit the family.*non-negative integer"):
        NaiveBayes("multinomial").fit(X_IRIS, Y_IRIS)
    nb = NaiveBayes("categorical").fit(X_DIGITS[:, 20:30] // 8, Y_DIGITS)
    with pytest.raises(ValueError, match="holds symbol 5 but the alphabet has"):
        nb.predict(np.full((1, 10), 5.0))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        NaiveBayes().partial_fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="not in classes"):
        NaiveBayes().partial_fit(X_IRIS, Y_IRIS, classes=[0, 1])
    with pytest.raises(ValueError, match="family lists 2 distributions but X has 4 columns"):
        NaiveBayes(["normal", "normal"]).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match=r"'alpha' parameter of NaiveBayes must be a float in the range \[0.0, inf\)"):
        NaiveBayes(alpha=-1).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="'var_smoothing' parameter of NaiveBayes"):
        NaiveBayes(var_smoothing=np.inf).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="'binarize' parameter of NaiveBayes"):
        NaiveBayes("bernoulli", binarize=True).partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="'alpha' parameter of NaiveBayes"):
        NaiveBayes(alpha=-1).partial_fit(X_IRIS, Y_IRIS)  # before the missing classes
    with pytest.raises(TypeError, match="prior for Normal must be a NormalGamma"):
        NaiveBayes(feature_prior="flat").fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="class_prior must have one probability per class"):
        NaiveBayes(class_prior=[0.5, 0.5]).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="Poisson.*min_rate"):
        NaiveBayes(Poisson()).fit(X_DIGITS, Y_DIGITS)
    with pytest.raises(ValueError, match="1 sample"):
        NaiveBayes().fit(X_IRIS[:1], Y_IRIS[:1])
