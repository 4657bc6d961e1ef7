r"""Explicit-duration (hidden semi-Markov) inference over concatenated sequences.

A hidden semi-Markov model moves through *segments*: a segment of state :math:`j` lasts
:math:`d \in \{1, \dots, D\}` steps with probability :math:`p_j(d)`, emits one
observation per step, and is followed by a segment of state :math:`k` with probability
:math:`A_{jk}` (the estimators keep :math:`A_{jj} = 0`; the kernels accept any matrix).
The first segment's state is drawn from :math:`\pi`.

Recursions over segment ends
----------------------------
With :math:`E_j(a, b) = \sum_{s=a}^{b} \log p(x_s \mid j)`, the forward messages

.. math::

    S_t(k) = p(x_{<t}, \text{a segment of } k \text{ starts at } t), \qquad
    F_t(j) = \sum_{d=1}^{\min(D, t+1)} S_{t-d+1}(j)\, p_j(d)\, e^{E_j(t-d+1, t)}, \qquad
    S_{t+1}(k) = \sum_j F_t(j) A_{jk}

cost :math:`O(K D)` per step and :math:`O(K^2)` for the transitions, so
:math:`O(T K (D + K))` in all, against :math:`O(T K^2 D^2)` for the equivalent HMM over
:math:`K D` (state, remaining duration) pairs (:func:`semi_markov_as_hmm`). The
backward messages mirror them, and the posterior of a segment of :math:`j` over
:math:`a..b` is the product of the start message at :math:`a`, :math:`p_j(b-a+1)`,
the emissions and the backward message at :math:`b`.

Right-censoring
---------------
A sequence usually ends in the middle of a segment. With ``right_censoring=True``
(the default, as hsmmlearn's and pyhsmm's right-censoring) the last segment of every
sequence, observed for :math:`d` steps, contributes the survival
:math:`P_j(\text{duration} \ge d) = \sum_{d' \ge d} p_j(d')` instead of :math:`p_j(d)`:
the data say nothing about when it ends. With ``right_censoring=False`` every sequence
ends exactly at a segment boundary. The first segment starts at the first step (no
left-censoring). For the M-step, a censored segment's unobserved full duration is
completed in expectation: it is counted at every :math:`d' \ge d` in proportion to
:math:`p_j(d') / P_j(\text{duration} \ge d)`, which is exact EM for censored durations.

Numerics
--------
Log space throughout, normalised at every step: each step's messages are divided by
the step's predictive likelihood :math:`p(x_t \mid x_{<t})`, computed with the segment in
progress censored at :math:`t`, which is positive whenever the prefix is possible (a
per-step normaliser from completed segments alone would vanish at steps where no segment
can end, e.g. under fixed durations). Messages therefore stay :math:`O(1)` on sequences of
any length and posteriors keep full precision. ``-inf`` marks structural zeros anywhere
(start, transitions, durations, emissions) and never produces NaN; a sequence with zero
probability gets ``log_likelihood = -inf``, zero posteriors, no contribution to the
expected counts and a Viterbi path of -1.

Backends: ``"numba"`` (compiled CPU loops over the concatenated layout, sequences split
into blocks on worker threads as for HMMs) and ``"torch"`` (padded recursions batched
over sequences, on the inputs' device, e.g. CUDA); ``"auto"`` picks numba for CPU
tensors. Results carry no gradient.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from typing import NamedTuple

import numpy as np
import torch

from probkit.inference._checks import as_float_tensor, check_log_values, concatenated_inputs
from probkit.inference.concatenated import resolve_backend
from probkit.inference.padded import pad_sequences, unpad_sequences
from probkit.utils._docstrings import DocFragments
from probkit.utils.threads import torch_threads

__all__ = [
    "ExpandedHMM",
    "SemiMarkovBruteForce",
    "SemiMarkovForward",
    "SemiMarkovPosteriors",
    "SemiMarkovViterbi",
    "brute_force_semi_markov",
    "semi_markov_as_hmm",
    "semi_markov_forward",
    "semi_markov_forward_backward",
    "semi_markov_viterbi",
]


class SemiMarkovForward(NamedTuple):
    """Result of :func:`semi_markov_forward`.

    Attributes
    ----------
    log_likelihood : Tensor (n_seq,)
        log p(x) of every sequence (-inf if impossible).
    predictive : Tensor (n_samples,)
        log p(x_t | x_1..x_{t-1}) of every step, the segment in progress censored at t;
        the rows of a sequence sum to its log-likelihood (without right-censoring, the
        last row also holds the probability that a segment ends there). -inf throughout
        an impossible sequence.
    """

    log_likelihood: torch.Tensor
    predictive: torch.Tensor


class SemiMarkovPosteriors(NamedTuple):
    """Result of :func:`semi_markov_forward_backward`.

    Attributes
    ----------
    log_likelihood : Tensor (n_seq,)
    posteriors : Tensor (n_samples, K)
        p(state at step t = k | x).
    segment_starts : Tensor (n_samples, K)
        p(a segment of state k starts at step t | x) (the first step of a sequence always
        starts one).
    expected_start : Tensor (K,)
        Sum over sequences of the first segment's state posterior.
    expected_transitions : Tensor (K, K)
        Expected number of segment-to-segment transitions j -> k.
    expected_durations : Tensor (K, D)
        Expected number of segments of state k lasting d steps (column d - 1), censored
        last segments completed in expectation (see the module notes): the statistics of
        the duration M-step.
    censored_durations : Tensor (K, D)
        Expected number of censored last segments of state k observed for d steps
        (zero without right-censoring).
    """

    log_likelihood: torch.Tensor
    posteriors: torch.Tensor
    segment_starts: torch.Tensor
    expected_start: torch.Tensor
    expected_transitions: torch.Tensor
    expected_durations: torch.Tensor
    censored_durations: torch.Tensor


class SemiMarkovViterbi(NamedTuple):
    """Result of :func:`semi_markov_viterbi`.

    Attributes
    ----------
    log_prob : Tensor (n_seq,)
        log p(x, best segmentation) (with the censored last segment's survival).
    path : LongTensor (n_samples,)
        State of every step (-1 throughout an impossible sequence).
    segment_starts : BoolTensor (n_samples,)
        True at the first step of every decoded segment (segments of one state may
        follow each other when the transition matrix allows it).
    """

    log_prob: torch.Tensor
    path: torch.Tensor
    segment_starts: torch.Tensor


class ExpandedHMM(NamedTuple):
    """The HMM over (state, remaining duration) pairs equivalent to a semi-Markov model.

    Attributes
    ----------
    log_startprob : Tensor (K * D,)
    log_transmat : Tensor (K * D, K * D)
    state : LongTensor (K * D,)
        Semi-Markov state of each expanded state: emissions are ``log_emission[:, state]``.
    """

    log_startprob: torch.Tensor
    log_transmat: torch.Tensor
    state: torch.Tensor


class SemiMarkovBruteForce(NamedTuple):
    """Result of :func:`brute_force_semi_markov` (numpy float64 arrays).

    Attributes
    ----------
    log_likelihood : float
    posteriors : ndarray (T, K)
    segment_starts : ndarray (T, K)
    expected_transitions : ndarray (K, K)
    expected_durations : ndarray (K, D)
    best_log_prob : float
    best_path : ndarray (T,) int64
    best_segment_starts : ndarray (T,) bool
    n_segmentations : int
        Number of segmentations with non-zero probability.
    """

    log_likelihood: float
    posteriors: np.ndarray
    segment_starts: np.ndarray
    expected_transitions: np.ndarray
    expected_durations: np.ndarray
    best_log_prob: float
    best_path: np.ndarray
    best_segment_starts: np.ndarray
    n_segmentations: int


# ---------------------------------------------------------------------------- inputs
def _duration_input(log_duration, n_states, like):
    ld = check_log_values(as_float_tensor(log_duration, "log_duration"), "log_duration")
    if ld.ndim != 2 or ld.shape[0] != n_states:
        raise ValueError(
            f"log_duration must have shape (n_states, max_duration) = ({n_states}, D): row k holds log p_k(d) for "
            f"durations d = 1..D; got shape {tuple(ld.shape)}")
    if ld.shape[1] < 1:
        raise ValueError("log_duration must cover at least one duration (max_duration >= 1), got 0 columns")
    return ld.to(device=like.device, dtype=like.dtype)


def _log_survival(log_duration):
    """log P(duration >= d) for d = 1..D: reversed cumulative log-sum-exp along the durations."""
    return torch.logcumsumexp(log_duration.flip(-1), dim=-1).flip(-1)


class _Model(NamedTuple):
    """Checked inputs of the public kernels, in the dtype and on the device of the emissions."""

    ls: torch.Tensor
    lt: torch.Tensor
    ld: torch.Tensor
    lsurv: torch.Tensor  # log P(duration >= d)
    le: torch.Tensor
    lengths: np.ndarray
    censored: bool


def _checked(log_startprob, log_transmat, log_duration, log_emission, lengths, right_censoring):
    if not isinstance(right_censoring, (bool, np.bool_)):
        raise TypeError(f"right_censoring must be True or False, got {right_censoring!r}")
    ls, lt, le, lengths = concatenated_inputs(log_startprob, log_transmat, log_emission, lengths)
    ld = _duration_input(log_duration, le.shape[1], le)
    ls = ls.to(device=le.device, dtype=le.dtype)
    lt = lt.to(device=le.device, dtype=le.dtype)
    return _Model(ls, lt, ld, _log_survival(ld), le, lengths, bool(right_censoring))


@functools.lru_cache(maxsize=None)
def _numba():
    try:  # numba is a declared dependency; the torch backend keeps working without it.
        from probkit.inference import _semi_markov_numba
    except ImportError:  # pragma: no cover - exercised only where numba is missing
        return None
    return _semi_markov_numba


def _backend(backend, model):
    chosen = resolve_backend(backend, model.ls, model.lt, model.ld, model.le)
    if chosen == "numba" and _numba() is None:  # pragma: no cover
        return "torch"
    return chosen


def _run_numba(driver, model):
    """A numba driver (``forward``, ``forward_backward`` or ``viterbi``) on float64 copies of the inputs."""
    return driver(_np64(model.ls), _np64(model.lt), _np64(model.ld), _np64(model.lsurv), _np64(model.le),
                  model.lengths, model.censored)


def _torch_context(like):
    """No gradients, and one intra-op thread on the CPU: the recursions make many small
    calls per step, which torch's thread pool slows down by an order of magnitude."""
    threads = torch_threads(1) if like.device.type == "cpu" else contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(threads)
    return stack


def _np64(t):
    return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).numpy())


