"""LinearGaussianSSM: EM (monotone, exact M-step, freezing, recovery), inference methods, I/O, errors."""

import warnings

import numpy as np
import pytest
import torch
from scipy import linalg, stats
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import probkit
from probkit import LinearGaussianSSM
from tests.ssm.dense_reference import DenseGaussian, random_model

ATTRS = {
    "transition_matrix": "transition_matrix_", "observation_matrix": "observation_matrix_",
    "transition_covariance": "transition_covariance_", "observation_covariance": "observation_covariance_",
    "initial_state_mean": "initial_state_mean_", "initial_state_covariance": "initial_state_covariance_",
    "input_matrix": "input_matrix_", "feedthrough_matrix": "feedthrough_matrix_",
}


def hand_set(model, **kwargs):
    kwargs.setdefault("observation_covariance_type", "full")
    est = LinearGaussianSSM(model["transition_matrix"].shape[0], init_params="", reg_covar=0.0, **kwargs)
    for key, attr in ATTRS.items():
        if key in model:
            setattr(est, attr, np.array(model[key], dtype=float))
    return est


def model_dict(est):
    return {key: np.array(getattr(est, attr)) for key, attr in ATTRS.items() if hasattr(est, attr)}


def fit_quietly(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def data_with_missing(T, p, seed, frac=0.25):
    rng = np.random.RandomState(seed)
    y = rng.normal(size=(T, p)) * 2
    y[rng.rand(T, p) < frac] = np.nan
    return y


# ---------------------------------------------------------------------------------------------- EM
def expected_complete_log_likelihood(model, dense_posterior, T, inputs):
    """E[log p(x, y_all | model)] under a dense posterior (mean, cov) of (x_1..x_T, y_1..y_T)."""
    mean, cov = dense_posterior
    A, C = model["transition_matrix"], model["observation_matrix"]
    n, p = A.shape[0], C.shape[0]
    B, D = model.get("input_matrix"), model.get("feedthrough_matrix")
    dim = T * (n + p)

    def x(t):
        E = np.zeros((n, dim))
        E[:, t * n:(t + 1) * n] = np.eye(n)
        return E

    def y(t):
        E = np.zeros((p, dim))
        E[:, T * n + t * p:T * n + (t + 1) * p] = np.eye(p)
        return E

    def gaussian_term(L, c, S):
        r_mean = L @ mean + c
        second = L @ cov @ L.T + np.outer(r_mean, r_mean)
        return -0.5 * (len(c) * np.log(2 * np.pi) + np.linalg.slogdet(S)[1] + np.trace(np.linalg.solve(S, second)))

    total = gaussian_term(x(0), -model["initial_state_mean"], model["initial_state_covariance"])
    for t in range(T):
        if t:
            offset = -(B @ inputs[t]) if B is not None else np.zeros(n)
            total += gaussian_term(x(t) - A @ x(t - 1), offset, model["transition_covariance"])
        offset = -(D @ inputs[t]) if D is not None else np.zeros(p)
        total += gaussian_term(y(t) - C @ x(t), offset, model["observation_covariance"])
    return total


FREE = {"a": "transition_matrix", "b": "input_matrix", "c": "observation_matrix", "d": "feedthrough_matrix",
        "q": "transition_covariance", "r": "observation_covariance", "m": "initial_state_mean",
        "p": "initial_state_covariance"}


@pytest.mark.parametrize("letters, q_type, r_type", [
    ("abcdqrmp", "full", "full"),
    ("abcdqrmp", "diag", "diag"),
    ("ac", "full", "full"),
    ("bdq", "full", "diag"),
    ("crmp", "diag", "full"),
])
def test_m_step_maximises_expected_complete_log_likelihood(letters, q_type, r_type):
    # The M-step must be the argmax over the free parameters of E[log p(x, y | theta)]
    # (missing y entries are latent), computed here from the dense posterior.
    n, p, m, T = 2, 3, 1, 6
    old = random_model(n, p, m=m, seed=31)
    if q_type == "diag":
        old["transition_covariance"] = np.diag(np.diag(old["transition_covariance"]))
    if r_type == "diag":
        old["observation_covariance"] = np.diag(np.diag(old["observation_covariance"]))
    y = data_with_missing(T, p, seed=32, frac=0.3)
    y[2] = np.nan
    u = np.random.RandomState(33).normal(size=(T, m))
    est = hand_set(old, n_iter=1, tol=0.0, params=letters, transition_covariance_type=q_type,
                   observation_covariance_type=r_type)
    fit_quietly(est, y, inputs=u)
    new = model_dict(est)
    for letter, key in FREE.items():
        if letter not in letters:
            np.testing.assert_array_equal(new[key], old[key])
    posterior = DenseGaussian(old, T, u).condition(y)
    best = expected_complete_log_likelihood(new, posterior, T, u)
    assert best >= expected_complete_log_likelihood(old, posterior, T, u)
    rng = np.random.RandomState(0)
    eps = 1e-4
    for _ in range(6):
        up, down = {k: v.copy() for k, v in new.items()}, {k: v.copy() for k, v in new.items()}
        for letter in letters:
            key = FREE[letter]
            delta = rng.normal(size=new[key].shape)
            if key.endswith("covariance"):
                delta = delta + delta.T
                kind = {"transition_covariance": q_type, "observation_covariance": r_type}.get(key, "full")
                if kind == "diag":
                    delta = np.diag(np.diag(delta))
            up[key] = new[key] + eps * delta
            down[key] = new[key] - eps * delta
        f_up = expected_complete_log_likelihood(up, posterior, T, u)
        f_down = expected_complete_log_likelihood(down, posterior, T, u)
        assert f_up < best and f_down < best
        # first-order optimality: the symmetric difference quotient vanishes
        assert abs(f_up - f_down) / (2 * eps) < 1e-5 * max(1.0, abs(best))


@pytest.mark.parametrize("r_type", ["full", "diag"])
def test_em_never_decreases_the_log_likelihood(r_type):
    rng = np.random.RandomState(5)
    truth = hand_set(random_model(3, 4, m=2, seed=40))
    lengths = [120, 60, 90]
    u = rng.normal(size=(sum(lengths), 2))
    X = np.vstack([truth.sample(L, random_state=i, inputs=u[s:s + L])[0]
                   for i, (s, L) in enumerate(zip(np.cumsum([0] + lengths[:-1]), lengths))])
    X[rng.rand(*X.shape) < 0.15] = np.nan
    X[10:14] = np.nan
    est = LinearGaussianSSM(3, observation_covariance_type=r_type, n_iter=40, tol=0.0, reg_covar=0.0,
                            random_state=0)
    fit_quietly(est, X, lengths=lengths, inputs=u)
    history = np.array(est.monitor_.history)
    assert len(history) == 40
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[1:]))
    assert history[-1] - history[0] > 1.0
    # the monitor reports the log-likelihood of the parameters before each M-step
    np.testing.assert_allclose(est.score(X, lengths=lengths, inputs=u) >= history[-1], True)


