"""Forward-filter backward-sample and Markov-chain sampling: distributions and reproducibility."""

import itertools

import numpy as np
import pytest
import torch
from inference_helpers import random_hmm, split
from scipy import stats

from probkit.inference import (
    brute_force_hmm,
    forward_backward,
    sample_markov_chain,
    sample_posterior_paths,
)
from inference_helpers import as_numpy  # noqa: E402

# Statistical checks below use a fixed seed, so they are deterministic; the thresholds
# are set so that a correct sampler would fail for a *random* seed with probability
# about 1e-4 (chi-square quantile) or less (5 standard errors per cell, 2 * 18 cells).
ALPHA = 1e-4


def _path_probabilities(log_start, log_trans, log_emission):
    """Exact posterior probability of every state path of one short sequence."""
    n_steps, n_states = log_emission.shape
    paths = list(itertools.product(range(n_states), repeat=n_steps))
    log_joint = np.array(
        [
            log_start[p[0]]
            + sum(log_trans[p[t - 1], p[t]] for t in range(1, n_steps))
            + sum(log_emission[t, p[t]] for t in range(n_steps))
            for p in paths
        ]
    )
    w = np.exp(log_joint - log_joint.max())
    return paths, w / w.sum()


def test_ffbs_draws_whole_paths_from_the_joint_posterior():
    rng = np.random.default_rng(31)
    lengths = [4, 3]
    log_start, log_trans, log_emission = random_hmm(rng, 3, lengths, masked_emissions=True, emission_scale=1.0)
    n_paths = 20_000
    samples = sample_posterior_paths(log_start, log_trans, log_emission, lengths, n_paths=n_paths, random_state=0)
    assert samples.shape == (n_paths, 7) and isinstance(samples, np.ndarray) and samples.dtype == np.int64
    for seq_samples, seq in zip(split(as_numpy(samples).T, lengths), split(log_emission, lengths)):
        paths, probs = _path_probabilities(log_start, log_trans, seq)
        index = {p: i for i, p in enumerate(paths)}
        counts = np.bincount([index[tuple(p)] for p in seq_samples.T], minlength=len(paths))
        # Paths of probability zero (masked emissions) must never be drawn.
        assert counts[probs == 0].sum() == 0
        support = probs > 0
        expected = probs[support] * n_paths
        statistic = ((counts[support] - expected) ** 2 / expected).sum()
        assert statistic < stats.chi2.ppf(1 - ALPHA, df=support.sum() - 1)


def test_ffbs_marginal_frequencies_match_posteriors():
    rng = np.random.default_rng(32)
    lengths = [6]
    log_start, log_trans, log_emission = random_hmm(rng, 3, lengths, structural_zeros=True, emission_scale=1.0)
    n_paths = 20_000
    samples = sample_posterior_paths(log_start, log_trans, log_emission, lengths, n_paths=n_paths, random_state=1)
    posteriors = brute_force_hmm(log_start, log_trans, log_emission).posteriors
    freq = np.stack([(as_numpy(samples) == k).mean(axis=0) for k in range(3)], axis=1)
    stderr = np.sqrt(posteriors * (1 - posteriors) / n_paths)
    assert np.all(np.abs(freq - posteriors) <= 5 * stderr + 1e-12)
    # Transition frequencies against the expected transition counts.
    res = forward_backward(log_start, log_trans, log_emission, lengths)
    s = as_numpy(samples)
    pair_counts = np.zeros((3, 3))
    np.add.at(pair_counts, (s[:, :-1].ravel(), s[:, 1:].ravel()), 1)
    expected = as_numpy(res.expected_transitions)
    # Each path contributes a count in [0, 5] to a cell: standard deviation at most 5 / 2.
    np.testing.assert_allclose(pair_counts / n_paths, expected, atol=5 * 2.5 / np.sqrt(n_paths))
    assert pair_counts[expected == 0].sum() == 0


def test_ffbs_in_the_log_space_fallback_and_for_impossible_sequences():
    log_start = np.log([0.5, 0.5])
    with np.errstate(divide="ignore"):
        log_trans = np.log(np.eye(2))
    # Chain 0 is ruled out by the last step only, 1e4 nats after chain 1 looked 800 nats
    # worse: the scaled filter underflows and the log-space path must be used.
    certain = np.array([[0.0, -800.0], [0.0, -800.0], [0.0, -800.0], [-1e4, 0.0]])
    impossible = np.array([[0.0, -np.inf], [-np.inf, 0.0]])
    samples = sample_posterior_paths(
        log_start, log_trans, np.concatenate([certain, impossible]), [4, 2], n_paths=50, random_state=2
    )
    assert (samples[:, :4] == 1).all()
    assert (samples[:, 4:] == -1).all()
    # Chain 1 flushed to zero by a linear filter at step 0 but winning by 100 nats later:
    # the forward pass is verified (structural zeros) and redone in log space.
    isolated = np.array([[0.0, -800.0], [-300.0, 0.0], [-300.0, 0.0], [-300.0, 0.0]])
    samples = sample_posterior_paths(log_start, log_trans, isolated, n_paths=50, random_state=3)
    assert (samples == 1).all()


