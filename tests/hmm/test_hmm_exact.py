"""HMM estimators against brute-force enumeration of all state paths (tiny models).

Emission log-densities here come from scipy.stats, and every path is enumerated with
itertools: neither uses probkit's kernels or distributions.
"""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp
from sklearn.exceptions import NotFittedError

from probkit import GMMHMM, HMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM
from probkit.distributions import Gamma, MultivariateNormal, Normal
from probkit.hmm import ARHMM, EmptyStateWarning

LENGTHS = [5, 4]


def enumerate_paths(log_start, log_trans, log_emis, allowed=None):
    """All K^T paths of one sequence: log-likelihood, posteriors, best path and its log-probability."""
    T, K = log_emis.shape
    paths, scores = [], []
    for path in itertools.product(range(K), repeat=T):
        if allowed is not None and any(not allowed[t][s] for t, s in enumerate(path)):
            continue
        score = log_start[path[0]] + log_emis[0, path[0]]
        for t in range(1, T):
            score += log_trans[path[t - 1], path[t]] + log_emis[t, path[t]]
        paths.append(path)
        scores.append(score)
    scores = np.array(scores)
    ll = logsumexp(scores)
    weights = np.exp(scores - ll)
    post = np.zeros((T, K))
    for w, path in zip(weights, paths):
        post[np.arange(T), path] += w
    best = int(np.argmax(scores))
    return ll, post, np.array(paths[best]), scores[best]


def brute(model, log_emis_fn, X, lengths, labels=None):
    log_start = np.log(model.startprob_)
    with np.errstate(divide="ignore"):
        log_trans = np.log(model.transmat_)
    out = {"ll": 0.0, "post": [], "best": 0.0, "seq_ll": []}
    offset = 0
    for n in lengths:
        seq = X[offset:offset + n]
        allowed = None
        if labels is not None:
            lab = labels[offset:offset + n]
            allowed = [[l < 0 or l == k for k in range(model.n_components)] for l in lab]
        ll, post, _, best = enumerate_paths(log_start, log_trans, log_emis_fn(seq), allowed)
        out["ll"] += ll
        out["seq_ll"].append(ll)
        out["post"].append(post)
        out["best"] += best
        offset += n
    out["post"] = np.concatenate(out["post"])
    return out


def chain(rng, k):
    return rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k), size=k)


def gaussian_case(cov_type):
    def build(rng):
        k, d = 3, 2
        m = GaussianHMM(k, covariance_type=cov_type)
        m.startprob_, m.transmat_ = chain(rng, k)
        m.means_ = rng.normal(0, 2, (k, d))
        m.covars_ = {"diag": rng.uniform(0.5, 2, (k, d)), "spherical": rng.uniform(0.5, 2, k),
                     "full": np.array([np.eye(d) + 0.3 * np.ones((d, d))] * k), "tied": np.eye(d) * 1.5}[cov_type]
        full = m.full_covars_

        def log_emis(X):
            return np.stack([stats.multivariate_normal(m.means_[j], full[j]).logpdf(X).reshape(len(X))
                             for j in range(k)], 1)
        return m, log_emis
    return build


def gmm_case(rng):
    k, mix, d = 2, 2, 2
    m = GMMHMM(k, n_mix=mix, covariance_type="diag")
    m.startprob_, m.transmat_ = chain(rng, k)
    m.weights_ = rng.dirichlet(np.ones(mix), size=k)
    m.means_ = rng.normal(0, 2, (k, mix, d))
    m.covars_ = rng.uniform(0.5, 2, (k, mix, d))

    def log_emis(X):
        return np.stack([logsumexp([np.log(m.weights_[j, c]) + stats.multivariate_normal(
            m.means_[j, c], np.diag(m.covars_[j, c])).logpdf(X).reshape(len(X)) for c in range(mix)], axis=0)
            for j in range(k)], 1)
    return m, log_emis


def categorical_case(rng):
    k, n_sym = 3, 4
    m = CategoricalHMM(k)
    m.startprob_, m.transmat_ = chain(rng, k)
    m.emissionprob_ = rng.dirichlet(np.ones(n_sym), size=k)
    return m, lambda X: np.log(m.emissionprob_[:, X[:, 0].astype(int)]).T