def _out(array, like):
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------------------- public kernels
# The parameters of the three public recursions, substituted for "%(parameters)s" in their docstrings.
_PARAMETERS = """Parameters
----------
log_startprob : array-like or Tensor, (K,)
    Log-probabilities of the first segment's state.
log_transmat : array-like or Tensor, (K, K)
    Log-probabilities of the next segment's state (row = current state); -inf marks
    structural zeros (the diagonal, in a model without self-transitions).
log_duration : array-like or Tensor, (K, D)
    ``log_duration[k, d - 1] = log p_k(d)`` for durations ``d = 1..D``.
log_emission : array-like or Tensor, (n_samples, K)
    log p(x_t | state k) of all sequences stacked.
lengths : array-like of int, optional
    Lengths of the stacked sequences (summing to ``n_samples``); None is one sequence.
right_censoring : bool, default=True
    Whether the last segment of a sequence may continue past its end (see the module notes).
backend : {"auto", "numba", "torch"}, default="auto"
"""
_DOCS = DocFragments(sections={"parameters": _PARAMETERS})


@_DOCS.fill
def semi_markov_forward(log_startprob, log_transmat, log_duration, log_emission, lengths=None, *,
                        right_censoring=True, backend="auto"):
    """Log-likelihood and one-step predictive log-likelihoods of a semi-Markov model (forward pass).

    %(parameters)s
    Returns
    -------
    SemiMarkovForward

    Examples
    --------
    >>> import numpy as np
    >>> log_dur = np.log([[0.5, 0.5], [1.0, 1e-300]])
    >>> res = semi_markov_forward(np.log([0.5, 0.5]), np.log([[1e-300, 1.0], [1.0, 1e-300]]), log_dur,
    ...                           np.log([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]]))
    >>> bool(torch.isclose(res.predictive.sum(), res.log_likelihood[0]))
    True
    """
    model = _checked(log_startprob, log_transmat, log_duration, log_emission, lengths, right_censoring)
    if _backend(backend, model) == "numba":
        loglik, predictive, _ = _run_numba(_numba().forward, model)
        return SemiMarkovForward(_out(loglik, model.le), _out(predictive, model.le))
    with _torch_context(model.le):
        fwd = _torch_forward(model)
    return SemiMarkovForward(fwd["loglik"], fwd["predictive"])


