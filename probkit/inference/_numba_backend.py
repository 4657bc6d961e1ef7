"""numpy-side drivers of the numba kernels: buffers, blocks of sequences, threads.

All functions take float64 C-contiguous numpy arrays (the public functions convert)
and return numpy arrays.
"""

from __future__ import annotations

import atexit
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from probkit.inference import _numba_kernels as nk
from probkit.utils.threads import worker_threads

# Below this many multiply-adds (n_samples * K * K) a call runs on the calling thread:
# handing blocks to worker threads costs tens of microseconds.
_MIN_WORK_FOR_THREADS = 2_000_000

_pool = None
_pool_lock = threading.Lock()


def _thread_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="probkit-hmm")
            atexit.register(_pool.shutdown, wait=False)
        return _pool


_ONE_BLOCK = np.array([0, 1], dtype=np.int64)


def _offsets(lengths):
    if len(lengths) == 1:
        return np.array([0, lengths[0]], dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _block_bounds(offsets, n_states):
    """Split sequences into contiguous blocks of similar total length, one per thread.

    The number of blocks follows :func:`probkit.utils.threads.worker_threads` (one per
    core unless configured); small problems get one block.
    """
    n_seq = offsets.shape[0] - 1
    if n_seq == 1:
        return _ONE_BLOCK
    total = int(offsets[-1])
    n_threads = max(1, worker_threads())
    if n_seq == 1 or n_threads == 1 or total * n_states * n_states < _MIN_WORK_FOR_THREADS:
        return np.array([0, n_seq], dtype=np.int64)
    n_blocks = min(n_threads, n_seq)
    targets = (total * np.arange(1, n_blocks)) // n_blocks
    inner = np.searchsorted(offsets, targets, side="left")
    bounds = np.unique(np.concatenate([[0], np.clip(inner, 1, n_seq - 1), [n_seq]]))
    return bounds.astype(np.int64)


def _run_blocks(kernel, bounds, make_args):
    """Run ``kernel(*make_args(b, s_begin, s_end))`` for every block, threaded when several."""
    n_blocks = len(bounds) - 1
    if n_blocks == 1:
        kernel(*make_args(0, bounds[0], bounds[1]))
        return
    pool = _thread_pool()
    futures = [pool.submit(kernel, *make_args(b, bounds[b], bounds[b + 1])) for b in range(n_blocks)]
    for f in futures:
        f.result()


def _scaled_emission(log_emission):
    """exp(log_emission - rowmax) and the row maxima.

    The subtraction runs in numba and the exponential in numpy, whose SIMD exp is
    about 7x faster than numba's scalar one (0.55 ms vs 3.6 ms for 800,000 values).
    """
    emis = np.empty_like(log_emission)
    shift = np.empty(log_emission.shape[0])
    nk.shifted_log_emission(log_emission, emis, shift)
    np.exp(emis, out=emis)
    return emis, shift


def _transition_arrays(log_transmat):
    trans = np.exp(log_transmat)  # underflow to 0 is the intended result (numpy does not warn on it by default)
    return (
        trans,
        np.ascontiguousarray(trans.T),
        np.ascontiguousarray(log_transmat.T),
    )


def _chain_setup(log_prior, log_transmat, n_states, lengths):
    """What the forward(-backward) drivers share: ``(offsets, bounds, trans, trans_t, log_trans_t, prior)``.

    The sequence offsets and thread blocks of ``lengths``, the transition probabilities
    (plain and transposed), the transposed log transition matrix and the first step's
    probabilities ``exp(log_prior)``.
    """
    offsets = _offsets(lengths)
    bounds = _block_bounds(offsets, n_states)
    return (offsets, bounds, *_transition_arrays(log_transmat), np.exp(log_prior))


def forward_backward(log_startprob, log_transmat, log_emission, lengths, use_log):
    """Returns (log_likelihood (n_seq,), posteriors (N, K), expected_transitions (K, K),
    expected_start (K,), status (n_seq,))."""
    n_states = log_emission.shape[1]
    n_seq = len(lengths)
    offsets, bounds, trans, trans_t, log_trans_t, start = _chain_setup(log_startprob, log_transmat, n_states, lengths)
    if use_log:
        post = np.empty_like(log_emission)
        shift = np.empty(0)
    else:
        post, shift = _scaled_emission(log_emission)
    alpha = np.empty_like(log_emission)
    loglik = np.empty(n_seq)
    status = np.empty(n_seq, dtype=np.int64)
    xi_blocks = np.zeros((len(bounds) - 1, n_states, n_states))

    def args(b, s_begin, s_end):
        return (
            start, trans, trans_t, log_startprob, log_transmat, log_trans_t, log_emission, offsets,
            s_begin, s_end, use_log, post, shift, alpha, loglik, status, xi_blocks[b],
        )

    _run_blocks(nk.forward_backward_block, bounds, args)
    expected_start = post[0].copy() if n_seq == 1 else post[offsets[:-1]].sum(axis=0)
    return loglik, post, (xi_blocks[0] if len(xi_blocks) == 1 else xi_blocks.sum(axis=0)), expected_start, status


def scaled_forward_is_exact(trans):
    """Whether a scaled forward pass alone is exact for this transition matrix.

    If every transition probability is at least ``SCALED_FLOOR`` times the largest row
    sum, anything the linear recursion flushes to zero is provably negligible (below
    T * K * tiny / SCALED_FLOOR relative; see ``probkit.inference``). Otherwise (structural
    zeros) forward-only results are verified by a backward sweep.
    """
    return bool(trans.min() >= nk.SCALED_FLOOR * max(1.0, float(trans.sum(axis=1).max())))


def forward(log_prior, log_transmat, log_emission, lengths, use_log, keep_log=False):
    """Returns (log_likelihood (n_seq,), filtered (N, K), status (n_seq,)).

    With ``keep_log`` the rows of sequences computed in log space hold log-probabilities
    (see ``status``), as the backward sampler needs.
    """
    n_states = log_emission.shape[1]
    n_seq = len(lengths)
    offsets, bounds, trans, trans_t, log_trans_t, prior = _chain_setup(log_prior, log_transmat, n_states, lengths)
    verify = not use_log and not scaled_forward_is_exact(trans)
    if use_log:
        emis = filtered = np.empty_like(log_emission)
        shift = np.empty(0)
    else:
        emis, shift = _scaled_emission(log_emission)
        # The verifying backward sweep needs the emissions after the forward pass.
        filtered = np.empty_like(emis) if verify else emis
    loglik = np.empty(n_seq)
    status = np.empty(n_seq, dtype=np.int64)

    def args(b, s_begin, s_end):
        return (
            prior, trans, trans_t, log_prior, log_trans_t, log_emission, offsets, s_begin, s_end,
            use_log, keep_log, verify, emis, filtered, shift, loglik, status,
        )

    _run_blocks(nk.forward_block, bounds, args)
    return loglik, filtered, status


def viterbi(log_startprob, log_transmat, log_emission, lengths):
    """Returns (log_prob (n_seq,), path (N,) int64)."""
    n_samples, n_states = log_emission.shape
    offsets = _offsets(lengths)
    bounds = _block_bounds(offsets, n_states)
    log_trans_t = np.ascontiguousarray(log_transmat.T)
    delta = np.empty_like(log_emission)
    path = np.empty(n_samples, dtype=np.int64)
    log_prob = np.empty(len(lengths))

    def args(b, s_begin, s_end):
        return (log_startprob, log_transmat, log_trans_t, log_emission, offsets, s_begin, s_end, delta, path, log_prob)

    _run_blocks(nk.viterbi_block, bounds, args)
    return log_prob, path


def backward_sample(log_transmat, lengths, filtered, status, uniforms):
    """Paths (n_paths, N) int64 drawn backwards from ``forward(..., keep_log=True)`` results."""
    offsets = _offsets(lengths)
    trans = np.exp(log_transmat)
    paths = np.empty(uniforms.shape, dtype=np.int64)
    nk.backward_sample_block(trans, log_transmat, offsets, filtered, status, uniforms, paths)
    return paths


def markov_chain(startprob, transmat, uniforms):
    """States (n_steps,) int64 of a Markov chain driven by ``uniforms``."""
    states = np.empty(uniforms.shape[0], dtype=np.int64)
    nk.markov_chain_kernel(startprob, transmat, uniforms, states)
    return states


def _row_bounds(n_rows, work_per_row):
    """Split ``n_rows`` rows into one block per worker thread when the work is large enough."""
    n_threads = max(1, worker_threads())
    if n_threads == 1 or n_rows * work_per_row < _MIN_WORK_FOR_THREADS:
        return (0, n_rows)
    n_blocks = min(n_threads, n_rows)
    return tuple(int(b) for b in (n_rows * np.arange(n_blocks + 1)) // n_blocks)


def _gaussian_factors(covars, covariance_type, n_features):
    """``(variances (K, d), inv_chol_t, log_det)``: what the log-density kernels take
    (per-feature variances, or inverse Cholesky factors of the full or tied covariances)."""
    covars = np.asarray(covars, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        variances = np.ascontiguousarray(
            covars if covariance_type == "diag" else np.repeat(covars[:, None], n_features, axis=1))
        return variances, _NO_FACTORS[0], _NO_FACTORS[1]
    covs = np.ascontiguousarray(covars.reshape(-1, n_features, n_features))
    inv_chol_t = np.empty_like(covs)
    log_det = np.empty(covs.shape[0])
    if nk.cholesky_factors(covs, inv_chol_t, log_det) >= 0:
        raise np.linalg.LinAlgError("Matrix is not positive definite")
    return _NO_FACTORS[2], inv_chol_t, log_det


_NO_FACTORS = (np.empty((0, 0, 0)), np.empty(0), np.empty((0, 0)))

# Below this many values (n_samples * K) a Gaussian E-step runs as one compiled call.
_FUSED_MAX_SIZE = 50_000


def gaussian_estep(x, means, covars, covariance_type, stats_shift, log_startprob, log_transmat, lengths, use_log):
    """Forward-backward and Gaussian statistics of a small problem in one compiled call, or
    ``None`` when the problem is large enough for the separate (threaded) steps.

    Returns ``(forward_backward's five results, (count, sx, sxx))`` as
    :func:`forward_backward` and :func:`gaussian_stats` would.
    """
    n_samples, n_features = x.shape
    n_states = means.shape[0]
    if n_samples * n_states > _FUSED_MAX_SIZE:
        return None
    x = np.ascontiguousarray(x, dtype=np.float64)
    means = np.ascontiguousarray(means, dtype=np.float64)
    full = covariance_type in ("full", "tied")
    variances, inv_chol_t, log_det = _gaussian_factors(covars, covariance_type, n_features)
    offsets = _offsets(lengths)
    trans, trans_t, log_trans_t = _transition_arrays(log_transmat)
    log_emission = np.empty((n_samples, n_states))
    post = np.empty_like(log_emission)
    alpha = np.empty_like(log_emission)
    shift = np.empty(0 if use_log else n_samples)
    loglik = np.empty(len(lengths))
    status = np.empty(len(lengths), dtype=np.int64)
    xi = np.zeros((n_states, n_states))
    count = np.zeros(n_states)
    sx = np.zeros((n_states, n_features))
    sxx = np.zeros((n_states, n_features if full else 1, n_features))
    nk.gaussian_estep_block(
        x, means, variances, inv_chol_t, log_det, full, np.ascontiguousarray(stats_shift, dtype=np.float64),
        np.exp(log_startprob), trans, trans_t, log_startprob, log_transmat, log_trans_t, offsets, use_log,
        log_emission, post, shift, alpha, loglik, status, xi, count, sx, sxx,
    )
    expected_start = post[0].copy() if len(lengths) == 1 else post[offsets[:-1]].sum(axis=0)
    return (loglik, post, xi, expected_start, status), (count, sx, sxx if full else sxx[:, 0])


def gaussian_log_density(x, means, covars, covariance_type):
    """``(n_samples, K)`` Gaussian log-densities of the rows of ``x`` under every state.

    ``covars`` has the compact shape of ``covariance_type`` (spherical ``(K,)``, diag
    ``(K, d)``, full ``(K, d, d)``, tied ``(d, d)``). Raises ``numpy.linalg.LinAlgError``
    when a full or tied covariance is not positive definite.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    means = np.ascontiguousarray(means, dtype=np.float64)
    n_samples, n_features = x.shape
    n_states = means.shape[0]
    out = np.empty((n_samples, n_states))
    variances, inv_chol_t, log_det = _gaussian_factors(covars, covariance_type, n_features)
    if covariance_type in ("diag", "spherical"):
        bounds = _row_bounds(n_samples, n_states * n_features)
        _run_blocks(nk.gaussian_diag_log_density_block, bounds,
                    lambda b, lo, hi: (x, means, variances, lo, hi, out))
    else:
        bounds = _row_bounds(n_samples, n_states * n_features * n_features)
        _run_blocks(nk.gaussian_full_log_density_block, bounds,
                    lambda b, lo, hi: (x, means, inv_chol_t, log_det, lo, hi, out))
    return out


def gaussian_stats(x, shift, post, full):
    """Posterior-weighted sums about ``shift``: ``(count (K,), sx (K, d), sxx)`` with ``sxx``
    the per-feature squares ``(K, d)`` or, with ``full``, the outer products ``(K, d, d)``."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    post = np.ascontiguousarray(post, dtype=np.float64)
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    n_samples, n_states = post.shape
    n_features = x.shape[1]
    bounds = _row_bounds(n_samples, n_states * n_features * (n_features if full else 1))
    n_blocks = len(bounds) - 1
    count = np.zeros((n_blocks, n_states))
    sx = np.zeros((n_blocks, n_states, n_features))
    sxx = np.zeros((n_blocks, n_states, n_features if full else 1, n_features))
    _run_blocks(nk.gaussian_stats_block, bounds,
                lambda b, lo, hi: (x, shift, post, full, lo, hi, count[b], sx[b], sxx[b]))
    if n_blocks > 1:
        count, sx, sxx = count.sum(0), sx.sum(0), sxx.sum(0)
    else:
        count, sx, sxx = count[0], sx[0], sxx[0]
    return count, sx, (sxx if full else sxx[:, 0])


def categorical_counts(symbols, post, n_symbols):
    """``(count (K,), counts (K, n_symbols))``: posterior mass per state, and per state and symbol."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int64)
    post = np.ascontiguousarray(post, dtype=np.float64)
    n_samples, n_states = post.shape
    bounds = _row_bounds(n_samples, n_states)
    n_blocks = len(bounds) - 1
    count = np.zeros((n_blocks, n_states))
    counts = np.zeros((n_blocks, n_states, n_symbols))
    bad = np.full(n_blocks, -1, dtype=np.int64)

    def block(b, lo, hi):
        bad[b] = nk.categorical_counts_block(symbols, post, lo, hi, count[b], counts[b])

    _run_blocks(block, bounds, lambda b, lo, hi: (b, lo, hi))
    if bad.max() >= 0:
        t = int(bad[bad >= 0][0])
        raise ValueError(f"symbol {symbols[t]} at row {t} is outside the emission table of {n_symbols} symbols")
    if n_blocks > 1:
        return count.sum(0), counts.sum(0)
    return count[0], counts[0]


class _EMIterationWorkspace:
    """The forward-backward buffers of a whole-iteration kernel, allocated once per fit:
    log emissions, posteriors, forward messages and row shifts (N, K) or (N,), and the
    per-sequence ``loglik`` and ``status`` the kernels fill."""

    def __init__(self, n_samples, n_states, lengths, use_log):
        self.offsets = _offsets(lengths)
        self.use_log = bool(use_log)
        self.log_emission = np.empty((n_samples, n_states))
        self.post = np.empty_like(self.log_emission)
        self.alpha = np.empty_like(self.log_emission)
        self.shift = np.empty(0 if use_log else n_samples)
        self.loglik = np.empty(len(lengths))
        self.status = np.empty(len(lengths), dtype=np.int64)


class GaussianEMIteration(_EMIterationWorkspace):
    """Whole Baum-Welch iterations of a Gaussian HMM, one compiled call each (two on
    large inputs).

    Built once per fit (:meth:`create`): the data, its sequence offsets, the prior arrays
    in the layout of ``_numba_kernels.gaussian_mstep`` and the forward-backward workspace.
    Calling it with the current parameters returns the total log-likelihood of the
    E-step, the parameters of the M-step that follows (fresh arrays in the parameters'
    own shapes) and a count of what kept its values; where that count is non-zero, the
    attributes ``loglik`` (per sequence), ``n_empty`` (start and transition rows that
    kept their values) and ``empty`` (a (K,) flag per Gaussian state that kept its
    parameters) say which.
    """

    def __init__(self, x, lengths, stats_shift, covariance_type, use_log, update, priors):
        n_samples, n_features = x.shape
        n_states = priors["means_weight"].shape[0]
        super().__init__(n_samples, n_states, lengths, use_log)
        self.x = x
        self.stats_shift = np.ascontiguousarray(stats_shift, dtype=np.float64)
        self.covariance_type = covariance_type
        self.kind = nk.COVARIANCE_CODES[covariance_type]
        self.update = np.array(update, dtype=np.bool_)
        self.priors = tuple(np.ascontiguousarray(priors[name], dtype=np.float64) for name in (
            "start_prior", "trans_prior", "means_prior", "means_weight", "covars_prior", "covars_dof"))
        self.layout = {"diag": (n_states, 1, n_features), "spherical": (n_states, 1, 1),
                       "full": (n_states, n_features, n_features), "tied": (1, n_features, n_features)}[
            covariance_type]
        self.empty = np.empty(n_states, dtype=np.int64)
        self.n_empty = np.empty(2, dtype=np.int64)

    @classmethod
    def create(cls, x, lengths, stats_shift, covariance_type, use_log, update, priors):
        """The iteration of this problem, or ``None`` where it is large and forward-backward
        would spread its sequences over several worker threads (the separate, threaded
        E-step pays off there). Otherwise it applies at any size (a single sequence is never
        split): its buffers are reused across iterations."""
        n_states = priors["means_weight"].shape[0]
        if x.shape[0] * n_states > _FUSED_MAX_SIZE and len(_block_bounds(_offsets(lengths), n_states)) > 2:
            return None
        return cls(np.ascontiguousarray(x, dtype=np.float64), lengths, stats_shift, covariance_type, use_log,
                   update, priors)

    def __call__(self, startprob, transmat, means, covars):
        n_states = self.log_emission.shape[1]
        startprob = np.ascontiguousarray(startprob, dtype=np.float64).reshape(1, n_states)
        transmat = np.ascontiguousarray(transmat, dtype=np.float64)
        means = np.ascontiguousarray(means, dtype=np.float64)
        covars = np.asarray(covars, dtype=np.float64)
        new_start = np.empty(n_states)
        new_trans = np.empty((n_states, n_states))
        new_means = np.empty_like(means)
        new_covars = np.empty(covars.shape)
        covars_layout = np.ascontiguousarray(covars).reshape(self.layout)
        # Above the size of a small problem the emissions are exponentiated by numpy, whose
        # vectorised exp outweighs a second compiled call.
        emissions_ready = self.log_emission.size > _FUSED_MAX_SIZE
        if emissions_ready:
            if nk.gaussian_em_emissions(self.x, self.kind, means, covars_layout, self.use_log, False,
                                        self.log_emission, self.post, self.shift) >= 0:
                raise np.linalg.LinAlgError("Matrix is not positive definite")
            if not self.use_log:
                np.exp(self.post, out=self.post)
        bad, log_likelihood, kept = nk.gaussian_em_iteration(
            self.x, self.offsets, self.stats_shift, self.use_log, self.kind, self.update,
            startprob, transmat, means, covars_layout, *self.priors,
            self.log_emission, self.post, self.shift, self.alpha, self.loglik, self.status,
            new_start.reshape(1, n_states), new_trans, new_means, new_covars.reshape(self.layout), self.empty,
            self.n_empty, emissions_ready,
        )
        if bad >= 0:
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        return log_likelihood, new_start, new_trans, new_means, new_covars, kept


class CategoricalEMIteration(_EMIterationWorkspace):
    """Whole Baum-Welch iterations of an HMM with one column of categorical symbols, one
    compiled call each (``_numba_kernels.categorical_em_iteration``).

    Built once per fit (:meth:`create`): the symbols, the sequence offsets, the prior
    arrays and the forward-backward workspace. Calling it with the current parameters
    returns the total log-likelihood of the E-step, the start, transition and emission
    probabilities of the M-step that follows (fresh arrays) and a count of the rows that
    kept their values (the attribute ``n_empty`` holds them per parameter: start,
    transitions, emissions); ``loglik`` holds the log-likelihood of each sequence.
    """

    def __init__(self, symbols, lengths, n_states, use_log, update, priors):
        super().__init__(symbols.shape[0], n_states, lengths, use_log)
        self.symbols = symbols
        self.update = np.array(update, dtype=np.bool_)
        self.priors = tuple(np.ascontiguousarray(priors[name], dtype=np.float64)
                            for name in ("start_prior", "trans_prior", "emission_prior"))
        self.n_empty = np.empty(3, dtype=np.int64)

    @classmethod
    def create(cls, symbols, lengths, n_states, use_log, update, priors):
        """The iteration of this problem, or ``None`` where the separate steps are faster
        (sequences that forward-backward spreads over several worker threads) or where a
        symbol lies outside the emission table (the general path reports it)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        n_symbols = priors["emission_prior"].shape[1]
        if len(_block_bounds(_offsets(lengths), n_states)) > 2 or not (
                symbols.size and 0 <= symbols.min() and symbols.max() < n_symbols):
            return None
        return cls(symbols, lengths, n_states, use_log, update, priors)

    def __call__(self, startprob, transmat, emissionprob):
        n_states = self.post.shape[1]
        startprob = np.ascontiguousarray(startprob, dtype=np.float64).reshape(1, n_states)
        transmat = np.ascontiguousarray(transmat, dtype=np.float64)
        emissionprob = np.ascontiguousarray(emissionprob, dtype=np.float64)
        new_start = np.empty(n_states)
        new_trans = np.empty((n_states, n_states))
        new_emission = np.empty_like(emissionprob)
        log_likelihood, kept = nk.categorical_em_iteration(
            self.symbols, self.offsets, self.use_log, self.update, startprob, transmat, emissionprob, *self.priors,
            self.log_emission, self.post, self.shift, self.alpha, self.loglik, self.status,
            new_start.reshape(1, n_states), new_trans, new_emission, self.n_empty,
        )
        return log_likelihood, new_start, new_trans, new_emission, kept
