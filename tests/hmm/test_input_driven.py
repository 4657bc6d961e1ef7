"""InputDrivenHMM (GLM-HMM) and the time-varying forward-backward it runs on.

Truths: enumeration of all K^T state paths with transition and emission probabilities
written out by hand from the GLM formulas (scipy.stats densities); probkit's GaussianHMM and
CategoricalHMM at zero input weights; scikit-learn's LogisticRegression and statsmodels'
GLM fitted with the posteriors as weights (one M-step); dynamax's regression HMMs on the
same parameters (64-bit jax in a child process); recovery of a simulated GLM-HMM.
"""

import itertools
import textwrap
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import special, stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score

import probkit
from probkit import CategoricalHMM, GaussianHMM, InputDrivenHMM
from probkit.inference.time_varying import forward_backward_time_varying, viterbi_time_varying
from tests.hmm._dynamax import run_dynamax


# ---------------------------------------------------------------- helpers
def random_model(rng, emission, k=2, m=2, d=1, n_categories=3, transition_model="input", emission_inputs=True):
    model = InputDrivenHMM(k, transition_model=transition_model, emission=emission, emission_inputs=emission_inputs)
    model.startprob_ = rng.dirichlet(np.ones(k))
    if transition_model == "input":
        model.transition_weights_ = rng.normal(0, 1, (k, k, m))
        model.transition_intercepts_ = rng.normal(0, 1, (k, k)) + 2 * np.eye(k)
    else:
        model.transmat_ = rng.dirichlet(np.ones(k), size=k)
    n_out = n_categories if emission == "categorical" else d
    model.emission_weights_ = rng.normal(0, 1, (k, n_out, m if emission_inputs else 0))
    model.emission_intercepts_ = rng.normal(0, 1, (k, n_out))
    if emission == "gaussian":
        model.covars_ = rng.uniform(0.5, 2.0, (k, d))
    return model


def hand_probabilities(model, X, u):
    """Per-step transition matrices (T, K, K) and emission probabilities (T, K) from the GLM formulas."""
    k = model.n_components
    T = X.shape[0]
    if model.transition_model == "input":
        trans = np.empty((T, k, k))
        for t in range(T):
            for i in range(k):
                trans[t, i] = special.softmax([model.transition_intercepts_[i, j] + model.transition_weights_[i, j] @ u[t]
                                               for j in range(k)])
    else:
        trans = np.broadcast_to(model.transmat_, (T, k, k))
    emis = np.ones((T, k))
    ue = u if model.emission_inputs else u[:, :0]
    for t in range(T):
        for s in range(k):
            eta = model.emission_intercepts_[s] + model.emission_weights_[s] @ ue[t]
            if model.emission == "gaussian":
                emis[t, s] = np.prod(stats.norm.pdf(X[t], eta, np.sqrt(model.covars_[s])))
            elif model.emission == "bernoulli":
                emis[t, s] = np.prod(stats.bernoulli.pmf(X[t], special.expit(eta)))
            elif model.emission == "poisson":
                emis[t, s] = np.prod(stats.poisson.pmf(X[t], np.exp(eta)))
            else:
                emis[t, s] = special.softmax(eta)[int(X[t, 0])]
    return trans, emis


def enumerate_paths(start, trans, emis):
    """(log-likelihood, posteriors (T, K), pairwise (T, K, K), best path) over all K^T paths."""
    T, k = emis.shape
    paths = np.array(list(itertools.product(range(k), repeat=T)))
    joint = np.array([start[p[0]] * emis[0, p[0]] * np.prod([trans[t, p[t - 1], p[t]] * emis[t, p[t]]
                                                             for t in range(1, T)]) for p in paths])
    total = joint.sum()
    post = np.zeros((T, k))
    pair = np.zeros((T, k, k))
    for p, w in zip(paths, joint / total):
        post[np.arange(T), p] += w
        for t in range(1, T):
            pair[t, p[t - 1], p[t]] += w
    return np.log(total), post, pair, paths[np.argmax(joint)]