def test_ffbs_is_reproducible_and_accepts_generators():
    rng = np.random.default_rng(33)
    params = random_hmm(rng, 4, [30, 12])
    a = sample_posterior_paths(*params, [30, 12], n_paths=5, random_state=7)
    b = sample_posterior_paths(*params, [30, 12], n_paths=5, random_state=np.random.RandomState(7))
    c = sample_posterior_paths(*params, [30, 12], n_paths=5, random_state=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert np.array_equal(
        sample_posterior_paths(*params, [30, 12], n_paths=5, random_state=g1),
        sample_posterior_paths(*params, [30, 12], n_paths=5, random_state=g2),
    )


def _stationary(transmat):
    eigvals, eigvecs = np.linalg.eig(transmat.T)
    v = np.real(eigvecs[:, np.argmin(np.abs(eigvals - 1))])
    return v / v.sum()


def test_markov_chain_frequencies_match_the_stationary_distribution():
    transmat = np.array([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.3, 0.0, 0.7]])
    n_steps = 200_000
    states = as_numpy(sample_markov_chain([1.0, 0.0, 0.0], transmat, n_steps, random_state=0))
    assert states[0] == 0 and states.dtype == np.int64
    freq = np.bincount(states, minlength=3) / n_steps
    # Autocorrelation inflates the variance of a frequency by at most
    # (1 + |l2|) / (1 - |l2|) with l2 the second-largest eigenvalue modulus (here ~0.45).
    l2 = sorted(np.abs(np.linalg.eigvals(transmat)))[-2]
    stderr = np.sqrt(0.25 / n_steps * (1 + l2) / (1 - l2))
    np.testing.assert_allclose(freq, _stationary(transmat), atol=5 * stderr)
    pairs = np.zeros((3, 3))
    np.add.at(pairs, (states[:-1], states[1:]), 1)
    np.testing.assert_allclose(pairs / pairs.sum(axis=1, keepdims=True), transmat, atol=0.01)
    assert pairs[2, 1] == 0  # zero-probability transition never taken


def test_markov_chain_reproducibility_and_inputs():
    transmat = torch.tensor([[0.9, 0.1], [0.4, 0.6]], dtype=torch.float64)
    a = sample_markov_chain(torch.tensor([0.5, 0.5]), transmat, 100, random_state=5)
    b = sample_markov_chain(np.array([0.5, 0.5]), as_numpy(transmat), 100, random_state=5)
    # tensors in, tensor out; numpy in, numpy out; the same draws
    assert isinstance(a, torch.Tensor) and isinstance(b, np.ndarray)
    assert np.array_equal(as_numpy(a), b) and a.shape == (100,)
    g = torch.Generator().manual_seed(1)
    assert sample_markov_chain([0.5, 0.5], transmat, 10, random_state=g).shape == (10,)


@pytest.mark.parametrize(
    ("startprob", "transmat", "match"),
    [
        ([0.5, 0.6], [[0.5, 0.5], [0.5, 0.5]], "startprob"),
        ([0.5, 0.5], [[0.5, 0.4], [0.5, 0.5]], "transmat"),
        ([0.5, 0.5], [[1.2, -0.2], [0.5, 0.5]], "transmat"),
        ([0.5, 0.5], [[0.5, 0.5]], "transmat"),
        ([[0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]], "startprob"),
    ],
)
def test_markov_chain_rejects_bad_parameters(startprob, transmat, match):
    with pytest.raises(ValueError, match=match):
        sample_markov_chain(startprob, transmat, 10)


@pytest.mark.parametrize(("n_steps", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("4", TypeError)])
def test_markov_chain_rejects_bad_lengths(n_steps, error):
    with pytest.raises(error, match="n_steps"):
        sample_markov_chain([1.0], [[1.0]], n_steps)


def test_ffbs_rejects_bad_path_counts():
    params = random_hmm(np.random.default_rng(0), 2, [3])
    with pytest.raises(ValueError, match="n_paths"):
        sample_posterior_paths(*params, n_paths=0)
    with pytest.raises(TypeError, match="n_paths"):
        sample_posterior_paths(*params, n_paths=1.5)