def multinomial_case(rng):
    k, n_cat = 2, 3
    m = MultinomialHMM(k, n_trials=4)
    m.startprob_, m.transmat_ = chain(rng, k)
    m.emissionprob_ = rng.dirichlet(np.ones(n_cat), size=k)
    return m, lambda X: np.stack([stats.multinomial(4, m.emissionprob_[j]).logpmf(X) for j in range(k)], 1)


def poisson_case(rng):
    k = 3
    m = PoissonHMM(k)
    m.startprob_, m.transmat_ = chain(rng, k)
    m.lambdas_ = rng.uniform(1, 10, (k, 2))
    return m, lambda X: np.stack([stats.poisson(m.lambdas_[j]).logpmf(X).sum(1) for j in range(k)], 1)


def gamma_case(rng):
    k = 2
    m = HMM(emission=Gamma, n_components=k)
    m.startprob_, m.transmat_ = chain(rng, k)
    a, b = rng.uniform(1, 5, k), rng.uniform(0.5, 2, k)
    m.emission_ = Gamma(concentration=a, rate=b)
    return m, lambda X: np.stack([stats.gamma(a[j], scale=1 / b[j]).logpdf(X[:, 0]) for j in range(k)], 1)


def normal_product_case(rng):
    k = 2
    m = HMM(emission="normal", n_components=k)
    m.startprob_, m.transmat_ = chain(rng, k)
    loc, scale = rng.normal(0, 2, (k, 2)), rng.uniform(0.5, 2, (k, 2))
    m.emission_ = Normal(loc=loc, scale=scale)
    return m, lambda X: np.stack([stats.norm(loc[j], scale[j]).logpdf(X).sum(1) for j in range(k)], 1)


def mvn_case(rng):
    k = 2
    m = HMM(emission=MultivariateNormal(covariance_type="full"), n_components=k)
    m.startprob_, m.transmat_ = chain(rng, k)
    mean = rng.normal(0, 2, (k, 2))
    cov = np.array([[[1.0, 0.4], [0.4, 2.0]], [[2.0, -0.5], [-0.5, 1.0]]])
    m.emission_ = MultivariateNormal(mean=mean, covariance=cov)
    return m, lambda X: np.stack([stats.multivariate_normal(mean[j], cov[j]).logpdf(X) for j in range(k)], 1)


CASES = {
    "gaussian-diag": gaussian_case("diag"),
    "gaussian-spherical": gaussian_case("spherical"),
    "gaussian-full": gaussian_case("full"),
    "gaussian-tied": gaussian_case("tied"),
    "gmm": gmm_case,
    "categorical": categorical_case,
    "multinomial": multinomial_case,
    "poisson": poisson_case,
    "generic-gamma": gamma_case,
    "generic-normal-product": normal_product_case,
    "generic-mvn": mvn_case,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_score_posteriors_viterbi_equal_enumeration(name):
    rng = np.random.RandomState(sorted(CASES).index(name))
    model, log_emis = CASES[name](rng)
    X, _ = model.sample(sum(LENGTHS), random_state=1)
    truth = brute(model, log_emis, X, LENGTHS)
    np.testing.assert_allclose(model.score(X, lengths=LENGTHS), truth["ll"], rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, lengths=LENGTHS), truth["post"], atol=1e-10)
    log_prob, path = model.decode(X, lengths=LENGTHS, algorithm="viterbi")
    np.testing.assert_allclose(log_prob, truth["best"], rtol=1e-10)
    # score_samples: one-step predictive terms, summing to each sequence's log-likelihood
    per_row = model.score_samples(X, lengths=LENGTHS)
    np.testing.assert_allclose([per_row[:5].sum(), per_row[5:].sum()], truth["seq_ll"], rtol=1e-10)


@pytest.mark.parametrize("name", ["gaussian-diag", "categorical", "poisson"])
def test_state_labels_constrain_posteriors_and_paths(name):
    rng = np.random.RandomState(7)
    model, log_emis = CASES[name](rng)
    X, _ = model.sample(sum(LENGTHS), random_state=2)
    labels = np.array([-1, 2, -1, -1, 0, 1, -1, -1, -1])
    truth = brute(model, log_emis, X, LENGTHS, labels=labels)
    post = model.predict_proba(X, lengths=LENGTHS, state_labels=labels)
    np.testing.assert_allclose(post, truth["post"], atol=1e-10)
    log_prob, path = model.decode(X, lengths=LENGTHS, state_labels=labels)
    np.testing.assert_allclose(log_prob, truth["best"], rtol=1e-10)
    assert np.all(path[labels >= 0] == labels[labels >= 0])
    assert np.all(model.predict(X, lengths=LENGTHS, state_labels=labels)[labels >= 0] == labels[labels >= 0])


