"""numba-compiled HMM recursions over the concatenated ("lengths") layout.

Sequences are stored back to back in one ``(n_samples, K)`` array and delimited by
``offsets`` (``offsets[s]:offsets[s + 1]`` is sequence ``s``), so nothing is padded.
Every kernel processes a contiguous block of sequences ``[s_begin, s_end)`` and releases
the GIL, so the caller can run blocks on Python threads; each block owns its own
expected-transition accumulator, so no two threads write to the same memory. (numba's
own ``parallel=True`` was measured 2-3x slower here: its OpenMP worker threads spin
between parallel regions and compete with the computation on small machines.)

Loop forms were chosen by measurement (T=100,000, K=8): each step computes the
predicted probability of state j as a dot product of column j of the transition matrix
(a row of its transpose) with the previous message, with scalar accumulators, which
was 2x faster than accumulating rows into a predicted-vector array.

Numerics of the "scaling" kernels: emission probabilities are shifted per step by their
maximum log-value before exponentiation (so log-emissions near -1e4 cost nothing), the
forward messages are normalised to sum to one, and the backward messages are normalised
by their own sum. A sequence whose forward normaliser c_t or posterior normaliser Z_t
falls below ``SCALED_FLOOR`` is recomputed by the log-space kernels, which are exact for
any dynamic range; forward-only calls on transition matrices with structural zeros are
verified by a backward sweep of Z_t. The argument is in the ``probkit.inference``
docstring.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Posterior normalisers Z_t at or above this bound (and transition probabilities at or
# above it, for forward-only calls) keep what the linear recursions flush to zero below
# T * K * tiny / SCALED_FLOOR ~ T * K * 1e-154 of the result.
SCALED_FLOOR = math.sqrt(np.finfo(np.float64).tiny)

# Status of a sequence after a kernel ran: which representation produced its results.
STATUS_SCALED = 0
STATUS_LOG = 1
STATUS_IMPOSSIBLE = 2

_NEG_INF = -np.inf

# Reassociation lets LLVM vectorise the short dot products and sums. "nnan"/"ninf" are
# deliberately absent: -inf is a legitimate value (zero probability) in the log kernels.
_FAST_SUMS = {"reassoc", "contract", "arcp", "nsz"}
# For the Viterbi max-plus recursion: a max reduction vectorises only without NaNs, which
# the validation rules out; infinities stay allowed.
_FAST_MAX = {"nnan", "reassoc", "contract", "nsz"}


def _jit(**options):
    """``numba.njit`` with on-disk caching where a cache directory is writable.

    numba refuses ``cache=True`` at decoration time when neither the package directory
    nor a user cache directory can be written (for example a read-only install with no
    home directory); the kernels then simply compile on first use in every process.
    """

    def decorate(func):
        try:
            return numba.njit(cache=True, nogil=True, error_model="numpy", **options)(func)
        except RuntimeError:
            return numba.njit(cache=False, nogil=True, error_model="numpy", **options)(func)

    return decorate


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


@_jit()
def _logsumexp_vec(values):
    """log(sum(exp(values))) of a 1-D array; -inf when every entry is -inf."""
    m = _NEG_INF
    for k in range(values.shape[0]):
        if values[k] > m:
            m = values[k]
    if m == _NEG_INF:
        return _NEG_INF
    s = 0.0
    for k in range(values.shape[0]):
        s += math.exp(values[k] - m)
    return m + math.log(s)


@_jit(fastmath={"reassoc"})
def all_below_inf(values):
    """True when a 1-D array holds no NaN and no +inf (-inf is fine), in one pass."""
    count = 0
    for k in range(values.shape[0]):
        # "not (v < inf)" is True exactly for NaN and +inf; counting keeps the loop
        # branch-free so it vectorises.
        count += 0 if values[k] < np.inf else 1
    return count == 0


@_jit()
def shifted_log_emission(log_emission, out, shift):
    """Write ``log_emission - rowmax`` into ``out`` and the row maxima into ``shift``.

    A row that is entirely -inf gets shift 0, so it exponentiates to zeros (and the
    scaled kernels then fall back to log space for that sequence) instead of to NaN.
    The caller exponentiates ``out`` with numpy, whose vectorised exp is several times
    faster than numba's scalar one.
    """
    n_samples, n_states = log_emission.shape
    for t in range(n_samples):
        m = log_emission[t, 0]
        for k in range(1, n_states):
            v = log_emission[t, k]
            m = v if v > m else m
        if m == _NEG_INF:
            m = 0.0
        shift[t] = m
        for k in range(n_states):
            out[t, k] = log_emission[t, k] - m


# ---------------------------------------------------------------------------------------
# Forward recursions for one sequence
# ---------------------------------------------------------------------------------------


@_jit(fastmath=_FAST_SUMS, inline="always")
def _normalise_row(alpha, t, c):
    """Divide row ``t`` of ``alpha`` by its sum ``c``; False (row left as is) when ``c`` is below ``SCALED_FLOOR``."""
    if not c >= SCALED_FLOOR:
        return False
    inv = 1.0 / c
    for j in range(alpha.shape[1]):
        alpha[t, j] *= inv
    return True


@_jit(fastmath=_FAST_SUMS)
def _forward_scaled_one(prior, trans_t, emis, shift, lo, hi, alpha):
    """Scaled forward pass over rows ``lo:hi``; returns ``(ok, log_likelihood)``.

    ``emis`` holds exp(log_emission - shift); ``alpha`` receives the filtered
    distributions (rows sum to one). ``alpha`` may be the same array as ``emis``: each
    row is read before it is overwritten. ``ok`` is False when a step normaliser fell
    below ``SCALED_FLOOR``; the caller then recomputes in log space.
    """
    n_states = trans_t.shape[0]
    c = 0.0
    for j in range(n_states):
        v = prior[j] * emis[lo, j]
        alpha[lo, j] = v
        c += v
    if not _normalise_row(alpha, lo, c):
        return False, 0.0
    # Multiply normalisers and take one log per ~100 steps instead of one per step.
    scale_product = c
    log_scale = 0.0
    shift_sum = shift[lo]
    for t in range(lo + 1, hi):
        c = 0.0
        for j in range(n_states):
            p = 0.0
            for i in range(n_states):
                p += trans_t[j, i] * alpha[t - 1, i]
            v = p * emis[t, j]
            alpha[t, j] = v
            c += v
        if not _normalise_row(alpha, t, c):
            return False, 0.0
        scale_product *= c
        if scale_product < 1e-100 or scale_product > 1e100:
            log_scale += math.log(scale_product)
            scale_product = 1.0
        shift_sum += shift[t]
    return True, log_scale + math.log(scale_product) + shift_sum


@_jit()
def _row_shift(log_emission, t):
    """Largest log emission of step ``t`` (0 when all are -inf): see ``_forward_log_one``."""
    m = log_emission[t, 0]
    for k in range(1, log_emission.shape[1]):
        v = log_emission[t, k]
        m = v if v > m else m
    return 0.0 if m == _NEG_INF else m


@_jit()
def _forward_log_one(log_prior, log_trans_t, log_emission, lo, hi, log_alpha, tmp):
    """Log-space forward pass; ``log_alpha`` rows are normalised log filtered probabilities.

    ``log_trans_t`` is the transposed log transition matrix (``[j, i]`` = i -> j) so the
    inner loop is contiguous. Each step's log emissions are shifted by their maximum,
    which is added back to the log-likelihood: the recursion then works with numbers near
    zero, where float64 resolves them (emissions of -1e11 would otherwise leave filtered
    probabilities wrong in the sixth digit). Returns the log-likelihood, -inf when the
    sequence is impossible (its ``log_alpha`` rows from that step on are then -inf).
    """
    n_states = log_trans_t.shape[0]
    shift = _row_shift(log_emission, lo)
    for j in range(n_states):
        tmp[j] = log_prior[j] + (log_emission[lo, j] - shift)
    z = _logsumexp_vec(tmp)
    if z == _NEG_INF:
        log_alpha[lo:hi, :] = _NEG_INF
        return _NEG_INF
    for j in range(n_states):
        log_alpha[lo, j] = tmp[j] - z
    total = z + shift
    for t in range(lo + 1, hi):
        shift = _row_shift(log_emission, t)
        for j in range(n_states):
            m = _NEG_INF
            for i in range(n_states):
                v = log_alpha[t - 1, i] + log_trans_t[j, i]
                m = v if v > m else m
            if m == _NEG_INF:
                tmp[j] = _NEG_INF
            else:
                s = 0.0
                for i in range(n_states):
                    s += math.exp(log_alpha[t - 1, i] + log_trans_t[j, i] - m)
                tmp[j] = m + math.log(s) + (log_emission[t, j] - shift)
        z = _logsumexp_vec(tmp)
        if z == _NEG_INF:
            log_alpha[t:hi, :] = _NEG_INF
            return _NEG_INF
        for j in range(n_states):
            log_alpha[t, j] = tmp[j] - z
        total += z + shift
    return total


# ---------------------------------------------------------------------------------------
# Backward recursions for one sequence (posteriors and expected transitions fused)
# ---------------------------------------------------------------------------------------


@_jit(fastmath=_FAST_SUMS)
def _backward_scaled_one(trans, post, lo, hi, alpha, outer_sum, beta, w, b, e_next, gamma):
    """Scaled backward pass; ``post[lo:hi]`` holds scaled emissions on entry, posteriors on exit.

    ``outer_sum`` receives sum_t (alpha_t / Z_t) w_{t+1}^T with
    w_{t+1} = e_{t+1} * beta_{t+1}; the expected transition counts are ``trans * outer_sum``,
    which saves one multiplication per (i, j) and step. The emissions of step t are read
    into ``e_next`` before the posterior of step t overwrites them, so no second
    exponentiation of the emissions is needed. Returns False when a normaliser fell below
    ``SCALED_FLOOR`` (the caller then discards ``outer_sum`` and uses log space).
    """
    n_states = trans.shape[0]
    for j in range(n_states):
        beta[j] = 1.0
        e_next[j] = post[hi - 1, j]
        post[hi - 1, j] = alpha[hi - 1, j]
    for t in range(hi - 2, lo - 1, -1):
        for j in range(n_states):
            w[j] = e_next[j] * beta[j]
        z = 0.0
        d = 0.0
        for i in range(n_states):
            s = 0.0
            for j in range(n_states):
                s += trans[i, j] * w[j]
            b[i] = s
            g = alpha[t, i] * s
            gamma[i] = g
            z += g
            d += s
        # With alpha_t and beta_{t+1} both normalised, z is the probability mass the two
        # messages share; a tiny z means the flushed (underflowed) parts could matter.
        if not z >= SCALED_FLOOR:
            return False
        inv_z = 1.0 / z
        for i in range(n_states):
            u_i = alpha[t, i] * inv_z
            for j in range(n_states):
                outer_sum[i, j] += u_i * w[j]
        inv_d = 1.0 / d
        for i in range(n_states):
            e_next[i] = post[t, i]
            post[t, i] = gamma[i] * inv_z
            beta[i] = b[i] * inv_d
    return True


@_jit()
def _backward_log_one(log_trans, log_emission, lo, hi, log_alpha, post, xi_sum, lb, lw, lb_new, tmp):
    """Log-space backward pass writing posteriors into ``post[lo:hi]`` and adding xi to ``xi_sum``.

    Each step is normalised by its own log Z_t = logsumexp(log_alpha_t + log_beta_t), so
    posteriors and the xi of that step are normalised consistently (sum_j xi_t[i, j] =
    gamma_t[i]) and nothing grows with the sequence length.
    """
    n_states = log_trans.shape[0]
    for j in range(n_states):
        lb[j] = 0.0
        post[hi - 1, j] = math.exp(log_alpha[hi - 1, j])
    for t in range(hi - 2, lo - 1, -1):
        shift = _row_shift(log_emission, t + 1)  # any per-step constant cancels in the normalisation
        for j in range(n_states):
            lw[j] = (log_emission[t + 1, j] - shift) + lb[j]
        for i in range(n_states):
            for j in range(n_states):
                tmp[j] = log_trans[i, j] + lw[j]
            lb_new[i] = _logsumexp_vec(tmp)
        for i in range(n_states):
            tmp[i] = log_alpha[t, i] + lb_new[i]
        log_z = _logsumexp_vec(tmp)
        if log_z == _NEG_INF:
            # Unreachable for a sequence with positive likelihood; kept NaN-free anyway.
            for i in range(n_states):
                post[t, i] = 0.0
                lb[i] = 0.0
            continue
        for i in range(n_states):
            post[t, i] = math.exp(tmp[i] - log_z)
            row = log_alpha[t, i] - log_z
            if row != _NEG_INF:
                for j in range(n_states):
                    xi_sum[i, j] += math.exp(row + log_trans[i, j] + lw[j])
        d = _logsumexp_vec(lb_new)
        for i in range(n_states):
            lb[i] = lb_new[i] - d


@_jit(fastmath=_FAST_SUMS)
def _backward_check_scaled_one(trans, emis, alpha, lo, hi, beta):
    """Verify a scaled forward pass with a backward sweep that only computes normalisers.

    Returns False when some Z_t = sum_i alpha_t[i] (A (e_{t+1} beta_{t+1}))_i falls below
    ``SCALED_FLOOR``, i.e. when probability the forward pass flushed to zero could carry
    weight in the likelihood (see ``probkit.inference``). ``beta`` is workspace; the
    scaled backward message is updated in place (after its use in w = e * beta).
    """
    n_states = trans.shape[0]
    w = np.empty(n_states)
    for j in range(n_states):
        beta[j] = 1.0
    for t in range(hi - 2, lo - 1, -1):
        for j in range(n_states):
            w[j] = emis[t + 1, j] * beta[j]
        z = 0.0
        d = 0.0
        for i in range(n_states):
            s = 0.0
            for j in range(n_states):
                s += trans[i, j] * w[j]
            beta[i] = s
            z += alpha[t, i] * s
            d += s
        if not z >= SCALED_FLOOR:
            return False
        inv_d = 1.0 / d
        for i in range(n_states):
            beta[i] *= inv_d
    return True


# ---------------------------------------------------------------------------------------
# Block kernels (a contiguous range of sequences each)
# ---------------------------------------------------------------------------------------


@_jit()
def _scaled_sequence(start, trans, trans_t, shift, lo, hi, post, alpha, xi_acc, work, outer_seq):
    """Scaled forward-backward of rows ``lo:hi``; returns ``(ok, log_likelihood)``.

    ``post[lo:hi]`` holds exp(log_emission - shift) on entry and the posteriors on exit;
    the expected transition counts are added to ``xi_acc``. ``ok`` is False (nothing
    added to ``xi_acc``, ``post`` rows overwritten) when a normaliser fell below
    ``SCALED_FLOOR``: the caller then runs :func:`_log_sequence`. ``work`` is (6, K) and
    ``outer_seq`` (K, K) workspace.
    """
    n_states = trans.shape[0]
    ok, ll = _forward_scaled_one(start, trans_t, post, shift, lo, hi, alpha)
    if not ok:
        return False, 0.0
    outer_seq[:, :] = 0.0
    if not _backward_scaled_one(trans, post, lo, hi, alpha, outer_seq, work[0], work[1], work[2], work[3], work[4]):
        return False, 0.0
    for i in range(n_states):
        for j in range(n_states):
            xi_acc[i, j] += trans[i, j] * outer_seq[i, j]
    return True, ll


@_jit()
def _log_sequence(log_start, log_trans, log_trans_t, log_emission, lo, hi, post, alpha, xi_acc, work):
    """Log-space forward-backward of rows ``lo:hi``; returns ``(log_likelihood, status)``.

    Posteriors go to ``post[lo:hi]`` (zeros for an impossible sequence) and the expected
    transition counts are added to ``xi_acc``. ``work`` is (6, K) workspace.
    """
    ll = _forward_log_one(log_start, log_trans_t, log_emission, lo, hi, alpha, work[5])
    if ll == _NEG_INF:
        post[lo:hi, :] = 0.0
        return ll, STATUS_IMPOSSIBLE
    _backward_log_one(log_trans, log_emission, lo, hi, alpha, post, xi_acc, work[0], work[1], work[2], work[3])
    return ll, STATUS_LOG


@_jit()
def forward_backward_block(
    start, trans, trans_t, log_start, log_trans, log_trans_t, log_emission, offsets,
    s_begin, s_end, use_log, post, shift, alpha, loglik, status, xi_acc,
):
    """Posteriors and expected transitions of sequences ``s_begin:s_end``.

    ``start``/``trans``/``trans_t`` are the probabilities (``trans_t`` transposed),
    ``log_*`` their logarithms. On entry ``post`` holds exp(log_emission - shift) unless
    ``use_log``. On exit ``post`` holds the posteriors (zero rows for impossible
    sequences), ``loglik``/``status`` are set per sequence and the expected transition
    counts are added to ``xi_acc``. ``alpha`` is workspace shaped like ``post``.
    """
    n_states = trans.shape[0]
    work = np.empty((6, n_states))
    outer_seq = np.empty((n_states, n_states))
    for s in range(s_begin, s_end):
        lo = offsets[s]
        hi = offsets[s + 1]
        if not use_log:
            ok, ll = _scaled_sequence(start, trans, trans_t, shift, lo, hi, post, alpha, xi_acc, work, outer_seq)
            if ok:
                loglik[s] = ll
                status[s] = STATUS_SCALED
                continue
        loglik[s], status[s] = _log_sequence(log_start, log_trans, log_trans_t, log_emission, lo, hi, post, alpha,
                                             xi_acc, work)


@_jit()
def forward_block(
    prior, trans, trans_t, log_prior, log_trans_t, log_emission, offsets, s_begin, s_end,
    use_log, keep_log, verify, emis, filtered, shift, loglik, status,
):
    """Filtered distributions p(z_t | x_1..t) and log-likelihoods of sequences ``s_begin:s_end``.

    ``emis`` holds exp(log_emission - shift) unless ``use_log``; ``filtered`` may be the
    same array (the scaled pass then overwrites it row by row) unless ``verify``, which
    runs a backward sweep over each scaled result and recomputes the sequence in log
    space when it fails (needed when the transition matrix has entries below
    ``SCALED_FLOOR``; see ``probkit.inference``). Rows of sequences computed in log space
    hold log-probabilities when ``keep_log`` (for backward sampling) and probabilities
    otherwise; rows of an impossible sequence are 0 (-inf with ``keep_log``) from the
    impossible step on. ``prior`` is the start distribution (or, for online filtering, the
    predictive distribution of the next step).
    """
    n_states = trans_t.shape[0]
    tmp = np.empty(n_states)
    for s in range(s_begin, s_end):
        lo = offsets[s]
        hi = offsets[s + 1]
        if not use_log:
            ok, ll = _forward_scaled_one(prior, trans_t, emis, shift, lo, hi, filtered)
            if ok and verify:
                ok = _backward_check_scaled_one(trans, emis, filtered, lo, hi, tmp)
            if ok:
                loglik[s] = ll
                status[s] = STATUS_SCALED
                continue
        ll = _forward_log_one(log_prior, log_trans_t, log_emission, lo, hi, filtered, tmp)
        loglik[s] = ll
        status[s] = STATUS_IMPOSSIBLE if ll == _NEG_INF else STATUS_LOG
        if not keep_log:
            for t in range(lo, hi):
                for j in range(n_states):
                    filtered[t, j] = math.exp(filtered[t, j])


@_jit(fastmath=_FAST_MAX)
def _viterbi_delta_one(log_start, log_trans, log_trans_t, log_emission, lo, hi, delta):
    """Max-plus forward pass of one sequence; ``delta[lo:hi]`` receives the scores.

    Only maxima are computed here; the arg-max is recovered during the traceback for the
    single state on the path, which costs K per step instead of K^2. States are handled
    in blocks of eight whose running maxima stay in registers (``delta[t-1, i]`` is
    broadcast against row i of the matrix), and the remaining K mod 8 states as max
    reductions over a row of the transposed matrix; measured against reductions only,
    blocks are 1.1x faster at K=8, 1.5x at K=16 and 3x at K=64. Scores are shifted to
    max 0 whenever they drift below -1e4 (the shifts are returned as an offset) so they
    keep full precision on long sequences. Returns ``(offset, possible)``.
    """
    n_states = log_trans.shape[0]
    n_blocked = n_states - n_states % 8
    m = _NEG_INF
    for j in range(n_states):
        v = log_start[j] + log_emission[lo, j]
        delta[lo, j] = v
        m = v if v > m else m
    if m == _NEG_INF:
        return 0.0, False
    offset = 0.0
    for t in range(lo + 1, hi):
        m = _NEG_INF
        for jb in range(0, n_blocked, 8):
            b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = _NEG_INF
            for i in range(n_states):
                d = delta[t - 1, i]
                b0 = max(b0, d + log_trans[i, jb])
                b1 = max(b1, d + log_trans[i, jb + 1])
                b2 = max(b2, d + log_trans[i, jb + 2])
                b3 = max(b3, d + log_trans[i, jb + 3])
                b4 = max(b4, d + log_trans[i, jb + 4])
                b5 = max(b5, d + log_trans[i, jb + 5])
                b6 = max(b6, d + log_trans[i, jb + 6])
                b7 = max(b7, d + log_trans[i, jb + 7])
            v0 = b0 + log_emission[t, jb]
            v1 = b1 + log_emission[t, jb + 1]
            v2 = b2 + log_emission[t, jb + 2]
            v3 = b3 + log_emission[t, jb + 3]
            v4 = b4 + log_emission[t, jb + 4]
            v5 = b5 + log_emission[t, jb + 5]
            v6 = b6 + log_emission[t, jb + 6]
            v7 = b7 + log_emission[t, jb + 7]
            delta[t, jb] = v0
            delta[t, jb + 1] = v1
            delta[t, jb + 2] = v2
            delta[t, jb + 3] = v3
            delta[t, jb + 4] = v4
            delta[t, jb + 5] = v5
            delta[t, jb + 6] = v6
            delta[t, jb + 7] = v7
            m = max(m, max(max(max(v0, v1), max(v2, v3)), max(max(v4, v5), max(v6, v7))))
        for j in range(n_blocked, n_states):
            best = _NEG_INF
            for i in range(n_states):
                v = delta[t - 1, i] + log_trans_t[j, i]
                best = v if v > best else best
            v = best + log_emission[t, j]
            delta[t, j] = v
            m = v if v > m else m
        if m < -1e4:
            if m == _NEG_INF:
                return 0.0, False
            for j in range(n_states):
                delta[t, j] -= m
            offset += m
    return offset, True


@_jit()
def viterbi_block(log_start, log_trans, log_trans_t, log_emission, offsets, s_begin, s_end, delta, path, log_prob):
    """Viterbi paths (into ``path``) and log-probabilities of sequences ``s_begin:s_end``.

    Ties go to the lowest state index; an impossible sequence gets log-probability -inf
    and a path of -1. ``delta`` is workspace shaped like ``log_emission``.
    """
    n_states = log_trans.shape[0]
    for s in range(s_begin, s_end):
        lo = offsets[s]
        hi = offsets[s + 1]
        offset, possible = _viterbi_delta_one(log_start, log_trans, log_trans_t, log_emission, lo, hi, delta)
        if not possible:
            path[lo:hi] = -1
            log_prob[s] = _NEG_INF
            continue
        state = 0
        for j in range(1, n_states):
            if delta[hi - 1, j] > delta[hi - 1, state]:
                state = j
        log_prob[s] = offset + delta[hi - 1, state]
        path[hi - 1] = state
        for t in range(hi - 1, lo, -1):
            # Recompute the arg-max the forward pass did not store: the same sums in the
            # same order give the same maximum, and the strict ">" keeps the first one.
            best_state = 0
            best = delta[t - 1, 0] + log_trans[0, state]
            for i in range(1, n_states):
                v = delta[t - 1, i] + log_trans[i, state]
                if v > best:
                    best = v
                    best_state = i
            state = best_state
            path[t - 1] = state


@_jit()
def _draw_categorical(weights, u):
    """Inverse-CDF draw from unnormalised non-negative ``weights`` with a uniform ``u`` in [0, 1).

    Never returns a zero-weight index: the target u * total is strictly below the total.
    Returns -1 when every weight is zero.
    """
    total = 0.0
    for k in range(weights.shape[0]):
        total += weights[k]
    if not total > 0.0:
        return -1
    target = u * total
    acc = 0.0
    last_positive = 0
    for k in range(weights.shape[0]):
        if weights[k] > 0.0:
            last_positive = k
            acc += weights[k]
            if acc > target:
                return k
    # Rounding left acc <= target at the end: the last positive-weight state is the answer.
    return last_positive


@_jit()
def backward_sample_block(trans, log_trans, offsets, filtered, status, uniforms, paths):
    """Draw state paths backwards from filtered distributions (forward-filter backward-sample).

    ``filtered`` rows are probabilities for scaled sequences and log-probabilities for
    sequences computed in log space (``status``); ``uniforms`` has shape
    (n_paths, n_samples) and supplies every random number, so the result is a pure
    function of it. z_{T-1} ~ filtered_{T-1}; z_t ~ filtered_t[i] * trans[i, z_{t+1}].
    Paths of impossible sequences are -1.
    """
    n_states = trans.shape[0]
    n_paths = uniforms.shape[0]
    n_seq = offsets.shape[0] - 1
    weights = np.empty(n_states)
    for p in range(n_paths):
        for s in range(n_seq):
            lo = offsets[s]
            hi = offsets[s + 1]
            if status[s] == STATUS_IMPOSSIBLE:
                paths[p, lo:hi] = -1
                continue
            in_log = status[s] == STATUS_LOG
            nxt = -1
            for t in range(hi - 1, lo - 1, -1):
                if in_log:
                    m = _NEG_INF
                    for i in range(n_states):
                        v = filtered[t, i] if nxt < 0 else filtered[t, i] + log_trans[i, nxt]
                        weights[i] = v
                        m = v if v > m else m
                    for i in range(n_states):
                        weights[i] = math.exp(weights[i] - m)
                else:
                    for i in range(n_states):
                        weights[i] = filtered[t, i] if nxt < 0 else filtered[t, i] * trans[i, nxt]
                nxt = _draw_categorical(weights, uniforms[p, t])
                paths[p, t] = nxt


@_jit()
def markov_chain_kernel(startprob, transmat, uniforms, states):
    """Sample a Markov chain: states[0] ~ startprob, states[t] ~ transmat[states[t-1]]."""
    states[0] = _draw_categorical(startprob, uniforms[0])
    for t in range(1, states.shape[0]):
        states[t] = _draw_categorical(transmat[states[t - 1]], uniforms[t])


# ---------------------------------------------------------------------------------------
# Emission log-densities and weighted statistics (rows r_begin:r_end of a block)
# ---------------------------------------------------------------------------------------

_LOG_2PI = math.log(2.0 * math.pi)


@_jit(fastmath=_FAST_SUMS)
def gaussian_diag_log_density_block(x, means, variances, r_begin, r_end, out):
    """``out[t, k] = log N(x_t; means_k, diag(variances_k))`` for rows ``r_begin:r_end``.

    Computed as squared differences (no expansion of the square, so data far from the
    origin keep their digits).
    """
    n_states, n_features = means.shape
    precision = np.empty((n_states, n_features))
    log_norm = np.empty(n_states)
    for k in range(n_states):
        c = 0.0
        for d in range(n_features):
            precision[k, d] = 1.0 / variances[k, d]
            c += _LOG_2PI + math.log(variances[k, d])
        log_norm[k] = -0.5 * c
    for t in range(r_begin, r_end):
        for k in range(n_states):
            q = 0.0
            for d in range(n_features):
                diff = x[t, d] - means[k, d]
                q += diff * diff * precision[k, d]
            out[t, k] = log_norm[k] - 0.5 * q


@_jit()
def cholesky_factors(covariances, inv_chol_t, log_det):
    """Inverses of the lower Cholesky factors of ``covariances`` (C, d, d), stored transposed
    (``inv_chol_t[c, j, i] = L_c^-1[i, j]``, zero for ``i < j``), and the log-determinants;
    returns the index of the first matrix that is not positive definite, or -1."""
    n_mats, n_features = covariances.shape[0], covariances.shape[1]
    chol = np.zeros((n_features, n_features))
    for c in range(n_mats):
        ld = 0.0
        for i in range(n_features):
            for j in range(i + 1):
                s = covariances[c, i, j]
                for m in range(j):
                    s -= chol[i, m] * chol[j, m]
                if i == j:
                    if not s > 0.0:
                        return c
                    chol[i, i] = math.sqrt(s)
                    ld += math.log(chol[i, i])
                else:
                    chol[i, j] = s / chol[j, j]
        log_det[c] = 2.0 * ld
        # column j of L^-1 by forward substitution of L v = e_j
        for j in range(n_features):
            for i in range(n_features):
                if i < j:
                    inv_chol_t[c, j, i] = 0.0
                    continue
                s = 1.0 if i == j else 0.0
                for m in range(j, i):
                    s -= chol[i, m] * inv_chol_t[c, j, m]
                inv_chol_t[c, j, i] = s / chol[i, i]
    return -1


@_jit(fastmath=_FAST_SUMS)
def gaussian_full_log_density_block(x, means, inv_chol_t, log_det, r_begin, r_end, out):
    """``out[t, k] = log N(x_t; means_k, L_c L_c^T)`` for rows ``r_begin:r_end``, where ``c`` is
    ``k`` (one factor per state) or 0 (one tied factor).

    ``y_k = L_c^-1 (x_t - means_k)`` for all states at once: the K (transposed) inverse
    factors side by side as one (d, K d) matrix, and the means repeated in the same
    layout, so each feature of ``x_t`` updates one contiguous row of K d sums (a loop that
    vectorises, where per-state loops of length d are too short to); the differences
    ``x_t - means_k`` are formed exactly, not expanded.
    """
    n_states, n_features = means.shape
    tied = inv_chol_t.shape[0] == 1
    width = n_states * n_features
    factors = np.empty((n_features, width))
    means_wide = np.empty((n_features, width))
    log_norm = np.empty(n_states)
    for k in range(n_states):
        c = 0 if tied else k
        log_norm[k] = -0.5 * (log_det[c] + n_features * _LOG_2PI)
        for j in range(n_features):
            for i in range(n_features):
                factors[j, k * n_features + i] = inv_chol_t[c, j, i]
                means_wide[j, k * n_features + i] = means[k, j]
    y = np.empty(width)
    for t in range(r_begin, r_end):
        x0 = x[t, 0]
        for col in range(width):
            y[col] = factors[0, col] * (x0 - means_wide[0, col])
        for j in range(1, n_features):
            xj = x[t, j]
            for col in range(width):
                y[col] += factors[j, col] * (xj - means_wide[j, col])
        for col in range(width):
            y[col] *= y[col]
        for k in range(n_states):
            q = 0.0
            for i in range(k * n_features, (k + 1) * n_features):
                q += y[i]
            out[t, k] = log_norm[k] - 0.5 * q


# Rows per matrix product of :func:`gaussian_stats_block` (the block of terms stays in cache).
_STATS_BLOCK_ROWS = 256


@_jit(fastmath=_FAST_SUMS)
def gaussian_stats_block(x, shift, post, full, r_begin, r_end, count, sx, sxx):
    """Add the posterior-weighted statistics of rows ``r_begin:r_end`` about ``shift``.

    ``count[k] += sum_t post[t, k]``, ``sx[k] += sum_t post[t, k] (x_t - shift)`` and
    ``sxx`` the weighted squares: per feature (``sxx`` of shape (K, 1, d)) or, with
    ``full``, the outer products (K, d, d), whose lower triangle is then overwritten by
    the upper one so the result is exactly symmetric.

    Each block of rows becomes a matrix of terms ``[1, x_t - shift, squares]`` and all
    sums of the block are one BLAS product ``post_block^T terms`` (K by 1 + d + d^2).
    """
    n_states = post.shape[1]
    n_features = x.shape[1]
    inner = n_features if full else 1
    width = 1 + n_features + inner * n_features
    terms = np.empty((_STATS_BLOCK_ROWS, width))
    sums = np.zeros((n_states, width))
    for lo in range(r_begin, r_end, _STATS_BLOCK_ROWS):
        hi = min(lo + _STATS_BLOCK_ROWS, r_end)
        rows = terms[:hi - lo]
        for t in range(lo, hi):
            r = t - lo
            rows[r, 0] = 1.0
            for d in range(n_features):
                rows[r, 1 + d] = x[t, d] - shift[d]
            if full:
                for d in range(n_features):
                    xd = rows[r, 1 + d]
                    for e in range(n_features):
                        rows[r, 1 + n_features + d * n_features + e] = xd * rows[r, 1 + e]
            else:
                for d in range(n_features):
                    rows[r, 1 + n_features + d] = rows[r, 1 + d] * rows[r, 1 + d]
        sums += np.dot(post[lo:hi].T, rows)
    for k in range(n_states):
        count[k] += sums[k, 0]
        for d in range(n_features):
            sx[k, d] += sums[k, 1 + d]
        for d in range(inner):
            for e in range(n_features):
                sxx[k, d, e] += sums[k, 1 + n_features + d * n_features + e]
    if full:
        for k in range(n_states):
            for d in range(n_features):
                for e in range(d):
                    sxx[k, d, e] = sxx[k, e, d]


@_jit()
def categorical_counts_block(symbols, post, r_begin, r_end, count, counts):
    """Add ``sum_t post[t, k]`` to ``count[k]`` and ``post[t, k]`` to ``counts[k, symbols[t]]``
    over rows ``r_begin:r_end``; returns the first row whose symbol is outside the table, or -1."""
    n_states = post.shape[1]
    n_symbols = counts.shape[1]
    for t in range(r_begin, r_end):
        m = symbols[t]
        if m < 0 or m >= n_symbols:
            return t
        for k in range(n_states):
            g = post[t, k]
            count[k] += g
            counts[k, m] += g
    return -1


@_jit()
def _gaussian_log_emission(x, means, variances, inv_chol_t, log_det, full, use_log, exponentiate,
                           log_emission, post, shift):
    """Log-densities (``variances`` per feature, or Cholesky factors when ``full``) into
    ``log_emission``; unless ``use_log``, ``log_emission - rowmax`` into ``post`` and the
    row maxima into ``shift``, exponentiated here when ``exponentiate`` (else the caller
    exponentiates ``post`` with numpy's vectorised exp)."""
    n_samples, n_states = log_emission.shape
    if full:
        gaussian_full_log_density_block(x, means, inv_chol_t, log_det, 0, n_samples, log_emission)
    else:
        gaussian_diag_log_density_block(x, means, variances, 0, n_samples, log_emission)
    if not use_log:
        shifted_log_emission(log_emission, post, shift)
        if exponentiate:
            for t in range(n_samples):
                for k in range(n_states):
                    post[t, k] = math.exp(post[t, k])


@_jit()
def gaussian_estep_block(
    x, means, variances, inv_chol_t, log_det, full, stats_shift,
    start, trans, trans_t, log_start, log_trans, log_trans_t, offsets, use_log,
    log_emission, post, shift, alpha, loglik, status, xi_acc, count, sx, sxx,
):
    """One E-step of a Gaussian HMM over every row and sequence in one call (small problems).

    Log-densities (``variances`` per feature, or Cholesky factors when ``full``) into
    ``log_emission``, then forward-backward (:func:`forward_backward_block`), then the
    posterior-weighted statistics about ``stats_shift`` (:func:`gaussian_stats_block`).
    For large inputs the steps run separately, with numpy's vectorised exponential and on
    worker threads.
    """
    _gaussian_log_emission(x, means, variances, inv_chol_t, log_det, full, use_log, True, log_emission, post, shift)
    forward_backward_block(start, trans, trans_t, log_start, log_trans, log_trans_t, log_emission, offsets,
                           0, offsets.shape[0] - 1, use_log, post, shift, alpha, loglik, status, xi_acc)
    gaussian_stats_block(x, stats_shift, post, full, 0, x.shape[0], count, sx, sxx)


# ---------------------------------------------------------------------------------------
# M-step kernels and a whole EM iteration of a small Gaussian HMM
# ---------------------------------------------------------------------------------------

# Covariance layouts of the compiled Gaussian M-step (see ``gaussian_mstep``).
COVARIANCE_CODES = {"diag": 0, "spherical": 1, "full": 2, "tied": 3}


@_jit()
def dirichlet_map_rows_block(previous, counts, prior, keep_zeros, out):
    """Rows of ``out``: ``max(prior - 1 + counts, 0)``, normalised; a row with no mass
    keeps ``previous``. Returns the number of such rows.

    With ``keep_zeros``, entries that are zero in ``previous`` stay zero: the compiled
    form of :func:`probkit.distributions.dirichlet.dirichlet_map_rows` for arrays of
    shape (rows, K) (``prior`` broadcast to that shape). Without it, the emission-table
    update of the discrete HMMs (``_EmissionProbHMM._mstep_emission``).
    """
    n_rows, n_states = previous.shape
    n_empty = 0
    for r in range(n_rows):
        total = 0.0
        for k in range(n_states):
            v = prior[r, k] - 1.0 + counts[r, k]
            v = v if v > 0.0 else 0.0
            if keep_zeros and previous[r, k] == 0.0:
                v = 0.0
            out[r, k] = v
            total += v
        if total > 0.0:
            for k in range(n_states):
                out[r, k] = out[r, k] / total
        else:
            n_empty += 1
            for k in range(n_states):
                out[r, k] = previous[r, k]
    return n_empty


@_jit()
def _chain_arrays(startprob, transmat):
    """``(start, trans, trans_t, log_start, log_trans, log_trans_t)`` of a (1, K) start row
    and a (K, K) transition matrix, as :func:`forward_backward_block` takes them."""
    n_states = transmat.shape[0]
    start = np.empty(n_states)
    log_start = np.empty(n_states)
    trans = np.empty((n_states, n_states))
    trans_t = np.empty((n_states, n_states))
    log_trans = np.empty((n_states, n_states))
    log_trans_t = np.empty((n_states, n_states))
    for i in range(n_states):
        log_start[i] = math.log(startprob[0, i])
        start[i] = math.exp(log_start[i])
        for j in range(n_states):
            lt = math.log(transmat[i, j])
            log_trans[i, j] = lt
            log_trans_t[j, i] = lt
            trans[i, j] = math.exp(lt)
            trans_t[j, i] = trans[i, j]
    return start, trans, trans_t, log_start, log_trans, log_trans_t


@_jit()
def _chain_mstep(offsets, post, xi, update, startprob, transmat, start_prior, trans_prior, new_start, new_trans,
                 n_empty):
    """Dirichlet MAP start and transition rows (structural zeros kept) from the posteriors
    of the first step of every sequence and the expected transitions ``xi``; ``update[0]``
    and ``update[1]`` say which are updated (the others are copied), ``n_empty[0:2]``
    receives the rows that kept their values."""
    n_states = transmat.shape[0]
    start_counts = np.zeros((1, n_states))
    for s in range(offsets.shape[0] - 1):
        for k in range(n_states):
            start_counts[0, k] += post[offsets[s], k]
    n_empty[0] = 0
    n_empty[1] = 0
    if update[0]:
        n_empty[0] = dirichlet_map_rows_block(startprob, start_counts, start_prior, True, new_start)
    else:
        new_start[:, :] = startprob
    if update[1]:
        n_empty[1] = dirichlet_map_rows_block(transmat, xi, trans_prior, True, new_trans)
    else:
        new_trans[:, :] = transmat


@_jit()
def _total(values):
    total = 0.0
    for s in range(values.shape[0]):
        total += values[s]
    return total


@_jit()
def gaussian_mstep(count, sx, sxx, stats_shift, means, covars, means_prior, means_weight, covars_prior,
                   covars_dof, kind, update_means, update_covars, new_means, new_covars, empty):
    """MAP means and covariances of K Gaussian states from statistics about ``stats_shift``.

    The compiled form of ``GaussianHMM._mstep_emission`` (the same formulas, in the same
    order). Statistics: ``count`` (K,), ``sx`` (K, d) and ``sxx`` (K, 1, d) per feature or
    (K, d, d) matrices. Covariances in a three-axis layout by ``kind``
    (:data:`COVARIANCE_CODES`): diag (K, 1, d), spherical (K, 1, 1), full (K, d, d), tied
    (1, d, d); ``covars_prior`` has the same layout with a diag/spherical prior per feature
    (K, 1, d); ``covars_dof`` is the prior's part of the denominator, (K, d) per feature
    or (C, 1) per matrix. ``means_prior`` and ``means_weight`` are (K, d). States whose
    statistics are empty keep their parameters; ``empty[k]`` is set to 1 for them.
    """
    n_states, n_features = sx.shape
    for k in range(n_states):
        empty[k] = 0
        for d in range(n_features):
            den = means_weight[k, d] + count[k]
            if den <= 0.0:
                empty[k] = 1
                new_means[k, d] = means[k, d]
            elif update_means:
                num = means_weight[k, d] * means_prior[k, d] + sx[k, d] + stats_shift[d] * count[k]
                new_means[k, d] = num / den
            else:
                new_means[k, d] = means[k, d]
    if not update_covars:
        new_covars[:, :, :] = covars
        return
    if kind <= 1:  # diag, spherical: sum_t g_t (x_t - mu)^2 per feature
        for k in range(n_states):
            spherical_sum = 0.0
            n_empty_features = 0
            for d in range(n_features):
                mc = new_means[k, d] - stats_shift[d]
                c_n = sxx[k, 0, d] - 2.0 * mc * sx[k, d] + mc * mc * count[k]
                diff = new_means[k, d] - means_prior[k, d]
                c_n = means_weight[k, d] * (diff * diff) + c_n
                c_d = covars_dof[k, d] + count[k]
                value = (covars_prior[k, 0, d] + c_n) / (c_d if c_d > 1e-5 else 1e-5)
                feature_empty = means_weight[k, d] + count[k] <= 0.0
                n_empty_features += feature_empty
                if kind == 0:
                    new_covars[k, 0, d] = covars[k, 0, d] if feature_empty else value
                else:
                    spherical_sum += value
            if kind == 1:
                new_covars[k, 0, 0] = covars[k, 0, 0] if n_empty_features == n_features else (
                    spherical_sum / n_features)
        return
    # full, tied: sum_t g_t (x_t - mu)(x_t - mu)^T, plus the prior's scatter of the means
    c_n = np.empty((n_states, n_features, n_features))
    total_count = 0.0
    for k in range(n_states):
        total_count += count[k]
        w = means_weight[k, 0]
        for i in range(n_features):
            mc_i = new_means[k, i] - stats_shift[i]
            md_i = new_means[k, i] - means_prior[k, i]
            for j in range(n_features):
                mc_j = new_means[k, j] - stats_shift[j]
                md_j = new_means[k, j] - means_prior[k, j]
                c = sxx[k, i, j] - sx[k, i] * mc_j - sx[k, j] * mc_i + count[k] * (mc_i * mc_j)
                c_n[k, i, j] = w * md_i * md_j + c
    if kind == 3:
        den = covars_dof[0, 0] + total_count
        for i in range(n_features):
            for j in range(n_features):
                s = 0.0
                for k in range(n_states):
                    s += c_n[k, i, j]
                new_covars[0, i, j] = (covars_prior[0, i, j] + s) / den
    else:
        for k in range(n_states):
            state_empty = means_weight[k, 0] + count[k] <= 0.0
            for d in range(1, n_features):
                state_empty = state_empty and means_weight[k, d] + count[k] <= 0.0
            den = covars_dof[k, 0] + count[k]
            for i in range(n_features):
                for j in range(n_features):
                    new_covars[k, i, j] = covars[k, i, j] if state_empty else (
                        (covars_prior[k, i, j] + c_n[k, i, j]) / den)
    for c in range(new_covars.shape[0]):
        for i in range(n_features):
            for j in range(i):
                v = 0.5 * (new_covars[c, i, j] + new_covars[c, j, i])
                new_covars[c, i, j] = v
                new_covars[c, j, i] = v


@_jit()
def gaussian_em_emissions(x, kind, means, covars, use_log, exponentiate, log_emission, post, shift):
    """The emission part of :func:`gaussian_em_iteration`: log-densities under ``means``
    and ``covars`` (the layout of :func:`gaussian_mstep`) into ``log_emission`` and,
    unless ``use_log``, their shifted values into ``post`` (exponentiated when
    ``exponentiate``) as :func:`_gaussian_log_emission` writes them. Returns -1, or the
    index of a covariance matrix that is not positive definite."""
    n_features = x.shape[1]
    n_states = means.shape[0]
    full = kind >= 2
    variances = np.empty((n_states, n_features))
    inv_chol_t = np.empty((covars.shape[0], n_features, n_features))
    log_det = np.empty(covars.shape[0])
    if full:
        bad = cholesky_factors(covars, inv_chol_t, log_det)
        if bad >= 0:
            return bad
    else:
        for k in range(n_states):
            for d in range(n_features):
                variances[k, d] = covars[k, 0, 0 if kind == 1 else d]
    _gaussian_log_emission(x, means, variances, inv_chol_t, log_det, full, use_log, exponentiate,
                           log_emission, post, shift)
    return -1


@_jit()
def gaussian_em_iteration(
    x, offsets, stats_shift, use_log, kind, update,
    startprob, transmat, means, covars,
    start_prior, trans_prior, means_prior, means_weight, covars_prior, covars_dof,
    log_emission, post, shift, alpha,
    loglik, status, new_start, new_trans, new_means, new_covars, empty, n_empty, emissions_ready,
):
    """One Baum-Welch iteration of a Gaussian HMM in one call: the E-step of
    :func:`gaussian_estep_block`, then the Dirichlet MAP start and transition
    probabilities (:func:`dirichlet_map_rows_block`) and the Gaussian M-step
    (:func:`gaussian_mstep`).

    With ``emissions_ready``, ``log_emission`` (and unless ``use_log``, ``post`` and
    ``shift``) already hold what :func:`gaussian_em_emissions` and an exponentiation of
    ``post`` gave for these parameters (large inputs: numpy's vectorised exp is faster).

    ``update`` holds four flags (start, transitions, means, covariances); parameters
    not updated are copied. Covariances use the layout of :func:`gaussian_mstep`.
    ``startprob``/``new_start`` and ``start_prior`` are (1, K). ``n_empty`` receives the
    rows of the start and transition updates that kept their values. Returns
    ``(bad, log_likelihood, kept)``: ``bad`` is -1, or the index of a covariance matrix
    that is not positive definite (nothing else is then computed); the total
    log-likelihood; the number of start/transition rows and states that kept their values.
    """
    n_samples, n_features = x.shape
    n_states = means.shape[0]
    full = kind >= 2
    if not emissions_ready:
        bad = gaussian_em_emissions(x, kind, means, covars, use_log, True, log_emission, post, shift)
        if bad >= 0:
            return bad, 0.0, 0
    start, trans, trans_t, log_start, log_trans, log_trans_t = _chain_arrays(startprob, transmat)
    xi = np.zeros((n_states, n_states))
    count = np.zeros(n_states)
    sx = np.zeros((n_states, n_features))
    sxx = np.zeros((n_states, n_features if full else 1, n_features))
    forward_backward_block(start, trans, trans_t, log_start, log_trans, log_trans_t, log_emission, offsets,
                           0, offsets.shape[0] - 1, use_log, post, shift, alpha, loglik, status, xi)
    gaussian_stats_block(x, stats_shift, post, full, 0, n_samples, count, sx, sxx)
    _chain_mstep(offsets, post, xi, update, startprob, transmat, start_prior, trans_prior, new_start, new_trans,
                 n_empty)
    gaussian_mstep(count, sx, sxx, stats_shift, means, covars, means_prior, means_weight, covars_prior,
                   covars_dof, kind, update[2], update[3], new_means, new_covars, empty)
    kept = n_empty[0] + n_empty[1]
    for k in range(n_states):
        kept += empty[k]
    return -1, _total(loglik), kept


# ---------------------------------------------------------------------------------------
# A whole EM iteration of a categorical HMM
# ---------------------------------------------------------------------------------------


@_jit()
def categorical_em_iteration(
    symbols, offsets, use_log, update, startprob, transmat, emissionprob,
    start_prior, trans_prior, emission_prior, log_emission, post, shift, alpha,
    loglik, status, new_start, new_trans, new_emission, n_empty,
):
    """One Baum-Welch iteration of an HMM with one column of categorical symbols.

    The emissions of step t are row ``symbols[t]`` of per-symbol tables computed once per
    call (no log or exp per step): exp(log B - max) for the scaled recursions, and log B,
    gathered into ``log_emission`` only for sequences that run in log space (``use_log``,
    or a scaled pass that fell below ``SCALED_FLOOR``). Then the posteriors' sums per
    symbol (:func:`categorical_counts_block`), the Dirichlet MAP start and transition rows
    (:func:`_chain_mstep`) and the emission rows ``max(prior - 1 + counts, 0)``,
    normalised (:func:`dirichlet_map_rows_block`, zeros not kept).

    ``startprob``/``new_start`` and ``start_prior`` are (1, K), ``emissionprob``,
    ``emission_prior`` and ``new_emission`` (K, n_symbols); symbols must lie in
    ``[0, n_symbols)``. ``update`` holds three flags (start, transitions, emissions);
    parameters not updated are copied. ``n_empty`` receives the start, transition and
    emission rows that kept their values. Returns ``(log_likelihood, kept)``: the total
    log-likelihood and the number of rows that kept their values.
    """
    n_samples, n_states = post.shape
    n_symbols = emissionprob.shape[1]
    start, trans, trans_t, log_start, log_trans, log_trans_t = _chain_arrays(startprob, transmat)
    log_table = np.empty((n_symbols, n_states))
    scaled_table = np.empty((n_symbols, n_states))
    table_shift = np.empty(n_symbols)
    for m in range(n_symbols):
        for k in range(n_states):
            log_table[m, k] = math.log(emissionprob[k, m])
        # the row shift of ``shifted_log_emission``, per symbol
        table_shift[m] = _row_shift(log_table, m)
        for k in range(n_states):
            scaled_table[m, k] = math.exp(log_table[m, k] - table_shift[m])
    xi = np.zeros((n_states, n_states))
    work = np.empty((6, n_states))
    outer_seq = np.empty((n_states, n_states))
    for s in range(offsets.shape[0] - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        if not use_log:
            for t in range(lo, hi):
                m = symbols[t]
                shift[t] = table_shift[m]
                for k in range(n_states):
                    post[t, k] = scaled_table[m, k]
            ok, ll = _scaled_sequence(start, trans, trans_t, shift, lo, hi, post, alpha, xi, work, outer_seq)
            if ok:
                loglik[s] = ll
                status[s] = STATUS_SCALED
                continue
        for t in range(lo, hi):
            m = symbols[t]
            for k in range(n_states):
                log_emission[t, k] = log_table[m, k]
        loglik[s], status[s] = _log_sequence(log_start, log_trans, log_trans_t, log_emission, lo, hi, post, alpha,
                                             xi, work)
    _chain_mstep(offsets, post, xi, update, startprob, transmat, start_prior, trans_prior, new_start, new_trans,
                 n_empty)
    n_empty[2] = 0
    if update[2]:
        count = np.zeros(n_states)
        counts = np.zeros((n_states, n_symbols))
        categorical_counts_block(symbols, post, 0, n_samples, count, counts)
        n_empty[2] = dirichlet_map_rows_block(emissionprob, counts, emission_prior, False, new_emission)
    else:
        new_emission[:, :] = emissionprob
    return _total(loglik), n_empty[0] + n_empty[1] + n_empty[2]
