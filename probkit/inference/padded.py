"""Padded, batched, differentiable HMM inference in pure torch.

These functions take ``B`` sequences padded to a common length ``T``
(``log_emission`` of shape ``(B, T, K)``) plus their ``lengths``, run on whatever device
the inputs live on, and let autograd flow through every output. They serve the neural
HMM (trained through :func:`hmm_log_likelihood`) and GPU inference; the concatenated
functions of :mod:`probkit.inference` use them for ``backend="torch"``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from probkit.inference import _torch_kernels as tk
from probkit.inference._checks import (
    as_float_tensor,
    check_choice,
    compute_dtype,
    padded_inputs,
)
from probkit.utils.validation import check_int, check_lengths
from probkit.inference._numpy_io import numpy_out_for_numpy_in

_IMPLEMENTATIONS = ("scaling", "log")


class PaddedForwardBackwardResult(NamedTuple):
    """Result of :func:`forward_backward_padded`.

    Attributes
    ----------
    log_likelihood : Tensor (B,)
        log p(x_b); -inf for a sequence that is impossible under the model.
    posteriors : Tensor (B, T, K)
        p(z_t = k | x_b); zero on padding and for impossible sequences.
    expected_transitions : Tensor (B, K, K)
        sum_t p(z_{t-1} = i, z_t = j | x_b) over the real steps of each sequence.
    """

    log_likelihood: torch.Tensor
    posteriors: torch.Tensor
    expected_transitions: torch.Tensor


class PaddedViterbiResult(NamedTuple):
    """Result of :func:`viterbi_padded`.

    Attributes
    ----------
    log_prob : Tensor (B,)
        log p(x_b, z*_b) of the most probable path; -inf for impossible sequences.
    paths : LongTensor (B, T)
        Most probable state paths; -1 on padding (and everywhere for impossible sequences).
    """

    log_prob: torch.Tensor
    paths: torch.Tensor


class _Batch(NamedTuple):
    log_startprob: torch.Tensor
    log_transmat: torch.Tensor
    log_emission: torch.Tensor
    mask: torch.Tensor
    all_full: bool


def _prepare(log_startprob, log_transmat, log_emission, lengths):
    """The checked batch, and the dtype of ``log_emission`` that the results are returned in."""
    out_dtype = as_float_tensor(log_emission, "log_emission").dtype
    return _batch(*padded_inputs(log_startprob, log_transmat, log_emission, lengths)), out_dtype


def _trusted_batch(ls, lt, le, lengths):
    """The batch of checked inputs: tensors on one device, ``lengths`` an int64 array (no validation)."""
    lengths_t = torch.as_tensor(lengths, dtype=torch.int64, device=le.device)
    return _batch(ls.expand(le.shape[0], -1) if ls.ndim == 1 else ls, lt.to(le), le, lengths_t)


def _batch(ls, lt, le, lengths_t):
    dtype = compute_dtype(le.dtype)
    ls, lt, le = ls.to(dtype), lt.to(dtype), le.to(dtype)
    n_steps = le.shape[1]
    mask = torch.arange(n_steps, device=le.device).unsqueeze(0) < lengths_t.unsqueeze(1)
    all_full = bool((lengths_t == n_steps).all())
    return _Batch(ls, lt, le, mask, all_full)


def _subset(batch, index):
    """The sequences ``index`` of a batch (shared transition matrices stay shared)."""
    lt = batch.log_transmat if batch.log_transmat.ndim == 2 else batch.log_transmat[index]
    mask = batch.mask[index]
    # Trim the padding that no selected sequence needs.
    n_steps = int(mask.sum(dim=1).max())
    lt = lt[:, :n_steps] if lt.ndim == 4 else lt
    mask = mask[:, :n_steps]
    return _Batch(
        batch.log_startprob[index],
        lt,
        batch.log_emission[index, :n_steps],
        mask,
        bool(mask.all()),
    )


def _pad_time(x, n_steps):
    """Zero-pad dimension 1 of ``x`` to ``n_steps``."""
    if x.shape[1] == n_steps:
        return x
    pad = x.new_zeros((x.shape[0], n_steps - x.shape[1]) + tuple(x.shape[2:]))
    return torch.cat([x, pad], dim=1)


def _detach_impossible(loglik):
    """-inf log-likelihoods as constants, so an impossible sequence gets zero gradient.

    Without this the gradient of such a sequence would be that of the finite partial
    sums before the step that made it impossible, which means nothing.
    """
    return torch.where(torch.isfinite(loglik), loglik, torch.full_like(loglik, float("-inf")))


def _scaled_forward_checked(batch, chunk_size=None):
    """Scaled forward pass plus the flag of sequences that must be redone in log space.

    With structural zeros in the transition matrices a forward pass alone cannot tell
    whether probability it flushed to zero matters later, so a backward sweep checks it
    (see :mod:`probkit.inference`). The chunked scan is used only without structural
    zeros (its per-chunk products have the same blind spot).

    Returns ``(alpha or None, log_likelihood, failed)``.
    """
    exact = tk.scaled_forward_is_exact(batch.log_transmat)
    if chunk_size is not None and exact:
        loglik, failed = tk.forward_scaled_chunked(*batch, chunk_size)
        return None, loglik, failed
    alpha, loglik, failed, emis = tk.forward_scaled(*batch)
    if not exact:
        failed = failed | tk.backward_check_scaled(batch.log_transmat, alpha, emis, batch.mask, batch.all_full)
    return alpha, loglik, failed


def _log_likelihood(batch, implementation, chunk_size=None):
    if implementation == "log":
        return _detach_impossible(tk.forward_log(*batch)[1])
    loglik, failed = _scaled_forward_checked(batch, chunk_size)[1:3]
    if bool(failed.any()):
        index = failed.nonzero().squeeze(1)
        exact = tk.forward_log(*_subset(batch, index))[1]
        loglik = loglik.index_put((index,), exact)
    return _detach_impossible(loglik)


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def hmm_log_likelihood(
    log_startprob, log_transmat, log_emission, lengths=None, *, implementation="scaling", chunk_size=None
):
    """Log-likelihood of padded sequences, differentiable with respect to every input.

    Parameters
    ----------
    log_startprob : array-like or Tensor, (K,) or (B, K)
        Log initial-state probabilities, shared or one row per sequence.
    log_transmat : array-like or Tensor, (K, K), (B, K, K) or (B, T, K, K)
        Log transition probabilities (row = from). The time-varying form's ``[b, t]`` is
        the transition from step ``t - 1`` into step ``t`` (``[b, 0]`` is unused).
    log_emission : array-like or Tensor, (B, T, K)
        Log emission probabilities of the padded sequences. -inf marks an impossible
        state; NaN is rejected.
    lengths : array-like of int, (B,), optional
        Real lengths (default: all ``T``). Padded steps do not contribute.
    implementation : {"scaling", "log"}, default="scaling"
        "scaling" normalises probabilities each step (one matrix product per step);
        sequences on which it could lose precision are recomputed with "log", so both
        return the same values.
    chunk_size : int, optional
        With "scaling" only: cut the sequences into chunks of this many steps, multiply
        each chunk's (K, K) step matrices for all chunks at once, then chain the chunks.
        The number of sequential steps drops from T to about ``T / chunk_size +
        chunk_size`` (choose about ``sqrt(T)``) for K times more arithmetic and memory
        for B * T * K * K values: worthwhile for a few very long sequences on a GPU
        (on CPU it was 25x faster than the step-by-step torch loop for one sequence of
        10^5 steps, K=8, but the numba kernels are faster still). Same results and
        gradients as the default. Ignored (the step-by-step recursion is used) when a
        transition matrix has structural zeros.

    Returns
    -------
    Tensor (B,)
        log p(x_b), in the dtype and on the device of ``log_emission``; -inf (with zero
        gradient) for a sequence whose probability is exactly zero.

    Examples
    --------
    >>> import torch
    >>> log_emission = torch.log(torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]]))
    >>> log_start = torch.log(torch.tensor([0.5, 0.5]))
    >>> log_trans = torch.log(torch.tensor([[0.7, 0.3], [0.4, 0.6]])).requires_grad_()
    >>> ll = hmm_log_likelihood(log_start, log_trans, log_emission, lengths=[2])
    >>> round(ll.item(), 6)
    -1.61445
    >>> ll.sum().backward()
    >>> log_trans.grad.shape
    torch.Size([2, 2])
    """
    check_choice(implementation, "implementation", _IMPLEMENTATIONS)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", allow_none=True)
        if implementation != "scaling":
            raise ValueError("chunk_size applies to implementation='scaling' only")
        chunk_size = int(chunk_size)
    batch, out_dtype = _prepare(log_startprob, log_transmat, log_emission, lengths)
    return _log_likelihood(batch, implementation, chunk_size).to(out_dtype)


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def forward_backward_padded(log_startprob, log_transmat, log_emission, lengths=None, *, implementation="scaling"):
    """Posterior marginals and expected transition counts of padded sequences.

    Same arguments as :func:`hmm_log_likelihood`. All outputs are differentiable.

    Returns
    -------
    PaddedForwardBackwardResult
        ``log_likelihood`` (B,), ``posteriors`` (B, T, K) (zero on padding), and
        ``expected_transitions`` (B, K, K) summed over each sequence's steps. A sequence
        with zero probability has ``log_likelihood = -inf`` and all-zero posteriors and
        expected transitions.

    Examples
    --------
    >>> import torch
    >>> log_emission = torch.log(torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]]))
    >>> res = forward_backward_padded(torch.log(torch.tensor([0.5, 0.5])),
    ...                               torch.log(torch.tensor([[0.7, 0.3], [0.4, 0.6]])),
    ...                               log_emission, lengths=[2])
    >>> res.posteriors.sum(-1)
    tensor([[1., 1., 0.]])
    >>> round(res.expected_transitions.sum().item(), 6)
    1.0
    """
    check_choice(implementation, "implementation", _IMPLEMENTATIONS)
    batch, out_dtype = _prepare(log_startprob, log_transmat, log_emission, lengths)
    return _forward_backward_batch(batch, implementation, out_dtype)


def _forward_backward_batch(batch, implementation, out_dtype):
    if implementation == "log":
        loglik, posteriors, expected = _forward_backward_log(batch)
    else:
        alpha, loglik, failed, emis = tk.forward_scaled(*batch)
        posteriors, expected, failed_back = tk.backward_scaled(batch.log_transmat, alpha, emis, batch.mask, batch.all_full)
        failed = failed | failed_back
        if bool(failed.any()):
            index = failed.nonzero().squeeze(1)
            ll_f, post_f, exp_f = _forward_backward_log(_subset(batch, index))
            loglik = loglik.index_put((index,), ll_f)
            posteriors = posteriors.index_put((index,), _pad_time(post_f, posteriors.shape[1]))
            expected = expected.index_put((index,), exp_f)
    loglik = _detach_impossible(loglik)
    return PaddedForwardBackwardResult(loglik.to(out_dtype), posteriors.to(out_dtype), expected.to(out_dtype))


def _forward_backward_log(batch):
    log_alpha, loglik = tk.forward_log(*batch)
    posteriors, expected = tk.backward_log(batch.log_transmat, batch.log_emission, log_alpha, batch.mask, batch.all_full)
    # Impossible sequences: the recursions already give zeros; make it explicit.
    possible = torch.isfinite(loglik).to(posteriors.dtype)
    return loglik, posteriors * possible[:, None, None], expected * possible[:, None, None]


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def forward_filter_padded(log_startprob, log_transmat, log_emission, lengths=None, *, implementation="scaling"):
    """Filtered distributions p(z_t | x_1..t) of padded sequences.

    Same arguments as :func:`hmm_log_likelihood`.

    Returns
    -------
    log_likelihood : Tensor (B,)
    filtered : Tensor (B, T, K)
        Zero on padding and, for an impossible sequence, from its impossible step on.

    Examples
    --------
    >>> import torch
    >>> ll, filt = forward_filter_padded(torch.zeros(2) - 0.6931471805599453,
    ...                                  torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9]])),
    ...                                  torch.log(torch.tensor([[[0.5, 0.5]]])))
    >>> filt
    tensor([[[0.5000, 0.5000]]])
    """
    check_choice(implementation, "implementation", _IMPLEMENTATIONS)
    batch, out_dtype = _prepare(log_startprob, log_transmat, log_emission, lengths)
    return _forward_filter_batch(batch, implementation, out_dtype)


def _forward_filter_batch(batch, implementation, out_dtype):
    if implementation == "log":
        log_alpha, loglik = tk.forward_log(*batch)
        filtered = torch.exp(log_alpha)
    else:
        filtered, loglik, failed = _scaled_forward_checked(batch)
        if bool(failed.any()):
            index = failed.nonzero().squeeze(1)
            log_alpha_f, ll_f = tk.forward_log(*_subset(batch, index))
            loglik = loglik.index_put((index,), ll_f)
            filtered = filtered.index_put((index,), _pad_time(torch.exp(log_alpha_f), filtered.shape[1]))
    filtered = filtered * batch.mask.unsqueeze(-1).to(filtered.dtype)
    return _detach_impossible(loglik).to(out_dtype), filtered.to(out_dtype)


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def viterbi_padded(log_startprob, log_transmat, log_emission, lengths=None):
    """Most probable state paths of padded sequences (batched max-product recursion).

    Same arguments as :func:`hmm_log_likelihood` (without ``implementation``: Viterbi
    always works in log space). Not differentiable (a path is discrete).

    Returns
    -------
    PaddedViterbiResult
        ``log_prob`` (B,) and ``paths`` (B, T) int64 with -1 on padding. Ties go to the
        lowest state index. An impossible sequence gets ``-inf`` and a path of -1.

    Examples
    --------
    >>> import torch
    >>> log_emission = torch.log(torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]]))
    >>> res = viterbi_padded(torch.log(torch.tensor([0.5, 0.5])),
    ...                      torch.log(torch.tensor([[0.7, 0.3], [0.4, 0.6]])),
    ...                      log_emission, lengths=[2])
    >>> res.paths
    tensor([[ 0,  1, -1]])
    """
    return _viterbi_batch(*_prepare(log_startprob, log_transmat, log_emission, lengths))


def _viterbi_batch(batch, out_dtype):
    log_prob, paths = tk.viterbi_log(*batch)
    return PaddedViterbiResult(log_prob.to(out_dtype), paths)


def _pad_trusted(X, lengths, fill=0.0):
    """:func:`pad_sequences` of checked ``lengths`` (an int64 array): no validation."""
    lengths_t = torch.as_tensor(lengths, device=X.device)
    n_steps = int(lengths.max())
    mask = torch.arange(n_steps, device=X.device).unsqueeze(0) < lengths_t.unsqueeze(1)
    padded = torch.full((len(lengths), n_steps) + tuple(X.shape[1:]), fill, dtype=X.dtype, device=X.device)
    # Boolean-mask assignment walks the batch row by row, i.e. in concatenation order.
    return padded.index_put((mask,), X), mask


def _unpad_trusted(padded, lengths):
    """:func:`unpad_sequences` of checked ``lengths``: no validation."""
    lengths_t = torch.as_tensor(lengths, device=padded.device)
    mask = torch.arange(padded.shape[1], device=padded.device).unsqueeze(0) < lengths_t.unsqueeze(1)
    return padded[mask]


@numpy_out_for_numpy_in("X")
def pad_sequences(X, lengths, fill=0.0):
    """Split concatenated sequences into a padded batch.

    Parameters
    ----------
    X : array-like or Tensor, (n_samples, ...)
        Sequences stacked along the first axis.
    lengths : array-like of int, (B,)
        Sequence lengths; must be positive and sum to ``n_samples``.
    fill : float, default=0.0
        Value written into the padding.

    Returns
    -------
    padded : Tensor (B, T, ...)
        ``T = max(lengths)``; differentiable with respect to ``X``.
    mask : BoolTensor (B, T)
        True on real steps.

    Examples
    --------
    >>> padded, mask = pad_sequences([[1.0], [2.0], [3.0]], lengths=[2, 1])
    >>> padded[..., 0]
    array([[1., 2.],
           [3., 0.]])
    >>> mask
    array([[ True,  True],
           [ True, False]])
    """
    X = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(X))
    if X.ndim < 1:
        raise ValueError(f"X must have at least one dimension (samples), got shape {tuple(X.shape)}")
    return _pad_trusted(X, check_lengths(lengths, X.shape[0], name="lengths"), fill)


@numpy_out_for_numpy_in("padded")
def unpad_sequences(padded, lengths):
    """Concatenate the real steps of a padded batch (inverse of :func:`pad_sequences`).

    Parameters
    ----------
    padded : array-like or Tensor, (B, T, ...)
    lengths : array-like of int, (B,)
        Positive, at most ``T``.

    Returns
    -------
    Tensor (sum(lengths), ...)

    Examples
    --------
    >>> padded, _ = pad_sequences(torch.arange(5.0), lengths=[3, 2])
    >>> unpad_sequences(padded, [3, 2])
    tensor([0., 1., 2., 3., 4.])
    """
    padded = padded if isinstance(padded, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(padded))
    if padded.ndim < 2:
        raise ValueError(f"padded must have shape (B, T, ...), got {tuple(padded.shape)}")
    return _unpad_trusted(padded, check_lengths(lengths, name="lengths", n_sequences=padded.shape[0],
                                                max_length=padded.shape[1]))
