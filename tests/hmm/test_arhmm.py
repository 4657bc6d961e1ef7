"""ARHMM: switching linear Gaussian autoregressions.

Truths: enumeration of all K^T state paths with densities from scipy.stats and lags
built by hand; weighted least squares by statsmodels' WLS on the posteriors; dynamax's
LinearAutoregressiveHMM on the same parameters and data (run in a child process with
64-bit jax); the adjusted Rand index of decoded regimes on a simulated switching
autoregression.
"""

import itertools
import textwrap
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

import probkit
from probkit import ARHMM
from probkit.hmm.autoregressive import lagged_design
from tests.hmm._dynamax import run_dynamax


def random_model(rng, k=2, d=2, p=2, covariance_type="full"):
    model = ARHMM(n_components=k, order=p, covariance_type=covariance_type)
    model.startprob_ = rng.dirichlet(np.ones(k))
    model.transmat_ = rng.dirichlet(np.ones(k), size=k)
    model.coefs_ = rng.normal(0, 0.3, (k, p, d, d))
    model.intercepts_ = rng.normal(0, 1, (k, d))
    if covariance_type == "full":
        g = rng.normal(size=(k, d, d))
        model.covars_ = g @ np.swapaxes(g, 1, 2) / d + 0.5 * np.eye(d)
    else:
        model.covars_ = rng.uniform(0.5, 2.0, (k, d))
    return model


def hand_log_emission(model, seq):
    """log N(y_t; sum_j A_kj y_{t-j} + b_k, Sigma_k) from scipy, lags before the start = 0."""
    k, p, d, _ = model.coefs_.shape
    out = np.empty((len(seq), k))
    for t in range(len(seq)):
        for s in range(k):
            mean = model.intercepts_[s].copy()
            for j in range(1, p + 1):
                if t - j >= 0:
                    mean += model.coefs_[s, j - 1] @ seq[t - j]
            cov = model.covars_[s] if model.covariance_type == "full" else np.diag(model.covars_[s])
            out[t, s] = stats.multivariate_normal.logpdf(seq[t], mean, cov)
    return out


def enumerate_paths(model, seq):
    le = hand_log_emission(model, seq)
    k, T = model.n_components, len(seq)
    paths = np.array(list(itertools.product(range(k), repeat=T)))
    logp = np.log(model.startprob_)[paths[:, 0]] + le[np.arange(T), paths].sum(1)
    logp += np.log(model.transmat_)[paths[:, :-1], paths[:, 1:]].sum(1)
    ll = logsumexp(logp)
    w = np.exp(logp - ll)
    post = np.stack([(w[:, None] * (paths == s)).sum(0) for s in range(k)], 1)
    return ll, post, paths[np.argmax(logp)], logp.max()


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_matches_enumeration_of_all_paths(covariance_type):
    rng = np.random.default_rng(0)
    model = random_model(rng, k=2, d=2, p=2, covariance_type=covariance_type)
    X = rng.normal(size=(11, 2)) * 2 + 1
    lengths = [6, 5]
    exact = [enumerate_paths(model, seq) for seq in np.split(X, [6])]
    assert model.score(X, lengths=lengths) == pytest.approx(sum(e[0] for e in exact), rel=1e-12)
    np.testing.assert_allclose(model.predict_proba(X, lengths=lengths), np.concatenate([e[1] for e in exact]),
                               atol=1e-12)
    log_prob, path = model.decode(X, lengths=lengths)
    np.testing.assert_array_equal(path, np.concatenate([e[2] for e in exact]))
    assert log_prob == pytest.approx(sum(e[3] for e in exact), rel=1e-12)
    per_row = model.score_samples(X, lengths=lengths)
    assert per_row[:6].sum() == pytest.approx(exact[0][0], rel=1e-12)


