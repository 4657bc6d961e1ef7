"""HMM inference kernels: forward-backward, Viterbi, filtering, sampling, and an exact oracle.

Two APIs over the same mathematics:

* Concatenated (the estimators' ``lengths`` API): :func:`forward_backward`,
  :func:`viterbi`, :func:`forward_filter`, :class:`ForwardFilter`,
  :func:`sample_posterior_paths`, :func:`sample_markov_chain`. ``log_emission`` is
  ``(n_samples, K)`` with the sequences stacked; on the CPU compiled numba loops run over
  that layout directly.
* Padded, batched and differentiable (the neural HMM's and the GPU's API):
  :func:`hmm_log_likelihood`, :func:`forward_backward_padded`, :func:`viterbi_padded`,
  :func:`forward_filter_padded`, with :func:`pad_sequences` / :func:`unpad_sequences`.
  Pure torch; supports per-sequence start distributions and per-sequence or
  time-varying transition matrices.

:func:`brute_force_hmm` enumerates all paths of a short sequence; the tests use it as
ground truth.

Explicit-duration (hidden semi-Markov) models have their own kernels in
:mod:`probkit.inference.semi_markov`: :func:`semi_markov_forward`,
:func:`semi_markov_forward_backward`, :func:`semi_markov_viterbi`, the equivalent HMM
(:func:`semi_markov_as_hmm`) and an enumeration oracle (:func:`brute_force_semi_markov`).

Conventions
-----------
Inputs are log-probabilities (numpy arrays or torch tensors). Numpy in, numpy out: when
no array argument is a tensor the results are numpy arrays (as from the estimators);
when one is, they are torch tensors with the dtype and device of ``log_emission`` (and
autograd where the function is differentiable). ``-inf`` encodes a zero probability
(structural zeros of left-right models, emissions masked out by partial supervision)
and never produces NaN, neither in results nor in gradients. NaN and ``+inf`` inputs
are rejected with ``ValueError``. A sequence whose probability is exactly zero gets
``log_likelihood = -inf``, zero posteriors, no contribution to expected counts, and a
Viterbi path of ``-1``.

Numerics
--------
Two implementations, selected by ``implementation=``:

``"scaling"`` (default)
    Each step's emission probabilities are exponentiated after subtracting their
    maximum log-value, so emission log-probabilities near -1e4 cost nothing. Forward
    messages are normalised to sum to one; the log-likelihood is
    ``sum_t (log c_t + shift_t)``. Backward messages are normalised by their own sum
    (not by the forward normalisers) and each posterior row is normalised by
    ``Z_t = sum_i alpha_t[i] b_t[i]``, so neither message can overflow.
``"log"``
    Log-sum-exp recursions, also normalised at every step (the log-likelihood is
    accumulated separately), so log-messages stay O(1) and posteriors keep full
    precision on a sequence of 10^6 steps.

When is "scaling" exact? A linear representation flushes to zero any amount below
~1e-308 of the current (normalised) scale. An amount delta flushed at step s from
state j changes the likelihood by delta * beta_s(j) / sum_i alpha_s(i) beta_s(i), and
whether that is small depends on the future:

* ``forward_backward`` checks it directly. With normalised messages beta_s(j) <= 1 and
  the denominator is the per-step normaliser ``Z_t`` of the posteriors, so requiring
  ``Z_t >= sqrt(tiny) ~ 1.5e-154`` (and the forward normalisers ``c_t`` likewise) bounds
  the relative error of everything, log-likelihood included, by
  ``T * K * tiny / sqrt(tiny) ~ T * K * 1e-154``.
* Forward-only functions (:func:`forward_filter`, :func:`hmm_log_likelihood`,
  :func:`sample_posterior_paths`) have no backward pass. If every transition
  probability is at least ``sqrt(tiny)`` times the largest row sum (``a_min``), then
  beta_s(j) <= beta_s(i) / a_min for all i, j, which bounds the error by
  ``T * K * tiny / a_min`` without looking ahead: the forward pass alone is exact. With
  structural zeros there is no such bound (a flushed state can be cut off from
  refilling and dominate later; the tests contain such a sequence, on which a plain
  scaled forward pass is wrong by 100 nats), so a backward sweep that only computes the
  ``Z_t`` verifies the forward pass: forward-only calls on models with structural zeros
  cost about two forward passes.

A sequence that fails a check is recomputed in log space. The fallback is per sequence
because the information needed to repair one step (the flushed probabilities of
earlier steps) is already gone. On ordinary data nothing fails and the checks cost one
comparison per step. Hence both implementations return the same answers (the tests
check this, including structural zeros, -inf emissions, emissions near -1e4 and 10^6
steps); "scaling" is the fast path, "log" the reference.

Backends
--------
``backend="numba"`` (CPU): serial, GIL-free kernels over the concatenated layout.
Sequences are split into blocks of similar total length run on Python threads (one
per ``torch.get_num_threads()``); numba's own ``parallel=True`` was measured 2-3x slower
on the shared 2-core development machine because its OpenMP workers spin between
parallel regions. The forward-backward kernel exponentiates the emissions once
(numpy's SIMD exp, ~7x faster than numba's scalar exp), keeps them in the posterior
buffer and reads each row back just before overwriting it with the posterior, and
accumulates the expected transitions inside the backward pass as
``A * sum_t (alpha_t / Z_t) w_{t+1}^T``, never materialising a ``(T, K, K)`` array.
Viterbi stores only the max-plus scores (a vectorisable max reduction) and recovers the
arg-max along the path during the traceback (K work per step instead of K^2).

``backend="torch"``: the padded recursions, one batched ``(B, K) x (K, K)`` product per
step, on whatever device the tensors are; differentiable. Transcendental functions and
``(B, K, K)`` tensors are kept out of the time loop (torch hands them to its thread
pool, which made small per-step calls up to 1000x slower on a busy CPU).
``backend="auto"`` picks numba for CPU inputs without ``requires_grad`` and torch
otherwise. For a few very long sequences (a GPU's weak spot: T sequential steps),
:func:`hmm_log_likelihood` accepts ``chunk_size``: per-chunk transfer matrices are
multiplied for all chunks at once and then chained, cutting the sequential depth from T
to about ``T / chunk_size + chunk_size`` at K times the arithmetic.

Measured numbers are in ``benchmarks/results_inference.md``.
"""

