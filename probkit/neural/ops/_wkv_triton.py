"""Triton kernels for the RWKV-4 and RWKV-6 WKV recurrences (forward and backward).

All are recurrent kernels: one program owns a block of channels (RWKV-4) or a
``(K, BLOCK_V)`` slice of one head's state matrix (RWKV-6), keeps it in fp32 registers and
steps through the sequence, loading one contiguous row of the inputs per step.

RWKV-4 backward: the forward (when gradients are needed) also writes the state before each
step, ``(batch, L, 3, C)`` fp32; one reverse-time kernel then applies the reverse mode of
the running-maximum step.  RWKV-6 backward: see the comment above ``wkv6_bwd``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import compute_dtype
from ._triton_utils import add, interpreting, next_pow2, tl_dtype


@triton.jit
def _wkv4_channels(w_ptr, u_ptr, s_ptr, Cn, PRESENT: tl.constexpr, P_EMPTY: tl.constexpr,
                   BLOCK_C: tl.constexpr, CT: tl.constexpr):
    """A program's block of channels: ``(pid_b, offs_c, mc, w, u, offsets of the block in a
    (batch, 3, C) state, its three parts from s_ptr)``; without a state ``(0, 0, P_EMPTY)``."""
    pid_b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mc = offs_c < Cn
    w = tl.load(w_ptr + offs_c, mask=mc, other=0.0).to(CT)
    u = tl.load(u_ptr + offs_c, mask=mc, other=0.0).to(CT)
    sbase = pid_b * 3 * Cn + offs_c
    if PRESENT:
        s1 = tl.load(s_ptr + sbase, mask=mc, other=0.0).to(CT)
        s2 = tl.load(s_ptr + sbase + Cn, mask=mc, other=0.0).to(CT)
        s3 = tl.load(s_ptr + sbase + 2 * Cn, mask=mc, other=0.0).to(CT)  # masked: unused
    else:
        s1 = tl.zeros([BLOCK_C], dtype=CT)
        s2 = tl.zeros([BLOCK_C], dtype=CT)
        s3 = tl.full([BLOCK_C], P_EMPTY, dtype=CT)
    return pid_b, offs_c, mc, w, u, sbase, s1, s2, s3


@triton.jit
def _max_scaled(x, y):
    """``(m, exp(x - m), exp(y - m))`` with ``m = max(x, y)``: the two weights of a sum of two
    exponentials kept at the log-scale of the larger."""
    m = tl.maximum(x, y)
    return m, tl.exp(x - m), tl.exp(y - m)


@triton.jit
def _store_state3(ptr, off, Cn, s1, s2, s3, mc):
    """Store the three parts of a (3, C) state (or its gradient) at ``off``."""
    tl.store(ptr + off, s1, mask=mc)
    tl.store(ptr + off + Cn, s2, mask=mc)
    tl.store(ptr + off + 2 * Cn, s3, mask=mc)


@triton.jit
def _wkv4_fwd_kernel(w_ptr, u_ptr, k_ptr, v_ptr, s0_ptr, y_ptr, sT_ptr, hist_ptr, L, Cn,
                     HAS_S0: tl.constexpr, SAVE_HIST: tl.constexpr, BLOCK_C: tl.constexpr,
                     CT: tl.constexpr):
    pid_b, offs_c, mc, w, u, sbase, aa, bb, pp = _wkv4_channels(
        w_ptr, u_ptr, s0_ptr, Cn, HAS_S0, -1e38, BLOCK_C, CT)
    base = pid_b * L * Cn + offs_c
    for t in range(0, L):
        kt = tl.load(k_ptr + base + t * Cn, mask=mc, other=0.0).to(CT)
        vt = tl.load(v_ptr + base + t * Cn, mask=mc, other=0.0).to(CT)
        if SAVE_HIST:  # state before step t, for the backward
            _store_state3(hist_ptr, (pid_b * L + t) * 3 * Cn + offs_c, Cn, aa, bb, pp, mc)
        _, e1, e2 = _max_scaled(pp, u + kt)
        y = (e1 * aa + e2 * vt) / (e1 * bb + e2)
        tl.store(y_ptr + base + t * Cn, y.to(y_ptr.dtype.element_ty), mask=mc)
        p, e1, e2 = _max_scaled(w + pp, kt)
        aa = e1 * aa + e2 * vt
        bb = e1 * bb + e2
        pp = p
    _store_state3(sT_ptr, sbase, Cn, aa, bb, pp, mc)


def _wkv4_block(Cn):
    return min(16 if interpreting() else 128, next_pow2(Cn))


def wkv4_fwd(w, u, k, v, state0, save_history=False):
    """Forward of RWKV-4 WKV; returns ``(y, last_state[, history])``.

    States are fp32 (fp64 when an input is fp64).  ``history`` (with ``save_history``) is
    ``(batch, L, 3, C)``: the state before each step.
    """
    w, u, k, v = (t.contiguous() for t in (w, u, k, v))
    ct = compute_dtype(w, u, k, v, state0)
    b, L, Cn = k.shape
    y = torch.empty((b, L, Cn), dtype=v.dtype, device=k.device)
    sT = torch.empty((b, 3, Cn), dtype=ct, device=k.device)
    hist = torch.empty((b, L, 3, Cn), dtype=ct, device=k.device) if save_history else sT
    BC = _wkv4_block(Cn)
    s0 = state0.contiguous() if state0 is not None else sT
    _wkv4_fwd_kernel[(b, triton.cdiv(Cn, BC))](w, u, k, v, s0, y, sT, hist, L, Cn,
                                                HAS_S0=state0 is not None,
                                                SAVE_HIST=bool(save_history), BLOCK_C=BC,
                                                CT=tl_dtype(ct))
    return (y, sT, hist) if save_history else (y, sT)


@triton.jit
def _wkv4_bwd_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, hist_ptr, gy_ptr, gsT_ptr,
                     gk_ptr, gv_ptr, gw_ptr, gu_ptr, gs0_ptr, L, Cn,
                     HAS_GST: tl.constexpr, BLOCK_C: tl.constexpr, CT: tl.constexpr):
    # Reverse mode of the running-maximum step itself (so it agrees with differentiating the
    # reference loop, including the log-scale pp of the returned state).  Every factor is an
    # exp of a non-positive number or a ratio bounded by construction: nothing overflows.
    pid_b, offs_c, mc, w, u, sbase, gaa, gbb, gpp = _wkv4_channels(
        w_ptr, u_ptr, gsT_ptr, Cn, HAS_GST, 0.0, BLOCK_C, CT)
    gw = tl.zeros([BLOCK_C], dtype=CT)
    gu = tl.zeros([BLOCK_C], dtype=CT)
    base = pid_b * L * Cn + offs_c
    for i in range(0, L):
        t = L - 1 - i
        kt = tl.load(k_ptr + base + t * Cn, mask=mc, other=0.0).to(CT)
        vt = tl.load(v_ptr + base + t * Cn, mask=mc, other=0.0).to(CT)
        g = tl.load(gy_ptr + base + t * Cn, mask=mc, other=0.0).to(CT)
        hoff = (pid_b * L + t) * 3 * Cn + offs_c
        aa = tl.load(hist_ptr + hoff, mask=mc, other=0.0)
        bb = tl.load(hist_ptr + hoff + Cn, mask=mc, other=1.0)
        pp = tl.load(hist_ptr + hoff + 2 * Cn, mask=mc, other=0.0)
        # state update  aa' = f1 aa + f2 v, bb' = f1 bb + f2, pp' = max(w + pp, k)
        r = w + pp
        _, f1, f2 = _max_scaled(r, kt)
        gf1 = gaa * aa + gbb * bb
        gf2 = gaa * vt + gbb
        gv = gaa * f2
        gp2 = gpp - gf1 * f1 - gf2 * f2
        gr = gf1 * f1 + tl.where(r >= kt, gp2, 0.0)
        gk = gf2 * f2 + tl.where(r >= kt, 0.0, gp2)
        gw += gr
        gpp_new = gr
        gaa_new = gaa * f1
        gbb_new = gbb * f1
        # output  y = (e1 aa + e2 v) / (e1 bb + e2), e1 = exp(pp - p), e2 = exp(u + k - p)
        q = u + kt
        _, e1, e2 = _max_scaled(pp, q)
        den = e1 * bb + e2
        yt = (e1 * aa + e2 * vt) / den
        gnum = g / den
        gden = -g * yt / den
        ge1 = gnum * aa + gden * bb
        ge2 = gnum * vt + gden
        gaa_new += gnum * e1
        gbb_new += gden * e1
        gv += gnum * e2
        gp = -ge1 * e1 - ge2 * e2
        gq = ge2 * e2 + tl.where(pp >= q, 0.0, gp)
        gpp_new += ge1 * e1 + tl.where(pp >= q, gp, 0.0)
        gk += gq
        gu += gq
        tl.store(gk_ptr + base + t * Cn, gk.to(gk_ptr.dtype.element_ty), mask=mc)
        tl.store(gv_ptr + base + t * Cn, gv.to(gv_ptr.dtype.element_ty), mask=mc)
        gaa = gaa_new
        gbb = gbb_new
        gpp = gpp_new
    tl.store(gw_ptr + pid_b * Cn + offs_c, gw, mask=mc)
    tl.store(gu_ptr + pid_b * Cn + offs_c, gu, mask=mc)
    _store_state3(gs0_ptr, sbase, Cn, gaa, gbb, gpp, mc)


def wkv4_bwd(w, u, k, v, y, hist, gy, gsT):
    """Gradients ``(dw, du, dk, dv, dstate0)`` of RWKV-4 WKV from the saved state history."""
    w, u, k, v, gy = (t.contiguous() for t in (w, u, k, v, gy))
    b, L, Cn = k.shape
    ct = hist.dtype
    f32 = dict(dtype=ct, device=k.device)
    gk = torch.empty((b, L, Cn), dtype=k.dtype, device=k.device)
    gv = torch.empty((b, L, Cn), dtype=v.dtype, device=k.device)
    gw = torch.empty((b, Cn), **f32)
    gu = torch.empty((b, Cn), **f32)
    gs0 = torch.empty((b, 3, Cn), **f32)
    BC = _wkv4_block(Cn)
    gst = gsT.contiguous() if gsT is not None else gs0
    _wkv4_bwd_kernel[(b, triton.cdiv(Cn, BC))](w, u, k, v, y, hist, gy, gst, gk, gv, gw, gu,
                                                gs0, L, Cn, HAS_GST=gsT is not None,
                                                BLOCK_C=BC, CT=tl_dtype(ct))
    return gw.sum(0), gu.sum(0), gk, gv, gs0



# ----------------------------------------------------------------------------- RWKV-6
#
# State S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T (K x V per head), o_t = r_t^T (S_{t-1} +
# diag(u) k_t v_t^T).  One program owns a (K, BLOCK_V) slice of one head's state.
#
# Backward.  With G_t = dLoss/dS_t (the adjoint of the state after step t), going backwards
#     G_{t-1} = diag(exp(w_t)) G_t + r_t do_t^T,        G_{L-1} = dLoss/dS_last,
# and the state parts of the gradients are
#     dr_t = S_{t-1} do_t,  dk_t = G_t v_t,  dv_t = G_t^T k_t,  dS_0 = G_{-1},
#     dw_t = exp(w_t) * rowsum(G_t * S_{t-1})        (a product of bounded factors: exact).
# The bonus adds  dr_t += u k_t (v_t.do_t),  dk_t += u r_t (v_t.do_t),  dv_t += (r_t.(u k_t)) do_t,
# du = sum_t r_t k_t (v_t.do_t), formed on the host.  dw needs G_t and S_{t-1} at the same
# step, one walking backwards and the other forwards: the forward saves S every CHUNK steps;
# the backward kernel walks the chunks last to first and each chunk's sub-chunks of SUB steps
# last to first, recomputes S up to the sub-chunk from the chunk's saved state, keeps the SUB
# states S_{t-1} of the sub-chunk in registers, then steps G back through the sub-chunk
# forming dr, dk, dv, dw from both.  (A reverse cumulative sum of r.dr - k.dk, the usual
# identity for dw, cancels catastrophically when a strong decay follows a weak one.)
# Partial sums over V blocks (dr, dk, dw) are added with relaxed fp32 atomics.


@triton.jit
def wkv6_state_slice(u_ptr, s0_ptr, H, K, V, HAS_S0: tl.constexpr, KP: tl.constexpr,
                     BLOCK_V: tl.constexpr, CT: tl.constexpr):
    """The ``(K, BLOCK_V)`` state slice of a program: ``(pid_bh, offs_k, mk, offs_v, mv, mkv,
    u of the head, offsets of the slice in a (K, V) matrix, the slice of s0_ptr)``: the
    initial state of a forward, the adjoint of the last state of a backward (zeros when not
    ``HAS_S0``)."""
    pid_bh = tl.program_id(0).to(tl.int64)
    offs_k = tl.arange(0, KP)
    mk = offs_k < K
    offs_v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mv = offs_v < V
    mkv = mk[:, None] & mv[None, :]
    uu = tl.load(u_ptr + (pid_bh % H) * K + offs_k, mask=mk, other=0.0).to(CT)
    soff = offs_k[:, None] * V + offs_v[None, :]
    if HAS_S0:
        S = tl.load(s0_ptr + pid_bh * K * V + soff, mask=mkv, other=0.0).to(CT)
    else:
        S = tl.zeros([KP, BLOCK_V], dtype=CT)
    return pid_bh, offs_k, mk, offs_v, mv, mkv, uu, soff, S


@triton.jit
def _wkv6_fwd_kernel(r_ptr, k_ptr, v_ptr, w_ptr, u_ptr, s0_ptr, o_ptr, sT_ptr, ck_ptr,
                     H, L, K, V, CHUNK,
                     HAS_S0: tl.constexpr, SAVE_CK: tl.constexpr, KP: tl.constexpr,
                     BLOCK_V: tl.constexpr, CT: tl.constexpr):
    pid_bh, offs_k, mk, offs_v, mv, mkv, uu, soff, S = wkv6_state_slice(
        u_ptr, s0_ptr, H, K, V, HAS_S0, KP, BLOCK_V, CT)
    kbase = pid_bh * L * K + offs_k
    vbase = pid_bh * L * V + offs_v
    nch = tl.cdiv(L, CHUNK)
    for t in range(0, L):
        if SAVE_CK:
            if t % CHUNK == 0:  # state before each chunk, for the backward
                tl.store(ck_ptr + (pid_bh * nch + t // CHUNK) * K * V + soff, S, mask=mkv)
        rt = tl.load(r_ptr + kbase + t * K, mask=mk, other=0.0).to(CT)
        kt = tl.load(k_ptr + kbase + t * K, mask=mk, other=0.0).to(CT)
        wt = tl.load(w_ptr + kbase + t * K, mask=mk, other=0.0).to(CT)
        vt = tl.load(v_ptr + vbase + t * V, mask=mv, other=0.0).to(CT)
        kv = kt[:, None] * vt[None, :]
        o = tl.reduce(rt[:, None] * (S + uu[:, None] * kv), 0, add)
        tl.store(o_ptr + vbase + t * V, o.to(o_ptr.dtype.element_ty), mask=mv)
        S = tl.exp(wt)[:, None] * S + kv
    tl.store(sT_ptr + pid_bh * K * V + soff, S, mask=mkv)


@triton.jit
def _wkv6_bwd_kernel(r_ptr, k_ptr, v_ptr, w_ptr, u_ptr, do_ptr, dsT_ptr, ck_ptr,
                     dr_ptr, dk_ptr, dv_ptr, dw_ptr, ds0_ptr, H, L, K, V,
                     HAS_DST: tl.constexpr, KP: tl.constexpr, BLOCK_V: tl.constexpr,
                     SUB: tl.constexpr, NSUB: tl.constexpr, CT: tl.constexpr):
    CHUNK: tl.constexpr = SUB * NSUB
    pid_bh, offs_k, mk, offs_v, mv, mkv, uu, soff, G = wkv6_state_slice(
        u_ptr, dsT_ptr, H, K, V, HAS_DST, KP, BLOCK_V, CT)
    offs_s = tl.arange(0, SUB)
    kbase = pid_bh * L * K + offs_k
    vbase = pid_bh * L * V + offs_v
    nch = tl.cdiv(L, CHUNK)
    for ci in range(0, nch):
        c = nch - 1 - ci
        for si in range(0, NSUB):
            sub = NSUB - 1 - si
            S = tl.load(ck_ptr + (pid_bh * nch + c) * K * V + soff, mask=mkv, other=0.0).to(CT)
            for t in range(c * CHUNK, c * CHUNK + sub * SUB):  # up to the sub-chunk
                # (masks built as tensors: loop indices are plain ints under the interpreter)
                mkt = mk & (offs_k * 0 + t < L)
                mvt = mv & (offs_v * 0 + t < L)
                kt = tl.load(k_ptr + kbase + t * K, mask=mkt, other=0.0).to(CT)
                wt = tl.load(w_ptr + kbase + t * K, mask=mkt, other=0.0).to(CT)
                vt = tl.load(v_ptr + vbase + t * V, mask=mvt, other=0.0).to(CT)
                S = tl.exp(wt)[:, None] * S + kt[:, None] * vt[None, :]
            t0 = c * CHUNK + sub * SUB
            Ss = tl.zeros([SUB, KP, BLOCK_V], dtype=CT)  # S_{t-1} for the sub-chunk's steps
            for j in tl.static_range(SUB):
                mkt = mk & (offs_k * 0 + (t0 + j) < L)
                mvt = mv & (offs_v * 0 + (t0 + j) < L)
                Ss = tl.where((offs_s == j)[:, None, None], S[None, :, :], Ss)
                kt = tl.load(k_ptr + kbase + (t0 + j) * K, mask=mkt, other=0.0).to(CT)
                wt = tl.load(w_ptr + kbase + (t0 + j) * K, mask=mkt, other=0.0).to(CT)
                vt = tl.load(v_ptr + vbase + (t0 + j) * V, mask=mvt, other=0.0).to(CT)
                S = tl.exp(wt)[:, None] * S + kt[:, None] * vt[None, :]
            for i in tl.static_range(SUB):
                j = SUB - 1 - i
                t = t0 + j
                mkt = mk & (offs_k * 0 + t < L)
                mvt = mv & (offs_v * 0 + t < L)
                rt = tl.load(r_ptr + kbase + t * K, mask=mkt, other=0.0).to(CT)
                kt = tl.load(k_ptr + kbase + t * K, mask=mkt, other=0.0).to(CT)
                ew = tl.exp(tl.load(w_ptr + kbase + t * K, mask=mkt, other=0.0).to(CT))
                vt = tl.load(v_ptr + vbase + t * V, mask=mvt, other=0.0).to(CT)
                dot = tl.load(do_ptr + vbase + t * V, mask=mvt, other=0.0).to(CT)
                Sp = tl.reduce(tl.where((offs_s == j)[:, None, None], Ss, -0.0), 0, add)
                tl.atomic_add(dr_ptr + kbase + t * K, tl.reduce(Sp * dot[None, :], 1, add),
                              mask=mkt, sem="relaxed")
                tl.atomic_add(dw_ptr + kbase + t * K, ew * tl.reduce(G * Sp, 1, add),
                              mask=mkt, sem="relaxed")
                tl.atomic_add(dk_ptr + kbase + t * K, tl.reduce(G * vt[None, :], 1, add),
                              mask=mkt, sem="relaxed")
                dv = tl.reduce(G * kt[:, None], 0, add) \
                    + tl.reduce(rt * uu * kt, 0, add) * dot
                tl.store(dv_ptr + vbase + t * V, dv.to(dv_ptr.dtype.element_ty), mask=mvt)
                G = ew[:, None] * G + rt[:, None] * dot[None, :]
    tl.store(ds0_ptr + pid_bh * K * V + soff, G, mask=mkv)


def _wkv6_blocks(K, V, for_backward):
    """(KP, BLOCK_V): the state slice of one program."""
    KP = next_pow2(K)
    cap = 16 if interpreting() else (1024 if for_backward else 4096) // KP
    return KP, max(1, min(next_pow2(V), cap))


def _wkv6_chunks(L):
    """(SUB, NSUB): steps per sub-chunk kept in registers, sub-chunks per saved state.

    ``SUB * NSUB`` is a multiple of the chunk of the chunked forward, which saves the states.
    """
    return (4, 4) if interpreting() else (8, 8)


def wkv6_fwd_buffers(r, k, v, w, u, state0):
    """Contiguous inputs, compute dtype, ``(b, H, L, K, V)`` and the output and last-state
    buffers of an RWKV-6 forward."""
    r, k, v, w, u = (t.contiguous() for t in (r, k, v, w, u))
    ct = compute_dtype(r, k, v, w, u, state0)
    b, H, L, K = r.shape
    V = v.shape[-1]
    o = torch.empty((b, H, L, V), dtype=v.dtype, device=r.device)
    sT = torch.empty((b, H, K, V), dtype=ct, device=r.device)
    return (r, k, v, w, u), ct, (b, H, L, K, V), o, sT


def wkv6_fwd(r, k, v, w, u, state0, save_chunks=False):
    """Forward of RWKV-6 WKV; returns ``(o, last_state, chunk_states)``.

    The state is fp32 (fp64 when an input is fp64).  With ``save_chunks`` the state before
    every ``SUB * NSUB`` steps is kept for the backward, ``(batch, heads, n_chunks, K, V)``.
    """
    (r, k, v, w, u), ct, (b, H, L, K, V), o, sT = wkv6_fwd_buffers(r, k, v, w, u, state0)
    KP, BV = _wkv6_blocks(K, V, False)
    sub, nsub = _wkv6_chunks(L)
    chunk = sub * nsub
    ck = (torch.empty((b, H, triton.cdiv(L, chunk), K, V), dtype=ct, device=r.device)
          if save_chunks else sT)
    s0 = state0.contiguous() if state0 is not None else sT
    _wkv6_fwd_kernel[(b * H, triton.cdiv(V, BV))](
        r, k, v, w, u, s0, o, sT, ck, H, L, K, V, chunk, HAS_S0=state0 is not None,
        SAVE_CK=bool(save_chunks), KP=KP, BLOCK_V=BV, CT=tl_dtype(ct))
    return o, sT, (ck if save_chunks else None)


def wkv6_bwd(r, k, v, w, u, ck, do, dsT):
    """Gradients ``(dr, dk, dv, dw, du, ds0)`` of RWKV-6 WKV (see the derivation above)."""
    r, k, v, w, u, do = (t.contiguous() for t in (r, k, v, w, u, do))
    b, H, L, K = r.shape
    V = v.shape[-1]
    ct = ck.dtype
    KP, BV = _wkv6_blocks(K, V, True)
    sub, nsub = _wkv6_chunks(L)
    dr_s, dk_s, dw, dv, ds0, dsTc = wkv6_bwd_buffers(r, v, ct, dsT)
    _wkv6_bwd_kernel[(b * H, triton.cdiv(V, BV))](
        r, k, v, w, u, do, dsTc, ck, dr_s, dk_s, dv, dw, ds0, H, L, K, V,
        HAS_DST=dsT is not None, KP=KP, BLOCK_V=BV, SUB=sub, NSUB=nsub, CT=tl_dtype(ct))
    dr, dk, du = wkv6_bonus_grads(r, k, v, u, do, dr_s, dk_s)
    return dr, dk, dv, dw, du, ds0


def wkv6_bwd_buffers(r, v, ct, dsT):
    """Gradient buffers of an RWKV-6 backward, ``(dr_s, dk_s, dw, dv, ds0, dsT)``: the
    atomically accumulated ones zeroed, ``dsT`` contiguous (``ds0`` standing in for none)."""
    b, H, L, K = r.shape
    acc = dict(dtype=ct, device=r.device)
    dr_s, dk_s, dw = (torch.zeros((b, H, L, K), **acc) for _ in range(3))
    dv = torch.empty((b, H, L, v.shape[-1]), dtype=v.dtype, device=r.device)
    ds0 = torch.empty((b, H, K, v.shape[-1]), **acc)
    return dr_s, dk_s, dw, dv, ds0, (dsT.contiguous() if dsT is not None else ds0)


def wkv6_bonus_grads(r, k, v, u, do, dr_s, dk_s):
    """``(dr, dk, du)``: the state parts ``dr_s, dk_s`` plus the bonus term's gradients."""
    ct = dr_s.dtype
    rf, kf, uf = r.to(ct), k.to(ct), u.to(ct)[None, :, None, :]
    vdo = (v.to(ct) * do.to(ct)).sum(-1, keepdim=True)
    return dr_s + uf * kf * vdo, dk_s + uf * rf * vdo, (rf * kf * vdo).sum((0, 2))