def test_parameters_recovered_from_sampled_data():
    theta, rho = 0.3, 0.9
    truth = {
        "transition_matrix": rho * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]),
        "observation_matrix": np.array([[1.0, 0.0], [0.5, 1.0], [-0.8, 0.4]]),
        "transition_covariance": np.array([[0.3, 0.05], [0.05, 0.2]]),
        "observation_covariance": np.diag([0.2, 0.3, 0.25]),
        "initial_state_mean": np.zeros(2), "initial_state_covariance": np.eye(2),
    }
    gen = hand_set(truth)
    lengths = [1500, 1500, 1000]
    X = np.vstack([gen.sample(L, random_state=10 + i)[0] for i, L in enumerate(lengths)])
    est = fit_quietly(LinearGaussianSSM(2, n_iter=300, tol=1e-4, random_state=0), X, lengths=lengths)
    true_eig = np.sort_complex(np.linalg.eigvals(truth["transition_matrix"]))
    fit_eig = np.sort_complex(np.linalg.eigvals(est.transition_matrix_))
    np.testing.assert_allclose(fit_eig, true_eig, atol=0.03)
    np.testing.assert_allclose(np.diag(est.observation_covariance_), np.diag(truth["observation_covariance"]),
                               rtol=0.2)

    def implied(model):
        A, C = model["transition_matrix"], model["observation_matrix"]
        S = linalg.solve_discrete_lyapunov(A, model["transition_covariance"])
        return C @ S @ C.T + model["observation_covariance"], C @ A @ S @ C.T  # lag-0 and lag-1 covariances

    # The fitted model reproduces the sample's own lag-0 and lag-1 second moments closely
    # (the model has zero mean), and the true ones within their sampling error (~9% here).
    starts = np.cumsum([0] + lengths[:-1])
    sample_moments = (X.T @ X / len(X),
                      sum(X[s + 1:s + L].T @ X[s:s + L - 1] for s, L in zip(starts, lengths)) / (len(X) - 3))
    for fitted, sampled, true in zip(implied(model_dict(est)), sample_moments, implied(truth)):
        assert np.linalg.norm(fitted - sampled) < 0.02 * np.linalg.norm(sampled)
        assert np.linalg.norm(fitted - true) < 0.15 * np.linalg.norm(true)
    # the fitted parameters explain the data at least as well as the truth
    assert est.score(X, lengths=lengths) > gen.score(X, lengths=lengths)