from probkit.inference.brute_force import BruteForceResult, brute_force_hmm
from probkit.inference.concatenated import (
    FilterResult,
    ForwardBackwardResult,
    ForwardFilter,
    ViterbiResult,
    forward_backward,
    forward_filter,
    viterbi,
)
from probkit.inference.padded import (
    PaddedForwardBackwardResult,
    PaddedViterbiResult,
    forward_backward_padded,
    forward_filter_padded,
    hmm_log_likelihood,
    pad_sequences,
    unpad_sequences,
    viterbi_padded,
)
from probkit.inference.sampling import sample_markov_chain, sample_posterior_paths
from probkit.inference.semi_markov import (
    ExpandedHMM,
    SemiMarkovBruteForce,
    SemiMarkovForward,
    SemiMarkovPosteriors,
    SemiMarkovViterbi,
    brute_force_semi_markov,
    semi_markov_as_hmm,
    semi_markov_forward,
    semi_markov_forward_backward,
    semi_markov_viterbi,
)

__all__ = [
    "BruteForceResult",
    "ExpandedHMM",
    "FilterResult",
    "ForwardBackwardResult",
    "ForwardFilter",
    "PaddedForwardBackwardResult",
    "PaddedViterbiResult",
    "SemiMarkovBruteForce",
    "SemiMarkovForward",
    "SemiMarkovPosteriors",
    "SemiMarkovViterbi",
    "ViterbiResult",
    "brute_force_hmm",
    "brute_force_semi_markov",
    "forward_backward",
    "forward_backward_padded",
    "forward_filter",
    "forward_filter_padded",
    "hmm_log_likelihood",
    "pad_sequences",
    "sample_markov_chain",
    "sample_posterior_paths",
    "semi_markov_as_hmm",
    "semi_markov_forward",
    "semi_markov_forward_backward",
    "semi_markov_viterbi",
    "unpad_sequences",
    "viterbi",
    "viterbi_padded",
]
