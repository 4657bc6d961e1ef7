"""Chunked Triton forward of RWKV-6 WKV: the recurrence as matrix products (``tl.dot``).

Notation (one head): state ``S`` of shape ``(K, V)``, log-decays ``w_t <= 0``,
``o_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T)``, ``S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T``.

One program owns a ``(K, BLOCK_V)`` slice of one head's state, as the fused-recurrent kernel
of :mod:`._wkv_triton` does, but steps through the sequence ``C`` steps at a time.  With
``lam_t = sum_{j <= t} w_j`` the inclusive cumulative log-decay inside the chunk and
``lex_t = lam_t - w_t`` the exclusive one, the chunk's outputs and the state after it are

    o_t   = (r_t o exp(lex_t))^T S_start                              (inter-chunk, tl.dot)
          + sum_{s < t} A[t, s] v_s + (r_t . (u o k_t)) v_t            (intra-chunk, tl.dot)
    A[t, s] = sum_i r_t[i] k_s[i] exp(lex_t[i] - lam_s[i])
    S_end = diag(exp(lam_end)) S_start + (k o exp(lam_end - lam))^T V   (tl.dot)

Every exponent is ``<= 0`` (a sum of log-decays over a range of steps), so nothing overflows
however strong the decay (``w`` of ``-exp(6)`` per step or more); what underflows is below
fp32's range in the exact result as well.  ``A`` is not factorised (``exp(lex_t) exp(-lam_s)``
would overflow for strong decay): it is formed element by element, ``(C, C, KB)`` at a time
over slices of ``KB`` channels, which costs one exponential per ``(t, s, channel)``, i.e.
``C / BLOCK_V`` per element of the state update.  The cumulative sums are taken in float64
and each exponent of ``A`` is formed from a two-float split of them (``hi + lo``), so an
exponent is exact to float32 rounding of its own size, not of the size of the cumulative sum
(which reaches ``C * exp(6)`` for strong decay: a plain float32 difference would leave an
error of ~1e-4 in the factor of the previous step, which is exactly 1).

The dots run at ``DOT_PRECISION`` (``"tf32x3"``: three TF32 tensor-core products that
reproduce float32 products to about float32 rounding); float64 inputs use ``"ieee"``.

Which forward the op runs: :func:`use_chunked` (the rule is in its docstring).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_utils import LOG2E as _LOG2E_F, interpreting, next_pow2, tl_dtype
from ._wkv_triton import wkv6_fwd_buffers, wkv6_state_slice

#: input precision of the float32 ``tl.dot`` products ("tf32x3", "tf32" or "ieee")
DOT_PRECISION = "tf32x3"
#: which RWKV-6 forward the triton backend runs: "auto" (:func:`use_chunked`), "chunked"
#: or "recurrent" (the benchmarks and the tests force one)
FORWARD = "auto"
#: steps per chunk, and the shortest sequence for which "auto" picks the chunked kernel
CHUNK = 16
CHUNKED_MIN_L = 64
LOG2E = tl.constexpr(_LOG2E_F)


@triton.jit
def rk_slice(r_ptr, k_ptr, krow, cols, m, CT: tl.constexpr):
    """``r`` and ``k`` of a chunk's rows over the channel slice ``cols``, in ``CT``."""
    rs = tl.load(r_ptr + krow + cols[None, :], mask=m, other=0.0).to(CT)
    ks = tl.load(k_ptr + krow + cols[None, :], mask=m, other=0.0).to(CT)
    return rs, ks


@triton.jit
def split_hi_lo(x, CT: tl.constexpr):
    """A float64 tensor as ``hi + lo`` in ``CT``."""
    hi = x.to(CT)
    return hi, (x - hi.to(tl.float64)).to(CT)


