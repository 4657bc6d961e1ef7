"""numba-compiled explicit-duration (semi-Markov) recursions over concatenated sequences.

The kernels follow the segment-end formulation of :mod:`probkit.inference.semi_markov`
and work in log space, normalised at every step by the censored prefix likelihood
``delta_t = log p(x_t | x_1..x_{t-1})``, so every message stays O(1) whatever the
length of the sequence. A window of ``d`` steps ending at ``t`` is summed incrementally
over ``d`` (``acc += log_emission - delta``), which costs nothing extra, keeps ``-inf``
emissions exact (no prefix sums, whose differences would turn ``-inf`` into NaN) and stops
as soon as the window becomes impossible.

Emissions arrive shifted by their row maximum (``shifted_log_emission`` of the HMM kernels)
so the window sums hold numbers near zero even when log-densities are of order -1e11;
the shifts are added back to the log-likelihood.

Each block kernel processes sequences ``[s_begin, s_end)`` and releases the GIL; blocks
run on the worker threads of the HMM backend, each with its own accumulators.
"""

from __future__ import annotations

import math

import numpy as np

from probkit.inference._numba_backend import _block_bounds, _offsets, _run_blocks
from probkit.inference._numba_kernels import _jit, shifted_log_emission

_NEG_INF = -np.inf

# exp(x) = 2^n exp(r) with n = round(x / ln 2), r = x - n ln 2 and exp(r), |r| <= ln(2) / 2, by
# its Taylor series to degree 13 (truncation below 1e-17), written out so that LLVM
# vectorises it: numba's math.exp is a scalar library call, and the window sums over
# durations are almost all exponentials. The reduction uses one constant: n ln 2 then
# carries a rounding error of |x| 2^-53, so a term exp(x) is off by at most
# |x| exp(x) 2^-53 <= 4e-17 of the largest term (x = 0) -- negligible in the sums and
# posteriors built from them, and safe under the reassociation the callers allow.
_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
# Results below exp(-708) (subnormal) are flushed to zero: they are summed with a term equal to 1.
_EXP_FLOOR = -708.0
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(k) for k in range(2, 14))
_FAST_SUMS = {"reassoc", "contract", "arcp", "nsz"}
# Max reductions vectorise only without NaN, which the kernels never form (-inf stays allowed).
_FAST_MAX = {"nnan", "reassoc", "contract", "nsz"}


@_jit(inline="always")
def _exp_sum(values, n, shift, out, bits, pow2):
    """``out[k] = exp(values[k] - shift)`` for ``k < n`` (arguments <= 0); returns their sum.

    ``pow2`` is ``bits`` viewed as float64 (made once by the caller): the exponent is
    written as the bits of the float64 ``2^n``.
    """
    for k in range(n):
        x = values[k] - shift
        keep = x > _EXP_FLOOR
        x = x if keep else _EXP_FLOOR
        t = math.floor(x * _LOG2E + 0.5)
        r = x - t * _LN2
        p = _C13
        p = p * r + _C12
        p = p * r + _C11
        p = p * r + _C10
        p = p * r + _C9
        p = p * r + _C8
        p = p * r + _C7
        p = p * r + _C6
        p = p * r + _C5
        p = p * r + _C4
        p = p * r + _C3
        p = p * r + _C2
        p = p * r + 1.0
        p = p * r + 1.0
        out[k] = p if keep else 0.0
        bits[k] = (np.int64(t) + 1023) << 52
    s = 0.0
    for k in range(n):
        v = out[k] * pow2[k]
        out[k] = v
        s += v
    return s



@_jit()
def _logsumexp_row(values, n):
    """log(sum(exp(values[:n]))); -inf when every entry is -inf."""
    m = _NEG_INF
    for k in range(n):
        if values[k] > m:
            m = values[k]
    if m == _NEG_INF:
        return _NEG_INF
    s = 0.0
    for k in range(n):
        s += math.exp(values[k] - m)
    return m + math.log(s)