@_DOCS.fill
def semi_markov_forward_backward(log_startprob, log_transmat, log_duration, log_emission, lengths=None, *,
                                 right_censoring=True, backend="auto"):
    """State and segment posteriors and the expected counts of a semi-Markov model (forward-backward).

    %(parameters)s
    Returns
    -------
    SemiMarkovPosteriors
        Tensors with the dtype and device of ``log_emission``.

    Examples
    --------
    >>> import numpy as np
    >>> log_dur = np.log([[0.2, 0.8], [0.6, 0.4]])
    >>> no_self = np.log([[1e-300, 1.0], [1.0, 1e-300]])
    >>> res = semi_markov_forward_backward(np.log([0.5, 0.5]), no_self, log_dur,
    ...                                    np.log([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]]))
    >>> res.posteriors.sum(1)
    tensor([1., 1., 1., 1.], dtype=torch.float64)
    >>> float(res.segment_starts[0].sum())
    1.0
    """
    model = _checked(log_startprob, log_transmat, log_duration, log_emission, lengths, right_censoring)
    if _backend(backend, model) == "numba":
        loglik, post, seg_start, xi, completed, cens = (_out(a, model.le)
                                                        for a in _run_numba(_numba().forward_backward, model))
    else:
        with _torch_context(model.le):
            loglik, post, seg_start, xi, completed, cens = _torch_forward_backward(model)
    starts = torch.as_tensor(np.concatenate([[0], np.cumsum(model.lengths)[:-1]]), device=model.le.device)
    return SemiMarkovPosteriors(loglik, post, seg_start, seg_start[starts].sum(0), xi,
                                completed + _complete_censored(cens, model.ld, model.lsurv), cens)