def test_frozen_parameters_keep_hand_set_values_and_init_params_skips_them():
    model = random_model(2, 3, seed=3)
    model["observation_covariance"] = np.diag([0.5, 0.6, 0.7])
    X = hand_set(model).sample(300, random_state=0)[0]
    est = LinearGaussianSSM(2, params="aq", init_params="cr", n_iter=5, random_state=0)
    for key in ("transition_matrix", "transition_covariance", "initial_state_mean", "initial_state_covariance"):
        setattr(est, ATTRS[key], model[key].copy())
    fit_quietly(est, X)
    np.testing.assert_array_equal(est.initial_state_mean_, model["initial_state_mean"])
    np.testing.assert_array_equal(est.initial_state_covariance_, model["initial_state_covariance"])
    assert not np.array_equal(est.transition_matrix_, model["transition_matrix"])
    # c and r were initialised from the data and then frozen: refitting with no
    # iterations gives the same initial values
    again = LinearGaussianSSM(2, params="", init_params="cr", n_iter=0, random_state=0)
    for key in ("transition_matrix", "transition_covariance", "initial_state_mean", "initial_state_covariance"):
        setattr(again, ATTRS[key], model[key].copy())
    again.fit(X)
    np.testing.assert_array_equal(est.observation_matrix_, again.observation_matrix_)
    np.testing.assert_array_equal(est.observation_covariance_, again.observation_covariance_)


def test_not_converged_warns_and_sets_attributes():
    X = hand_set(random_model(2, 2, seed=1)).sample(200, random_state=0)[0]
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 iterations"):
        est = LinearGaussianSSM(2, n_iter=2, tol=0.0, random_state=0).fit(X)
    assert est.n_iter_ == 2 and not est.converged_
    est = LinearGaussianSSM(2, n_iter=500, tol=1.0, random_state=0).fit(X)
    assert est.converged_ and est.n_iter_ < 500


