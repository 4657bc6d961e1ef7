"""numba-compiled Kalman filter and Rauch-Tung-Striebel smoother over concatenated sequences.

Sequences are stored back to back (``offsets[s]:offsets[s + 1]`` is sequence ``s``), as in
:mod:`probkit.inference._numba_kernels`; every kernel runs a contiguous block of sequences
``[s_begin, s_end)`` with the GIL released, so the caller can run blocks on threads.

Small dense matrices are multiplied by explicit loops whose innermost index runs along a
contiguous row ("saxpy" order), which LLVM vectorises; every buffer is allocated once per
block, never inside the time loop.

Steady state. With time-invariant ``A, C, Q, R`` and fully observed rows, the predicted
covariance obeys the Riccati map ``P -> A (I - K C) P A' + Q``, which contracts towards a
fixed point. Once two consecutive predicted covariances differ by at most ``tol`` times
their largest entry, every later covariance, gain and innovation factor of the filter is
the fixed point's, and only the means are propagated (statsmodels' filter does the same
with an absolute tolerance on the innovation determinant). The smoother reuses the fixed
point's gain ``J`` over that stretch and detects the backward fixed point of its own
covariance the same way. A row with a missing entry leaves the steady state; the filter
re-enters it when the covariances settle again. ``tol = 0`` computes every step.
"""

from __future__ import annotations

import math

import numpy as np

from probkit.inference._numba_kernels import _FAST_SUMS, _jit

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------
# Small dense linear algebra on preallocated buffers
# ---------------------------------------------------------------------------------------


@_jit(fastmath=_FAST_SUMS)
def _mm_t(X, Y, out, r, c, k):
    """out[:r, :c] = X[:r, :k] @ Y[:c, :k].T (each entry a dot product of two contiguous rows)."""
    for i in range(r):
        for j in range(c):
            acc = 0.0
            for m in range(k):
                acc += X[i, m] * Y[j, m]
            out[i, j] = acc


@_jit(fastmath=_FAST_SUMS)
def _mm_t_sym(X, Y, out, r, k, add):
    """out[:r, :r] = add + X Y' for a product known to be symmetric: the upper triangle is
    computed and mirrored, so the result is exactly symmetric. ``add`` (r, r) or (0, 0)."""
    has_add = add.shape[0] > 0
    for i in range(r):
        for j in range(i, r):
            acc = add[i, j] if has_add else 0.0
            for m in range(k):
                acc += X[i, m] * Y[j, m]
            out[i, j] = acc
            out[j, i] = acc


@_jit(fastmath=_FAST_SUMS)
def _transpose(a, out, r, c):
    for i in range(r):
        for j in range(c):
            out[j, i] = a[i, j]


@_jit(fastmath=_FAST_SUMS)
def _cholesky(S, L, k):
    """Lower Cholesky factor of S[:k, :k] into L; False if S is not numerically positive definite."""
    for j in range(k):
        s = S[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, k):
            s = S[i, j]
            for m in range(j):
                s -= L[i, m] * L[j, m]
            L[i, j] = s / d
    return True


@_jit(fastmath=_FAST_SUMS)
def _chol_solve_rows(L, B, k, c):
    """B[:k, :c] <- (L L')^{-1} B[:k, :c] (forward then backward substitution, row operations)."""
    for i in range(k):
        for m in range(i):
            lim = L[i, m]
            for j in range(c):
                B[i, j] -= lim * B[m, j]
        inv = 1.0 / L[i, i]
        for j in range(c):
            B[i, j] *= inv
    for i in range(k - 1, -1, -1):
        for m in range(i + 1, k):
            lmi = L[m, i]
            for j in range(c):
                B[i, j] -= lmi * B[m, j]
        inv = 1.0 / L[i, i]
        for j in range(c):
            B[i, j] *= inv


@_jit(fastmath=_FAST_SUMS)
def _max_abs_diff_ratio(a, b, n):
    """max |a - b| / max |b| over the leading n x n block (0 when both are zero)."""
    diff = 0.0
    scale = 0.0
    for i in range(n):
        for j in range(n):
            d = abs(a[i, j] - b[i, j])
            if d > diff:
                diff = d
            s = abs(b[i, j])
            if s > scale:
                scale = s
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


# ---------------------------------------------------------------------------------------
# Filter
# ---------------------------------------------------------------------------------------


