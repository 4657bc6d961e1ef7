"""Chunked Triton backward of RWKV-6 WKV: the reverse recurrence as matrix products.

Notation as in :mod:`._wkv6_chunked_triton` (one head, one ``(K, BLOCK_V)`` state slice per
program, chunks of ``C`` steps, ``lam_t`` / ``lex_t`` the inclusive / exclusive cumulative
log-decays inside the chunk).  ``S0`` is the state before the chunk, ``G`` the adjoint of the
state after it (``dLoss/dS_end``).  Inside the chunk

    S_{t-1} = diag(e^{lex_t}) S0 + sum_{s<t} diag(e^{lex_t - lam_s}) k_s v_s^T
    G_t     = diag(e^{lam_end - lam_t}) G + sum_{s>t} diag(e^{lex_s - lam_t}) r_s do_s^T

so, with ``D[t, s] = do_t . v_s`` and ``E[t, s] = e^{lex_t - lam_s}`` (``s < t``),

    dr_t = e^{lex_t} o (S0 do_t) + sum_{s<t} D[t, s] k_s o E[t, s]
    dk_s = e^{lam_end - lam_s} o (G v_s) + sum_{t>s} D[t, s] r_t o E[t, s]
    dv   = (k o e^{lam_end - lam}) G + A^T do     (A: the forward's intra-chunk matrix, bonus
                                                 on its diagonal)
    G   <- diag(e^{lam_end}) G + (r o e^{lex})^T do     (the adjoint of S0)

and ``dw_t = e^{w_t} rowsum(G_t o S_{t-1})`` expands, since ``w_t + lex_t - lam_t = 0``, into

    dw_t = e^{lam_end} rowsum(S0 o G) + sum_{s>t} r_s o dr^inter_s + sum_{s<t} k_s o dk^inter_s
         + sum_{s<t<s'} r_{s'} o k_s o D[s', s] o e^{lex_{s'} - lam_s}

Every term of ``dw_t`` carries the factor ``e^{w_t}`` (its exponent is a sum of log-decays
over a range that contains ``t``), and every partial sum is a sum of such terms only: no
difference of large quantities, so a strong decay gives the true tiny gradient.  The last
(pair) sum is an inclusive cumulative sum over ``t`` of the pair terms of ``s = t - 1``
(``lam_{t-1} = lex_t``, and ``k``, ``v`` loaded one row back), masked to ``s' > t``.
Exponents are ``<= 0`` and those of the ``(C, C, KB)`` tensors use the forward's two-float
split of the float64 cumulative sums.  dr, dk, dw are partial sums over the V blocks, added
with relaxed atomics; the bonus parts of dr, dk and du are formed on the host.

The forward saves the state every ``CK_EVERY`` steps; the backward walks those blocks last
to first and each block's chunks last to first, recomputing the chunk's ``S0`` from the
block's saved state with chunk updates (``tl.dot``).

Which backward the op runs: :func:`use_chunked_backward`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _wkv6_chunked_triton as _fwd
from ._triton_utils import LOG2E as _LOG2E_F, tl_dtype
from ._wkv6_chunked_triton import rk_slice, split_hi_lo
from ._wkv_triton import wkv6_bonus_grads, wkv6_bwd_buffers, wkv6_state_slice

#: which RWKV-6 backward the triton backend runs: "auto" (:func:`use_chunked_backward`),
#: "chunked" or "recurrent" (the benchmarks and the tests force one)
BACKWARD = "auto"
#: steps between the states the chunked forward saves for the chunked backward
SAVE_EVERY = 64
LOG2E = tl.constexpr(_LOG2E_F)


@triton.jit
def _chunk_decays(w_ptr, krow, cols, m):
    """Float64 inclusive / exclusive cumulative log-decays of a chunk's rows (base e)."""
    ws = tl.load(w_ptr + krow + cols[None, :], mask=m, other=0.0).to(tl.float64)
    lam = tl.cumsum(ws, 0)
    return lam, lam - ws