# --------------------------------------------------------------------------------------- inference
@pytest.mark.parametrize("r_type", ["full", "diag"])
def test_methods_equal_dense_computation_with_missing_entries(r_type):
    n, p, m, T = 2, 3, 1, 7
    model = random_model(n, p, m=m, seed=50)
    if r_type == "diag":
        model["observation_covariance"] = np.diag(np.diag(model["observation_covariance"]))
    est = hand_set(model, observation_covariance_type=r_type)
    y = data_with_missing(T, p, seed=51, frac=0.35)
    y[3] = np.nan
    u = np.random.RandomState(52).normal(size=(T, m))
    dense = DenseGaussian(model, T, u)
    # score: the dense log-density of the observed entries only
    observed = ~np.isnan(y)
    mu, cov = dense.mean[T * n:], dense.cov[T * n:, T * n:]
    keep = observed.ravel()
    direct = stats.multivariate_normal(mu[keep], cov[np.ix_(keep, keep)]).logpdf(y.ravel()[keep])
    np.testing.assert_allclose(est.score(y, inputs=u), direct, rtol=1e-12)
    np.testing.assert_allclose(est.score_samples(y, inputs=u), dense.filtered(y)[4], atol=1e-9)
    np.testing.assert_allclose(est.score_samples(y, inputs=u)[3], 0.0)
    sm, sc, _ = dense.state_moments(y)
    np.testing.assert_allclose(est.transform(y, inputs=u), sm, atol=1e-9)
    means, covs = est.smooth(y, inputs=u)
    np.testing.assert_allclose(covs, sc, atol=1e-9)
    fm, fc, *_ = dense.filtered(y)
    np.testing.assert_allclose(est.filter(y, inputs=u)[0], fm, atol=1e-9)
    np.testing.assert_allclose(est.filter(y, inputs=u)[1], fc, atol=1e-9)
    # predict: the smoothed signal at observed entries, E[y | observed] at missing ones
    obs_means, _ = dense.observation_moments(y)
    signal = sm @ model["observation_matrix"].T + u @ model["feedthrough_matrix"].T
    expected = np.where(observed, signal, obs_means)
    np.testing.assert_allclose(est.predict(y, inputs=u), expected, atol=1e-9)


def test_forecast_equals_dense_conditioning_for_each_sequence():
    n, p, m, H = 2, 2, 1, 3
    model = random_model(n, p, m=m, seed=60)
    est = hand_set(model)
    lengths = [5, 4]
    y = data_with_missing(sum(lengths), p, seed=61)
    u = np.random.RandomState(62).normal(size=(sum(lengths), m))
    future = np.random.RandomState(63).normal(size=(len(lengths) * H, m))
    means, covs = est.forecast(y, H, lengths=lengths, inputs=u, future_inputs=future)
    assert means.shape == (len(lengths) * H, p) and covs.shape == (len(lengths) * H, p, p)
    start = 0
    for s, T in enumerate(lengths):
        ys = np.vstack([y[start:start + T], np.full((H, p), np.nan)])
        us = np.vstack([u[start:start + T], future[s * H:(s + 1) * H]])
        obs_means, obs_covs = DenseGaussian(model, T + H, us).observation_moments(ys)
        np.testing.assert_allclose(means[s * H:(s + 1) * H], obs_means[T:], atol=1e-9)
        np.testing.assert_allclose(covs[s * H:(s + 1) * H], obs_covs[T:], atol=1e-9)
        start += T


def test_sample_has_the_stationary_moments():
    model = random_model(2, 2, seed=70, stable=0.8)
    A, Q = model["transition_matrix"], model["transition_covariance"]
    est = hand_set(model)
    P = est.get_stationary_covariance()
    np.testing.assert_allclose(A @ P @ A.T + Q, P, atol=1e-12)  # the Lyapunov fixed point
    est.initial_state_mean_, est.initial_state_covariance_ = np.zeros(2), P
    X, states = est.sample(40_000, random_state=0)
    assert X.shape == (40_000, 2) and states.shape == (40_000, 2)
    np.testing.assert_allclose(np.cov(states.T), P, rtol=0.1, atol=0.05 * np.abs(P).max())
    C, R = model["observation_matrix"], model["observation_covariance"]
    implied = C @ P @ C.T + R
    np.testing.assert_allclose(np.cov(X.T), implied, rtol=0.1, atol=0.05 * np.abs(implied).max())
    # the same generator gives the same draw
    np.testing.assert_array_equal(est.sample(5, random_state=3)[0], est.sample(5, random_state=3)[0])


