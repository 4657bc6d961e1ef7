"""numba-compiled forward of the selective scan for CPU tensors (used by the ``cpu`` path).

One channel ``(batch, dim)`` at a time, sequential over time, with the channel's ``N``
states in a small array that stays in L1 (the loop over states vectorises): per step
``h = exp(dt A) * h + dt u B_t``, ``y = C_t . h + D u``.  Nothing of shape
``(batch, dim, L, N)`` is formed and every input is read once.

The decay ``exp(dt A)`` is the only transcendental in the step.  numba has no vector
``exp`` without Intel's SVML, and a scalar ``math.exp`` per state would dominate the cost,
so float32 uses :func:`_exp32`: Cody-Waite range reduction ``x = k ln2 + r``, a degree-7
Taylor polynomial on ``|r| <= ln2 / 2`` (truncation error below 1e-8 relative) and
``2**k`` assembled from exponent bits, all branch-free so that LLVM vectorises it.
float64 keeps ``math.exp``: exactness matters more than speed there.

The kernels release the GIL and take a range of channels, so the caller can split the
channels over threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

# Reassociation and contraction let LLVM vectorise the sum over states; "nnan"/"ninf" are
# left out so that infinities and NaNs propagate as in the reference.
_FAST = {"reassoc", "contract", "arcp", "nsz"}


def _jit(func):
    """``numba.njit`` with on-disk caching where a cache directory is writable."""
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)(func)
    except RuntimeError:  # pragma: no cover - read-only install without a user cache dir
        return numba.njit(cache=False, nogil=True, error_model="numpy", fastmath=_FAST)(func)


@intrinsic
def _pow2_f32(typingctx, kf):
    """``2.0 ** kf`` for an integer-valued float32 ``kf`` in [-126, 127], from exponent bits.

    Written in LLVM IR so that the integer work stays 32-bit (numba widens int32 arithmetic
    to int64, which halves the vector width).
    """
    if kf != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        biased = builder.add(k, ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 split so that k * _LN2_HI is exact for |k| < 2**9
_LN2_LO = np.float32(-2.12194440e-4)
_X_MIN = np.float32(-104.0)  # exp(-104) is below the smallest float32 denormal
_X_MAX = np.float32(89.0)  # exp(89) overflows float32
_INV = tuple(np.float32(1.0 / math.factorial(j)) for j in range(8))


def _exp32(x):
    """float32 ``exp`` (see the module docstring); NaN stays NaN, overflow gives inf."""
    raise NotImplementedError  # pragma: no cover - only the compiled overload is used


# no reassociation here: the order of ``(p * s1) * s2`` keeps results near the overflow and
# underflow limits representable
@overload(_exp32, jit_options={"fastmath": {"contract"}})
def _exp32_impl(x):
    if x != types.float32:
        return None

    def impl(x):
        # clamp with comparisons that let NaN through unchanged
        xc = _X_MIN if x < _X_MIN else x
        xc = _X_MAX if xc > _X_MAX else xc
        kf = np.float32(math.floor(xc * _LOG2E + np.float32(0.5)))
        r = (xc - kf * _LN2_HI) - kf * _LN2_LO
        p = _INV[7]
        p = p * r + _INV[6]
        p = p * r + _INV[5]
        p = p * r + _INV[4]
        p = p * r + _INV[3]
        p = p * r + _INV[2]
        p = p * r + _INV[1]
        p = p * r + _INV[0]
        # 2**k as two factors, each a normal float32 for k in [-150, 129]
        k1 = np.float32(math.floor(kf * np.float32(0.5)))
        s1 = _pow2_f32(k1)
        s2 = _pow2_f32(kf - k1)
        return p * s1 * s2

    return impl


def _exp_any(x):
    raise NotImplementedError  # pragma: no cover - only the compiled overload is used


@overload(_exp_any, jit_options={"fastmath": {"contract"}})
def _exp_any_impl(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: math.exp(x)
    return None


@_jit
def exp32_array(x, out):
    """``out[i] = _exp32(x[i])`` for 1-D float32 arrays (exposed for the tests)."""
    for i in range(x.shape[0]):
        out[i] = _exp32(x[i])


@_jit
def scan_fwd_channels(c0, c1, dt, u, A, Bm, b_strides, Cm, c_strides, D, has_D, h0,
                      ypre, ckpt, chunk, last):
    """Forward over the channels ``c0 <= c < c1`` of the flattened ``(batch * dim)`` axis.

    ``dt``, ``u`` and ``ypre`` are ``(batch * dim, L)``; ``A`` is ``(dim, N)``; ``h0`` and
    ``last`` are ``(batch * dim, N)``; ``ckpt`` is ``(n_chunks, batch * dim, N)`` (or has
    zero chunks: then nothing is saved).  Row ``t`` of B for channel ``(i, j)`` (batch i,
    dim j) is ``Bm[i * sb + (j // dg) * sg + t * st]`` with ``(sb, sg, st, dg) = b_strides``,
    which covers time-varying, grouped and time-invariant B alike; likewise C.
    """
    d = A.shape[0]
    N = A.shape[1]
    L = dt.shape[1]
    save = ckpt.shape[0] > 0
    h = np.empty(N, dtype=dt.dtype)
    for c in range(c0, c1):
        i = c // d
        j = c - i * d
        rb = i * b_strides[0] + (j // b_strides[3]) * b_strides[1]
        rc = i * c_strides[0] + (j // c_strides[3]) * c_strides[1]
        sbt = b_strides[2]
        sct = c_strides[2]
        for n in range(N):
            h[n] = h0[c, n]
        Dj = D[j] if has_D else dt.dtype.type(0)
        for t in range(L):
            if save and t % chunk == 0:
                for n in range(N):
                    ckpt[t // chunk, c, n] = h[n]
            dtv = dt[c, t]
            uv = u[c, t]
            dtu = dtv * uv
            brow = rb + t * sbt
            crow = rc + t * sct
            acc = dt.dtype.type(0)
            for n in range(N):
                hn = _exp_any(dtv * A[j, n]) * h[n] + dtu * Bm[brow, n]
                h[n] = hn
                acc += Cm[crow, n] * hn
            if has_D:
                acc += Dj * uv
            ypre[c, t] = acc
        for n in range(N):
            last[c, n] = h[n]


# Below this many state updates (batch * dim * L * N) a call runs on the calling thread:
# handing blocks of channels to worker threads costs tens of microseconds.
_MIN_WORK_FOR_THREADS = 1 << 21


def rows(X, b, d, ct):
    """B or C as a C-contiguous ``(rows, N)`` array and its ``(sb, sg, st, dg)`` strides."""
    if X.dim() == 2:  # time-invariant (dim, N): row j for every batch and step
        return X.to(ct).contiguous().numpy(), np.array([0, 1, 0, 1], dtype=np.int64)
    X4 = X.unsqueeze(1) if X.dim() == 3 else X  # (batch, G, N, L)
    G, N, L = X4.shape[1:]
    rows = X4.to(ct).transpose(-1, -2).contiguous().view(b * G * L, N)
    return rows.numpy(), np.array([G * L, L, 1, d // G], dtype=np.int64)


def scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus, h0, chunk, save_for_backward, ct):
    """Same contract as :func:`._scan_cpu.scan_fwd`, for CPU tensors.

    The channels are split over ``torch.get_num_threads()`` worker threads (the scan is a
    torch op, so torch's intra-op setting governs it) when the problem is large enough.
    """
    import torch
    import torch.nn.functional as F

    u, delta, A, B, C = (x.detach() for x in (u, delta, A, B, C))
    D, z, delta_bias, h0 = (None if x is None else x.detach() for x in (D, z, delta_bias, h0))
    b, d, L = u.shape
    N = A.shape[1]
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if softplus:
        dt = F.softplus(dt)
    dt = dt.contiguous().view(b * d, L)
    uc = u.to(ct).contiguous().view(b * d, L)
    Bm, bs = rows(B, b, d, ct)
    Cm, cs = rows(C, b, d, ct)
    Dv = (D if D is not None else A.new_zeros(d)).to(ct).contiguous()
    h0c = (torch.zeros((b, d, N), dtype=ct) if h0 is None else h0.to(ct)).contiguous()
    ypre = torch.empty((b, d, L), dtype=ct)
    nch = (L + chunk - 1) // chunk if save_for_backward else 0
    ckpt = torch.empty((nch, b, d, N), dtype=ct)
    last = torch.empty((b, d, N), dtype=ct)
    args = (dt.numpy(), uc.numpy(), A.to(ct).contiguous().numpy(), Bm, bs, Cm, cs, Dv.numpy(),
            D is not None, h0c.view(b * d, N).numpy(), ypre.view(b * d, L).numpy(),
            ckpt.view(nch, b * d, N).numpy(), chunk, last.view(b * d, N).numpy())
    n_blocks = min(torch.get_num_threads(), b * d)
    if n_blocks <= 1 or b * d * L * N < _MIN_WORK_FOR_THREADS:
        scan_fwd_channels(0, b * d, *args)
    else:
        from probkit.inference._numba_backend import _thread_pool

        edges = [(b * d * k) // n_blocks for k in range(n_blocks + 1)]
        futures = [_thread_pool().submit(scan_fwd_channels, edges[k], edges[k + 1], *args)
                   for k in range(n_blocks)]
        for f in futures:
            f.result()
    ckpt = ckpt if save_for_backward else None
    if z is None:
        return ypre.to(u.dtype), last, ckpt, None
    out = (ypre * F.silu(z.to(ct))).to(u.dtype)
    return out, last, ckpt, (ypre if save_for_backward else None)


# The two backward kernels loop over time outside and channels inside: the chunk buffers are
# laid out (T, batch * dim, N), so each step reads and writes one contiguous slab (a loop
# over channels inside time strides by a whole slab per step and defeats the prefetchers).


@_jit
def recompute_chunk(l0, T, dt, u, A, Bm, b_strides, h_start, a_out, h_out):
    """States and decays of one chunk (steps ``l0 <= t < l0 + T``) for the backward.

    ``a_out[s, c] = exp(dt A)`` of step ``l0 + s`` and ``h_out[s + 1, c]`` the state after
    it, ``h_out[0, c] = h_start[c]``; arrays laid out ``(T, batch * dim, N)`` as the torch
    backward expects.  The step is the forward's, so the states are the forward's.
    """
    d = A.shape[0]
    N = A.shape[1]
    n_chan = h_start.shape[0]
    h_out[0] = h_start
    for s in range(T):
        t = l0 + s
        for c in range(n_chan):
            i = c // d
            j = c - i * d
            brow = i * b_strides[0] + (j // b_strides[3]) * b_strides[1] + t * b_strides[2]
            dtv = dt[c, t]
            dtu = dtv * u[c, t]
            for n in range(N):
                an = _exp_any(dtv * A[j, n])
                a_out[s, c, n] = an
                h_out[s + 1, c, n] = an * h_out[s, c, n] + dtu * Bm[brow, n]


@_jit
def adjoint_chunk(dim, l0, T, gy, Cm, c_strides, a, mu, has_mu, lam_out, mu_out):
    """Adjoint states of one chunk: ``lam_s = gy_s C_s + a_{s+1} lam_{s+1}``, last to first.

    Channel ``c`` is (batch ``c // dim``, dim ``c % dim``); ``gy`` is ``(T, batch * dim)``;
    ``a`` and ``lam_out`` are ``(T, batch * dim, N)``; ``mu`` (used when ``has_mu``) is the
    adjoint arriving from after the chunk, and ``mu_out = a_0 lam_0`` the one it passes to
    the previous chunk.
    """
    n_chan = a.shape[1]
    N = a.shape[2]
    for s in range(T - 1, -1, -1):
        crow_t = (l0 + s) * c_strides[2]
        for c in range(n_chan):
            i = c // dim
            j = c - i * dim
            crow = i * c_strides[0] + (j // c_strides[3]) * c_strides[1] + crow_t
            g = gy[s, c]
            if s == T - 1:
                if has_mu:
                    for n in range(N):
                        lam_out[s, c, n] = g * Cm[crow, n] + mu[c, n]
                else:
                    for n in range(N):
                        lam_out[s, c, n] = g * Cm[crow, n]
            else:
                for n in range(N):
                    lam_out[s, c, n] = g * Cm[crow, n] + a[s + 1, c, n] * lam_out[s + 1, c, n]
    for c in range(n_chan):
        for n in range(N):
            mu_out[c, n] = a[0, c, n] * lam_out[0, c, n]