@triton.jit
def _wkv6_chunk_bwd_kernel(r_ptr, k_ptr, v_ptr, w_ptr, u_ptr, do_ptr, dsT_ptr, ck_ptr,
                           dr_ptr, dk_ptr, dv_ptr, dw_ptr, ds0_ptr, H, L, K, V,
                           HAS_DST: tl.constexpr, KP: tl.constexpr, KB: tl.constexpr,
                           BLOCK_V: tl.constexpr, C: tl.constexpr, NCH: tl.constexpr,
                           CT: tl.constexpr, DOT_PREC: tl.constexpr):
    CK_EVERY: tl.constexpr = C * NCH
    pid_bh, offs_k, mk, offs_v, mv, mkv, uu, soff, G = wkv6_state_slice(
        u_ptr, dsT_ptr, H, K, V, HAS_DST, KP, BLOCK_V, CT)
    offs_kb = tl.arange(0, KB)
    offs_t = tl.arange(0, C)
    before = offs_t[None, :] < offs_t[:, None]  # (t, s): s < t
    after = offs_t[None, :] > offs_t[:, None]  # (t, s): s > t
    diag = offs_t[None, :] == offs_t[:, None]
    # (s', t) pairs of the pair sum of dw: the term of s = t - 1 exists for 1 <= t <= s'
    shifted = (offs_t[None, :] <= offs_t[:, None]) & (offs_t[None, :] >= 1)
    nblk = tl.cdiv(L, CK_EVERY)
    for bi in range(0, nblk):
        blk = nblk - 1 - bi
        for ci in range(0, NCH):
            j = NCH - 1 - ci
            t0 = blk * CK_EVERY + j * C
            if t0 < L:
                # state before the chunk, from the block's saved state
                S = tl.load(ck_ptr + (pid_bh * nblk + blk) * K * V + soff, mask=mkv,
                            other=0.0).to(CT)
                for jj in range(0, j):
                    rows = blk * CK_EVERY + jj * C + offs_t  # (full chunks: t0 < L)
                    krow = pid_bh * L * K + rows[:, None] * K
                    mtk = (rows < L)[:, None] & mk[None, :]
                    lam, lex = _chunk_decays(w_ptr, krow, offs_k, mtk)
                    lam_end = tl.sum(lam - lex, 0)
                    kf = tl.load(k_ptr + krow + offs_k[None, :], mask=mtk, other=0.0).to(CT)
                    vf = tl.load(v_ptr + pid_bh * L * V + rows[:, None] * V + offs_v[None, :],
                                 mask=(rows < L)[:, None] & mv[None, :], other=0.0).to(CT)
                    kd = kf * tl.exp((lam_end[None, :] - lam).to(CT))
                    S = tl.exp(lam_end.to(CT))[:, None] * S \
                        + tl.dot(tl.trans(kd), vf, input_precision=DOT_PREC)
                rows = t0 + offs_t
                mt = rows < L
                mp = (rows >= t0 + 1) & (rows - 1 < L)  # the previous row is in the chunk
                krow = pid_bh * L * K + rows[:, None] * K
                vrow = pid_bh * L * V + rows[:, None] * V + offs_v[None, :]
                mtv = mt[:, None] & mv[None, :]
                v = tl.load(v_ptr + vrow, mask=mtv, other=0.0).to(CT)
                vp = tl.load(v_ptr + vrow - V, mask=mp[:, None] & mv[None, :], other=0.0).to(CT)
                do = tl.load(do_ptr + vrow, mask=mtv, other=0.0).to(CT)
                D = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)  # (t, s): do_t . v_s
                Dp = tl.dot(do, tl.trans(vp), input_precision=DOT_PREC)  # do_t . v_{s-1}
                A = tl.zeros([C, C], dtype=CT)
                for kb in range(0, KP, KB):
                    cols = kb + offs_kb
                    m = mt[:, None] & (cols < K)[None, :]
                    rs, ks = rk_slice(r_ptr, k_ptr, krow, cols, m, CT)
                    kp = tl.load(k_ptr + krow - K + cols[None, :],
                                 mask=mp[:, None] & (cols < K)[None, :], other=0.0).to(CT)
                    lam, lex = _chunk_decays(w_ptr, krow, cols, m)
                    lam_hi, lam_lo = split_hi_lo(lam * LOG2E, CT)
                    lex_hi, lex_lo = split_hi_lo(lex * LOG2E, CT)
                    # (t, s, channel): E[t, s] = e^{lex_t - lam_s}, clamped where s >= t
                    ex = (lex_hi[:, None, :] - lam_hi[None, :, :]) \
                        + (lex_lo[:, None, :] - lam_lo[None, :, :])
                    E = tl.where(before[:, :, None], tl.exp2(tl.minimum(ex, 0.0)), 0.0)
                    A += tl.sum(rs[:, None, :] * ks[None, :, :] * E, 2)
                    DE = D[:, :, None] * E
                    drs = tl.sum(DE * ks[None, :, :], 1)
                    dks = tl.sum(DE * rs[:, None, :], 0)
                    # (s', t, channel): pair term of s = t - 1, e^{lex_{s'} - lex_t}
                    ex = (lex_hi[:, None, :] - lex_hi[None, :, :]) \
                        + (lex_lo[:, None, :] - lex_lo[None, :, :])
                    P = tl.where(shifted[:, :, None],
                                 (Dp[:, :, None] * tl.exp2(tl.minimum(ex, 0.0)))
                                 * (rs[:, None, :] * kp[None, :, :]), 0.0)
                    R = tl.cumsum(P, 1)  # sum over s < t of the pair terms of s'
                    dwp = tl.sum(tl.where(before[:, :, None], R, 0.0), 0)  # ... and s' > t
                    o = krow + cols[None, :]
                    tl.atomic_add(dr_ptr + o, drs, mask=m, sem="relaxed")
                    tl.atomic_add(dk_ptr + o, dks, mask=m, sem="relaxed")
                    tl.atomic_add(dw_ptr + o, dwp, mask=m, sem="relaxed")
                mtk = mt[:, None] & mk[None, :]
                r = tl.load(r_ptr + krow + offs_k[None, :], mask=mtk, other=0.0).to(CT)
                k = tl.load(k_ptr + krow + offs_k[None, :], mask=mtk, other=0.0).to(CT)
                A += tl.where(diag, tl.sum(r * uu[None, :] * k, 1)[:, None], 0.0)  # the bonus
                lam, lex = _chunk_decays(w_ptr, krow, offs_k, mtk)
                lam_end = tl.sum(lam - lex, 0)
                e_lex = tl.exp(lex.to(CT))
                e_tail = tl.exp((lam_end[None, :] - lam).to(CT))
                e_end = tl.exp(lam_end.to(CT))
                dri = e_lex * tl.dot(do, tl.trans(S), input_precision=DOT_PREC)
                dki = e_tail * tl.dot(v, tl.trans(G), input_precision=DOT_PREC)
                dv = tl.dot(k * e_tail, G, input_precision=DOT_PREC) \
                    + tl.dot(tl.trans(A), do, input_precision=DOT_PREC)
                tl.store(dv_ptr + vrow, dv.to(dv_ptr.dtype.element_ty), mask=mtv)
                dw = (e_end * tl.sum(S * G, 1))[None, :] \
                    + tl.dot(after.to(CT), r * dri, input_precision=DOT_PREC) \
                    + tl.dot(before.to(CT), k * dki, input_precision=DOT_PREC)
                o = krow + offs_k[None, :]
                tl.atomic_add(dr_ptr + o, dri, mask=mtk, sem="relaxed")
                tl.atomic_add(dk_ptr + o, dki, mask=mtk, sem="relaxed")
                tl.atomic_add(dw_ptr + o, dw, mask=mtk, sem="relaxed")
                G = e_end[:, None] * G + tl.dot(tl.trans(r * e_lex), do,
                                                input_precision=DOT_PREC)
    tl.store(ds0_ptr + pid_bh * K * V + soff, G, mask=mkv)


