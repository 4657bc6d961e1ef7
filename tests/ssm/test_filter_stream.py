"""The running Kalman filter of LinearGaussianSSM against pykalman and the whole-sequence filter."""

import numpy as np
import pytest

from tests.ssm.dense_reference import random_model
from tests.ssm.test_linear_gaussian_ssm import hand_set

pykalman = pytest.importorskip("pykalman")

ATOL = 1e-10


def _feed(stream, Y, sizes, inputs=None):
    """Feed single rows (size 0) and blocks; every step's filtered moments and the running log-likelihood."""
    means, covs, running, start = [], [], [], 0
    for size in sizes:
        if size == 0:
            u = None if inputs is None else inputs[start]
            mean, cov = stream.update(Y[start], inputs=u)
            assert mean.ndim == 1 and cov.ndim == 2
            means.append(mean[None])
            covs.append(cov[None])
            start += 1
        else:
            u = None if inputs is None else inputs[start:start + size]
            mean, cov = stream.update(Y[start:start + size], inputs=u)
            means.append(mean)
            covs.append(cov)
            start += size
        running.extend([np.nan] * (means[-1].shape[0] - 1) + [stream.log_likelihood])
    assert start == len(Y) and stream.n_steps == len(Y)
    return np.vstack(means), np.vstack(covs), np.array(running)


def test_stream_equals_pykalman_at_every_step():
    params = random_model(3, 2, seed=1)
    model = hand_set(params)
    Y = model.sample(120, random_state=2)[0]
    kf = pykalman.KalmanFilter(
        transition_matrices=params["transition_matrix"], observation_matrices=params["observation_matrix"],
        transition_covariance=params["transition_covariance"], observation_covariance=params["observation_covariance"],
        initial_state_mean=params["initial_state_mean"], initial_state_covariance=params["initial_state_covariance"])
    ref_means, ref_covs = kf.filter(Y)
    means, covs, running = _feed(model.filter_stream(), Y, [0] * 50 + [1, 30, 0, 38])
    np.testing.assert_allclose(means, ref_means, rtol=0, atol=ATOL)
    np.testing.assert_allclose(covs, ref_covs, rtol=0, atol=ATOL)
    # the running log-likelihood after each single step: pykalman's on the prefix
    for t in (9, 49):
        np.testing.assert_allclose(running[t], kf.loglikelihood(Y[:t + 1]), rtol=1e-10)
    np.testing.assert_allclose(running[-1], kf.loglikelihood(Y), rtol=1e-10)


def test_stream_with_inputs_and_missing_entries_equals_the_whole_sequence_filter():
    params = random_model(2, 3, m=2, seed=3)
    model = hand_set(params)
    rng = np.random.RandomState(4)
    U = rng.normal(size=(90, 2))
    Y = model.sample(90, random_state=5, inputs=U)[0]
    Y[rng.rand(*Y.shape) < 0.2] = np.nan
    Y[10] = np.nan  # a step with nothing observed
    whole_means, whole_covs = model.filter(Y, inputs=U)
    means, covs, running = _feed(model.filter_stream(), Y, [0] * 20 + [5, 0, 64], inputs=U)
    np.testing.assert_allclose(means, whole_means, rtol=0, atol=ATOL)
    np.testing.assert_allclose(covs, whole_covs, rtol=0, atol=ATOL)
    step_ll = model.score_samples(Y, inputs=U)
    known = ~np.isnan(running)
    np.testing.assert_allclose(running[known], np.cumsum(step_ll)[known], rtol=1e-12, atol=ATOL)
    with pytest.raises(ValueError, match="input"):
        model.filter_stream().update(Y[0])


def test_a_long_stream_stays_finite_and_equals_the_whole_sequence_filter():
    model = hand_set(dict(transition_matrix=np.array([[0.99]]), observation_matrix=np.array([[1.0], [0.5]]),
                          transition_covariance=np.array([[0.05]]), observation_covariance=np.diag([1.0, 0.3]),
                          initial_state_mean=np.zeros(1), initial_state_covariance=np.eye(1) * 10))
    Y = model.sample(100_000, random_state=6)[0]
    rng = np.random.RandomState(7)
    sizes = [0] * 500
    while sum(s or 1 for s in sizes) < len(Y):
        sizes.append(int(min(rng.randint(1, 2000), len(Y) - sum(s or 1 for s in sizes))))
    means, covs, running = _feed(model.filter_stream(), Y, sizes)
    assert np.isfinite(means).all() and np.isfinite(covs).all()
    assert (covs[:, 0, 0] > 0).all()
    whole_means, whole_covs = model.filter(Y)
    np.testing.assert_allclose(means, whole_means, rtol=0, atol=ATOL)
    np.testing.assert_allclose(covs, whole_covs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(running[-1], model.score(Y), rtol=1e-12)


def test_reset_and_bad_rows():
    model = hand_set(random_model(2, 2, seed=8))
    Y = model.sample(20, random_state=9)[0]
    stream = model.filter_stream()
    first = stream.update(Y)
    again = stream.reset().update(Y)
    np.testing.assert_array_equal(first[0], again[0])
    with pytest.raises(ValueError, match="X has 3 features"):
        stream.update(np.zeros(3))
    assert stream.n_steps == 20
