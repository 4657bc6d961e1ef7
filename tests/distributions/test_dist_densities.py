"""Log-densities, entropies and exponential-family identities of every family, against scipy."""

import numpy as np
import pytest
import torch
from _dist_cases import CASE_IDS, CASES, RTOL, pairs_input, rebuild_from_natural


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


def test_log_prob_matches_scipy(case):
    dist = case.make()
    X = case.data(np.random.default_rng(0), 40)
    got = dist.log_prob(X)
    assert got.shape == (40, *dist.batch_shape)
    np.testing.assert_allclose(got, case.logpdf(dist, X), rtol=RTOL, atol=1e-12)


def test_log_prob_of_tensor_input_is_a_tensor_with_the_same_values(case):
    dist = case.make()
    X = case.data(np.random.default_rng(1), 10)
    out = dist.log_prob(torch.as_tensor(X))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), dist.log_prob(X), rtol=1e-14)


def test_tensor_core_broadcasts_like_torch(case):
    # _log_prob of (n, 1, *event) against a batch of 2 equals the public all-pairs result.
    dist = case.make()
    X = case.data(np.random.default_rng(2), 7)
    direct = dist._log_prob(pairs_input(dist, X))
    np.testing.assert_allclose(direct.numpy(), dist.log_prob(X), rtol=1e-12)


def test_entropy_matches_scipy(case):
    if case.entropy is None:
        pytest.skip("entropy needs a fixed total_count (covered by Multinomial-fixed)")
    dist = case.make()
    got = dist.entropy()
    assert got.shape == tuple(dist.batch_shape)
    np.testing.assert_allclose(got, case.entropy(dist), rtol=RTOL, atol=1e-12)


def test_log_prob_from_natural_parameters_equals_log_prob(case):
    # <eta, T(x)> - A(eta) + log h(x) checks the natural parameters, statistics,
    # log-partition and base measure together.
    dist = case.make()
    X = case.data(np.random.default_rng(3), 25)
    x = pairs_input(dist, X)
    np.testing.assert_allclose(dist._log_prob_from_natural(x).numpy(), dist._log_prob(x).numpy(),
                               rtol=1e-10, atol=1e-10)


def test_from_natural_round_trips(case):
    dist = case.make()
    rebuilt = rebuild_from_natural(dist, dist.natural_parameters())
    for name, value in dist.params.items():
        np.testing.assert_allclose(rebuilt.params[name], np.broadcast_to(value, rebuilt.params[name].shape),
                                   rtol=1e-12, atol=1e-14, err_msg=name)


def test_mean_parameters_are_the_gradient_of_the_log_partition(case):
    if not case.minimal and "symmetric-matrix" not in case.tags:
        # Over-complete parameters (log-probabilities) are normalised by from_natural, so
        # A is constant along them; Independent is checked with minimal components elsewhere.
        pytest.skip("natural parametrisation not minimal")
    dist = case.make()
    eta = {k: torch.as_tensor(v).clone().requires_grad_(True) for k, v in dist.natural_parameters().items()}
    log_partition = rebuild_from_natural(dist, eta)._log_partition().sum()
    grads = torch.autograd.grad(log_partition, list(eta.values()))
    mean = dist.mean_parameters()
    for (name, _), grad in zip(eta.items(), grads):
        g = grad.numpy()
        if not case.minimal and g.ndim >= 2 and g.shape[-1] == g.shape[-2] and "mvn" in case.tags:
            # A symmetric matrix parameter stored in full: only the symmetric part of the
            # gradient is determined (derivatives along symmetric directions).
            g = 0.5 * (g + np.swapaxes(g, -1, -2))
        np.testing.assert_allclose(g, np.broadcast_to(mean[name], g.shape), rtol=1e-9, atol=1e-11, err_msg=name)


def test_mean_parameters_match_the_average_statistics_of_a_large_sample(case):
    # E[T(x)] by Monte Carlo over the family's own sampler: a consistency check between
    # _mean_parameters and _sample (each also checked against scipy elsewhere).
    if case.moments is None:
        pytest.skip("sampling needs a fixed total_count")
    dist = case.make()
    n = 40000
    samples = torch.as_tensor(dist.sample(n, random_state=0))
    stats_ = dist._sufficient_statistics(samples)
    mean = dist.mean_parameters()
    for name, t in stats_.items():
        t = t.numpy()
        se = t.std(0) / np.sqrt(n)
        np.testing.assert_array_less(np.abs(t.mean(0) - mean[name]), 5 * se + 1e-12, err_msg=name)


def test_sufficient_statistics_are_exposed_per_sample(case):
    dist = case.make()
    X = case.data(np.random.default_rng(4), 6)
    T = dist.sufficient_statistics(X)
    assert set(T) == set(dist.natural_parameters())
    for value in T.values():
        assert value.shape[0] == 6