def test_lagged_design_orders_lags_and_respects_sequence_starts():
    X = np.arange(14.0).reshape(7, 2)
    Z = lagged_design(X, [4, 3], 2)
    np.testing.assert_array_equal(Z[2], np.r_[X[1], X[0]])       # [y_{t-1}, y_{t-2}]
    np.testing.assert_array_equal(Z[1], np.r_[X[0], 0, 0])
    np.testing.assert_array_equal(Z[4], np.zeros(4))              # first step of the second sequence
    np.testing.assert_array_equal(Z[6], np.r_[X[5], X[4]])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_m_step_is_weighted_least_squares_on_the_posteriors(covariance_type):
    rng = np.random.default_rng(1)
    start = random_model(rng, k=2, d=2, p=2, covariance_type=covariance_type)
    X = start.sample(300, random_state=2)[0]
    lengths = [120, 180]
    post = start.predict_proba(X, lengths=lengths)
    model = ARHMM(n_components=2, order=2, covariance_type=covariance_type, reg_covar=0.0, n_iter=1, tol=-np.inf,
                  init_params="", params="ac")
    for name in ("startprob_", "transmat_", "coefs_", "intercepts_", "covars_"):
        setattr(model, name, getattr(start, name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, lengths=lengths)
    design = sm.add_constant(lagged_design(X, lengths, 2), prepend=False)
    for s in range(2):
        resid = []
        for i in range(2):
            wls = sm.WLS(X[:, i], design, weights=post[:, s]).fit()
            np.testing.assert_allclose(model.coefs_[s, :, i, :].ravel(), wls.params[:-1], rtol=1e-7, atol=1e-9)
            assert model.intercepts_[s, i] == pytest.approx(wls.params[-1], rel=1e-7, abs=1e-9)
            resid.append(wls.resid)
        resid = np.array(resid).T
        cov = (post[:, s, None, None] * resid[:, :, None] * resid[:, None, :]).sum(0) / post[:, s].sum()
        expected = cov if covariance_type == "full" else np.diag(cov)
        np.testing.assert_allclose(model.covars_[s], expected, rtol=1e-7, atol=1e-10)
    np.testing.assert_array_equal(model.transmat_, start.transmat_)   # "t" not in params


DYNAMAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from dynamax.hidden_markov_model import LinearAutoregressiveHMM
    d = np.load(sys.argv[1])
    k, dim, p = d["transmat"].shape[0], d["intercepts"].shape[1], int(d["order"])
    model = LinearAutoregressiveHMM(k, dim, num_lags=p, initial_probs_concentration=1.0,
                                    transition_matrix_concentration=1.0)
    params, props = model.initialize(jax.random.PRNGKey(0))
    params = params._replace(
        initial=params.initial._replace(probs=jnp.asarray(d["startprob"])),
        transitions=params.transitions._replace(transition_matrix=jnp.asarray(d["transmat"])),
        emissions=params.emissions._replace(weights=jnp.asarray(d["weights"]), biases=jnp.asarray(d["intercepts"]),
                                            covs=jnp.asarray(d["covars"])))
    X = jnp.asarray(d["X"])
    inputs = model.compute_inputs(X)
    ll = model.marginal_log_prob(params, X, inputs=inputs)
    post = model.smoother(params, X, inputs=inputs).smoothed_probs
    fitted, _ = model.fit_em(params, props, X[None], inputs=inputs[None], num_iters=1, verbose=False)
    np.savez(sys.argv[2], ll=np.asarray(ll), post=np.asarray(post), startprob=np.asarray(fitted.initial.probs),
             transmat=np.asarray(fitted.transitions.transition_matrix), weights=np.asarray(fitted.emissions.weights),
             intercepts=np.asarray(fitted.emissions.biases), covars=np.asarray(fitted.emissions.covs))
""")


def test_matches_dynamax_linear_autoregressive_hmm(tmp_path):
    import importlib.util

    if importlib.util.find_spec("dynamax") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("dynamax and jax are not installed")
    rng = np.random.default_rng(3)
    model = random_model(rng, k=3, d=2, p=2)
    X = model.sample(200, random_state=4)[0]
    k, p, d, _ = model.coefs_.shape
    weights = np.transpose(model.coefs_, (0, 2, 1, 3)).reshape(k, d, p * d)  # [A_1 | A_2], dynamax's layout
    ref = run_dynamax(DYNAMAX_SCRIPT, tmp_path, startprob=model.startprob_, transmat=model.transmat_, weights=weights,
                      intercepts=model.intercepts_, covars=model.covars_, X=X, order=p)
    assert model.score(X) == pytest.approx(float(ref["ll"]), rel=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), ref["post"], atol=1e-9)
    step = ARHMM(n_components=k, order=p, reg_covar=0.0, n_iter=1, tol=-np.inf, init_params="")
    for name in ("startprob_", "transmat_", "coefs_", "intercepts_", "covars_"):
        setattr(step, name, getattr(model, name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        step.fit(X)
    np.testing.assert_allclose(step.startprob_, ref["startprob"], atol=1e-9)
    np.testing.assert_allclose(step.transmat_, ref["transmat"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.transpose(step.coefs_, (0, 2, 1, 3)).reshape(k, d, p * d), ref["weights"],
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(step.intercepts_, ref["intercepts"], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(step.covars_, ref["covars"], rtol=1e-7, atol=1e-9)


def switching_autoregression(n_samples, seed):
    """Three regimes of a bivariate AR(2): a slow drift, an oscillation and a mean-reverting level at 3."""
    model = ARHMM(n_components=3, order=2)
    model.startprob_ = np.array([1.0, 0.0, 0.0])
    model.transmat_ = np.array([[0.97, 0.02, 0.01], [0.02, 0.96, 0.02], [0.01, 0.02, 0.97]])
    rot = 0.9 * np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    model.coefs_ = np.array([[0.95 * np.eye(2), np.zeros((2, 2))],
                             [rot, np.zeros((2, 2))],
                             [0.3 * np.eye(2), 0.2 * np.eye(2)]])
    model.intercepts_ = np.array([[0.0, 0.0], [0.0, 0.0], [1.5, 1.5]])
    model.covars_ = np.stack([0.1 * np.eye(2), 0.1 * np.eye(2), 0.2 * np.eye(2)])
    return model, *model.sample(n_samples, random_state=seed)


def test_recovers_regimes_of_a_switching_autoregression():
    truth, X, states = switching_autoregression(3000, seed=5)
    # a single initialisation; its optimum is checked against the generating model below
    model = ARHMM(n_components=3, order=2, n_iter=200, tol=1e-4, random_state=0).fit(X)
    assert adjusted_rand_score(states, model.predict(X)) > 0.9
    assert model.score(X) >= truth.score(X)  # the maximum-likelihood fit explains its data at least as well
    # match fitted states to true ones by the decoded overlap, then compare the regressions
    overlap = np.array([[np.sum((model.predict(X) == i) & (states == j)) for j in range(3)] for i in range(3)])
    match = overlap.argmax(0)
    np.testing.assert_allclose(model.coefs_[match], truth.coefs_, atol=0.1)
    np.testing.assert_allclose(model.intercepts_[match], truth.intercepts_, atol=0.25)
    # a Gaussian HMM without autoregression cannot tell the two zero-mean regimes apart as well
    gauss = probkit.GaussianHMM(3, covariance_type="full", n_iter=200, random_state=0).fit(X)
    assert adjusted_rand_score(states, gauss.predict(X)) < adjusted_rand_score(states, model.predict(X))


def test_em_never_decreases_and_one_state_is_ordinary_least_squares():
    _, X, _ = switching_autoregression(600, seed=6)
    model = ARHMM(n_components=3, order=2, n_iter=15, tol=-np.inf, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, lengths=[250, 350])
    history = np.asarray(model.monitor_.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1]))
    one = ARHMM(n_components=1, order=3, reg_covar=0.0, n_iter=3, random_state=0).fit(X, lengths=[250, 350])
    ols = sm.OLS(X[:, 1], sm.add_constant(lagged_design(X, [250, 350], 3), prepend=False)).fit()
    np.testing.assert_allclose(one.coefs_[0, :, 1, :].ravel(), ols.params[:-1], rtol=1e-8, atol=1e-10)
    assert one.intercepts_[0, 1] == pytest.approx(ols.params[-1], rel=1e-8)


def test_far_from_the_origin_and_sampling_moments():
    truth, X, _ = switching_autoregression(1500, seed=7)
    one = ARHMM(n_components=1, order=2, n_iter=5, random_state=0).fit(X)
    # a shift c of the data changes only the intercept, b -> b + (I - sum_j A_j) c; with one
    # state every row after the first `order` ones (whose lags are zeros, not shifted) keeps its density
    c = np.array([1e6, -2e6])
    shifted = ARHMM(n_components=1, order=2)
    shifted.startprob_, shifted.transmat_, shifted.coefs_, shifted.covars_ = (
        one.startprob_, one.transmat_, one.coefs_, one.covars_)
    shifted.intercepts_ = one.intercepts_ + (np.eye(2) - one.coefs_.sum(1)) @ c
    # float64 resolves X + c to about 2e-16 * 2e6; a log-density moves by a few times that over the variance
    np.testing.assert_allclose(shifted.score_samples(X + c)[2:], one.score_samples(X)[2:], atol=1e-7)
    # one stationary AR(1) state: the sample lag-1 autocorrelation is the coefficient
    ar1 = ARHMM(n_components=1, order=1, covariance_type="diag")
    ar1.startprob_, ar1.transmat_ = np.ones(1), np.ones((1, 1))
    ar1.coefs_, ar1.intercepts_, ar1.covars_ = np.full((1, 1, 1, 1), 0.6), np.full((1, 1), 2.0), np.ones((1, 1))
    y = ar1.sample(20000, random_state=8)[0][100:, 0]
    assert np.corrcoef(y[1:], y[:-1])[0, 1] == pytest.approx(0.6, abs=0.03)
    assert y.mean() == pytest.approx(2.0 / (1 - 0.6), abs=0.1)
    assert y.var() == pytest.approx(1 / (1 - 0.36), rel=0.06)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    model = random_model(rng, k=2, d=2, p=2)
    X = model.sample(100, random_state=0)[0]
    fitted = ARHMM(n_components=2, order=2, n_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted.fit(X)
    again = probkit.load(fitted.save(tmp_path / "arhmm.pk"))
    assert type(again) is ARHMM
    for name in ("startprob_", "transmat_", "coefs_", "intercepts_", "covars_"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fitted, name))
    assert again.score(X) == pytest.approx(fitted.score(X), rel=1e-13)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))


def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(30, 2))
    with pytest.raises(ValueError, match="order"):
        ARHMM(order=0).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        ARHMM(covariance_type="tied").fit(X)
    with pytest.raises(ValueError, match="unknown letters"):
        ARHMM(params="stm").fit(X)
    with pytest.raises(ValueError, match="NaN"):
        ARHMM().fit(np.r_[X, [[np.nan, 0.0]]])
    model = random_model(rng, k=2, d=2, p=2)
    model.coefs_ = model.coefs_[:, :1]
    with pytest.raises(ValueError, match="coefs_ must have shape"):
        model.score(X)
    model = random_model(rng, k=2, d=2, p=2)
    model.covars_ = np.stack([np.eye(2), -np.eye(2)])
    with pytest.raises(ValueError, match="positive definite"):
        model.score(X)
    model = random_model(rng, k=2, d=2, p=2, covariance_type="diag")
    model.covars_ = np.ones((2, 3))
    with pytest.raises(ValueError, match="covars_ must have shape"):
        model.score(X)
    model = random_model(rng, k=2, d=2, p=2)
    with pytest.raises(ValueError, match="features"):
        model.score(np.zeros((5, 3)))
    with pytest.raises(TypeError, match="lengths=lengths"):
        model.score(X, [10, 20])
    with pytest.raises(ValueError, match="reg_covar"):
        # a state with fewer steps than regressors fits them exactly: zero residual variance
        ARHMM(n_components=1, order=4, reg_covar=0.0, n_iter=1).fit(X[:5])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_torch_path_in_float32_agrees_with_the_float64_numpy_path(covariance_type):
    rng = np.random.default_rng(11)
    model = random_model(rng, k=3, d=2, p=2, covariance_type=covariance_type)
    X = model.sample(400, random_state=1)[0]
    single = ARHMM(n_components=3, order=2, covariance_type=covariance_type, dtype="float32")
    for name in ("startprob_", "transmat_", "coefs_", "intercepts_", "covars_"):
        setattr(single, name, getattr(model, name))
    # float32 log-densities carry ~1e-7 relative error per step; summed over 400 steps
    assert single.score(X) == pytest.approx(model.score(X), rel=1e-5)
    np.testing.assert_allclose(single.predict_proba(X), model.predict_proba(X), atol=1e-3)


def test_autoregressive_hmm_from_the_command_line_is_the_python_model(tmp_path, capsys):
    from probkit.cli import main
    from probkit.datasets import load_old_faithful

    X, names = load_old_faithful()
    data = tmp_path / "faithful.csv"
    np.savetxt(data, X, delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    code = main(["fit", "autoregressive-hmm", str(data), "-k", "2", "--max-iter", "30", "-o", str(tmp_path / "a.pk")])
    out, err = capsys.readouterr()
    assert code == 0, err
    api = ARHMM(n_components=2, n_iter=30, random_state=0).fit(X)
    assert f"log-likelihood {api.score(X):.4f}" in out
    np.testing.assert_array_equal(probkit.load(tmp_path / "a.pk").coefs_, api.coefs_)