@pytest.mark.parametrize("name", ["gaussian-diag", "gaussian-spherical", "poisson", "generic-normal-product"])
def test_missing_features_are_marginalised(name):
    rng = np.random.RandomState(11)
    model, log_emis = CASES[name](rng)
    model.set_params(missing="marginalize")
    X, _ = model.sample(sum(LENGTHS), random_state=3)
    X = X.astype(float)
    X[1, 0] = np.nan
    X[3, :] = np.nan          # a step with nothing observed
    X[6, 1] = np.nan

    def log_emis_observed(seq):
        out = np.zeros((len(seq), model.n_components))
        for t, row in enumerate(seq):
            keep = ~np.isnan(row)
            if keep.any():
                out[t] = log_emis(np.where(keep, row, 0.0)[None])[0] if keep.all() else _partial(row, keep)
        return out

    def _partial(row, keep):
        # Evaluate per-feature densities on the observed features only.
        cols = np.flatnonzero(keep)
        vals = []
        for j in range(model.n_components):
            if isinstance(model, GaussianHMM):
                var = model.full_covars_[j].diagonal()
                vals.append(stats.norm(model.means_[j, cols], np.sqrt(var[cols])).logpdf(row[cols]).sum())
            elif isinstance(model, PoissonHMM):
                vals.append(stats.poisson(model.lambdas_[j, cols]).logpmf(row[cols]).sum())
            else:
                p = model.emission_params_
                vals.append(stats.norm(p["loc"][j, cols], p["scale"][j, cols]).logpdf(row[cols]).sum())
        return np.array(vals)

    truth = brute(model, log_emis_observed, X, LENGTHS)
    np.testing.assert_allclose(model.score(X, lengths=LENGTHS), truth["ll"], rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, lengths=LENGTHS), truth["post"], atol=1e-10)
    # EM runs on the incomplete data and never decreases the likelihood
    fitted = type(model)(**model.get_params()).set_params(n_iter=15, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted.fit(np.vstack([X] * 20), lengths=LENGTHS * 20)
    assert np.all(np.diff(fitted.monitor_.history) > -1e-8)


def test_missing_features_of_an_independent_product_are_marginalised():
    from probkit.distributions import Independent, Poisson

    rng = np.random.RandomState(12)
    k = 2
    model = HMM(emission=Independent([Normal(), Poisson()]), n_components=k, missing="marginalize")
    model.startprob_, model.transmat_ = chain(rng, k)
    loc, scale, rate = rng.normal(0, 2, k), rng.uniform(0.5, 2, k), rng.uniform(1, 8, k)
    model.emission_ = Independent([Normal(loc=loc, scale=scale), Poisson(rate=rate)])
    X, _ = model.sample(sum(LENGTHS), random_state=4)
    X = X.astype(float)
    X[0, 1] = np.nan
    X[4, 0] = np.nan
    X[7, :] = np.nan

    def log_emis(seq):
        out = np.zeros((len(seq), k))
        for j in range(k):
            normal = stats.norm(loc[j], scale[j]).logpdf(seq[:, 0])
            counts = stats.poisson(rate[j]).logpmf(seq[:, 1])
            out[:, j] = np.where(np.isnan(seq[:, 0]), 0, normal) + np.where(np.isnan(seq[:, 1]), 0, counts)
        return out

    truth = brute(model, log_emis, X, LENGTHS)
    np.testing.assert_allclose(model.score(X, lengths=LENGTHS), truth["ll"], rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, lengths=LENGTHS), truth["post"], atol=1e-10)
    fitted = HMM(emission=Independent([Normal(), Poisson()]), n_components=k, missing="marginalize",
                 n_iter=15, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted.fit(np.vstack([X] * 20), lengths=LENGTHS * 20)
    assert np.all(np.diff(fitted.monitor_.history) > -1e-8)


def test_missing_values_are_an_error_by_default():
    model, _ = CASES["gaussian-diag"](np.random.RandomState(0))
    X, _ = model.sample(10, random_state=0)
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.score(X)
    with pytest.raises(ValueError, match="marginalize"):
        GaussianHMM(2, covariance_type="full", missing="marginalize").fit(X)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), cov_type=st.sampled_from(["diag", "spherical", "full", "tied"]))