def _complete_censored(cens, log_duration, log_surv):
    """Spread censored segments observed for d steps over the durations d' >= d, as p(d') / P(duration >= d).

    In log space: ``p(d') / P(duration >= d) <= 1`` while either factor alone may under- or overflow.
    """
    neg = torch.full_like(cens, -float("inf"))
    log_ratio = torch.where(cens > 0, torch.log(torch.where(cens > 0, cens, torch.ones_like(cens))) - log_surv, neg)
    return torch.exp(torch.logcumsumexp(log_ratio, dim=-1) + log_duration)


@_DOCS.fill
def semi_markov_viterbi(log_startprob, log_transmat, log_duration, log_emission, lengths=None, *,
                        right_censoring=True, backend="auto"):
    """Most probable segmentation (states and segment boundaries) of every sequence.

    %(parameters)s
    Returns
    -------
    SemiMarkovViterbi
        Ties go to the shorter duration and the lower state.

    Examples
    --------
    >>> import numpy as np
    >>> log_dur = np.log([[0.1, 0.9], [0.9, 0.1]])
    >>> no_self = np.log([[1e-300, 1.0], [1.0, 1e-300]])
    >>> res = semi_markov_viterbi(np.log([0.5, 0.5]), no_self, log_dur,
    ...                           np.log([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    >>> res.path
    tensor([0, 0, 1, 0])
    >>> res.segment_starts
    tensor([ True, False,  True,  True])
    """
    model = _checked(log_startprob, log_transmat, log_duration, log_emission, lengths, right_censoring)
    if _backend(backend, model) == "numba":
        log_prob, path, first = _run_numba(_numba().viterbi, model)
        return SemiMarkovViterbi(_out(log_prob, model.le), torch.from_numpy(path).to(model.le.device),
                                 torch.from_numpy(first).to(model.le.device))
    with _torch_context(model.le):
        return _torch_viterbi(model)


