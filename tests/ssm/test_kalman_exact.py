"""Kalman filter, RTS smoother and forecasts against a dense joint Gaussian (float64, tiny T)."""

import numpy as np
import pytest
import torch

from probkit.inference.kalman import (
    LinearGaussianParams,
    check_linear_gaussian_params,
    kalman_filter,
    kalman_forecast,
    kalman_smoother,
)
from tests.ssm.dense_reference import DenseGaussian, random_model

ATOL = 1e-9


def _data(T, p, m, missing, seed):
    rng = np.random.RandomState(seed)
    y = rng.normal(size=(T, p)) * 2
    if missing == "entries":
        y[rng.rand(T, p) < 0.3] = np.nan
    elif missing == "rows":
        y[1::3] = np.nan
    u = rng.normal(size=(T, m)) if m else None
    return y, u


def _check_against_dense(result, dense, y):
    fm, fc, pm, pc, steps = dense.filtered(y)
    sm, sc, lag = dense.state_moments(y)
    f = result.filter
    np.testing.assert_allclose(f.log_likelihood.numpy().sum(), dense.log_likelihood(y), rtol=1e-12, atol=ATOL)
    np.testing.assert_allclose(f.step_log_likelihood.numpy(), steps, atol=ATOL)
    np.testing.assert_allclose(f.predicted_means.numpy(), pm, atol=ATOL)
    np.testing.assert_allclose(f.predicted_covariances.numpy(), pc, atol=ATOL)
    np.testing.assert_allclose(f.filtered_means.numpy(), fm, atol=ATOL)
    np.testing.assert_allclose(f.filtered_covariances.numpy(), fc, atol=ATOL)
    np.testing.assert_allclose(result.smoothed_means.numpy(), sm, atol=ATOL)
    np.testing.assert_allclose(result.smoothed_covariances.numpy(), sc, atol=ATOL)
    np.testing.assert_allclose(result.lag_one_covariances.numpy(), lag, atol=ATOL)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("n_inputs", [0, 2])
@pytest.mark.parametrize("missing", ["none", "entries", "rows"])
def test_filter_and_smoother_equal_dense_gaussian(backend, n_inputs, missing):
    n, p, T = 3, 2, 7
    model = random_model(n, p, m=n_inputs, seed=n_inputs + 1)
    y, u = _data(T, p, n_inputs, missing, seed=4)
    result = kalman_smoother(y, LinearGaussianParams(**model), inputs=u, backend=backend)
    _check_against_dense(result, DenseGaussian(model, T, u), y)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_ragged_sequences_are_independent(backend):
    n, p, m = 2, 3, 1
    model = random_model(n, p, m=m, seed=7)
    lengths = [5, 1, 3, 6]
    y, u = _data(sum(lengths), p, m, "entries", seed=8)
    result = kalman_smoother(y, LinearGaussianParams(**model), inputs=u, lengths=lengths, backend=backend)
    start = 0
    for s, T in enumerate(lengths):
        rows = slice(start, start + T)
        dense = DenseGaussian(model, T, u[rows])
        np.testing.assert_allclose(result.log_likelihood[s].item(), dense.log_likelihood(y[rows]), atol=ATOL)
        sm, sc, lag = dense.state_moments(y[rows])
        np.testing.assert_allclose(result.smoothed_means[rows].numpy(), sm, atol=ATOL)
        np.testing.assert_allclose(result.smoothed_covariances[rows].numpy(), sc, atol=ATOL)
        np.testing.assert_allclose(result.lag_one_covariances[rows].numpy(), lag, atol=ATOL)
        fm, fc, _, _, steps = dense.filtered(y[rows])
        np.testing.assert_allclose(result.filter.filtered_covariances[rows].numpy(), fc, atol=ATOL)
        np.testing.assert_allclose(result.filter.step_log_likelihood[rows].numpy(), steps, atol=ATOL)
        start += T