@triton.jit
def _wkv6_chunk_fwd_kernel(r_ptr, k_ptr, v_ptr, w_ptr, u_ptr, s0_ptr, o_ptr, sT_ptr, ck_ptr,
                           H, L, K, V, CK_EVERY,
                           HAS_S0: tl.constexpr, SAVE_CK: tl.constexpr, KP: tl.constexpr,
                           KB: tl.constexpr, BLOCK_V: tl.constexpr, C: tl.constexpr,
                           CT: tl.constexpr, DOT_PREC: tl.constexpr):
    pid_bh, offs_k, mk, offs_v, mv, mkv, uu, soff, S = wkv6_state_slice(
        u_ptr, s0_ptr, H, K, V, HAS_S0, KP, BLOCK_V, CT)
    offs_kb = tl.arange(0, KB)
    offs_t = tl.arange(0, C)
    before = offs_t[None, :] < offs_t[:, None]  # (t, s): s < t
    diag = offs_t[None, :] == offs_t[:, None]
    nck = tl.cdiv(L, CK_EVERY)
    for t0 in range(0, L, C):
        if SAVE_CK:
            if t0 % CK_EVERY == 0:  # state before every CK_EVERY steps, for the backward
                tl.store(ck_ptr + (pid_bh * nck + t0 // CK_EVERY) * K * V + soff, S, mask=mkv)
        rows = t0 + offs_t
        mt = rows < L
        krow = pid_bh * L * K + rows[:, None] * K
        # intra-chunk matrix A over slices of KB channels (padding: r = k = w = 0)
        A = tl.zeros([C, C], dtype=CT)
        for kb in range(0, KP, KB):
            cols = kb + offs_kb
            m = mt[:, None] & (cols < K)[None, :]
            rs, ks = rk_slice(r_ptr, k_ptr, krow, cols, m, CT)
            ws = tl.load(w_ptr + krow + cols[None, :], mask=m, other=0.0).to(tl.float64)
            lam = tl.cumsum(ws, 0) * LOG2E  # base-2 exponents
            lex = lam - ws * LOG2E
            lam_hi, lam_lo = split_hi_lo(lam, CT)
            lex_hi, lex_lo = split_hi_lo(lex, CT)
            # (channel, t, s): the channel axis first, so that it lies in each thread's
            # registers and the sum over it needs no shuffles
            lex_hi, lex_lo, rs = tl.trans(lex_hi), tl.trans(lex_lo), tl.trans(rs)
            lam_hi, lam_lo, ks = tl.trans(lam_hi), tl.trans(lam_lo), tl.trans(ks)
            ex = (lex_hi[:, :, None] - lam_hi[:, None, :]) \
                + (lex_lo[:, :, None] - lam_lo[:, None, :])
            # s >= t: clamped (finite, masked out below) instead of selected per channel
            A += tl.sum(rs[:, :, None] * ks[:, None, :] * tl.exp2(tl.minimum(ex, 0.0)), 0)
        A = tl.where(before, A, 0.0)
        mtk = mt[:, None] & mk[None, :]
        r = tl.load(r_ptr + krow + offs_k[None, :], mask=mtk, other=0.0).to(CT)
        k = tl.load(k_ptr + krow + offs_k[None, :], mask=mtk, other=0.0).to(CT)
        w = tl.load(w_ptr + krow + offs_k[None, :], mask=mtk, other=0.0).to(tl.float64)
        vrow = pid_bh * L * V + rows[:, None] * V + offs_v[None, :]
        mtv = mt[:, None] & mv[None, :]
        v = tl.load(v_ptr + vrow, mask=mtv, other=0.0).to(CT)
        A += tl.where(diag, tl.sum(r * uu[None, :] * k, 1)[:, None], 0.0)  # the bonus
        lam = tl.cumsum(w, 0)
        lam_end = tl.sum(w, 0)  # (padded steps have w = 0)
        q = r * tl.exp((lam - w).to(CT))
        o = tl.dot(q, S, input_precision=DOT_PREC) + tl.dot(A, v, input_precision=DOT_PREC)
        tl.store(o_ptr + vrow, o.to(o_ptr.dtype.element_ty), mask=mtv)
        kd = k * tl.exp((lam_end[None, :] - lam).to(CT))
        S = tl.exp(lam_end.to(CT))[:, None] * S \
            + tl.dot(tl.trans(kd), v, input_precision=DOT_PREC)
    tl.store(sT_ptr + pid_bh * K * V + soff, S, mask=mkv)


def use_chunked(L, dtype):
    """Whether the triton backend runs the chunked RWKV-6 forward (else the recurrent one).

    With ``FORWARD = "auto"``: chunked for ``L >= CHUNKED_MIN_L`` (four chunks or more) in
    float32 and 16-bit inputs; the fused-recurrent kernel for shorter sequences (its cost per
    step is small and a chunk's fixed work is wasted on a few steps) and for float64 (no
    tensor-core path: the chunk's products would run as scalar fp64 arithmetic).
    """
    if FORWARD != "auto":
        return FORWARD == "chunked"
    return L >= CHUNKED_MIN_L and dtype != torch.float64


def _blocks(K, V):
    """(KP, KB, BLOCK_V): padded K, channels per slice of A, value columns per program."""
    KP = max(16, next_pow2(K))
    return KP, 16, max(16, min(next_pow2(V), 16 if interpreting() else 64))


def wkv6_fwd_chunked(r, k, v, w, u, state0, save_every=None):
    """Chunked forward of RWKV-6 WKV; returns ``(o, last_state, chunk_states)``.

    Same contract as :func:`._wkv_triton.wkv6_fwd`: ``save_every`` (a multiple of
    ``CHUNK``) keeps the state before every ``save_every`` steps for the backward,
    ``(batch, heads, ceil(L / save_every), K, V)``; ``None`` keeps nothing.
    """
    (r, k, v, w, u), ct, (b, H, L, K, V), o, sT = wkv6_fwd_buffers(r, k, v, w, u, state0)
    KP, KB, BV = _blocks(K, V)
    if save_every is not None and save_every % CHUNK:
        raise ValueError(f"save_every must be a multiple of CHUNK={CHUNK}, got {save_every}")
    every = save_every or CHUNK
    ck = (torch.empty((b, H, triton.cdiv(L, every), K, V), dtype=ct, device=r.device)
          if save_every else sT)
    s0 = state0.contiguous() if state0 is not None else sT
    _wkv6_chunk_fwd_kernel[(b * H, triton.cdiv(V, BV))](
        r, k, v, w, u, s0, o, sT, ck, H, L, K, V, every, HAS_S0=state0 is not None,
        SAVE_CK=save_every is not None, KP=KP, KB=KB, BLOCK_V=BV, C=CHUNK, CT=tl_dtype(ct),
        DOT_PREC="ieee" if ct == torch.float64 else DOT_PRECISION, num_warps=4)
    return o, sT, (ck if save_every else None)
