"""Kalman filter / smoother and EM against statsmodels and pykalman on the same parameters."""

import warnings

import numpy as np
import pytest

from probkit import LinearGaussianSSM
from probkit.inference.kalman import LinearGaussianParams, kalman_smoother
from tests.ssm.dense_reference import random_model

statsmodels_smoother = pytest.importorskip("statsmodels.tsa.statespace.kalman_smoother")
pykalman = pytest.importorskip("pykalman")


def _statsmodels_smooth(model, y, u):
    n, p = model["transition_matrix"].shape[0], model["observation_matrix"].shape[0]
    T = y.shape[0]
    ks = statsmodels_smoother.KalmanSmoother(k_endog=p, k_states=n, k_posdef=n)
    ks.bind(np.array(y))
    ks["design"] = model["observation_matrix"]
    ks["obs_cov"] = model["observation_covariance"]
    ks["transition"] = model["transition_matrix"]
    ks["selection"] = np.eye(n)
    ks["state_cov"] = model["transition_covariance"]
    if u is not None:
        ks["obs_intercept"] = (u @ model["feedthrough_matrix"].T).T.copy()
        # statsmodels' intercept c_t enters alpha_{t+1} = T alpha_t + c_t: ours is B u_{t+1}
        intercept = np.zeros((n, T))
        intercept[:, :-1] = (u[1:] @ model["input_matrix"].T).T
        ks["state_intercept"] = intercept
    ks.initialize_known(model["initial_state_mean"], model["initial_state_covariance"])
    return ks.smooth()


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("n_inputs", [0, 2])
def test_matches_statsmodels_kalman_smoother(backend, n_inputs):
    n, p, T = 4, 3, 150
    model = random_model(n, p, m=n_inputs, seed=21 + n_inputs)
    rng = np.random.RandomState(3)
    y = rng.normal(size=(T, p)) * 3
    y[rng.rand(T, p) < 0.2] = np.nan
    y[50:53] = np.nan
    u = rng.normal(size=(T, n_inputs)) if n_inputs else None
    ref = _statsmodels_smooth(model, y, u)
    res = kalman_smoother(y, LinearGaussianParams(**model), inputs=u, backend=backend)
    f = res.filter
    np.testing.assert_allclose(f.log_likelihood.item(), ref.llf, rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(f.step_log_likelihood.numpy(), ref.llf_obs, atol=1e-8)
    np.testing.assert_allclose(f.filtered_means.numpy(), ref.filtered_state.T, atol=1e-8)
    np.testing.assert_allclose(f.filtered_covariances.numpy(), ref.filtered_state_cov.transpose(2, 0, 1), atol=1e-8)
    np.testing.assert_allclose(f.predicted_means.numpy(), ref.predicted_state.T[:-1], atol=1e-8)
    np.testing.assert_allclose(f.predicted_covariances.numpy(), ref.predicted_state_cov.transpose(2, 0, 1)[:-1],
                               atol=1e-8)
    np.testing.assert_allclose(res.smoothed_means.numpy(), ref.smoothed_state.T, atol=1e-8)
    np.testing.assert_allclose(res.smoothed_covariances.numpy(), ref.smoothed_state_cov.transpose(2, 0, 1),
                               atol=1e-8)
    # statsmodels' smoothed_state_autocov[..., t] is Cov(alpha_{t+1}, alpha_t | y)
    np.testing.assert_allclose(res.lag_one_covariances.numpy()[1:],
                               ref.smoothed_state_autocov.transpose(2, 0, 1)[:-1], atol=1e-8)


def test_long_sequence_matches_statsmodels_with_steady_state():
    # T long enough for both filters to reach their steady states
    n, p, T = 3, 2, 5000
    model = random_model(n, p, seed=4)
    y = np.random.RandomState(5).normal(size=(T, p))
    ref = _statsmodels_smooth(model, y, None)
    res = kalman_smoother(y, LinearGaussianParams(**model))
    np.testing.assert_allclose(res.log_likelihood.item(), ref.llf, rtol=1e-12)
    np.testing.assert_allclose(res.smoothed_means.numpy(), ref.smoothed_state.T, atol=1e-8)
    np.testing.assert_allclose(res.smoothed_covariances.numpy(), ref.smoothed_state_cov.transpose(2, 0, 1), atol=1e-8)


def _pykalman_filter(model):
    return pykalman.KalmanFilter(
        transition_matrices=model["transition_matrix"], observation_matrices=model["observation_matrix"],
        transition_covariance=model["transition_covariance"], observation_covariance=model["observation_covariance"],
        initial_state_mean=model["initial_state_mean"], initial_state_covariance=model["initial_state_covariance"])


def test_matches_pykalman_filter_and_smoother_with_missing_rows():
    n, p, T = 3, 2, 60
    model = random_model(n, p, seed=8)
    y = np.random.RandomState(9).normal(size=(T, p))
    missing = np.zeros(T, dtype=bool)
    missing[[5, 6, 30]] = True
    y[missing] = np.nan
    kf = _pykalman_filter(model)
    masked = np.ma.array(np.nan_to_num(y), mask=np.repeat(missing[:, None], p, axis=1))
    fm, fc = kf.filter(masked)
    sm, sc = kf.smooth(masked)
    res = kalman_smoother(y, LinearGaussianParams(**model))
    np.testing.assert_allclose(res.filter.filtered_means.numpy(), fm, atol=1e-8)
    np.testing.assert_allclose(res.filter.filtered_covariances.numpy(), fc, atol=1e-8)
    np.testing.assert_allclose(res.smoothed_means.numpy(), sm, atol=1e-8)
    np.testing.assert_allclose(res.smoothed_covariances.numpy(), sc, atol=1e-8)
    np.testing.assert_allclose(res.log_likelihood.item(), kf.loglikelihood(masked), rtol=1e-10)


def _hand_set(model, **kwargs):
    est = LinearGaussianSSM(model["transition_matrix"].shape[0], init_params="", reg_covar=0.0, **kwargs)
    names = {"transition_matrix": "transition_matrix_", "observation_matrix": "observation_matrix_",
             "transition_covariance": "transition_covariance_", "observation_covariance": "observation_covariance_",
             "initial_state_mean": "initial_state_mean_", "initial_state_covariance": "initial_state_covariance_"}
    for key, attr in names.items():
        setattr(est, attr, model[key].copy())
    return est


@pytest.mark.parametrize("n_iter", [1, 4])
@pytest.mark.parametrize("em_vars", ["all", "dynamics"])
def test_em_steps_match_pykalman(n_iter, em_vars):
    n, p, T = 3, 4, 200
    model = random_model(n, p, seed=13)
    truth = random_model(n, p, seed=14)
    y = _hand_set(truth, observation_covariance_type="full").sample(T, random_state=0)[0]
    if em_vars == "all":
        pk_vars = ["transition_matrices", "observation_matrices", "transition_covariance", "observation_covariance",
                   "initial_state_mean", "initial_state_covariance"]
        letters = "acqrmp"
    else:
        pk_vars = ["transition_matrices", "transition_covariance"]
        letters = "aq"
    pk = _pykalman_filter(model).em(y, n_iter=n_iter, em_vars=pk_vars)
    est = _hand_set(model, n_iter=n_iter, tol=0.0, params=letters, observation_covariance_type="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(y)
    np.testing.assert_allclose(est.transition_matrix_, pk.transition_matrices, atol=1e-8)
    np.testing.assert_allclose(est.observation_matrix_, pk.observation_matrices, atol=1e-8)
    np.testing.assert_allclose(est.transition_covariance_, pk.transition_covariance, atol=1e-8)
    np.testing.assert_allclose(est.observation_covariance_, pk.observation_covariance, atol=1e-8)
    np.testing.assert_allclose(est.initial_state_mean_, pk.initial_state_mean, atol=1e-8)
    np.testing.assert_allclose(est.initial_state_covariance_, pk.initial_state_covariance, atol=1e-8)
    np.testing.assert_allclose(est.score(y), pk.loglikelihood(y), rtol=1e-10)
