r"""HMM inference with a transition matrix per step (input-driven HMMs), in log space.

When the transitions depend on covariates, step :math:`t` has its own matrix
:math:`A_t(i, j) = p(z_t = j \mid z_{t-1} = i, u_t)`, and the M-step of the transition
model needs the pairwise posteriors of every step,
:math:`\xi_t(i, j) = p(z_{t-1} = i, z_t = j \mid x)`, not only their sum. These functions
take the sequences stacked as the estimators hold them (``lengths`` in hmmlearn's sense),
pad them into a batch internally and run the recursions over all sequences at once with
numpy in float64, normalising the messages at every step (so the log-likelihood is the sum
of the per-step log normalisers, which are also the one-step predictive log-densities).
Forward-backward uses normalised linear-space messages and redoes in log space any sequence
whose normalisers come near underflow (as the kernels of :mod:`probkit.inference` do);
Viterbi runs in log space.

``log_transmat`` is ``(n_samples, K, K)``: row ``t`` holds the log transition matrix *into*
step ``t``; the rows at the first step of each sequence are ignored. A ``(K, K)`` matrix is
shared by every step. ``-inf`` encodes a zero probability; a sequence of probability zero
gets ``log_likelihood = -inf``, zero posteriors and a Viterbi path of ``-1``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from probkit.utils.validation import check_lengths

__all__ = ["TimeVaryingPosteriors", "TimeVaryingViterbi", "forward_backward_time_varying",
           "viterbi_time_varying"]


class TimeVaryingPosteriors(NamedTuple):
    """Result of :func:`forward_backward_time_varying` (numpy float64 arrays).

    Attributes
    ----------
    log_likelihood : ndarray (n_sequences,)
        log p(x) of each sequence.
    posteriors : ndarray (n_samples, K)
        p(z_t = k | x).
    pairwise : ndarray (n_samples, K, K)
        ``pairwise[t, i, j] = p(z_{t-1} = i, z_t = j | x)``; zero at the first step of a sequence.
    log_predictive : ndarray (n_samples,)
        ``log p(x_t | x_1..x_{t-1})``; the rows of a sequence sum to its log-likelihood.
    """

    log_likelihood: np.ndarray
    posteriors: np.ndarray
    pairwise: np.ndarray
    log_predictive: np.ndarray


class TimeVaryingViterbi(NamedTuple):
    """Result of :func:`viterbi_time_varying`.

    Attributes
    ----------
    log_prob : ndarray (n_sequences,)
        log p(x, z*) of each sequence's most probable path.
    path : ndarray of int64 (n_samples,)
        The most probable states (ties to the lowest index); -1 for an impossible sequence.
    """

    log_prob: np.ndarray
    path: np.ndarray


def _logsumexp(a, axis):
    """log-sum-exp that returns -inf (not NaN) where every term is -inf."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", under="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis)


def _check_inputs(log_startprob, log_transmat, log_emission, lengths):
    log_emission = np.asarray(log_emission, dtype=np.float64)
    if log_emission.ndim != 2:
        raise ValueError(f"log_emission must have shape (n_samples, K), got {log_emission.shape}")
    n, k = log_emission.shape
    log_startprob = np.asarray(log_startprob, dtype=np.float64)
    if log_startprob.shape != (k,):
        raise ValueError(f"log_startprob must have shape ({k},), got {log_startprob.shape}")
    log_transmat = np.asarray(log_transmat, dtype=np.float64)
    if log_transmat.shape == (k, k):
        log_transmat = np.broadcast_to(log_transmat, (n, k, k))
    if log_transmat.shape != (n, k, k):
        raise ValueError(f"log_transmat must have shape ({k}, {k}) or (n_samples, {k}, {k}) = ({n}, {k}, {k}), "
                         f"got {log_transmat.shape}")
    for name, value in (("log_startprob", log_startprob), ("log_transmat", log_transmat),
                        ("log_emission", log_emission)):
        if np.isnan(value).any() or np.isposinf(value).any():
            raise ValueError(f"{name} contains NaN or +inf; log-probabilities must be finite or -inf")
    lengths = check_lengths(lengths, n, name="lengths")
    return log_startprob, log_transmat, log_emission, lengths