# ---------------------------------------------------------------- inference kernel
@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_time_varying_kernel_matches_enumeration(implementation):
    rng = np.random.default_rng(0)
    k, lengths = 3, [4, 1, 5]
    n = sum(lengths)
    log_trans = np.log(rng.dirichlet(np.ones(k), size=(n, k)))
    log_trans[6, 0, 2] = -np.inf  # a structural zero at one step
    log_emis = rng.normal(size=(n, k)) * 3
    log_emis[2, 1] = -np.inf
    log_start = np.log(rng.dirichlet(np.ones(k)))
    res = forward_backward_time_varying(log_start, log_trans, log_emis, lengths, implementation=implementation)
    vit = viterbi_time_varying(log_start, log_trans, log_emis, lengths)
    offset = 0
    for b, length in enumerate(lengths):
        rows = slice(offset, offset + length)
        ll, post, pair, best = enumerate_paths(np.exp(log_start), np.exp(log_trans[rows]), np.exp(log_emis[rows]))
        assert res.log_likelihood[b] == pytest.approx(ll, abs=1e-10)
        assert res.log_predictive[rows].sum() == pytest.approx(ll, abs=1e-10)
        np.testing.assert_allclose(res.posteriors[rows], post, atol=1e-12)
        np.testing.assert_allclose(res.pairwise[rows], pair, atol=1e-12)
        np.testing.assert_array_equal(vit.path[rows], best)
        offset += length


def test_time_varying_kernel_scaling_falls_back_on_underflow():
    rng = np.random.default_rng(1)
    k, n = 2, 30
    log_trans = np.log(rng.dirichlet(np.ones(k), size=(n, k)))
    log_emis = rng.normal(size=(n, k))
    log_emis[10] = [-1e4, -2e4]  # an emission far below any linear-space scale
    log_trans[15] = [[0.0, -800.0], [-800.0, 0.0]]  # transitions that underflow in linear space
    a = forward_backward_time_varying(np.log([0.5, 0.5]), log_trans, log_emis)
    b = forward_backward_time_varying(np.log([0.5, 0.5]), log_trans, log_emis, implementation="log")
    assert a.log_likelihood[0] == pytest.approx(b.log_likelihood[0], rel=1e-12)
    np.testing.assert_allclose(a.pairwise, b.pairwise, atol=1e-10)


def test_time_varying_kernel_rejects_bad_arrays():
    with pytest.raises(ValueError, match="log_transmat"):
        forward_backward_time_varying(np.zeros(2), np.zeros((3, 2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="log_emission"):
        forward_backward_time_varying(np.zeros(2), np.zeros((2, 2)), np.array([[0.0, np.nan]]))


# ---------------------------------------------------------------- estimator vs enumeration
@pytest.mark.parametrize("emission", ["gaussian", "bernoulli", "categorical", "poisson"])
def test_matches_enumeration_of_all_paths(emission):
    rng = np.random.default_rng(2)
    model = random_model(rng, emission, k=2, m=2, d=2 if emission != "categorical" else 1)
    u = rng.normal(size=(6, 2))
    X, _ = model.sample(6, inputs=u, random_state=3)
    trans, emis = hand_probabilities(model, X, u)
    ll, post, _, best = enumerate_paths(model.startprob_, trans, emis)
    assert model.score(X, inputs=u) == pytest.approx(ll, abs=1e-10)
    assert model.score_samples(X, inputs=u).sum() == pytest.approx(ll, abs=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, inputs=u), post, atol=1e-12)
    np.testing.assert_array_equal(model.predict(X, inputs=u), best)


def test_zero_weights_equal_gaussian_hmm():
    rng = np.random.default_rng(4)
    model = random_model(rng, "gaussian", k=3, m=2, d=2)
    model.transition_weights_[:] = 0.0
    model.emission_weights_[:] = 0.0
    ref = GaussianHMM(3, covariance_type="diag")
    ref.startprob_ = model.startprob_
    ref.transmat_ = special.softmax(model.transition_intercepts_, axis=1)
    ref.means_ = model.emission_intercepts_
    ref.covars_ = model.covars_
    X, _ = ref.sample(50, random_state=5)
    u = rng.normal(size=(50, 2))
    assert model.score(X, inputs=u, lengths=[20, 30]) == pytest.approx(ref.score(X, lengths=[20, 30]), rel=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, inputs=u, lengths=[20, 30]),
                               ref.predict_proba(X, lengths=[20, 30]), atol=1e-10)


def test_zero_weights_equal_categorical_hmm():
    rng = np.random.default_rng(6)
    model = random_model(rng, "categorical", k=2, m=1, n_categories=4, transition_model="fixed")
    model.emission_weights_[:] = 0.0
    ref = CategoricalHMM(2, n_features=4)
    ref.startprob_ = model.startprob_
    ref.transmat_ = model.transmat_
    ref.emissionprob_ = special.softmax(model.emission_intercepts_, axis=1)
    X, _ = ref.sample(40, random_state=7)
    u = rng.normal(size=(40, 1))
    assert model.score(X, inputs=u) == pytest.approx(ref.score(X), rel=1e-10)
    np.testing.assert_array_equal(model.predict(X, inputs=u), ref.predict(X))


