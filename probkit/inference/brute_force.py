"""Exact HMM quantities by enumerating every state path: the test oracle.

Independent of the recursions it checks: it scores each of the K^T paths directly and
normalises, using only numpy in float64.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from probkit.inference._checks import concatenated_inputs
from probkit.inference._numpy_io import numpy_out_for_numpy_in

# Enumerating more paths than this is a mistake, not a test.
_MAX_PATHS = 2_000_000


class BruteForceResult(NamedTuple):
    """Result of :func:`brute_force_hmm` (numpy float64 / int64 arrays).

    Attributes
    ----------
    log_likelihood : float
        log p(x); -inf if every path has probability zero.
    posteriors : ndarray (T, K)
        p(z_t = k | x) (zeros if impossible).
    expected_transitions : ndarray (K, K)
        sum_t p(z_{t-1} = i, z_t = j | x) (zeros if impossible).
    best_path : ndarray (T,)
        A most probable path; ties go to the path that is first in lexicographic order,
        which is also the lowest-index tie-breaking of the Viterbi kernels. -1 if impossible.
    best_log_prob : float
        log p(x, best_path).
    """

    log_likelihood: float
    posteriors: np.ndarray
    expected_transitions: np.ndarray
    best_path: np.ndarray
    best_log_prob: float


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def brute_force_hmm(log_startprob, log_transmat, log_emission):
    """Enumerate all K^T state paths of one short sequence.

    Parameters
    ----------
    log_startprob : array-like, (K,)
    log_transmat : array-like, (K, K)
    log_emission : array-like, (T, K)
        One sequence; K^T must not exceed 2,000,000.

    Returns
    -------
    BruteForceResult

    Examples
    --------
    >>> import numpy as np
    >>> res = brute_force_hmm(np.log([0.6, 0.4]), np.log([[0.7, 0.3], [0.2, 0.8]]),
    ...                       np.log([[0.9, 0.2], [0.1, 0.8], [0.5, 0.5]]))
    >>> round(res.log_likelihood, 4)
    -2.2064
    >>> res.best_path
    array([0, 1, 1])
    """
    ls, lt, le, _ = concatenated_inputs(log_startprob, log_transmat, log_emission, None)
    log_start = ls.detach().cpu().double().numpy()
    log_trans = lt.detach().cpu().double().numpy()
    log_em = le.detach().cpu().double().numpy()
    n_steps, n_states = log_em.shape
    if n_states**n_steps > _MAX_PATHS:
        raise ValueError(
            f"brute_force_hmm enumerates K^T = {n_states}^{n_steps} paths; keep it below {_MAX_PATHS}"
        )
    paths = np.array(list(itertools.product(range(n_states), repeat=n_steps)), dtype=np.int64)
    steps = np.arange(n_steps)
    # log p(x, z) = log pi[z_0] + sum_t log A[z_{t-1}, z_t] + sum_t log B[t, z_t]
    with np.errstate(invalid="ignore"):
        log_joint = log_start[paths[:, 0]] + log_em[steps, paths].sum(axis=1)
        if n_steps > 1:
            log_joint = log_joint + log_trans[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    best = int(np.argmax(log_joint))  # first maximum = lexicographically first path
    best_log_prob = float(log_joint[best])
    top = np.max(log_joint)
    if top == -np.inf:
        return BruteForceResult(
            -np.inf,
            np.zeros((n_steps, n_states)),
            np.zeros((n_states, n_states)),
            np.full(n_steps, -1, dtype=np.int64),
            -np.inf,
        )
    weights = np.exp(log_joint - top)
    total = weights.sum()
    log_likelihood = float(top + np.log(total))
    weights /= total
    posteriors = np.zeros((n_steps, n_states))
    for t in range(n_steps):
        np.add.at(posteriors[t], paths[:, t], weights)
    expected = np.zeros((n_states, n_states))
    for t in range(1, n_steps):
        np.add.at(expected, (paths[:, t - 1], paths[:, t]), weights)
    return BruteForceResult(log_likelihood, posteriors, expected, paths[best].copy(), best_log_prob)