def _padded(values, lengths, fill):
    """``(B, T, ...)`` batch of the stacked rows ``values`` and the mask of real steps."""
    n_steps = int(lengths.max())
    mask = np.arange(n_steps)[None, :] < lengths[:, None]
    out = np.full((len(lengths), n_steps) + values.shape[1:], fill, dtype=np.float64)
    out[mask] = values
    return out, mask


def _padded_inputs(log_startprob, log_transmat, log_emission, lengths):
    """Checked inputs as padded batches: ``(log_start, log_trans (B, T, K, K), log_emission (B, T, K), mask, lengths)``."""
    log_start, log_trans, log_emis, lengths = _check_inputs(log_startprob, log_transmat, log_emission, lengths)
    k = log_emis.shape[1]
    emis, mask = _padded(log_emis, lengths, 0.0)
    trans, _ = _padded(log_trans.reshape(-1, k * k), lengths, 0.0)
    return log_start, trans.reshape(trans.shape[0], trans.shape[1], k, k), emis, mask, lengths


def _forward(log_start, log_trans, log_emis, lengths):
    """Normalised log forward messages and per-step log normalisers of the padded batch."""
    n_seq, n_steps, k = log_emis.shape
    log_alpha = np.full((n_seq, n_steps, k), -np.inf)
    log_norm = np.zeros((n_seq, n_steps))
    current = log_start[None, :] + log_emis[:, 0]
    for t in range(n_steps):
        if t > 0:
            current = _logsumexp(log_alpha[:, t - 1, :, None] + log_trans[:, t], axis=1) + log_emis[:, t]
        norm = _logsumexp(current, axis=1)
        log_norm[:, t] = norm
        # an impossible prefix keeps -inf messages (normalising by -inf would give NaN)
        log_alpha[:, t] = np.where(np.isfinite(norm)[:, None], current - np.where(np.isfinite(norm), norm, 0.0)[:, None],
                                   -np.inf)
    live = np.arange(n_steps)[None, :] < lengths[:, None]
    log_norm = np.where(live, log_norm, 0.0)
    return log_alpha, log_norm


def forward_backward_time_varying(log_startprob, log_transmat, log_emission, lengths=None, *,
                                  implementation="scaling"):
    """Posteriors, per-step pairwise posteriors and log-likelihoods with a transition matrix per step.

    Parameters
    ----------
    log_startprob : array-like (K,)
        Log initial-state probabilities.
    log_transmat : array-like (n_samples, K, K) or (K, K)
        ``log_transmat[t, i, j] = log p(z_t = j | z_{t-1} = i)`` for the transition into
        step ``t``; rows at the first step of each sequence are ignored.
    log_emission : array-like (n_samples, K)
        ``log p(x_t | z_t = k)`` of all sequences stacked.
    lengths : array-like of int, optional
        Sequence lengths summing to ``n_samples`` (default: one sequence).
    implementation : {"scaling", "log"}, default="scaling"
        "scaling": normalised linear-space messages (one small matrix product per step),
        with any sequence whose normalisers come near underflow redone in log space, so
        both give the same results; "log": log-sum-exp recursions throughout (the reference).

    Returns
    -------
    TimeVaryingPosteriors

    Examples
    --------
    >>> import numpy as np
    >>> log_trans = np.log([[[0.5, 0.5], [0.5, 0.5]], [[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.3, 0.7]]])
    >>> log_emis = np.log([[0.9, 0.2], [0.1, 0.8], [0.5, 0.5]])
    >>> res = forward_backward_time_varying(np.log([0.6, 0.4]), log_trans, log_emis)
    >>> res.posteriors.sum(1)
    array([1., 1., 1.])
    >>> bool(np.isclose(res.log_predictive.sum(), res.log_likelihood[0]))
    True
    >>> res.pairwise[0]
    array([[0., 0.],
           [0., 0.]])
    """
    log_start, trans, emis, mask, lengths = _padded_inputs(log_startprob, log_transmat, log_emission, lengths)
    if implementation not in ("scaling", "log"):
        raise ValueError(f"implementation must be 'scaling' or 'log', got {implementation!r}")
    if implementation == "log":
        log_lik, posteriors, pairwise, log_norm = _log_space(log_start, trans, emis, lengths)
        failed = np.zeros(len(lengths), dtype=bool)
    else:
        log_lik, posteriors, pairwise, log_norm, failed = _scaled(log_start, trans, emis, lengths)
    if failed.any():
        index = np.flatnonzero(failed)
        n_steps = int(lengths[index].max())
        redo = _log_space(log_start, trans[index, :n_steps], emis[index, :n_steps], lengths[index])
        log_lik[index] = redo[0]
        for full, part in zip((posteriors, pairwise, log_norm), redo[1:]):
            full[index] = 0.0
            full[index, :n_steps] = part
    possible = np.isfinite(log_lik)
    posteriors[~possible] = 0.0
    pairwise[~possible] = 0.0
    return TimeVaryingPosteriors(log_lik, posteriors[mask], pairwise[mask], log_norm[mask])