def test_filter_alone_matches_smoother_forward_pass():
    model = random_model(3, 2, seed=2)
    y, _ = _data(40, 2, 0, "entries", seed=3)
    params = LinearGaussianParams(**model)
    filt = kalman_filter(y, params)
    smooth = kalman_smoother(y, params).filter
    for a, b in zip(filt, smooth):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_numba_and_torch_backends_agree_on_long_ragged_data():
    model = random_model(4, 3, m=2, seed=5)
    lengths = [300, 17, 1, 450]
    y, u = _data(sum(lengths), 3, 2, "entries", seed=6)
    y[100:140] = np.nan
    params = LinearGaussianParams(**model)
    a = kalman_smoother(y, params, inputs=u, lengths=lengths, backend="numba")
    b = kalman_smoother(y, params, inputs=u, lengths=lengths, backend="torch")
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, rtol=1e-12, atol=1e-8)
    for name in ("smoothed_means", "smoothed_covariances", "lag_one_covariances"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("missing_block", [False, True])
def test_steady_state_shortcut_equals_full_recursion(missing_block):
    # The steady state is entered, left at missing rows (if any) and entered again.
    model = random_model(3, 2, m=1, seed=11, stable=0.95)
    y, u = _data(3000, 2, 1, "none", seed=12)
    if missing_block:
        y[1000:1010] = np.nan
        y[2000, 0] = np.nan
    params = LinearGaussianParams(**model)
    fast = kalman_smoother(y, params, inputs=u, lengths=[2500, 500], steady_state_tol=1e-13)
    full = kalman_smoother(y, params, inputs=u, lengths=[2500, 500], steady_state_tol=0.0)
    torch.testing.assert_close(fast.log_likelihood, full.log_likelihood, rtol=1e-12, atol=1e-9)
    for a, b in zip(fast.filter[1:], full.filter[1:]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for name in ("smoothed_means", "smoothed_covariances", "lag_one_covariances"):
        torch.testing.assert_close(getattr(fast, name), getattr(full, name), rtol=1e-10, atol=1e-10)


def test_float32_torch_path_tracks_float64():
    model = random_model(3, 2, seed=1)
    y, _ = _data(200, 2, 0, "entries", seed=2)
    params = LinearGaussianParams(**model)
    ref = kalman_smoother(y, params, backend="torch")
    low = kalman_smoother(torch.as_tensor(y, dtype=torch.float32), params, backend="torch")
    assert low.smoothed_means.dtype == torch.float32
    torch.testing.assert_close(low.smoothed_means.double(), ref.smoothed_means, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(low.log_likelihood.double(), ref.log_likelihood, rtol=1e-4, atol=1e-2)


def test_forecast_equals_dense_conditioning_with_future_rows_missing():
    n, p, m, T, H = 3, 2, 1, 6, 4
    model = random_model(n, p, m=m, seed=9)
    y, u = _data(T + H, p, m, "entries", seed=10)
    y[T:] = np.nan
    dense = DenseGaussian(model, T + H, u)
    obs_means, obs_covs = dense.observation_moments(y)
    state_means, state_covs, _ = dense.state_moments(y)
    params = LinearGaussianParams(**model)
    filt = kalman_filter(y[:T], params, inputs=u[:T])
    fc = kalman_forecast(filt.filtered_means[-1:], filt.filtered_covariances[-1:], params, H, inputs=u[T:])
    np.testing.assert_allclose(fc.observation_means.numpy(), obs_means[T:], atol=ATOL)
    np.testing.assert_allclose(fc.observation_covariances.numpy(), obs_covs[T:], atol=ATOL)
    np.testing.assert_allclose(fc.state_means.numpy(), state_means[T:], atol=ATOL)
    np.testing.assert_allclose(fc.state_covariances.numpy(), state_covs[T:], atol=ATOL)


def _ill_conditioned_model(n=4, p=2):
    """A nearly deterministic, poorly scaled state observed with little noise."""
    rng = np.random.RandomState(2)
    A = np.linalg.qr(rng.normal(size=(n, n)))[0] * 0.999
    scales = np.diag([1e3, 1.0, 1e-2, 1e-3])
    return LinearGaussianParams(scales @ A @ np.linalg.inv(scales), rng.normal(size=(p, n)) @ scales,
                                scales @ (1e-6 * np.eye(n)) @ scales, 1e-6 * np.eye(p), np.zeros(n),
                                scales @ (1e4 * np.eye(n)) @ scales)


def _min_correlation_eigenvalue(covs):
    scale = np.sqrt(np.abs(np.einsum("...ii->...i", covs)))
    return np.linalg.eigvalsh(covs / scale[..., :, None] / scale[..., None, :]).min()


def test_conventional_update_loses_definiteness_on_the_stability_model():
    # Why the next test is meaningful: the textbook update P - K C P fails on this model.
    A, C, Q, R, _, P = (np.asarray(v) for v in _ill_conditioned_model()[:6])
    worst = np.inf
    for t in range(500):
        if t:
            P = A @ P @ A.T + Q
        K = P @ C.T @ np.linalg.inv(C @ P @ C.T + R)
        P = P - K @ C @ P
        worst = min(worst, _min_correlation_eigenvalue(0.5 * (P + P.T)), np.diag(P).min())
    assert worst < -1


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_covariances_stay_symmetric_positive_definite_over_1e5_steps(backend):
    params = _ill_conditioned_model()
    T = 100_000 if backend == "numba" else 3_000
    rng = np.random.RandomState(1)
    y = rng.normal(size=(T, 2))
    y[rng.rand(T) < 0.01] = np.nan
    res = kalman_smoother(y, params, backend=backend, steady_state_tol=0.0)
    for covs in (res.filter.filtered_covariances, res.filter.predicted_covariances, res.smoothed_covariances):
        covs = covs.numpy()
        assert np.isfinite(covs).all()
        np.testing.assert_array_equal(covs, covs.transpose(0, 2, 1))
        assert _min_correlation_eigenvalue(covs) > 0
    assert np.isfinite(res.log_likelihood.numpy()).all()


def test_missing_rows_do_not_contribute_to_log_likelihood():
    model = random_model(2, 2, seed=0)
    params = LinearGaussianParams(**model)
    y = np.full((5, 2), np.nan)
    res = kalman_filter(y, params)
    assert res.log_likelihood.item() == 0.0
    # all missing: the filter only predicts, x_t ~ N(A^(t-1) m0, ...)
    np.testing.assert_allclose(res.filtered_means[3].numpy(),
                               np.linalg.matrix_power(model["transition_matrix"], 3) @ model["initial_state_mean"])


# ---------------------------------------------------------------------------------------- errors
def _params(**changes):
    model = random_model(2, 2, seed=0)
    model.update(changes)
    return LinearGaussianParams(**model)


@pytest.mark.parametrize("changes, match", [
    (dict(transition_covariance=-np.eye(2)), "transition_covariance must be positive definite"),
    (dict(observation_covariance=np.array([[1.0, 2.0], [2.0, 1.0]])), "observation_covariance must be positive"),
    (dict(initial_state_covariance=np.array([[1.0, 0.5], [0.0, 1.0]])), "initial_state_covariance must be symm"),
    (dict(transition_matrix=np.eye(3)), r"observation_matrix must have shape \(n_features, 3\)"),
    (dict(observation_matrix=np.ones((2, 3))), r"observation_matrix must have shape \(n_features, 2\)"),
    (dict(initial_state_mean=np.zeros(3)), r"initial_state_mean must have shape \(2,\)"),
    (dict(transition_matrix=np.array([[np.nan, 0], [0, 1]])), "transition_matrix contains NaN"),
    (dict(input_matrix=np.ones((2, 1))), "both be given"),
    (dict(input_matrix=np.ones((2, 1)), feedthrough_matrix=np.ones((2, 2))), r"feedthrough_matrix must have shape"),
])
def test_bad_parameters_raise_clear_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        kalman_filter(np.zeros((3, 2)), _params(**changes))


def test_bad_observations_and_inputs_raise_clear_errors():
    params = _params()
    with pytest.raises(ValueError, match="observations contains infinity"):
        kalman_filter(np.array([[np.inf, 0.0]]), params)
    with pytest.raises(ValueError, match=r"observations have 3 feature\(s\) but observation_matrix has 2 rows"):
        kalman_filter(np.zeros((4, 3)), params)
    with pytest.raises(ValueError, match=r"observations must have shape \(n_samples, n_features\)"):
        kalman_filter(np.zeros(4), params)
    with pytest.raises(ValueError, match="lengths must sum"):
        kalman_filter(np.zeros((4, 2)), params, lengths=[2, 3])
    with pytest.raises(ValueError, match="backend must be one of"):
        kalman_filter(np.zeros((4, 2)), params, backend="cuda")
    with pytest.raises(ValueError, match="steady_state_tol"):
        kalman_filter(np.zeros((4, 2)), params, steady_state_tol=-1)
    with_inputs = _params(input_matrix=np.ones((2, 1)), feedthrough_matrix=np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"pass inputs of shape \(4, 1\)"):
        kalman_filter(np.zeros((4, 2)), with_inputs)
    with pytest.raises(ValueError, match=r"inputs must have shape \(4, n_inputs\), one row per observation row"):
        kalman_filter(np.zeros((4, 2)), with_inputs, inputs=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"inputs has 2 column\(s\) but the model's input_matrix has 1"):
        kalman_filter(np.zeros((4, 2)), with_inputs, inputs=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="inputs contains NaN"):
        kalman_filter(np.zeros((4, 2)), with_inputs, inputs=np.full((4, 1), np.nan))
    with pytest.raises(TypeError, match="params must be a LinearGaussianParams"):
        kalman_filter(np.zeros((4, 2)), dict(random_model(2, 2)))
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        kalman_forecast(np.zeros((1, 2)), np.eye(2)[None], params, 0)


def test_degenerate_innovation_covariance_is_reported_with_its_step():
    # P0 and Q positive definite, but a huge state covariance overflows C P C' + R.
    params = _params(transition_matrix=1e200 * np.eye(2))
    with pytest.raises(ValueError, match="not positive definite at step 1 of sequence 0"):
        kalman_filter(np.zeros((3, 2)), params, backend="numba")
    with pytest.raises(ValueError, match="not positive definite at step 1 of sequence 0"):
        kalman_filter(np.zeros((3, 2)), params, backend="torch")


def test_check_params_symmetrises_and_keeps_dtype():
    model = random_model(2, 2, seed=0)
    Q = model["transition_covariance"].copy()
    Q[0, 1] += 1e-12
    model["transition_covariance"] = Q
    checked = check_linear_gaussian_params(LinearGaussianParams(**model), dtype=torch.float32)
    assert checked.transition_covariance.dtype == torch.float32
    assert torch.equal(checked.transition_covariance, checked.transition_covariance.T)