@_jit(fastmath=_FAST_SUMS)
def kalman_filter_block(y, state_offset, obs_offset, A, C, Q, R, m0, P0, offsets, s_begin, s_end, tol,
                        pred_mean, pred_cov, filt_mean, filt_cov, step_ll, seq_ll, steady, status):
    """Filter sequences ``[s_begin, s_end)``.

    ``y`` (N, p) holds NaN where an entry is missing. ``state_offset`` (N, n) is added to the
    predicted mean of every non-first step (``B u_t``), ``obs_offset`` (N, p) to the
    predicted observation (``D u_t``); arrays with zero rows mean no offsets. Outputs are
    written in place; ``steady[t] = 1`` marks rows whose predicted and filtered covariances
    are the stored fixed point. ``status[s]`` is -1, or the row at which the innovation
    covariance was not positive definite.

    Every matrix product is arranged as ``X Y'`` with both factors read along contiguous
    rows (covariances are symmetric, so ``A P = A P'``).
    """
    n = A.shape[0]
    p = C.shape[0]
    has_state_offset = state_offset.shape[0] > 0
    has_obs_offset = obs_offset.shape[0] > 0
    no_add = np.zeros((0, 0))
    idx = np.empty(p, dtype=np.int64)
    Co = np.empty((p, n))
    CoT = np.empty((n, p))
    Roo = np.empty((p, p))
    v = np.empty(p)
    w = np.empty(p)
    CP = np.empty((p, n))   # Co P = (P Co')'
    Kt = np.empty((p, n))   # the gain, transposed
    K = np.empty((n, p))
    KR = np.empty((n, p))
    S = np.empty((p, p))
    L = np.zeros((p, p))
    M = np.empty((n, n))
    T1 = np.empty((n, n))
    mp = np.empty(n)
    # the fixed point
    Pp_star = np.empty((n, n))
    Pf_star = np.empty((n, n))
    Kt_star = np.empty((p, n))
    L_star = np.zeros((p, p))
    logdet_star = 0.0
    for s in range(s_begin, s_end):
        start = offsets[s]
        end = offsets[s + 1]
        total = 0.0
        status[s] = -1
        converged = False
        prev_full = False  # the previous step was computed in full with every entry observed
        for t in range(start, end):
            # ---- which entries are observed
            k = 0
            for i in range(p):
                if y[t, i] == y[t, i]:
                    idx[k] = i
                    k += 1
            full = k == p
            if converged and not full:
                converged = False
            # ---- prediction
            if t == start:
                for i in range(n):
                    mp[i] = m0[i]
                    for j in range(n):
                        pred_cov[t, i, j] = P0[i, j]
            else:
                for i in range(n):
                    acc = 0.0
                    for j in range(n):
                        acc += A[i, j] * filt_mean[t - 1, j]
                    mp[i] = acc + (state_offset[t, i] if has_state_offset else 0.0)
                if converged:
                    for i in range(n):
                        for j in range(n):
                            pred_cov[t, i, j] = Pp_star[i, j]
                else:
                    _mm_t(A, filt_cov[t - 1], T1, n, n, n)        # A P_f
                    _mm_t_sym(T1, A, pred_cov[t], n, n, Q)        # Q + A P_f A'
            for i in range(n):
                pred_mean[t, i] = mp[i]
            # ---- update
            if k == 0:
                for i in range(n):
                    filt_mean[t, i] = mp[i]
                    for j in range(n):
                        filt_cov[t, i, j] = pred_cov[t, i, j]
                step_ll[t] = 0.0
                steady[t] = 0
                prev_full = False
                continue
            for a in range(k):
                ia = idx[a]
                acc = 0.0
                for j in range(n):
                    Co[a, j] = C[ia, j]
                    CoT[j, a] = C[ia, j]
                    acc += C[ia, j] * mp[j]
                v[a] = y[t, ia] - acc - (obs_offset[t, ia] if has_obs_offset else 0.0)
            if converged:
                logdet = logdet_star
                Kuse = Kt_star
                Luse = L_star
            else:
                for a in range(k):
                    for b in range(k):
                        Roo[a, b] = R[idx[a], idx[b]]
                P = pred_cov[t]
                _mm_t(Co, P, CP, k, n, n)                         # Co P
                _mm_t_sym(CP, Co, S, k, n, Roo)                   # Roo + Co P Co'
                if not _cholesky(S, L, k):
                    status[s] = t
                    break
                logdet = 0.0
                for a in range(k):
                    logdet += 2.0 * math.log(L[a, a])
                for a in range(k):
                    for i in range(n):
                        Kt[a, i] = CP[a, i]
                _chol_solve_rows(L, Kt, k, n)                     # K' = S^{-1} Co P
                _transpose(Kt, K, k, n)
                # Joseph form: P_f = M P M' + K Roo K' with M = I - K Co
                _mm_t(K, CoT, M, n, n, k)
                for i in range(n):
                    for j in range(n):
                        M[i, j] = (1.0 if i == j else 0.0) - M[i, j]
                _mm_t(M, P, T1, n, n, n)                          # M P
                _mm_t(K, Roo, KR, n, k, k)                        # K Roo
                F = filt_cov[t]
                _mm_t_sym(KR, K, F, n, k, no_add)                 # K Roo K'
                _mm_t_sym(T1, M, F, n, n, F)                      # + M P M'
                Kuse = Kt
                Luse = L
            # ---- mean, log-likelihood
            for i in range(n):
                acc = mp[i]
                for a in range(k):
                    acc += Kuse[a, i] * v[a]
                filt_mean[t, i] = acc
            quad = 0.0
            for a in range(k):
                acc = v[a]
                for b in range(a):
                    acc -= Luse[a, b] * w[b]
                w[a] = acc / Luse[a, a]
                quad += w[a] * w[a]
            ll = -0.5 * (k * _LOG_2PI + logdet + quad)
            step_ll[t] = ll
            total += ll
            if converged:
                for i in range(n):
                    for j in range(n):
                        filt_cov[t, i, j] = Pf_star[i, j]
                steady[t] = 1
            else:
                steady[t] = 0
                if full and prev_full and tol > 0.0 and _max_abs_diff_ratio(pred_cov[t - 1], pred_cov[t], n) < tol:
                    converged = True
                    steady[t] = 1
                    logdet_star = logdet
                    for i in range(n):
                        for j in range(n):
                            Pp_star[i, j] = pred_cov[t, i, j]
                            Pf_star[i, j] = filt_cov[t, i, j]
                    for a in range(p):
                        for i in range(n):
                            Kt_star[a, i] = Kt[a, i]
                        for b in range(p):
                            L_star[a, b] = L[a, b]
            prev_full = full
        seq_ll[s] = total