# Normalisers below this are redone in log space (a linear representation may have flushed
# probability that matters later; see probkit.inference's notes on "scaling").
_SAFE_NORMALISER = 1e-150


def _scaled(log_start, trans, emis, lengths):
    """Normalised linear-space recursions; ``failed`` flags sequences to redo in log space."""
    n_seq, n_steps, k = emis.shape
    live = np.arange(n_steps)[None, :] < lengths[:, None]
    shift = emis.max(2)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    with np.errstate(under="ignore"):
        e = np.exp(emis - shift[..., None])
        a = np.exp(trans)
    alpha = np.zeros((n_seq, n_steps, k))
    norm = np.ones((n_seq, n_steps))
    current = np.exp(log_start)[None, :] * e[:, 0]
    for t in range(n_steps):
        if t > 0:
            current = np.matmul(alpha[:, t - 1, None, :], a[:, t])[:, 0] * e[:, t]
        c = current.sum(1)
        norm[:, t] = c
        alpha[:, t] = current / np.where(c > 0, c, 1.0)[:, None]
    norm = np.where(live, norm, 1.0)
    failed = ~(norm >= _SAFE_NORMALISER).all(1)
    beta = np.ones((n_seq, n_steps, k))
    for t in range(n_steps - 2, -1, -1):
        nxt = np.matmul(a[:, t + 1], (e[:, t + 1] * beta[:, t + 1])[:, :, None])[:, :, 0]
        z = nxt.sum(1)
        inside = t < lengths - 1
        failed |= inside & ~(z >= _SAFE_NORMALISER)
        beta[:, t] = np.where(inside[:, None], nxt / np.where(z > 0, z, 1.0)[:, None], 1.0)
    gamma = alpha * beta
    z = gamma.sum(2)
    failed |= ~(np.where(live, z, 1.0) >= _SAFE_NORMALISER).all(1)
    posteriors = np.where(live[..., None], gamma / np.where(z > 0, z, 1.0)[..., None], 0.0)
    pairwise = np.zeros((n_seq, n_steps, k, k))
    if n_steps > 1:
        xi = alpha[:, :-1, :, None] * a[:, 1:] * (e[:, 1:] * beta[:, 1:])[:, :, None, :]
        total = xi.sum((2, 3))
        pairwise[:, 1:] = np.where(live[:, 1:, None, None], xi / np.where(total > 0, total, 1.0)[..., None, None], 0.0)
    with np.errstate(divide="ignore"):
        log_norm = np.where(live, np.log(norm) + shift, 0.0)
    return log_norm.sum(1), posteriors, pairwise, log_norm, failed