@_jit(inline="always")
def _forward_workspace(n_states, max_dur):
    """The buffers of :func:`_forward_one` for one block: two (K, D) window rings, four
    length-D rows, two length-K rows, and the exponent ``bits`` with their float64 view."""
    bits = np.empty(max_dur, dtype=np.int64)
    return (np.empty((n_states, max_dur)), np.empty((n_states, max_dur)), np.empty(max_dur), np.empty(max_dur),
            np.empty(max_dur), np.empty(max_dur), np.empty(n_states), np.empty(n_states), bits,
            bits.view(np.float64))


@_jit(inline="always")
def _with_shifts(log_value, shift, lo, hi):
    """A sequence's log-probability on shifted emissions with the row shifts added back (-inf stays -inf)."""
    if log_value == _NEG_INF:
        return _NEG_INF
    shift_sum = 0.0
    for t in range(lo, hi):
        shift_sum += shift[t]
    return log_value + shift_sum


def _rotated(log_dur, forward):
    """Duration tables laid out for the window rings (see ``_forward_one``), shape (K, 2D)."""
    max_dur = log_dur.shape[1]
    i = np.arange(2 * max_dur)
    idx = (max_dur - i) % max_dur if forward else i % max_dur
    return np.ascontiguousarray(log_dur[:, idx])


@_jit(fastmath=_FAST_MAX)
def _forward_one(log_start, log_trans_t, dur_ring, surv_ring, le, lo, hi, censored, predictive, bs, fe, delta,
                 acc_ring, start_ring, buf_b, buf_f, buf_s, buf_w, craw, row_k, bits, pow2):
    """Normalised forward pass over rows ``lo:hi``.

    ``bs[t, j]``: log p(x_<t, a segment of j starts at t) - c_{t-1};
    ``fe[t, j]``: log p(x_<=t, a segment of j ends at t) - c_t; ``c_t = delta[lo] + ... +
    delta[t]``. Any finite normaliser keeps the recursion exact; two are used:

    * ``predictive=True``: ``delta[t] = log p(x_t | x_<t)`` with the segment in progress
      censored at ``t`` (what ``score_samples`` reports), at the cost of a second
      log-sum-exp over durations at every step;
    * ``predictive=False``: ``delta[t]`` = the largest window term ``bs + emissions`` of
      the step, a maximum and no exponential. It keeps the messages O(1) just as well:
      every window term at step ``t`` extends one that was at most 0 at an earlier step.

    The windows of state j that end at ``t`` live in rings of D slots indexed by their
    first step modulo D: ``acc_ring[j, s % D]`` = emissions of steps s..t minus the
    normalisers of steps s..t-1, ``start_ring[j, s % D] = bs[s, j]``. Moving to step t + 1
    adds one value to every slot and overwrites the slot of the window that grew past D,
    so every loop over durations is a plain vectorisable loop. ``dur_ring`` /
    ``surv_ring`` hold the duration tables rotated so that slot k of step t reads
    ``[j, D - t % D + k]`` (see ``_rotated``).

    Returns ``(log_likelihood - sum(shift), z_end)`` where ``z_end = L - c_{T-1}`` (what the
    backward pass starts from), or ``(-inf, -inf)`` for an impossible sequence (the
    remaining rows are then undefined).
    """
    n_states, max_dur = acc_ring.shape
    for j in range(n_states):
        bs[lo, j] = log_start[j]
        for k in range(max_dur):
            start_ring[j, k] = _NEG_INF
            acc_ring[j, k] = 0.0
    total = 0.0
    z_end = 0.0
    previous = 0.0
    for t in range(hi - lo):
        row = lo + t
        q = t % max_dur
        off = max_dur - q
        last = row == hi - 1
        surv = predictive or (last and censored)
        top = _NEG_INF
        for j in range(n_states):
            x = le[row, j]
            inc = x - previous
            for k in range(max_dur):
                acc_ring[j, k] += inc
            acc_ring[j, q] = x
            start_ring[j, q] = bs[row, j]
            mb = _NEG_INF
            mf = _NEG_INF
            for k in range(max_dur):
                b = start_ring[j, k] + acc_ring[j, k]
                buf_b[k] = b
                v = b + dur_ring[j, off + k]
                buf_f[k] = v
                mb = b if b > mb else mb
                mf = v if v > mf else mf
            top = mb if mb > top else top
            if mf == _NEG_INF:
                fe[row, j] = _NEG_INF
            else:
                fe[row, j] = mf + math.log(_exp_sum(buf_f, max_dur, mf, buf_w, bits, pow2))
            if surv:
                ms = _NEG_INF
                for k in range(max_dur):
                    v = buf_b[k] + surv_ring[j, off + k]
                    buf_s[k] = v
                    ms = v if v > ms else ms
                if ms == _NEG_INF:
                    craw[j] = _NEG_INF
                else:
                    craw[j] = ms + math.log(_exp_sum(buf_s, max_dur, ms, buf_w, bits, pow2))
        z = _logsumexp_row(craw, n_states) if predictive else top
        if z == _NEG_INF:
            return _NEG_INF, _NEG_INF
        delta[row] = z
        previous = z
        total += z
        for j in range(n_states):
            fe[row, j] -= z
        if last:
            if censored:
                for j in range(n_states):
                    craw[j] -= z
                z_end = _logsumexp_row(craw, n_states)
            else:
                for j in range(n_states):
                    row_k[j] = fe[row, j]
                z_end = _logsumexp_row(row_k, n_states)
        else:
            for k in range(n_states):
                for j in range(n_states):
                    row_k[j] = fe[row, j] + log_trans_t[k, j]
                bs[row + 1, k] = _logsumexp_row(row_k, n_states)
    if z_end == _NEG_INF:
        return _NEG_INF, _NEG_INF
    return total + z_end, z_end