def semi_markov_as_hmm(log_startprob, log_transmat, log_duration):
    """The equivalent HMM over ``K * D`` (state, remaining duration) pairs.

    Expanded state ``k * D + r - 1`` is state ``k`` with ``r`` steps left in its segment,
    this one included. It counts down to ``r = 1``, then moves to ``(k', r')`` with
    probability ``A[k, k'] p_{k'}(r')``. An HMM's sequence may stop in any state, so this
    is the right-censored semi-Markov model: :func:`probkit.inference.forward_backward`
    on it, with ``log_emission[:, result.state]``, gives the same likelihood and state
    posteriors, at ``O(T K^2 D^2)`` cost instead of ``O(T K (D + K))``.

    Parameters
    ----------
    log_startprob, log_transmat, log_duration
        As in :func:`semi_markov_forward`.

    Returns
    -------
    ExpandedHMM

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.inference import forward_backward
    >>> ls, lt = np.log([0.5, 0.5]), np.log([[1e-300, 1.0], [1.0, 1e-300]])
    >>> ld = np.log([[0.2, 0.8], [0.6, 0.4]])
    >>> le = np.log([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    >>> hmm = semi_markov_as_hmm(ls, lt, ld)
    >>> expanded = forward_backward(hmm.log_startprob, hmm.log_transmat, le[:, hmm.state.numpy()])
    >>> bool(torch.isclose(expanded.log_likelihood, semi_markov_forward(ls, lt, ld, le).log_likelihood))
    True
    """
    ls = check_log_values(as_float_tensor(log_startprob, "log_startprob"), "log_startprob")
    if ls.ndim != 1 or ls.shape[0] == 0:
        raise ValueError(f"log_startprob must have shape (K,), got {tuple(ls.shape)}")
    n_states = ls.shape[0]
    lt = check_log_values(as_float_tensor(log_transmat, "log_transmat"), "log_transmat").to(ls)
    if tuple(lt.shape) != (n_states, n_states):
        raise ValueError(f"log_transmat must have shape ({n_states}, {n_states}), got {tuple(lt.shape)}")
    ld = _duration_input(log_duration, n_states, ls)
    max_dur = ld.shape[1]
    neg = torch.tensor(-float("inf"), dtype=ls.dtype, device=ls.device)
    start = (ls[:, None] + ld).reshape(-1)
    trans = neg.expand(n_states, max_dur, n_states, max_dur).clone()
    # (k, r) -> (k, r - 1) surely while time is left in the segment ...
    idx = torch.arange(n_states, device=ls.device)
    for r in range(1, max_dur):
        trans[idx, r, idx, r - 1] = 0.0
    # ... and (k, 1) -> (k', r') with A[k, k'] p_k'(r') when the segment ends.
    trans[:, 0, :, :] = lt[:, :, None] + ld[None, :, :]
    state = torch.arange(n_states, device=ls.device).repeat_interleave(max_dur)
    return ExpandedHMM(start, trans.reshape(n_states * max_dur, n_states * max_dur), state)


# ---------------------------------------------------------------------------- torch backend
def _neg_inf(like, *shape):
    return torch.full(shape, -float("inf"), dtype=like.dtype, device=like.device)


def _lse(x, dim):
    return torch.logsumexp(x, dim=dim)


def _padded_shifted(model):
    """The emissions as a padded batch ``x`` (n_seq, t_max, K), each step shifted by its
    largest finite log-emission ``shift`` (zero on padding and on impossible steps), with
    the padding ``mask`` and the sequence lengths ``lens``; ``x`` is 0 on padding."""
    le_pad, mask = pad_sequences(model.le, model.lengths)
    shift = le_pad.max(-1).values
    shift = torch.where(torch.isfinite(shift) & mask, shift, torch.zeros_like(shift))
    x = torch.where(mask[..., None], le_pad - shift[..., None], torch.zeros_like(le_pad))
    return x, shift, mask, torch.as_tensor(model.lengths, device=model.le.device)


def _torch_forward(model):
    """Padded normalised forward pass (see the numba kernels for the recursion)."""
    ls, lt, ld, lsurv, le, lengths, censored = model
    x, shift, mask, lens = _padded_shifted(model)
    n_seq, t_max, n_states = x.shape
    max_dur = ld.shape[1]
    bs_pad = _neg_inf(le, n_seq, t_max + max_dur, n_states)   # row s + D - 1 holds step s
    bs_pad[:, max_dur - 1] = ls
    fe = _neg_inf(le, n_seq, t_max, n_states)
    delta = torch.zeros(n_seq, t_max, dtype=le.dtype, device=le.device)
    acc = torch.zeros(n_seq, n_states, max_dur, dtype=le.dtype, device=le.device)
    possible = torch.ones(n_seq, dtype=torch.bool, device=le.device)
    prev_delta = torch.zeros(n_seq, dtype=le.dtype, device=le.device)
    for t in range(t_max):
        x_t = x[:, t]
        acc = torch.cat([x_t[..., None], acc[..., :-1] - prev_delta[:, None, None] + x_t[..., None]], dim=-1)
        window = bs_pad[:, t:t + max_dur].flip(1).transpose(1, 2)   # (B, K, D), duration d at d - 1
        base = window + acc
        f_raw = _lse(base + ld, -1)
        d_t = _lse(_lse(base + lsurv, -1), -1)
        valid = mask[:, t]
        possible &= ~(valid & ~torch.isfinite(d_t))
        d_t = torch.where(valid & torch.isfinite(d_t), d_t, torch.zeros_like(d_t))
        delta[:, t] = d_t
        f_t = f_raw - d_t[:, None]
        fe[:, t] = f_t
        bs_pad[:, t + max_dur] = _lse(f_t[:, :, None] + lt[None], 1)
        prev_delta = d_t
    loglik = (delta + shift).sum(1)
    last = lens - 1
    end = _lse(fe[torch.arange(n_seq, device=le.device), last], -1)
    predictive = delta + shift
    if not censored:
        loglik = loglik + end
        possible &= torch.isfinite(end)
        predictive[torch.arange(n_seq, device=le.device), last] += torch.where(possible, end, torch.zeros_like(end))
    loglik = torch.where(possible, loglik, torch.full_like(loglik, -float("inf")))
    predictive = torch.where(possible[:, None], predictive, torch.full_like(predictive, -float("inf")))
    return {"loglik": loglik, "predictive": unpad_sequences(predictive, lengths), "bs": bs_pad[:, max_dur - 1:-1],
            "fe": fe, "delta": delta, "x": x, "mask": mask, "possible": possible, "lens": lens}