def test_float32_and_torch_inputs():
    model = random_model(2, 3, seed=80)
    X = hand_set(model).sample(200, random_state=0)[0]
    ref = fit_quietly(LinearGaussianSSM(2, n_iter=5, random_state=0), X)
    low = fit_quietly(LinearGaussianSSM(2, n_iter=5, random_state=0, dtype="float32"), torch.as_tensor(X))
    np.testing.assert_allclose(low.score(X), ref.score(X), rtol=1e-4)
    assert low.transform(X).dtype == np.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    X = data_with_missing(300, 2, seed=91)
    u = np.random.RandomState(92).normal(size=(300, 1))
    cpu = fit_quietly(LinearGaussianSSM(3, n_iter=3, random_state=0), X, inputs=u, lengths=[100, 200])
    gpu = fit_quietly(LinearGaussianSSM(3, n_iter=3, random_state=0, device="cuda"), X, inputs=u, lengths=[100, 200])
    np.testing.assert_allclose(gpu.transition_matrix_, cpu.transition_matrix_, atol=1e-8)
    np.testing.assert_allclose(gpu.score(X, inputs=u, lengths=[100, 200]), cpu.score(X, inputs=u, lengths=[100, 200]))


def test_information_criteria_count_free_parameters():
    model = random_model(2, 3, seed=3)
    X = hand_set(model).sample(100, random_state=0)[0]
    est = fit_quietly(LinearGaussianSSM(2, n_iter=2, random_state=0), X)
    # A 4 + C 6 + Q 3 + R 3 (diag) + m0 2 + P0 3, less 4 for x -> T x
    k = 4 + 6 + 3 + 3 + 2 + 3 - 4
    np.testing.assert_allclose(est.bic(X), -2 * est.score(X) + k * np.log(100))
    np.testing.assert_allclose(est.aic(X), -2 * est.score(X) + 2 * k)


# ------------------------------------------------------------------------------------------ I/O, CLI
def test_save_load_round_trip(tmp_path):
    rng = np.random.RandomState(0)
    X = data_with_missing(120, 3, seed=1)
    u = rng.normal(size=(120, 2))
    est = fit_quietly(LinearGaussianSSM(2, observation_covariance_type="full", n_iter=3, random_state=0),
                      X, lengths=[70, 50], inputs=u)
    loaded = probkit.load(est.save(tmp_path / "ssm.pk"))
    assert type(loaded) is LinearGaussianSSM and loaded.get_params() == est.get_params()
    for name in ATTRS.values():
        np.testing.assert_array_equal(getattr(loaded, name), getattr(est, name))
    np.testing.assert_array_equal(loaded.predict(X, lengths=[70, 50], inputs=u), est.predict(X, lengths=[70, 50], inputs=u))
    assert loaded.score(X, lengths=[70, 50], inputs=u) == est.score(X, lengths=[70, 50], inputs=u)
    assert loaded.monitor_.history == est.monitor_.history