def use_chunked_backward(L, dtype):
    """Whether the triton backend runs the chunked RWKV-6 backward (else the recurrent one).

    With ``BACKWARD = "auto"``: the same rule as the forward's
    (:func:`._wkv6_chunked_triton.use_chunked` with its ``"auto"``): chunked for
    ``L >= CHUNKED_MIN_L`` in float32 and 16-bit inputs.
    """
    if BACKWARD != "auto":
        return BACKWARD == "chunked"
    return L >= _fwd.CHUNKED_MIN_L and dtype != torch.float64


def wkv6_bwd_chunked(r, k, v, w, u, ck, do, dsT, save_every=SAVE_EVERY):
    """Gradients ``(dr, dk, dv, dw, du, ds0)`` of RWKV-6 WKV from the states saved every
    ``save_every`` steps (``ck``, ``(batch, heads, ceil(L / save_every), K, V)``; either
    forward's, ``save_every`` a multiple of ``CHUNK``)."""
    r, k, v, w, u, do = (t.contiguous() for t in (r, k, v, w, u, do))
    b, H, L, K = r.shape
    V = v.shape[-1]
    ct = ck.dtype
    if save_every % _fwd.CHUNK or ck.shape[2] != triton.cdiv(L, save_every):
        raise ValueError(f"ck must hold the state every save_every steps (a multiple of "
                         f"CHUNK={_fwd.CHUNK}), got {ck.shape[2]} states for L={L} and "
                         f"save_every={save_every}")
    KP, KB, BV = _fwd._blocks(K, V)
    dr_s, dk_s, dw, dv, ds0, dsTc = wkv6_bwd_buffers(r, v, ct, dsT)
    _wkv6_chunk_bwd_kernel[(b * H, triton.cdiv(V, BV))](
        r, k, v, w, u, do, dsTc, ck.contiguous(), dr_s, dk_s, dv, dw, ds0, H, L, K, V,
        HAS_DST=dsT is not None, KP=KP, KB=KB, BLOCK_V=BV, C=_fwd.CHUNK,
        NCH=save_every // _fwd.CHUNK, CT=tl_dtype(ct),
        DOT_PREC="ieee" if ct == torch.float64 else _fwd.DOT_PRECISION, num_warps=4)
    dr, dk, du = wkv6_bonus_grads(r, k, v, u, do, dr_s, dk_s)
    return dr, dk, dv, dw, du, ds0