def _torch_forward_backward(model):
    ls, lt, ld, lsurv, le, lengths, censored = model
    fwd = _torch_forward(model)
    possible, mask, lens = fwd["possible"], fwd["mask"], fwd["lens"]
    bs = torch.where(possible[:, None, None], fwd["bs"], _neg_inf(le, 1, 1, 1))
    fe = torch.where(possible[:, None, None], fwd["fe"], _neg_inf(le, 1, 1, 1))
    n_seq, t_max, n_states = fe.shape
    max_dur = ld.shape[1]
    rows = torch.arange(n_seq, device=le.device)
    g = torch.where(mask[..., None], fwd["x"] - fwd["delta"][..., None], _neg_inf(le, 1, 1, 1))
    if censored:
        end_value = _neg_inf(le, n_seq)
    else:
        end_value = -_lse(fe[rows, lens - 1], -1)
        end_value = torch.where(possible, end_value, _neg_inf(le, n_seq))
    be_pad = _neg_inf(le, n_seq, t_max + max_dur, n_states)
    post_pad = torch.zeros(n_seq, t_max + max_dur, n_states, dtype=le.dtype, device=le.device)
    seg_start = torch.zeros(n_seq, t_max, n_states, dtype=le.dtype, device=le.device)
    xi = torch.zeros(n_states, n_states, dtype=le.dtype, device=le.device)
    completed = torch.zeros(n_states, max_dur, dtype=le.dtype, device=le.device)
    cens = torch.zeros(n_states, max_dur, dtype=le.dtype, device=le.device)
    acc = _neg_inf(le, n_seq, n_states, max_dur)
    bb_next = _neg_inf(le, n_seq, n_states)
    lsurv_b = lsurv.expand(n_seq, n_states, max_dur)
    positions = torch.arange(max_dur, device=le.device)
    for t in range(t_max - 1, -1, -1):
        inner = t < lens - 1
        v = lt[None] + bb_next[:, None, :]                               # (B, j, k)
        be_t = _lse(v, -1)
        pair = fe[:, t, :, None] + v
        xi += torch.where(inner[:, None, None] & torch.isfinite(pair), torch.exp(pair), torch.zeros_like(pair)).sum(0)
        be_t = torch.where(inner[:, None], be_t, torch.where((t == lens - 1)[:, None], end_value[:, None],
                                                              _neg_inf(le, 1, 1)))
        be_pad[:, t] = be_t
        g_t = g[:, t]
        acc = torch.cat([g_t[..., None], g_t[..., None] + acc[..., :-1]], dim=-1)
        terms = ld + acc + be_pad[:, t:t + max_dur].transpose(1, 2)    # (B, K, D), segment t..t+d-1
        n_cens = lens - t
        has_cens = (t < lens) & (n_cens <= max_dur) if censored else torch.zeros_like(inner)
        idx = (n_cens - 1).clamp(0, max_dur - 1)
        term_c = (lsurv_b + acc).gather(-1, idx[:, None, None].expand(n_seq, n_states, 1))[..., 0]
        term_c = torch.where(has_cens[:, None], term_c, _neg_inf(le, 1, 1))
        top = torch.maximum(terms.max(-1).values, term_c)
        finite = torch.isfinite(top)
        top0 = torch.where(finite, top, torch.zeros_like(top))
        w = torch.exp(terms - top0[..., None])
        wc = torch.exp(term_c - top0)
        bb_t = torch.where(finite, top0 + torch.log(w.sum(-1) + wc), _neg_inf(le, 1, 1))
        start = bs[:, t]
        seg_start[:, t] = torch.where(torch.isfinite(start + bb_t), torch.exp(start + bb_t), torch.zeros_like(bb_t))
        scale = torch.where(torch.isfinite(start) & finite, torch.exp(start + top0), torch.zeros_like(top0))
        q = w * scale[..., None]
        q_c = wc * scale
        completed += q.sum(0)
        cens.scatter_add_(1, idx[None, :].expand(n_states, n_seq),
                          torch.where(has_cens[:, None], q_c, torch.zeros_like(q_c)).T)
        suffix = q.flip(-1).cumsum(-1).flip(-1) + q_c[..., None] * (positions[None, None] < n_cens[:, None, None])
        post_pad[:, t:t + max_dur] += suffix.transpose(1, 2)
        bb_next = bb_t
    post = post_pad[:, :t_max]
    return (fwd["loglik"], unpad_sequences(post, lengths), unpad_sequences(seg_start, lengths), xi, completed, cens)


