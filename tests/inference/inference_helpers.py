"""Random HMMs and reference computations shared by the inference tests (imported by them)."""

from __future__ import annotations

import numpy as np
from probkit.inference import brute_force_hmm


def random_hmm(rng, n_states, lengths, *, structural_zeros=False, masked_emissions=False, emission_scale=2.0, emission_offset=0.0):
    """Log-parameters of a random HMM and random log-emissions for sequences of ``lengths``.

    ``structural_zeros`` puts -inf into the transition matrix (a left-to-right band with
    one extra skip) and into the start distribution; ``masked_emissions`` sets some
    emission entries to -inf the way partial supervision does, always leaving at least
    one allowed state per step.
    """
    lengths = list(lengths)
    n_samples = sum(lengths)
    trans = rng.uniform(0.05, 1.0, size=(n_states, n_states))
    start = rng.uniform(0.05, 1.0, size=n_states)
    if structural_zeros and n_states > 1:
        # Left-right band: stay, move one up, and wrap the last state back to the first,
        # so every state stays reachable and long sequences remain possible.
        allowed = np.eye(n_states, dtype=bool) | np.eye(n_states, k=1, dtype=bool)
        allowed[-1, 0] = True
        trans = np.where(allowed, trans, 0.0)
        start[-1] = 0.0
    trans /= trans.sum(axis=1, keepdims=True)
    start /= start.sum()
    log_emission = emission_offset + emission_scale * rng.standard_normal((n_samples, n_states))
    if masked_emissions and n_states > 1:
        masked = rng.random((n_samples, n_states)) < 0.3
        keep = rng.integers(0, n_states, size=n_samples)
        masked[np.arange(n_samples), keep] = False
        log_emission[masked] = -np.inf
    with np.errstate(divide="ignore"):
        return np.log(start), np.log(trans), log_emission


def split(array, lengths):
    """Split a concatenated array into per-sequence pieces."""
    return np.split(np.asarray(array), np.cumsum(lengths)[:-1])


def brute_force_many(log_start, log_trans, log_emission, lengths):
    """Brute-force results of every sequence, combined the way the concatenated API reports them."""
    results = [brute_force_hmm(log_start, log_trans, seq) for seq in split(log_emission, lengths)]
    return {
        "log_likelihood": np.array([r.log_likelihood for r in results]),
        "posteriors": np.concatenate([r.posteriors for r in results]),
        "expected_transitions": sum(r.expected_transitions for r in results),
        "expected_start": sum(r.posteriors[0] for r in results),
        "best_path": np.concatenate([r.best_path for r in results]),
        "best_log_prob": np.array([r.best_log_prob for r in results]),
    }


def brute_force_filtered(log_start, log_trans, log_emission, lengths):
    """p(z_t | x_1..t) by brute force: the last posterior row of every prefix."""
    rows = []
    for seq in split(log_emission, lengths):
        for t in range(1, len(seq) + 1):
            rows.append(brute_force_hmm(log_start, log_trans, seq[:t]).posteriors[-1])
    return np.array(rows)


def assert_close_with_inf(actual, expected, rtol=1e-10, atol=1e-12):
    """allclose that also requires -inf in exactly the same places (and no NaN anywhere)."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert not np.isnan(actual).any(), "result contains NaN"
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol)


def as_numpy(value):
    """A result as a numpy array: the kernels return numpy for numpy input and tensors for tensor input."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