def test_em_log_likelihood_never_decreases(seed, k, cov_type):
    rng = np.random.RandomState(seed)
    X = np.cumsum(rng.standard_t(3, size=(150, 2)), axis=0) * 0.1 + rng.normal(size=(150, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianHMM(k, covariance_type=cov_type, n_iter=20, tol=-np.inf, random_state=seed)
        model.fit(X, lengths=[50, 100])
    history = np.asarray(model.monitor_.history)
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[1:]))


def penalised_objective(model, X, lengths):
    """log p(X | θ) + log Dirichlet priors (up to constants) for a CategoricalHMM."""
    value = model.score(X, lengths=lengths)
    value += np.sum((model.startprob_prior - 1) * np.log(model.startprob_))
    value += np.sum((model.transmat_prior - 1) * np.log(model.transmat_))
    value += np.sum((model.emissionprob_prior - 1) * np.log(model.emissionprob_))
    return value


def test_map_priors_increase_the_penalised_objective():
    rng = np.random.RandomState(3)
    k, n_sym = 3, 5
    start, trans = chain(rng, k)
    emis = rng.dirichlet(np.ones(n_sym), size=k)
    gen = CategoricalHMM(k)
    gen.startprob_, gen.transmat_, gen.emissionprob_ = start, trans, emis
    X, _ = gen.sample(200, random_state=0)
    values = []
    for n_iter in range(0, 8):
        m = CategoricalHMM(k, startprob_prior=2.0, transmat_prior=3.0, emissionprob_prior=1.5, init_params="",
                           n_iter=n_iter, tol=-np.inf)
        m.startprob_, m.transmat_, m.emissionprob_ = start.copy(), trans.copy(), emis.copy()
        if n_iter:
            m.fit(X)
        values.append(penalised_objective(m, X, None))
    assert np.all(np.diff(values) > -1e-9)


def test_parameters_are_recovered_from_sampled_data():
    gen = GaussianHMM(2, covariance_type="diag")
    gen.startprob_ = np.array([0.5, 0.5])
    gen.transmat_ = np.array([[0.95, 0.05], [0.1, 0.9]])
    gen.means_ = np.array([[0.0, 0.0], [3.0, -2.0]])
    gen.covars_ = np.array([[1.0, 0.5], [0.7, 1.2]])
    X, Z = gen.sample(6000, random_state=0)
    model = GaussianHMM(2, covariance_type="diag", n_iter=200, tol=1e-6, random_state=1).fit(X)
    order = np.argsort(model.means_[:, 0])
    # ~3000 steps per state: standard errors ~0.02 (means), ~0.03 (variances), ~0.005 (transitions)
    np.testing.assert_allclose(model.means_[order], gen.means_, atol=0.1)
    np.testing.assert_allclose(model.covars_[order], gen.covars_, atol=0.12)
    np.testing.assert_allclose(model.transmat_[np.ix_(order, order)], gen.transmat_, atol=0.03)
    assert (model.predict(X) == order[Z]).mean() > 0.97 or (model.predict(X) == order[1 - Z]).mean() > 0.97