def _torch_viterbi(model):
    ls, lt, ld, lsurv, le, lengths, censored = model
    x, shift, mask, lens = _padded_shifted(model)
    n_seq, t_max, n_states = x.shape
    max_dur = ld.shape[1]
    vs_pad = _neg_inf(le, n_seq, t_max + max_dur, n_states)
    vs_pad[:, max_dur - 1] = ls
    arg_d = torch.zeros(n_seq, t_max, n_states, dtype=torch.int64, device=le.device)
    arg_j = torch.zeros(n_seq, t_max, n_states, dtype=torch.int64, device=le.device)
    ve_last = _neg_inf(le, n_seq, n_states)
    d_last = torch.zeros(n_seq, n_states, dtype=torch.int64, device=le.device)
    acc = torch.zeros(n_seq, n_states, max_dur, dtype=le.dtype, device=le.device)
    for t in range(t_max):
        x_t = x[:, t]
        acc = torch.cat([x_t[..., None], acc[..., :-1] + x_t[..., None]], dim=-1)
        base = vs_pad[:, t:t + max_dur].flip(1).transpose(1, 2) + acc
        best, best_d = (base + ld).max(-1)
        arg_d[:, t] = best_d + 1
        last = (t == lens - 1)[:, None]
        if censored:
            c_best, c_d = (base + lsurv).max(-1)
            ve_last = torch.where(last, c_best, ve_last)
            d_last = torch.where(last, c_d + 1, d_last)
        else:
            ve_last = torch.where(last, best, ve_last)
            d_last = torch.where(last, best_d + 1, d_last)
        score, prev = (best[:, :, None] + lt[None]).max(1)
        vs_pad[:, t + max_dur] = score
        if t + 1 < t_max:
            arg_j[:, t + 1] = prev
    final, final_j = ve_last.max(-1)
    log_prob = torch.where(torch.isfinite(final), final + (shift * mask).sum(1), final)
    arg_d, arg_j = arg_d.cpu().numpy(), arg_j.cpu().numpy()
    final_j, d_last, ok = final_j.cpu().numpy(), d_last.cpu().numpy(), torch.isfinite(final).cpu().numpy()
    path = np.full(int(np.sum(lengths)), -1, dtype=np.int64)
    first = np.zeros(int(np.sum(lengths)), dtype=bool)
    offset = 0
    for b, length in enumerate(lengths):
        if ok[b]:
            j, d, end = int(final_j[b]), int(d_last[b, final_j[b]]), int(length) - 1
            while True:
                begin = end - d + 1
                path[offset + begin:offset + end + 1] = j
                first[offset + begin] = True
                if begin == 0:
                    break
                j = int(arg_j[b, begin, j])
                end = begin - 1
                d = int(arg_d[b, end, j])
        offset += int(length)
    return SemiMarkovViterbi(log_prob, torch.from_numpy(path).to(le.device), torch.from_numpy(first).to(le.device))


# ---------------------------------------------------------------------------- oracle
_MAX_SEGMENTATIONS = 2_000_000