def test_command_line_fit_and_score(tmp_path, capsys):
    from probkit.cli import main

    X = hand_set(random_model(2, 2, seed=5)).sample(150, random_state=0)[0]
    data = tmp_path / "series.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    model_path = tmp_path / "m.pk"
    assert main(["fit", "linear-gaussian-ssm", str(data), "-k", "2", "--max-iter", "4", "-o", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "fitted linear-gaussian-ssm" in out
    api = fit_quietly(LinearGaussianSSM(2, n_iter=4, random_state=0), X)
    loaded = probkit.load(model_path)
    np.testing.assert_array_equal(loaded.transition_matrix_, api.transition_matrix_)
    assert main(["score", str(model_path), str(data)]) == 0
    out = capsys.readouterr().out
    assert f"log-likelihood {api.score(X):.6f}" in out


# ------------------------------------------------------------------------------------------ errors
def test_bad_input_raises_clear_errors():
    model = random_model(2, 2, seed=0)
    est = hand_set(model)
    X = np.zeros((6, 2))
    with pytest.raises(ValueError, match="the model was fitted without inputs"):
        est.score(X, inputs=np.zeros((6, 1)))
    with pytest.raises(ValueError, match=r"inputs must have shape \(n_samples, n_inputs\) with n_samples = 6"):
        LinearGaussianSSM(2).fit(X, inputs=np.zeros((5, 1)))
    with pytest.raises(ValueError, match="inputs contains NaN"):
        LinearGaussianSSM(2).fit(X, inputs=np.full((6, 1), np.nan))
    fitted = fit_quietly(LinearGaussianSSM(1, n_iter=1), X + np.arange(6)[:, None], inputs=np.ones((6, 1)))
    with pytest.raises(ValueError, match=r"the model has 1 input column\(s\) but inputs has 0"):
        fitted.score(X)
    with pytest.raises(ValueError, match="pass future_inputs"):
        fitted.forecast(X, 2, inputs=np.ones((6, 1)))
    with pytest.raises(ValueError, match=r"future_inputs must have shape \(2, n_inputs\)"):
        fitted.forecast(X, 2, inputs=np.ones((6, 1)), future_inputs=np.ones((3, 1)))
    with pytest.raises(ValueError, match="X has 3 features"):
        est.score(np.zeros((6, 3)))
    with pytest.raises(ValueError, match="lengths must sum"):
        est.score(X, lengths=[2, 2])
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.score(np.full((6, 2), np.inf))
    with pytest.raises(TypeError, match="pass sequence lengths by keyword"):
        LinearGaussianSSM(1).fit(X, [3, 3])
    with pytest.raises(TypeError, match="pass sequence lengths by keyword"):
        est.score(X, [3, 3])
    assert est.score(X, np.zeros(6), lengths=[3, 3]) == est.score(X, lengths=[3, 3])  # scikit-learn's y: ignored
    for method in (est.predict, est.transform, est.score_samples, est.filter, est.smooth, est.bic):
        with pytest.raises(TypeError):
            method(X, [3, 3])
    with pytest.raises(ValueError, match="n_samples = 1"):
        LinearGaussianSSM(1).fit(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="no observed entry"):
        LinearGaussianSSM(1).fit(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        est.forecast(X, 0)
    with pytest.raises(NotFittedError):
        LinearGaussianSSM(2).score(X)


@pytest.mark.parametrize("attr, value, match", [
    ("transition_covariance_", -np.eye(2), "transition_covariance must be positive definite"),
    ("observation_covariance_", np.array([[1.0, 0.9], [0.2, 1.0]]), "observation_covariance must be symmetric"),
    ("initial_state_covariance_", np.zeros((2, 2)), "initial_state_covariance must be positive definite"),
    ("transition_matrix_", np.eye(3), r"transition_matrix_ must have shape \(2, 2\)"),
    ("observation_matrix_", np.ones((2, 3)), r"observation_matrix_ must have shape \(n_features, 2\)"),
    ("initial_state_mean_", np.zeros(3), r"initial_state_mean must have shape \(2,\)"),
])
def test_bad_hand_set_parameters_raise_clear_errors(attr, value, match):
    est = hand_set(random_model(2, 2, seed=0))
    setattr(est, attr, value)
    with pytest.raises(ValueError, match=match):
        est.score(np.zeros((4, 2)))


def test_option_errors():
    X = np.random.RandomState(0).normal(size=(20, 2))
    for kwargs, match in [
        (dict(n_components=0), r"The 'n_components' parameter of LinearGaussianSSM must be an int in the range \[1, inf\)"),
        (dict(n_components=True), r"The 'n_components' parameter of LinearGaussianSSM must be an int in the range "
                                  r"\[1, inf\)\. Got True"),
        (dict(transition_covariance_type="tied"), "The 'transition_covariance_type' parameter of LinearGaussianSSM "
                                                  "must be a str among"),
        (dict(observation_covariance_type="spherical"), "The 'observation_covariance_type' parameter of "
                                                        "LinearGaussianSSM must be a str among"),
        (dict(params="axz"), r"params has unknown letters \['x', 'z'\]"),
        (dict(params=3), "The 'params' parameter of LinearGaussianSSM must be an instance of 'str'"),
        (dict(n_iter=-1), r"The 'n_iter' parameter of LinearGaussianSSM must be an int in the range \[0, inf\)"),
        (dict(tol=float("nan")), r"The 'tol' parameter of LinearGaussianSSM must be a float in the range \[0.0, inf\)"),
        (dict(reg_covar=-1.0), r"The 'reg_covar' parameter of LinearGaussianSSM must be a float in the range "
                               r"\[0.0, inf\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            LinearGaussianSSM(**kwargs).fit(X)
    diag_r = hand_set(random_model(2, 2, seed=0), observation_covariance_type="diag")
    with pytest.raises(ValueError, match="observation_covariance_ must be diagonal"):
        diag_r.score(X)


def test_unstable_transition_matrix_is_reported():
    model = random_model(2, 2, seed=0)
    model["transition_matrix"] = np.array([[1.5, 0.0], [0.0, 0.5]])
    est = hand_set(model)
    with pytest.raises(ValueError, match=r"transition_matrix_ is not stable \(spectral radius 1.5 >= 1\)"):
        est.get_stationary_covariance()
    with pytest.raises(ValueError, match="sampled states overflowed: transition_matrix_ is unstable"):
        est.sample(5000, random_state=0)
    # a short sample of an unstable model is still well defined
    assert np.isfinite(est.sample(20, random_state=0)[0]).all()


def test_command_line_sample_and_hmm_only_commands(tmp_path, capsys):
    from probkit.cli import main

    est = hand_set(random_model(2, 2, seed=5))
    est.n_features_in_ = 2
    model_path = est.save(tmp_path / "hand.pk")
    out_path = tmp_path / "sample.csv"
    assert main(["sample", str(model_path), "-n", "30", "--random-state", "4", "-o", str(out_path)]) == 0
    table = np.loadtxt(out_path, delimiter=",", skiprows=1)
    X, states = est.sample(30, random_state=4)
    np.testing.assert_allclose(table, np.hstack([X, states]), rtol=1e-15)
    data = tmp_path / "series.csv"
    np.savetxt(data, X, delimiter=",")
    capsys.readouterr()
    assert main(["decode", str(model_path), str(data)]) == 1
    assert "decode needs a model with discrete states" in capsys.readouterr().err
    assert main(["fit", "linear-gaussian-ssm", str(data), "--plot", str(tmp_path / "p.png")]) == 1
    assert "--plot needs a model with discrete states" in capsys.readouterr().err


def test_torch_backend_fit_equals_compiled_fit(monkeypatch):
    # The device (CUDA) code path, run on the CPU: same EM trajectory as the numba kernels.
    import probkit.inference.kalman as kalman

    rng = np.random.RandomState(0)
    X = data_with_missing(160, 3, seed=2, frac=0.2)
    u = rng.normal(size=(160, 1))
    kwargs = dict(n_iter=4, tol=0.0, observation_covariance_type="full", random_state=0)
    compiled = fit_quietly(LinearGaussianSSM(2, **kwargs), X, lengths=[100, 60], inputs=u)
    monkeypatch.setattr(kalman, "_resolve_backend", lambda backend, *tensors: "torch")
    padded = fit_quietly(LinearGaussianSSM(2, **kwargs), X, lengths=[100, 60], inputs=u)
    np.testing.assert_allclose(padded.monitor_.history, compiled.monitor_.history, rtol=1e-10)
    for name in ATTRS.values():
        np.testing.assert_allclose(getattr(padded, name), getattr(compiled, name), atol=1e-8)
    np.testing.assert_allclose(padded.predict(X, lengths=[100, 60], inputs=u),
                               compiled.predict(X, lengths=[100, 60], inputs=u),
                               atol=1e-8)
