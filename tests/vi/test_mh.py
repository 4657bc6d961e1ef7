"""Random-walk Metropolis against exact conjugate posteriors.

Truth: closed-form posteriors (Normal mean with known variance, Poisson rate with a Gamma
prior, Dirichlet-categorical); posterior means must lie within 3 Monte Carlo standard
errors computed from the sampler's own effective sample size.
"""

import math

import numpy as np
import pytest

from probkit.vi import mcse, random_walk_metropolis

RNG = np.random.RandomState(42)


def test_normal_mean_with_known_variance():
    sigma, m0, s0 = 2.0, 1.0, 3.0
    y = RNG.normal(0.7, sigma, size=25)
    post_prec = 1 / s0**2 + len(y) / sigma**2
    post_mean = (m0 / s0**2 + y.sum() / sigma**2) / post_prec

    def log_post(theta):
        return -0.5 * np.sum((y - theta[0]) ** 2) / sigma**2 - 0.5 * (theta[0] - m0) ** 2 / s0**2

    starts = np.array([[-3.0], [0.0], [2.0], [5.0]])
    res = random_walk_metropolis(log_post, starts, n_samples=2000, warmup=1000, names=["mu"], random_state=0)
    assert abs(res.mean("mu") - post_mean) < 3 * res.mcse("mu")
    assert abs(res.std("mu") - post_prec ** -0.5) < 3 * res.mcse("mu", method="sd")
    assert res.rhat("mu") < 1.01
    assert 0.3 < res.info["acceptance_rate"].mean() < 0.6  # tuned towards 0.44 in one dimension


def test_poisson_rate_with_gamma_prior_on_the_log_scale():
    a, b = 2.0, 0.5
    y = RNG.poisson(4.0, size=30)

    def log_post(theta):  # theta = log(rate); the Jacobian of rate = exp(theta) adds theta
        rate = math.exp(theta[0])
        return (a - 1) * theta[0] - b * rate + y.sum() * theta[0] - len(y) * rate + theta[0]

    res = random_walk_metropolis(log_post, np.array([[0.0], [1.0], [2.0], [3.0]]), n_samples=2000, warmup=1000,
                                 random_state=1)
    rate = np.exp(res.samples["theta"][..., 0])
    exact = (a + y.sum()) / (b + len(y))
    assert abs(rate.mean() - exact) < 3 * mcse(rate)
    assert abs(rate.var() - exact / (b + len(y))) < 0.1 * exact / (b + len(y))


def test_dirichlet_categorical_by_additive_log_ratios():
    alpha = np.array([1.0, 2.0, 0.5])
    counts = np.array([7, 3, 12])

    def log_post(theta):
        # p = softmax([theta, 0]); the Jacobian of the additive log-ratio map is prod(p)
        logits = np.append(theta, 0.0)
        log_p = logits - np.logaddexp.reduce(logits)
        return float(((alpha + counts - 1) * log_p).sum() + log_p.sum())

    starts = RNG.normal(size=(4, 2))
    res = random_walk_metropolis(log_post, starts, n_samples=2500, warmup=1500, random_state=2)
    logits = np.concatenate([res.samples["theta"], np.zeros((4, 2500, 1))], axis=-1)
    probs = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    exact = (alpha + counts) / (alpha + counts).sum()
    assert np.all(np.abs(probs.mean(axis=(0, 1)) - exact) < 3 * mcse(probs))
    assert res.rhat("theta").max() < 1.01


def test_proposal_shape_adapts_to_a_correlated_target():
    cov = np.array([[1.0, 0.95, 0.0], [0.95, 1.0, 0.0], [0.0, 0.0, 0.01]])
    prec = np.linalg.inv(cov)

    def log_post(theta):
        return -0.5 * theta @ prec @ theta

    res = random_walk_metropolis(log_post, RNG.normal(0, 0.1, size=(4, 3)), n_samples=3000, warmup=3000,
                                 random_state=3)
    chol = res.info["proposal_cholesky"]
    learned = chol @ chol.T
    # the warm-up covariance estimate has the target's shape (correlation and scales)
    assert abs(learned[0, 1] / math.sqrt(learned[0, 0] * learned[1, 1]) - 0.95) < 0.05
    assert 0.5 < learned[2, 2] / 0.01 < 2.0
    draws = res.draws("theta")
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.12)
    assert 0.15 < res.info["acceptance_rate"].mean() < 0.35  # tuned towards 0.234


def test_vectorized_and_per_point_evaluations_give_the_same_chain():
    def log_post(theta):
        return -0.5 * float(np.sum(theta**2))

    def log_post_all(thetas):
        return -0.5 * np.sum(thetas**2, axis=1)

    a = random_walk_metropolis(log_post, np.zeros((3, 2)), n_samples=100, warmup=100, n_chains=3, random_state=4)
    b = random_walk_metropolis(log_post_all, np.zeros((3, 2)), n_samples=100, warmup=100, n_chains=3,
                               vectorized=True, random_state=4)
    np.testing.assert_array_equal(a.samples["theta"], b.samples["theta"])


def test_thinning_and_seeding():
    def log_post(theta):
        return -0.5 * float(theta @ theta)

    a = random_walk_metropolis(log_post, np.zeros(2), n_samples=50, warmup=20, thin=3, n_chains=2, random_state=5)
    b = random_walk_metropolis(log_post, np.zeros(2), n_samples=50, warmup=20, thin=3, n_chains=2, random_state=5)
    assert a.samples["theta"].shape == (2, 50, 2) and a.sample_stats["accept_prob"].shape == (2, 50)
    np.testing.assert_array_equal(a.samples["theta"], b.samples["theta"])
    c = random_walk_metropolis(log_post, np.zeros(2), n_samples=50, warmup=20, thin=3, n_chains=2, random_state=6)
    assert not np.array_equal(a.samples["theta"], c.samples["theta"])


def test_zero_density_regions_are_never_entered():
    def log_post(theta):  # Exponential(1) on theta > 0
        return -theta[0] if theta[0] > 0 else -np.inf

    res = random_walk_metropolis(log_post, [[1.0], [2.0]], n_samples=2000, warmup=500, n_chains=2, random_state=7)
    assert res.draws("theta").min() > 0
    assert abs(res.mean("theta") - 1.0) < 3 * res.mcse("theta")


@pytest.mark.parametrize("kwargs, message", [
    (dict(initial=[[0.0], [np.nan]], n_chains=2), "NaN"),
    (dict(initial=[0.0, 0.0], n_chains=3, names=["a"]), "names"),
    (dict(initial=np.zeros((2, 1))), r"initial must have shape"),
    (dict(initial=[0.0], n_samples=0), "n_samples"),
    (dict(initial=[0.0], target_accept=1.5), "target_accept"),
    (dict(initial=[0.0], step_size=-1.0), "step_size"),
    (dict(initial=[5.0]), "finite at every initial point"),
])
def test_bad_arguments(kwargs, message):
    def log_post(theta):
        return -np.inf if theta[0] > 1 else -0.5 * float(theta @ theta)

    kwargs = {"n_chains": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        random_walk_metropolis(log_post, **kwargs)


def test_nan_log_density_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        random_walk_metropolis(lambda t: float("nan") if t[0] > 0.5 else 0.0, [[0.0]], n_chains=1, random_state=0)
    with pytest.raises(TypeError, match="callable"):
        random_walk_metropolis(3.0, [[0.0]], n_chains=1)