def brute_force_semi_markov(log_startprob, log_transmat, log_duration, log_emission, *, right_censoring=True):
    """Enumerate every segmentation of one short sequence: the test oracle.

    Scores each sequence of (state, duration) segments directly in float64 numpy, without
    any recursion. A segmentation is a list of segments covering the sequence; the last
    one contributes ``P(duration >= d)`` under right-censoring and ``p(d)`` otherwise.

    Parameters
    ----------
    log_startprob, log_transmat, log_duration
        As in :func:`semi_markov_forward`.
    log_emission : array-like (T, K)
        One sequence.
    right_censoring : bool, default=True

    Returns
    -------
    SemiMarkovBruteForce

    Examples
    --------
    >>> import numpy as np
    >>> ls, lt = np.log([0.5, 0.5]), np.log([[1e-300, 1.0], [1.0, 1e-300]])
    >>> ld = np.log([[0.2, 0.8], [0.6, 0.4]])
    >>> le = np.log([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    >>> exact = brute_force_semi_markov(ls, lt, ld, le)
    >>> bool(np.isclose(exact.log_likelihood, float(semi_markov_forward(ls, lt, ld, le).log_likelihood[0])))
    True
    """
    model = _checked(log_startprob, log_transmat, log_duration, log_emission, None, right_censoring)
    censored = model.censored
    ls, lt, ld, le = (_np64(a) for a in (model.ls, model.lt, model.ld, model.le))
    n_steps, n_states = le.shape
    max_dur = ld.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        lsurv = np.log(np.cumsum(np.exp(ld)[:, ::-1], axis=1)[:, ::-1])
    def window(j, a, b):  # emissions of state j over steps a..b-1, summed directly
        return float(np.sum(le[a:b, j]))

    # count before enumerating: ways[t] = number of (state, duration) segmentations of t steps
    ways = [1] + [0] * n_steps
    for t in range(1, n_steps + 1):
        ways[t] = n_states * sum(ways[t - d] for d in range(1, min(max_dur, t) + 1))
    if ways[n_steps] > _MAX_SEGMENTATIONS:
        raise ValueError(f"{ways[n_steps]} segmentations to enumerate; the oracle is for tiny problems "
                         f"(at most {_MAX_SEGMENTATIONS})")
    compositions = []

    def split(remaining, parts):
        if remaining == 0:
            compositions.append(list(parts))
            return
        for d in range(1, min(max_dur, remaining) + 1):
            split(remaining - d, parts + [d])

    split(n_steps, [])
    scores, segmentations = [], []
    for durations in compositions:
        for states in itertools.product(range(n_states), repeat=len(durations)):
            score = ls[states[0]]
            pos = 0
            for i, (j, d) in enumerate(zip(states, durations)):
                if i > 0:
                    score += lt[states[i - 1], j]
                is_last = i == len(durations) - 1
                score += lsurv[j, d - 1] if (is_last and censored) else ld[j, d - 1]
                score += window(j, pos, pos + d)
                pos += d
            scores.append(score)
            segmentations.append((states, durations))
    scores = np.asarray(scores)
    best = int(np.argmax(scores)) if np.isfinite(scores).any() else -1
    top = scores.max()
    posteriors = np.zeros((n_steps, n_states))
    seg_starts = np.zeros((n_steps, n_states))
    xi = np.zeros((n_states, n_states))
    durations_count = np.zeros((n_states, max_dur))
    if not np.isfinite(top):
        return SemiMarkovBruteForce(-np.inf, posteriors, seg_starts, xi, durations_count, -np.inf,
                                    np.full(n_steps, -1), np.zeros(n_steps, dtype=bool), 0)
    log_lik = top + np.log(np.exp(scores - top).sum())
    weights = np.exp(scores - log_lik)
    pmf = np.exp(ld)
    for w, (states, durations) in zip(weights, segmentations):
        if w == 0:
            continue
        pos = 0
        for i, (j, d) in enumerate(zip(states, durations)):
            posteriors[pos:pos + d, j] += w
            seg_starts[pos, j] += w
            if i > 0:
                xi[states[i - 1], j] += w
            if i == len(durations) - 1 and censored:
                # the full duration of a censored segment, completed in expectation
                durations_count[j, d - 1:] += w * pmf[j, d - 1:] / pmf[j, d - 1:].sum()
            else:
                durations_count[j, d - 1] += w
            pos += d
    states, durations = segmentations[best]
    path = np.repeat(np.asarray(states), durations)
    first = np.zeros(n_steps, dtype=bool)
    first[np.concatenate([[0], np.cumsum(durations)[:-1]])] = True
    return SemiMarkovBruteForce(float(log_lik), posteriors, seg_starts, xi, durations_count, float(scores[best]),
                                path.astype(np.int64), first, int(np.isfinite(scores).sum()))