@_jit(fastmath=_FAST_MAX)
def _backward_one(log_trans, dur_ring, log_surv, le, lo, hi, censored, z_end, bs, fe, delta, be, post, seg_start,
                  xi, dur, cens, acc_ring, end_ring, terms, weights, bb_next, bb_cur, row_k, bits, pow2):
    """Backward pass and every posterior of one (possible) sequence.

    ``be[t, j]``: log p(x_>t | a segment of j ends at t) - (L - c_t). The quantity for
    segment starts is kept for two steps only (``bb_next`` = step t + 1, ``bb_cur`` =
    step t). Windows starting at ``t`` live in rings indexed by their last step modulo D
    (``acc_ring``: emissions minus normalisers of steps t..e; ``end_ring[j, e % D] =
    be[e, j]``); ``dur_ring`` is the duration table rotated for them (``_rotated``).
    A segment of j over ``t .. e`` has posterior ``exp(bs[t, j] + term)``, where the terms
    are those of the backward sum, so the posteriors cost one exponential per (t, j) on top
    of the sum: ``weight * exp(bs + max)``. ``post`` (state posteriors) receives, for the
    segments starting at ``t``, the suffix sums over durations (step ``e`` lies in every
    segment that starts at t and ends at e or later).
    ``z_end = L - c_{T-1}`` comes from the forward pass: without censoring a segment ends
    at the last step with weight ``exp(-z_end)``; with censoring the last segment's
    survival term is scaled by it.
    """
    n_states, max_dur = acc_ring.shape
    T = hi - lo
    end_value = _NEG_INF if censored else -z_end
    last_slot = (T - 1) % max_dur
    for j in range(n_states):
        bb_next[j] = _NEG_INF
        for k in range(max_dur):
            acc_ring[j, k] = _NEG_INF
            end_ring[j, k] = _NEG_INF
    for t in range(T - 1, -1, -1):
        row = lo + t
        q = t % max_dur
        off = max_dur - q
        if t == T - 1:
            for j in range(n_states):
                be[row, j] = end_value
        else:
            for j in range(n_states):
                fj = fe[row, j]
                m = _NEG_INF
                for k in range(n_states):
                    v = log_trans[j, k] + bb_next[k]
                    row_k[k] = v
                    if v > m:
                        m = v
                if m == _NEG_INF:
                    be[row, j] = _NEG_INF
                    continue
                s = 0.0
                for k in range(n_states):
                    s += math.exp(row_k[k] - m)
                be[row, j] = m + math.log(s)
                if fj > _NEG_INF:
                    for k in range(n_states):
                        xi[j, k] += math.exp(fj + row_k[k])
        n_windows = min(max_dur, T - t)
        for j in range(n_states):
            g = le[row, j] - delta[row]
            for k in range(max_dur):
                acc_ring[j, k] += g
            acc_ring[j, q] = g
            end_ring[j, q] = be[row, j]
            m = _NEG_INF
            for k in range(max_dur):
                v = acc_ring[j, k] + end_ring[j, k] + dur_ring[j, off + k]
                terms[k] = v
                m = v if v > m else m
            vc = _NEG_INF
            if censored and T - t <= max_dur:
                vc = log_surv[j, T - t - 1] + acc_ring[j, last_slot] - z_end
            mm = m if m > vc else vc
            if mm == _NEG_INF:
                bb_cur[j] = _NEG_INF
                seg_start[row, j] = 0.0
                continue
            s = _exp_sum(terms, max_dur, mm, weights, bits, pow2)
            wc = math.exp(vc - mm)
            b = mm + math.log(s + wc)
            bb_cur[j] = b
            start = bs[row, j]
            if start == _NEG_INF:
                seg_start[row, j] = 0.0
                continue
            seg_start[row, j] = math.exp(start + b)
            scale = math.exp(start + mm)
            q_cens = wc * scale
            if q_cens > 0.0:
                cens[j, T - t - 1] += q_cens
            # weights by slot -> durations: slot k holds d - 1 = (k - q) mod D
            for k in range(q, max_dur):
                dur[j, k - q] += weights[k] * scale
            for k in range(q):
                dur[j, k - q + max_dur] += weights[k] * scale
            suffix = 0.0
            for d in range(n_windows, 0, -1):
                suffix += weights[(t + d - 1) % max_dur] * scale
                post[row + d - 1, j] += suffix + q_cens
        for j in range(n_states):
            bb_next[j] = bb_cur[j]