# ---------------------------------------------------------------- one M-step vs weighted GLM fits
def one_step(model, X, u, params):
    step = InputDrivenHMM(**{**model.get_params(), "n_iter": 1, "tol": -np.inf, "init_params": "", "params": params,
                             "max_newton_iter": 100})
    for name, value in vars(model).items():
        if name.endswith("_"):
            setattr(step, name, np.copy(value))
    post = step.predict_proba(X, inputs=u)
    res = forward_backward_time_varying(np.log(step.startprob_), step._log_transitions(
        step._validate_sequences(X, None, u, reset=False)), step._log_emission(
        step._validate_sequences(X, None, u, reset=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        step.fit(X, inputs=u)
    return step, post, res.pairwise


def test_bernoulli_mstep_equals_weighted_logistic_regression():
    rng = np.random.default_rng(8)
    model = random_model(rng, "bernoulli", k=2, m=2, d=1, transition_model="fixed")
    model.alpha = 0.5
    u = rng.normal(size=(300, 2))
    X, _ = model.sample(300, inputs=u, random_state=9)
    step, post, _ = one_step(model, X, u, "e")
    for s in range(2):
        ref = LogisticRegression(C=1 / 0.5, tol=1e-12, max_iter=10_000).fit(u, X[:, 0], sample_weight=post[:, s])
        np.testing.assert_allclose(step.emission_weights_[s, 0], ref.coef_[0], rtol=1e-6, atol=1e-8)
        assert step.emission_intercepts_[s, 0] == pytest.approx(ref.intercept_[0], abs=1e-6)


def test_transition_mstep_equals_weighted_multinomial_logistic_regression():
    rng = np.random.default_rng(10)
    model = random_model(rng, "gaussian", k=3, m=2, d=1)
    model.alpha = 2.0
    u = rng.normal(size=(200, 2))
    X, _ = model.sample(200, inputs=u, random_state=11)
    step, _, pairwise = one_step(model, X, u, "t")
    k = 3
    U = np.repeat(u[1:], k, axis=0)
    labels = np.tile(np.arange(k), 199)
    for i in range(k):
        ref = LogisticRegression(C=1 / 2.0, tol=1e-12, max_iter=10_000).fit(U, labels,
                                                                           sample_weight=pairwise[1:, i].ravel())
        np.testing.assert_allclose(step.transition_weights_[i], ref.coef_, rtol=1e-5, atol=1e-7)
        centred = step.transition_intercepts_[i] - step.transition_intercepts_[i].mean()
        np.testing.assert_allclose(centred, ref.intercept_ - ref.intercept_.mean(), atol=1e-6)


def test_poisson_mstep_equals_statsmodels_weighted_glm():
    rng = np.random.default_rng(12)
    model = random_model(rng, "poisson", k=2, m=2, d=1, transition_model="fixed")
    model.emission_weights_ *= 0.5
    model.alpha = 0.0
    u = rng.normal(size=(300, 2))
    X, _ = model.sample(300, inputs=u, random_state=13)
    step, post, _ = one_step(model, X, u, "e")
    for s in range(2):
        ref = sm.GLM(X[:, 0], sm.add_constant(u), family=sm.families.Poisson(), freq_weights=post[:, s]).fit(tol=1e-12)
        np.testing.assert_allclose(np.r_[step.emission_intercepts_[s, 0], step.emission_weights_[s, 0]], ref.params,
                                   rtol=1e-6, atol=1e-8)


def test_gaussian_mstep_equals_weighted_least_squares():
    rng = np.random.default_rng(14)
    model = random_model(rng, "gaussian", k=2, m=2, d=1, transition_model="fixed")
    model.alpha = 0.0
    model.reg_covar = 0.0
    u = rng.normal(size=(200, 2))
    X, _ = model.sample(200, inputs=u, random_state=15)
    step, post, _ = one_step(model, X, u, "ec")
    for s in range(2):
        ref = sm.WLS(X[:, 0], sm.add_constant(u), weights=post[:, s]).fit()
        np.testing.assert_allclose(np.r_[step.emission_intercepts_[s, 0], step.emission_weights_[s, 0]], ref.params,
                                   rtol=1e-8)
        resid = X[:, 0] - ref.fittedvalues
        assert step.covars_[s, 0] == pytest.approx(post[:, s] @ resid**2 / post[:, s].sum(), rel=1e-8)


# ---------------------------------------------------------------- dynamax
DYNAMAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from dynamax.hidden_markov_model import CategoricalRegressionHMM, LinearRegressionHMM, LogisticRegressionHMM
    d = np.load(sys.argv[1])
    k, m = d["transmat"].shape[0], d["u"].shape[1]
    out = {}
    for name in ("linear", "logistic", "categorical"):
        if name == "linear":
            model = LinearRegressionHMM(k, m, d["lin_X"].shape[1])
        elif name == "logistic":
            model = LogisticRegressionHMM(k, m)
        else:
            model = CategoricalRegressionHMM(k, d["cat_b"].shape[1], m)
        params, _ = model.initialize(jax.random.PRNGKey(0))
        em = dict(weights=jnp.asarray(d[name[:3] + "_W"]), biases=jnp.asarray(d[name[:3] + "_b"]))
        if name == "linear":
            em["covs"] = jnp.asarray(d["lin_covs"])
        params = params._replace(initial=params.initial._replace(probs=jnp.asarray(d["startprob"])),
                                 transitions=params.transitions._replace(transition_matrix=jnp.asarray(d["transmat"])),
                                 emissions=params.emissions._replace(**em))
        X = jnp.asarray(d[name[:3] + "_X"])
        if name != "linear":
            X = X[:, 0].astype(jnp.int32) if name == "categorical" else X[:, 0]
        out[name + "_ll"] = np.asarray(model.marginal_log_prob(params, X, inputs=jnp.asarray(d["u"])))
        out[name + "_post"] = np.asarray(model.smoother(params, X, inputs=jnp.asarray(d["u"])).smoothed_probs)
    np.savez(sys.argv[2], **out)
""")


def test_matches_dynamax_regression_hmms(tmp_path):
    import importlib.util

    if importlib.util.find_spec("dynamax") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("dynamax and jax are not installed")
    rng = np.random.default_rng(16)
    models = {"linear": random_model(rng, "gaussian", k=3, m=2, d=2, transition_model="fixed"),
              "logistic": random_model(rng, "bernoulli", k=3, m=2, d=1, transition_model="fixed"),
              "categorical": random_model(rng, "categorical", k=3, m=2, n_categories=4, transition_model="fixed")}
    for model in models.values():
        model.startprob_, model.transmat_ = models["linear"].startprob_, models["linear"].transmat_
    u = rng.normal(size=(80, 2))
    data = {"startprob": models["linear"].startprob_, "transmat": models["linear"].transmat_, "u": u}
    for name, model in models.items():
        data[name[:3] + "_X"] = model.sample(80, inputs=u, random_state=17)[0]
        w, b = model.emission_weights_, model.emission_intercepts_
        data[name[:3] + "_W"], data[name[:3] + "_b"] = (w[:, 0], b[:, 0]) if name == "logistic" else (w, b)
    data["lin_covs"] = np.stack([np.diag(c) for c in models["linear"].covars_])
    ref = run_dynamax(DYNAMAX_SCRIPT, tmp_path, **data)
    for name, model in models.items():
        X = data[name[:3] + "_X"]
        assert model.score(X, inputs=u) == pytest.approx(float(ref[name + "_ll"]), rel=1e-10), name
        np.testing.assert_allclose(model.predict_proba(X, inputs=u), ref[name + "_post"], atol=1e-9, err_msg=name)


# ---------------------------------------------------------------- fitting
def simulated_glm_hmm(n_samples, seed):
    """Three states with input-driven transitions and state-specific linear responses to two inputs."""
    truth = InputDrivenHMM(3, emission="gaussian")
    truth.startprob_ = np.array([1.0, 0.0, 0.0])
    truth.transition_intercepts_ = np.log(np.array([[0.96, 0.02, 0.02], [0.02, 0.96, 0.02], [0.02, 0.02, 0.96]]))
    truth.transition_weights_ = np.zeros((3, 3, 2))
    truth.transition_weights_[:, 2, 1] = 1.5  # the second input pushes into state 2
    truth.emission_weights_ = np.array([[[2.0, 0.0]], [[-2.0, 0.0]], [[0.0, 1.0]]])
    truth.emission_intercepts_ = np.array([[0.0], [1.0], [-1.0]])
    truth.covars_ = np.full((3, 1), 0.25)
    u = np.random.default_rng(seed).normal(size=(n_samples, 2))
    X, states = truth.sample(n_samples, inputs=u, random_state=seed + 1)
    return truth, X, states, u


def test_recovers_a_simulated_glm_hmm_and_em_is_monotone():
    truth, X, states, u = simulated_glm_hmm(1500, 20)
    model = InputDrivenHMM(3, emission="gaussian", alpha=0.1, n_iter=100, tol=1e-6, random_state=0)
    model.fit(X, inputs=u, lengths=[700, 800])
    history = np.array(model.monitor_.history)
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[1:]))
    decoded = model.predict(X, inputs=u, lengths=[700, 800])
    assert adjusted_rand_score(states, decoded) > 0.9
    # match fitted states to true ones by majority vote, then compare the emission weights
    order = [np.bincount(decoded[states == s], minlength=3).argmax() for s in range(3)]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(model.emission_weights_[order], truth.emission_weights_, atol=0.15)
    np.testing.assert_allclose(model.emission_intercepts_[order], truth.emission_intercepts_, atol=0.15)


@pytest.mark.parametrize("emission", ["bernoulli", "categorical", "poisson"])
def test_penalised_objective_never_decreases(emission):
    rng = np.random.default_rng(21)
    truth = random_model(rng, emission, k=2, m=1, d=2 if emission != "categorical" else 1)
    u = rng.normal(size=(400, 1))
    X, _ = truth.sample(400, inputs=u, random_state=22)
    model = InputDrivenHMM(2, emission=emission, alpha=0.5, n_iter=30, tol=-np.inf, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, inputs=u)
    history = np.array(model.monitor_.history)
    assert len(history) == 30
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[1:]))
    # the monitor records log-likelihood + log prior of the parameters the E-step used
    assert np.isfinite(model.score(X, inputs=u))


def test_separable_data_stay_finite():
    u = np.linspace(-3, 3, 200)[:, None]
    X = (u[:, 0] > 0).astype(float)[:, None]  # perfectly separable outcomes
    model = InputDrivenHMM(2, emission="bernoulli", alpha=1.0, random_state=0, n_iter=20).fit(X, inputs=u)
    assert np.all(np.isfinite(model.emission_weights_)) and np.abs(model.emission_weights_).max() < 50


def test_without_inputs_is_an_ordinary_hmm():
    rng = np.random.default_rng(23)
    X = np.r_[rng.normal(0, 1, (100, 1)), rng.normal(5, 1, (100, 1))]
    model = InputDrivenHMM(2, random_state=0).fit(X)
    assert model.n_inputs_ == 0 and model.transition_weights_.shape == (2, 2, 0)
    assert sorted(np.round(model.emission_intercepts_[:, 0])) == [0.0, 5.0]
    with pytest.raises(ValueError, match="inputs"):
        model.score(X, inputs=rng.normal(size=(200, 1)))


def test_save_and_load_round_trip(tmp_path):
    _, X, _, u = simulated_glm_hmm(300, 30)
    model = InputDrivenHMM(3, alpha=0.1, n_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, inputs=u)
    path = model.save(tmp_path / "glmhmm.pk")
    again = probkit.load(path)
    assert again.score(X, inputs=u) == model.score(X, inputs=u)
    np.testing.assert_array_equal(again.predict(X, inputs=u), model.predict(X, inputs=u))


# ---------------------------------------------------------------- bad input
def test_bad_inputs_are_refused_naming_inputs():
    _, X, _, u = simulated_glm_hmm(100, 40)
    model = InputDrivenHMM(3, n_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, inputs=u)
    with pytest.raises(ValueError, match="inputs is required"):
        model.score(X)
    with pytest.raises(ValueError, match="inputs must have shape"):
        model.predict(X, inputs=u[:-1])
    bad = u.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="inputs contains NaN"):
        model.predict_proba(X, inputs=bad)
    with pytest.raises(ValueError, match="inputs must have shape"):
        InputDrivenHMM(2).fit(X, inputs=u[:50])
    with pytest.raises(ValueError, match="inputs has 1 column"):
        model.score(X, inputs=u[:, :1])
    with pytest.raises(ValueError, match="inputs is required"):
        model.sample(10)
    with pytest.raises(ValueError, match="0/1"):
        InputDrivenHMM(2, emission="bernoulli").fit(X, inputs=u)