# ---------------------------------------------------------------------------------------
# Smoother
# ---------------------------------------------------------------------------------------


@_jit(fastmath=_FAST_SUMS)
def rts_smoother_block(A, At, Q, offsets, s_begin, s_end, tol, pred_mean, pred_cov, filt_mean, filt_cov, steady,
                       smooth_mean, smooth_cov, lag_cov, status):
    """Rauch-Tung-Striebel smoother for sequences ``[s_begin, s_end)`` from the filter's outputs.

    ``lag_cov[t] = Cov(x_t, x_{t-1} | y)`` (zero at the first step of a sequence). The
    smoothed covariance is updated in the Joseph-like form
    ``(I - J A) P_f (I - J A)' + J (Q + P_s[t + 1]) J'``, a sum of positive semi-definite
    terms, which equals ``P_f + J (P_s[t + 1] - P_pred[t + 1]) J'`` in exact arithmetic.
    ``status[s]`` is -1, or the row whose successor's predicted covariance was not
    positive definite.
    """
    n = A.shape[0]
    no_add = np.zeros((0, 0))
    Lp = np.zeros((n, n))
    Jt = np.empty((n, n))   # J transposed
    J = np.empty((n, n))
    IJA = np.empty((n, n))
    T1 = np.empty((n, n))
    T2 = np.empty((n, n))
    d = np.empty(n)
    Ps_star = np.empty((n, n))
    lag_star = np.empty((n, n))
    for s in range(s_begin, s_end):
        start = offsets[s]
        end = offsets[s + 1]
        status[s] = -1
        last = end - 1
        for i in range(n):
            smooth_mean[last, i] = filt_mean[last, i]
            for j in range(n):
                smooth_cov[last, i, j] = filt_cov[last, i, j]
                lag_cov[start, i, j] = 0.0
        have_j = False        # J holds the steady-state gain
        ps_converged = False  # smooth_cov has reached its backward fixed point under that gain
        lag_ready = False
        for t in range(last - 1, start - 1, -1):
            steady_pair = steady[t] == 1 and steady[t + 1] == 1
            if not (steady_pair and have_j):
                ps_converged = False
                lag_ready = False
                if not _cholesky(pred_cov[t + 1], Lp, n):
                    status[s] = t
                    break
                _mm_t(A, filt_cov[t], Jt, n, n, n)                # A P_f
                _chol_solve_rows(Lp, Jt, n, n)                    # J' = P_pred^{-1} A P_f
                _transpose(Jt, J, n, n)
                _mm_t(J, At, IJA, n, n, n)                        # J A
                for i in range(n):
                    for j in range(n):
                        IJA[i, j] = (1.0 if i == j else 0.0) - IJA[i, j]
                have_j = steady_pair
            # mean
            for m in range(n):
                d[m] = smooth_mean[t + 1, m] - pred_mean[t + 1, m]
            for i in range(n):
                acc = filt_mean[t, i]
                for m in range(n):
                    acc += J[i, m] * d[m]
                smooth_mean[t, i] = acc
            if ps_converged:
                if not lag_ready:
                    _mm_t(smooth_cov[t + 1], J, lag_star, n, n, n)
                    lag_ready = True
                for i in range(n):
                    for j in range(n):
                        smooth_cov[t, i, j] = Ps_star[i, j]
                        lag_cov[t + 1, i, j] = lag_star[i, j]
                continue
            Pn = smooth_cov[t + 1]
            _mm_t(Pn, J, lag_cov[t + 1], n, n, n)                 # Cov(x_{t+1}, x_t | y) = P_s[t+1] J'
            for i in range(n):
                for j in range(n):
                    T2[i, j] = Q[i, j] + Pn[i, j]
            out = smooth_cov[t]
            _mm_t(IJA, filt_cov[t], T1, n, n, n)                  # (I - J A) P_f
            _mm_t_sym(T1, IJA, out, n, n, no_add)                 # ... (I - J A)'
            _mm_t(J, T2, T1, n, n, n)                             # J (Q + P_s[t+1])
            _mm_t_sym(T1, J, out, n, n, out)                      # + ... J'
            if have_j and tol > 0.0 and _max_abs_diff_ratio(Pn, out, n) < tol:
                ps_converged = True
                for i in range(n):
                    for j in range(n):
                        Ps_star[i, j] = out[i, j]