@_jit()
def forward_block(log_start, log_trans_t, dur_ring, surv_ring, le, shift, offsets, s_begin, s_end, censored, bs, fe,
                  delta, loglik, possible):
    """Forward pass of sequences ``[s_begin, s_end)``: log-likelihoods and per-step predictive terms."""
    acc_ring, start_ring, buf_b, buf_f, buf_s, buf_w, craw, row_k, bits, pow2 = _forward_workspace(
        le.shape[1], dur_ring.shape[1] // 2)
    for s in range(s_begin, s_end):
        lo, hi = offsets[s], offsets[s + 1]
        ll, z_end = _forward_one(log_start, log_trans_t, dur_ring, surv_ring, le, lo, hi, censored, True, bs, fe,
                                 delta, acc_ring, start_ring, buf_b, buf_f, buf_s, buf_w, craw, row_k, bits, pow2)
        possible[s] = ll != _NEG_INF
        loglik[s] = _with_shifts(ll, shift, lo, hi)


@_jit()
def forward_backward_block(log_start, log_trans, log_trans_t, dur_ring, surv_ring, dur_ring_b, log_surv, le, shift,
                           offsets, s_begin, s_end, censored, bs, fe, delta, be, post, seg_start, loglik, xi, dur,
                           cens):
    """Forward-backward of sequences ``[s_begin, s_end)`` with block-local ``xi``, ``dur``, ``cens``."""
    n_states = le.shape[1]
    acc_ring, side_ring, buf_b, buf_f, buf_s, buf_w, craw, row_k, bits, pow2 = _forward_workspace(
        n_states, dur_ring.shape[1] // 2)
    bb_next = np.empty(n_states)
    bb_cur = np.empty(n_states)
    for s in range(s_begin, s_end):
        lo, hi = offsets[s], offsets[s + 1]
        for t in range(lo, hi):
            for j in range(n_states):
                post[t, j] = 0.0
                seg_start[t, j] = 0.0
        ll, z_end = _forward_one(log_start, log_trans_t, dur_ring, surv_ring, le, lo, hi, censored, False, bs, fe,
                                 delta, acc_ring, side_ring, buf_b, buf_f, buf_s, buf_w, craw, row_k, bits, pow2)
        loglik[s] = _with_shifts(ll, shift, lo, hi)
        if ll == _NEG_INF:
            continue
        _backward_one(log_trans, dur_ring_b, log_surv, le, lo, hi, censored, z_end, bs, fe, delta, be, post,
                      seg_start, xi, dur, cens, acc_ring, side_ring, buf_f, buf_w, bb_next, bb_cur, row_k, bits,
                      pow2)


@_jit()
def viterbi_block(log_start, log_trans_t, log_dur, log_surv, le, shift, offsets, s_begin, s_end, censored, vs, ve,
                  arg_d, arg_j, log_prob, path, seg_first):
    """Most probable segmentation of sequences ``[s_begin, s_end)`` (max-plus recursion and traceback).

    ``vs[t, k]``: best score of ``x_<t`` with a segment of k starting at t (its
    predecessor state in ``arg_j``); ``ve[t, j]``: best score of ``x_<=t`` with a segment
    of j ending at t (its duration in ``arg_d``). Ties go to the shorter duration and the
    lower state. Impossible sequences get ``-inf`` and a path of -1.
    """
    n_states, max_dur = log_dur.shape
    best_c = np.empty(n_states)
    best_cd = np.empty(n_states, dtype=np.int64)
    for s in range(s_begin, s_end):
        lo, hi = offsets[s], offsets[s + 1]
        T = hi - lo
        for j in range(n_states):
            vs[lo, j] = log_start[j]
            best_c[j] = _NEG_INF
            best_cd[j] = 0
        for t in range(T):
            row = lo + t
            last = t == T - 1
            dmax = min(max_dur, t + 1)
            for j in range(n_states):
                acc = 0.0
                best = _NEG_INF
                bd = 0
                for d in range(1, dmax + 1):
                    s0 = row - d + 1
                    acc += le[s0, j]
                    if acc == _NEG_INF:
                        break
                    base = vs[s0, j] + acc
                    v = base + log_dur[j, d - 1]
                    if v > best:
                        best = v
                        bd = d
                    if last and censored:
                        vc = base + log_surv[j, d - 1]
                        if vc > best_c[j]:
                            best_c[j] = vc
                            best_cd[j] = d
                ve[row, j] = best
                arg_d[row, j] = bd
            if row + 1 < hi:
                for k in range(n_states):
                    best = _NEG_INF
                    bj = 0
                    for j in range(n_states):
                        v = ve[row, j] + log_trans_t[k, j]
                        if v > best:
                            best = v
                            bj = j
                    vs[row + 1, k] = best
                    arg_j[row + 1, k] = bj
        best = _NEG_INF
        bj = -1
        bd = 0
        for j in range(n_states):
            v = best_c[j] if censored else ve[hi - 1, j]
            if v > best:
                best = v
                bj = j
                bd = best_cd[j] if censored else arg_d[hi - 1, j]
        log_prob[s] = _with_shifts(best, shift, lo, hi)
        if best == _NEG_INF:
            for t in range(lo, hi):
                path[t] = -1
                seg_first[t] = False
            continue
        end = hi - 1
        j = bj
        d = bd
        while True:
            start = end - d + 1
            for t in range(start, end + 1):
                path[t] = j
                seg_first[t] = False
            seg_first[start] = True
            if start == lo:
                break
            j_prev = arg_j[start, j]
            end = start - 1
            j = j_prev
            d = arg_d[end, j]


# ---------------------------------------------------------------------------------------
# numpy-side drivers
# ---------------------------------------------------------------------------------------


def _blocks(lengths, n_states, max_dur):
    offsets = _offsets(lengths)
    # The HMM backend sizes its blocks by n_samples * K^2 multiply-adds; a semi-Markov
    # step costs about K * (D + K), passed as an equivalent number of states.
    equivalent_states = int(math.ceil(math.sqrt(n_states * (max_dur + n_states))))
    return offsets, _block_bounds(offsets, equivalent_states)


def _layout(log_trans, log_dur, log_emission, lengths):
    """What every driver starts from: ``(offsets, block bounds, shifted emissions, their row
    shifts, log_trans transposed)``."""
    n_samples, n_states = log_emission.shape
    offsets, bounds = _blocks(lengths, n_states, log_dur.shape[1])
    le = np.empty_like(log_emission)
    shift = np.empty(n_samples)
    shifted_log_emission(log_emission, le, shift)
    return offsets, bounds, le, shift, np.ascontiguousarray(log_trans.T)


def forward(log_start, log_trans, log_dur, log_surv, log_emission, lengths, censored):
    """Returns (log_likelihood (n_seq,), predictive (N,), possible (n_seq,) bool)."""
    offsets, bounds, le, shift, log_trans_t = _layout(log_trans, log_dur, log_emission, lengths)
    bs = np.empty_like(le)
    fe = np.empty_like(le)
    delta = np.zeros(len(le))
    loglik = np.empty(len(lengths))
    possible = np.empty(len(lengths), dtype=np.bool_)

    dur_ring, surv_ring = _rotated(log_dur, True), _rotated(log_surv, True)

    def args(b, s_begin, s_end):
        return (log_start, log_trans_t, dur_ring, surv_ring, le, shift, offsets, s_begin, s_end, censored, bs, fe,
                delta, loglik, possible)

    _run_blocks(forward_block, bounds, args)
    predictive = delta + shift
    if not censored:
        # The last step of a sequence carries the probability that its segment ends there.
        last = offsets[1:] - 1
        end = np.full(len(lengths), -np.inf)
        with np.errstate(invalid="ignore"):
            end[possible] = np.logaddexp.reduce(fe[last[possible]], axis=1)
        predictive[last] += end
    predictive[np.repeat(~possible, lengths)] = -np.inf
    return loglik, predictive, possible


def forward_backward(log_start, log_trans, log_dur, log_surv, log_emission, lengths, censored):
    """Returns (log_likelihood, posteriors, segment_starts, expected_transitions, completed, censored_counts)."""
    n_states, max_dur = log_dur.shape
    offsets, bounds, le, shift, log_trans_t = _layout(log_trans, log_dur, log_emission, lengths)
    bs = np.empty_like(le)
    fe = np.empty_like(le)
    be = np.empty_like(le)
    delta = np.zeros(len(le))
    post = np.empty_like(le)
    seg_start = np.empty_like(le)
    loglik = np.empty(len(lengths))
    n_blocks = len(bounds) - 1
    xi = np.zeros((n_blocks, n_states, n_states))
    dur = np.zeros((n_blocks, n_states, max_dur))
    cens = np.zeros((n_blocks, n_states, max_dur))

    dur_ring, surv_ring, dur_ring_b = _rotated(log_dur, True), _rotated(log_surv, True), _rotated(log_dur, False)

    def args(b, s_begin, s_end):
        return (log_start, log_trans, log_trans_t, dur_ring, surv_ring, dur_ring_b, log_surv, le, shift, offsets,
                s_begin, s_end, censored, bs, fe, delta, be, post, seg_start, loglik, xi[b], dur[b], cens[b])

    _run_blocks(forward_backward_block, bounds, args)
    return loglik, post, seg_start, xi.sum(0), dur.sum(0), cens.sum(0)


def viterbi(log_start, log_trans, log_dur, log_surv, log_emission, lengths, censored):
    """Returns (log_prob (n_seq,), path (N,) int64, segment_first (N,) bool)."""
    offsets, bounds, le, shift, log_trans_t = _layout(log_trans, log_dur, log_emission, lengths)
    vs = np.empty_like(le)
    ve = np.empty_like(le)
    arg_d = np.zeros(le.shape, dtype=np.int64)
    arg_j = np.zeros(le.shape, dtype=np.int64)
    log_prob = np.empty(len(lengths))
    path = np.empty(len(le), dtype=np.int64)
    seg_first = np.empty(len(le), dtype=np.bool_)

    def args(b, s_begin, s_end):
        return (log_start, log_trans_t, log_dur, log_surv, le, shift, offsets, s_begin, s_end, censored, vs, ve,
                arg_d, arg_j, log_prob, path, seg_first)

    _run_blocks(viterbi_block, bounds, args)
    return log_prob, path, seg_first