def _log_space(log_start, trans, emis, lengths):
    """Log-sum-exp recursions (the reference, and the fallback of :func:`_scaled`)."""
    n_seq, n_steps, k = emis.shape
    mask = np.arange(n_steps)[None, :] < lengths[:, None]
    log_alpha, log_norm = _forward(log_start, trans, emis, lengths)
    log_lik = log_norm.sum(1)
    possible = np.isfinite(log_lik)
    # normalised backward messages; they stay 0 (log 1) from each sequence's last step on
    log_beta = np.zeros((n_seq, n_steps, k))
    for t in range(n_steps - 2, -1, -1):
        nxt = _logsumexp(trans[:, t + 1] + (emis[:, t + 1] + log_beta[:, t + 1])[:, None, :], axis=2)
        shift = _logsumexp(nxt, axis=1)
        nxt = nxt - np.where(np.isfinite(shift), shift, 0.0)[:, None]
        log_beta[:, t] = np.where((t < lengths - 1)[:, None], nxt, 0.0)
    log_gamma = log_alpha + log_beta
    with np.errstate(invalid="ignore"):  # -inf - -inf on impossible sequences, zeroed below
        posteriors = np.exp(log_gamma - _logsumexp(log_gamma, axis=2)[..., None])
    posteriors = np.where(possible[:, None, None] & mask[..., None], np.nan_to_num(posteriors), 0.0)
    pairwise = np.zeros((n_seq, n_steps, k, k))
    if n_steps > 1:
        log_xi = (log_alpha[:, :-1, :, None] + trans[:, 1:] + (emis[:, 1:] + log_beta[:, 1:])[:, :, None, :])
        flat = log_xi.reshape(n_seq, n_steps - 1, k * k)
        with np.errstate(invalid="ignore"):
            xi = np.exp(flat - _logsumexp(flat, axis=2)[..., None]).reshape(log_xi.shape)
        keep = possible[:, None] & mask[:, 1:]
        pairwise[:, 1:] = np.where(keep[..., None, None], np.nan_to_num(xi), 0.0)
    return log_lik, posteriors, pairwise, log_norm


def viterbi_time_varying(log_startprob, log_transmat, log_emission, lengths=None):
    """Most probable state paths with a transition matrix per step (max-product in log space).

    Same arguments as :func:`forward_backward_time_varying`.

    Returns
    -------
    TimeVaryingViterbi

    Examples
    --------
    >>> import numpy as np
    >>> log_trans = np.log([[[0.5, 0.5], [0.5, 0.5]], [[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.3, 0.7]]])
    >>> log_emis = np.log([[0.9, 0.2], [0.1, 0.8], [0.5, 0.5]])
    >>> viterbi_time_varying(np.log([0.6, 0.4]), log_trans, log_emis).path
    array([1, 1, 1])
    """
    log_start, trans, emis, mask, lengths = _padded_inputs(log_startprob, log_transmat, log_emission, lengths)
    n_seq, n_steps, k = emis.shape
    pointers = np.zeros((n_seq, n_steps, k), dtype=np.int64)
    score = log_start[None, :] + emis[:, 0]
    final = score.copy()
    for t in range(1, n_steps):
        cand = score[:, :, None] + trans[:, t]
        pointers[:, t] = np.argmax(cand, axis=1)  # first maximum: ties go to the lowest index
        score = np.take_along_axis(cand, pointers[:, t][:, None, :], axis=1)[:, 0] + emis[:, t]
        ends = lengths - 1 == t
        final[ends] = score[ends]
    log_prob = final.max(1)
    paths = np.full((n_seq, n_steps), -1, dtype=np.int64)
    state = np.argmax(final, axis=1)
    for t in range(n_steps - 1, -1, -1):
        ends = lengths - 1 == t
        state = np.where(ends, np.argmax(final, axis=1), state)
        live = t <= lengths - 1
        paths[live, t] = state[live]
        if t > 0:
            state = np.where(live, pointers[np.arange(n_seq), t, state], state)
    paths[~np.isfinite(log_prob)] = -1
    return TimeVaryingViterbi(log_prob, paths[mask])