def test_structural_zeros_stay_zero_in_left_right_models():
    k = 3
    trans = np.array([[0.7, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    gen = GaussianHMM(k)
    gen.startprob_ = np.array([1.0, 0.0, 0.0])
    gen.transmat_ = trans
    gen.means_ = np.array([[0.0], [4.0], [8.0]])
    gen.covars_ = np.ones((k, 1))
    X, _ = gen.sample(60, random_state=0)
    model = GaussianHMM(k, init_params="mc", n_iter=30, random_state=0)
    model.startprob_ = gen.startprob_.copy()
    model.transmat_ = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    model.fit(np.vstack([X] * 5), lengths=[60] * 5)
    assert np.all(model.transmat_[trans == 0] == 0) and model.startprob_[1:].sum() == 0


def test_state_without_data_keeps_parameters_with_warning():
    model = GaussianHMM(2, init_params="", n_iter=3, tol=-np.inf)
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.array([[1.0, 0.0], [0.5, 0.5]])
    model.means_ = np.array([[0.0], [100.0]])
    model.covars_ = np.ones((2, 1))
    X = np.random.RandomState(0).normal(size=(50, 1))
    with pytest.warns(EmptyStateWarning):
        model.fit(X)
    assert model.means_[1, 0] == 100.0 and np.all(np.isfinite(model.covars_))
    np.testing.assert_array_equal(model.transmat_[1], [0.5, 0.5])


def test_stationary_distribution_and_sampling_frequencies():
    model, _ = CASES["gaussian-diag"](np.random.RandomState(5))
    pi = model.get_stationary_distribution()
    np.testing.assert_allclose(pi @ model.transmat_, pi, atol=1e-12)
    _, Z = model.sample(40_000, random_state=0)
    freq = np.bincount(Z, minlength=3) / len(Z)
    np.testing.assert_allclose(freq, pi, atol=0.02)  # Markov-chain sample: generous for autocorrelation


def test_fit_rejects_lengths_in_the_y_slot():
    X = np.random.RandomState(0).normal(size=(10, 1))
    with pytest.raises(TypeError, match="lengths="):
        GaussianHMM(2).fit(X, [4, 6])


@pytest.mark.parametrize(
    "setter, error, match",
    [
        (lambda m: setattr(m, "startprob_", np.array([0.5, 0.6])), ValueError, "startprob_"),
        (lambda m: setattr(m, "transmat_", np.array([[1.2, -0.2], [0.5, 0.5]])), ValueError, "transmat_"),
        (lambda m: setattr(m, "transmat_", np.eye(3)), ValueError, "transmat_ must have shape"),
        (lambda m: setattr(m, "means_", np.zeros((3, 1))), ValueError, "means_"),
        (lambda m: setattr(m, "covars_", -np.ones((2, 1))), ValueError, "covars_"),
    ],
)
def test_bad_hand_set_parameters(setter, error, match):
    m = GaussianHMM(2)
    m.startprob_, m.transmat_ = np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]])
    m.means_, m.covars_ = np.zeros((2, 1)), np.ones((2, 1))
    setter(m)
    with pytest.raises(error, match=match):
        m.score(np.zeros((3, 1)))


@pytest.mark.parametrize(
    "model, X, kwargs, error, match",
    [
        (GaussianHMM(2), np.zeros((10, 1)), {"lengths": [4, 5]}, ValueError, "sum to the number of samples"),
        (GaussianHMM(2), np.zeros((10, 1)), {"lengths": [10, 0]}, ValueError, "positive"),
        (GaussianHMM(0), np.zeros((10, 1)), {}, ValueError, "n_components"),
        (GaussianHMM(2, covariance_type="round"), np.zeros((10, 1)), {}, ValueError, "covariance_type"),
        (GaussianHMM(2, algorithm="greedy"), np.zeros((10, 1)), {}, ValueError, "algorithm"),
        (GaussianHMM(2, init_params="stx"), np.zeros((10, 1)), {}, ValueError, "unknown letters"),
        (GaussianHMM(2), np.full((10, 1), np.inf), {}, ValueError, "infinity"),
        (CategoricalHMM(2), np.array([[0], [1], [-1]]), {}, ValueError, "non-negative"),
        (CategoricalHMM(2), np.array([[0.5], [1], [1]]), {}, ValueError, "integer"),
        (CategoricalHMM(2, n_features=2), np.array([[0], [1], [2]]), {}, ValueError, "symbol"),
        (PoissonHMM(2), np.array([[1], [-3], [2]]), {}, ValueError, "non-negative"),
        (HMM(emission="gamma", n_components=2), np.array([[1.0], [0.0], [2.0]]), {}, ValueError, "positive"),
        (HMM(emission="weibull", n_components=2), np.ones((4, 1)), {}, ValueError, "unknown family"),
    ],
)
def test_bad_input_at_fit(model, X, kwargs, error, match):
    with pytest.raises(error, match=match):
        model.fit(X, **kwargs)


