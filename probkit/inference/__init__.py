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

Conventions
-----------
Inputs are log-probabilities (numpy arrays or torch tensors); outputs are torch tensors
with the dtype and device of ``log_emission``. ``-inf`` encodes a zero probability
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

Fallback, and why it is per sequence: a linear representation flushes a state whose
relative probability drops below ~1e-308 to zero. That is harmless unless later
evidence makes exactly such a state necessary, which shows up as a tiny step normaliser
(``c_t`` forward, ``Z_t`` backward). Whenever a normaliser falls below
``sqrt(tiny)`` ~ 1.5e-154 the scaled result may be inaccurate, and the information
needed to repair that step (the flushed probabilities of earlier steps) is already gone,
so the whole sequence is recomputed in log space. Above the threshold, what was flushed
is below ``K * tiny / 1.5e-154 ~ K * 1e-154`` of what was kept, far below rounding.
Hence both implementations return the same answers (the tests check this, including
structural zeros, -inf emissions, emissions near -1e4 and 10^6 steps); "scaling" is
the fast path, "log" the reference.

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
step, on whatever device the tensors are; differentiable. ``backend="auto"`` picks numba
for CPU inputs without ``requires_grad`` and torch otherwise.

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

__all__ = [
    "BruteForceResult",
    "FilterResult",
    "ForwardBackwardResult",
    "ForwardFilter",
    "PaddedForwardBackwardResult",
    "PaddedViterbiResult",
    "ViterbiResult",
    "brute_force_hmm",
    "forward_backward",
    "forward_backward_padded",
    "forward_filter",
    "forward_filter_padded",
    "hmm_log_likelihood",
    "pad_sequences",
    "sample_markov_chain",
    "sample_posterior_paths",
    "unpad_sequences",
    "viterbi",
    "viterbi_padded",
]