@pytest.mark.parametrize("make, attribute, X", [
    (lambda: GaussianHMM(2, random_state=0), "means_", np.random.RandomState(0).normal(size=(40, 2))),
    (lambda: PoissonHMM(2, random_state=0), "lambdas_", np.random.RandomState(0).poisson(3.0, size=(40, 2))),
    (lambda: ARHMM(2, order=1, random_state=0), "intercepts_", np.random.RandomState(0).normal(size=(40, 2))),
])
def test_per_state_parameter_rows_and_width_are_checked(make, attribute, X):
    model = make().fit(X)
    good = getattr(model, attribute)
    setattr(model, attribute, np.vstack([good, good[:1]]))
    with pytest.raises(ValueError, match=rf"^{attribute} must have shape \(2, n_features\), got \(3, 2\)$"):
        model.score(X)
    setattr(model, attribute, good[:, :1])
    with pytest.raises(ValueError, match=rf"^{attribute} has 1 features but the model was fitted on 2$"):
        model.score(X)
    setattr(model, attribute, good)
    assert np.isfinite(model.score(X))


def test_predict_before_fit_and_feature_mismatch():
    with pytest.raises(NotFittedError):
        GaussianHMM(2).predict(np.zeros((3, 1)))
    model = GaussianHMM(2, random_state=0).fit(np.random.RandomState(0).normal(size=(30, 2)))
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, 3)))
    cat = CategoricalHMM(2, random_state=0).fit(np.array([[0], [1], [2], [1]] * 5))
    with pytest.raises(ValueError, match="symbol"):
        cat.predict(np.array([[5]]))


def test_categorical_hmm_over_several_symbol_columns_equals_enumeration():
    from probkit import CategoricalHMM
    from probkit.inference.brute_force import brute_force_hmm

    rng = np.random.RandomState(3)
    model = CategoricalHMM(2)
    model.startprob_ = np.array([0.6, 0.4])
    model.transmat_ = np.array([[0.7, 0.3], [0.2, 0.8]])
    model.emissionprob_ = rng.dirichlet(np.ones(3), size=(2, 2))  # (states, columns, symbols)
    X = rng.randint(0, 3, size=(5, 2))
    # the columns are independent given the state: the emission is the product of the two tables
    log_emis = np.log(model.emissionprob_[:, 0, X[:, 0]].T * model.emissionprob_[:, 1, X[:, 1]].T)
    truth = brute_force_hmm(np.log(model.startprob_), np.log(model.transmat_), log_emis)
    np.testing.assert_allclose(model.score(X), truth.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X), truth.posteriors, atol=1e-12)
    samples, _ = model.sample(50, random_state=0)
    assert samples.shape == (50, 2) and samples.max() <= 2



def _cycling_poisson_hmm():
    model = PoissonHMM(3)
    model.startprob_ = np.array([1.0, 0.0, 0.0])
    # a deterministic cycle 0 -> 1 -> 2 -> 0: a path is fixed by its first state
    model.transmat_ = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    model.lambdas_ = np.array([[1.0], [5.0], [50.0]])
    return model


def _cycling_hsmm():
    from probkit import HSMM

    model = HSMM("poisson", 3, duration="categorical", max_duration=1)
    model.startprob_ = np.array([1.0, 0.0, 0.0])
    model.transmat_ = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    model.emission_params_ = {"rate": np.array([[1.0], [5.0], [50.0]])}
    model.duration_params_ = {"probs": np.ones((3, 1))}   # every segment one step long
    return model


@pytest.mark.parametrize("make", [_cycling_poisson_hmm, _cycling_hsmm], ids=["PoissonHMM", "HSMM"])
def test_sample_start_and_its_checks(make):
    model = make()
    # startprob_ puts all mass on state 0; currstate moves the start, the cycle fixes the rest
    assert model.sample(4, random_state=0)[1].tolist() == [0, 1, 2, 0]
    assert model.sample(4, random_state=0, currstate=2)[1].tolist() == [2, 0, 1, 2]
    assert model.sample(2, random_state=0, currstate=np.int64(1))[1].tolist() == [1, 2]
    for bad in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match="currstate"):
            model.sample(4, currstate=bad)
    for bad in (0, 2.0, None):
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            model.sample(bad)
