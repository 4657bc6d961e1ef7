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

from ._triton_utils import interpreting, next_pow2


@triton.jit
def _wkv4_fwd_kernel(w_ptr, u_ptr, k_ptr, v_ptr, s0_ptr, y_ptr, sT_ptr, hist_ptr, L, Cn,
                     HAS_S0: tl.constexpr, SAVE_HIST: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mc = offs_c < Cn
    w = tl.load(w_ptr + offs_c, mask=mc, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs_c, mask=mc, other=0.0).to(tl.float32)
    sbase = pid_b * 3 * Cn + offs_c
    if HAS_S0:
        aa = tl.load(s0_ptr + sbase, mask=mc, other=0.0).to(tl.float32)
        bb = tl.load(s0_ptr + sbase + Cn, mask=mc, other=0.0).to(tl.float32)
        pp = tl.load(s0_ptr + sbase + 2 * Cn, mask=mc, other=-1e38).to(tl.float32)
    else:
        aa = tl.zeros([BLOCK_C], dtype=tl.float32)
        bb = tl.zeros([BLOCK_C], dtype=tl.float32)
        pp = tl.full([BLOCK_C], -1e38, dtype=tl.float32)
    base = pid_b * L * Cn + offs_c
    for t in range(0, L):
        kt = tl.load(k_ptr + base + t * Cn, mask=mc, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + base + t * Cn, mask=mc, other=0.0).to(tl.float32)
        if SAVE_HIST:  # state before step t, for the backward
            hoff = (pid_b * L + t) * 3 * Cn + offs_c
            tl.store(hist_ptr + hoff, aa, mask=mc)
            tl.store(hist_ptr + hoff + Cn, bb, mask=mc)
            tl.store(hist_ptr + hoff + 2 * Cn, pp, mask=mc)
        q = u + kt
        p = tl.maximum(pp, q)
        e1 = tl.exp(pp - p)
        e2 = tl.exp(q - p)
        y = (e1 * aa + e2 * vt) / (e1 * bb + e2)
        tl.store(y_ptr + base + t * Cn, y.to(y_ptr.dtype.element_ty), mask=mc)
        q = w + pp
        p = tl.maximum(q, kt)
        e1 = tl.exp(q - p)
        e2 = tl.exp(kt - p)
        aa = e1 * aa + e2 * vt
        bb = e1 * bb + e2
        pp = p
    tl.store(sT_ptr + sbase, aa, mask=mc)
    tl.store(sT_ptr + sbase + Cn, bb, mask=mc)
    tl.store(sT_ptr + sbase + 2 * Cn, pp, mask=mc)


@triton.jit
def _wkv6_fwd_kernel(r_ptr, k_ptr, v_ptr, w_ptr, u_ptr, s0_ptr, o_ptr, sT_ptr, H, L, K, V,
                     HAS_S0: tl.constexpr, KP: tl.constexpr, BLOCK_V: tl.constexpr):
    pid_bh = tl.program_id(0).to(tl.int64)
    head = pid_bh % H
    offs_k = tl.arange(0, KP)
    mk = offs_k < K
    offs_v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mv = offs_v < V
    mkv = mk[:, None] & mv[None, :]
    uu = tl.load(u_ptr + head * K + offs_k, mask=mk, other=0.0).to(tl.float32)
    soff = pid_bh * K * V + offs_k[:, None] * V + offs_v[None, :]
    if HAS_S0:
        S = tl.load(s0_ptr + soff, mask=mkv, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([KP, BLOCK_V], dtype=tl.float32)
    kbase = pid_bh * L * K + offs_k
    vbase = pid_bh * L * V + offs_v
    for t in range(0, L):
        rt = tl.load(r_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        kt = tl.load(k_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        wt = tl.load(w_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + vbase + t * V, mask=mv, other=0.0).to(tl.float32)
        kv = kt[:, None] * vt[None, :]
        o = tl.sum(rt[:, None] * (S + uu[:, None] * kv), axis=0)
        tl.store(o_ptr + vbase + t * V, o.to(o_ptr.dtype.element_ty), mask=mv)
        S = tl.exp(wt)[:, None] * S + kv
    tl.store(sT_ptr + soff, S, mask=mkv)


def wkv4_fwd(w, u, k, v, state0, save_history=False):
    """Forward of RWKV-4 WKV; returns ``(y, last_state[, history])`` with fp32 states.

    ``history`` (with ``save_history``) is ``(batch, L, 3, C)``: the state before each step.
    """
    w, u, k, v = (t.contiguous() for t in (w, u, k, v))
    b, L, Cn = k.shape
    y = torch.empty((b, L, Cn), dtype=v.dtype, device=k.device)
    sT = torch.empty((b, 3, Cn), dtype=torch.float32, device=k.device)
    hist = torch.empty((b, L, 3, Cn), dtype=torch.float32, device=k.device) if save_history else sT
    BC = min(16 if interpreting() else 128, next_pow2(Cn))
    s0 = state0.contiguous() if state0 is not None else sT
    _wkv4_fwd_kernel[(b, triton.cdiv(Cn, BC))](w, u, k, v, s0, y, sT, hist, L, Cn,
                                                HAS_S0=state0 is not None,
                                                SAVE_HIST=bool(save_history), BLOCK_C=BC)
    return (y, sT, hist) if save_history else (y, sT)


@triton.jit
def _wkv4_bwd_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, hist_ptr, gy_ptr, gsT_ptr,
                     gk_ptr, gv_ptr, gw_ptr, gu_ptr, gs0_ptr, L, Cn,
                     HAS_GST: tl.constexpr, BLOCK_C: tl.constexpr):
    # Reverse mode of the running-maximum step itself (so it agrees with differentiating the
    # reference loop, including the log-scale pp of the returned state).  Every factor is an
    # exp of a non-positive number or a ratio bounded by construction: nothing overflows.
    pid_b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mc = offs_c < Cn
    w = tl.load(w_ptr + offs_c, mask=mc, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs_c, mask=mc, other=0.0).to(tl.float32)
    sbase = pid_b * 3 * Cn + offs_c
    if HAS_GST:
        gaa = tl.load(gsT_ptr + sbase, mask=mc, other=0.0).to(tl.float32)
        gbb = tl.load(gsT_ptr + sbase + Cn, mask=mc, other=0.0).to(tl.float32)
        gpp = tl.load(gsT_ptr + sbase + 2 * Cn, mask=mc, other=0.0).to(tl.float32)
    else:
        gaa = tl.zeros([BLOCK_C], dtype=tl.float32)
        gbb = tl.zeros([BLOCK_C], dtype=tl.float32)
        gpp = tl.zeros([BLOCK_C], dtype=tl.float32)
    gw = tl.zeros([BLOCK_C], dtype=tl.float32)
    gu = tl.zeros([BLOCK_C], dtype=tl.float32)
    base = pid_b * L * Cn + offs_c
    for i in range(0, L):
        t = L - 1 - i
        kt = tl.load(k_ptr + base + t * Cn, mask=mc, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + base + t * Cn, mask=mc, other=0.0).to(tl.float32)
        g = tl.load(gy_ptr + base + t * Cn, mask=mc, other=0.0).to(tl.float32)
        hoff = (pid_b * L + t) * 3 * Cn + offs_c
        aa = tl.load(hist_ptr + hoff, mask=mc, other=0.0)
        bb = tl.load(hist_ptr + hoff + Cn, mask=mc, other=1.0)
        pp = tl.load(hist_ptr + hoff + 2 * Cn, mask=mc, other=0.0)
        # state update  aa' = f1 aa + f2 v, bb' = f1 bb + f2, pp' = max(w + pp, k)
        r = w + pp
        p2 = tl.maximum(r, kt)
        f1 = tl.exp(r - p2)
        f2 = tl.exp(kt - p2)
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
        p = tl.maximum(pp, q)
        e1 = tl.exp(pp - p)
        e2 = tl.exp(q - p)
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
    tl.store(gs0_ptr + sbase, gaa, mask=mc)
    tl.store(gs0_ptr + sbase + Cn, gbb, mask=mc)
    tl.store(gs0_ptr + sbase + 2 * Cn, gpp, mask=mc)


def wkv4_bwd(w, u, k, v, y, hist, gy, gsT):
    """Gradients ``(dw, du, dk, dv, dstate0)`` of RWKV-4 WKV from the saved state history."""
    w, u, k, v, gy = (t.contiguous() for t in (w, u, k, v, gy))
    b, L, Cn = k.shape
    f32 = dict(dtype=torch.float32, device=k.device)
    gk = torch.empty((b, L, Cn), dtype=k.dtype, device=k.device)
    gv = torch.empty((b, L, Cn), dtype=v.dtype, device=k.device)
    gw = torch.empty((b, Cn), **f32)
    gu = torch.empty((b, Cn), **f32)
    gs0 = torch.empty((b, 3, Cn), **f32)
    BC = min(16 if interpreting() else 128, next_pow2(Cn))
    gst = gsT.contiguous() if gsT is not None else gs0
    _wkv4_bwd_kernel[(b, triton.cdiv(Cn, BC))](w, u, k, v, y, hist, gy, gst, gk, gv, gw, gu,
                                                gs0, L, Cn, HAS_GST=gsT is not None,
                                                BLOCK_C=BC)
    return gw.sum(0), gu.sum(0), gk, gv, gs0


def wkv6_fwd(r, k, v, w, u, state0):
    """Forward of RWKV-6 WKV; returns ``(o, last_state)`` with an fp32 state."""
    r, k, v, w, u = (t.contiguous() for t in (r, k, v, w, u))
    b, H, L, K = r.shape
    V = v.shape[-1]
    o = torch.empty((b, H, L, V), dtype=v.dtype, device=r.device)
    sT = torch.empty((b, H, K, V), dtype=torch.float32, device=r.device)
    KP = next_pow2(K)
    BV = min(next_pow2(V), 16 if interpreting() else max(16, 4096 // KP))
    s0 = state0.contiguous() if state0 is not None else sT
    _wkv6_fwd_kernel[(b * H, triton.cdiv(V, BV))](r, k, v, w, u, s0, o, sT, H, L, K, V,
                                                   HAS_S0=state0 is not None, KP=KP, BLOCK_V=BV)
    return o, sT


# ----------------------------------------------------------------------------- RWKV-6 backward
#
# With G_t = dLoss/dS_t (the adjoint of the state after step t), going backwards
#     G_{t-1} = diag(exp(w_t)) G_t + r_t do_t^T,        G_{L-1} = dLoss/dS_last,
# and the state parts of the gradients are
#     dr_t = S_{t-1} do_t,   dk_t = G_t v_t,   dv_t = G_t^T k_t,   dS_0 = G_{-1}.
# The bonus adds  dr_t += u k_t (v_t.do_t),  dk_t += u r_t (v_t.do_t),  dv_t += (r_t.(u k_t)) do_t,
# du = sum_t r_t k_t (v_t.do_t).  For the log-decays, every state S_m is a sum of terms
# exp(Lam_m - Lam_s) k_s v_s^T (Lam = inclusive cumulative w), so
#     dLoss/dLam_m = r_{m+1} * dr_{m+1} - k_m * dk_m  (state parts)  [+ rowsum(S_L * dS_L) at m = L-1]
# and dw_t = sum_{m >= t} dLoss/dLam_m, a reverse cumulative sum.  Its terms cancel, so a
# cumulative sum over the whole sequence would lose accuracy as L grows; instead it runs only
# inside chunks of CH steps and is anchored at each chunk start s by the exact value
# dw_s = exp(w_s) * rowsum(G_s * S_{s-1}), with S_{s-1} saved by kernel 1 every CH steps.
# Kernel 1 walks forward in time (recomputing S) for dr; kernel 2 walks backward for G, dk, dv
# and the anchors.  Partial sums over V blocks (dr, dk, anchors) use fp32 atomic adds.


@triton.jit
def _wkv6_bwd_dr_kernel(k_ptr, v_ptr, w_ptr, do_ptr, s0_ptr, dr_ptr, sT_ptr, ck_ptr, H, L, K, V,
                        nch, CH, HAS_S0: tl.constexpr, KP: tl.constexpr,
                        BLOCK_V: tl.constexpr):
    pid_bh = tl.program_id(0).to(tl.int64)
    offs_k = tl.arange(0, KP)
    mk = offs_k < K
    offs_v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mv = offs_v < V
    mkv = mk[:, None] & mv[None, :]
    soff = pid_bh * K * V + offs_k[:, None] * V + offs_v[None, :]
    if HAS_S0:
        S = tl.load(s0_ptr + soff, mask=mkv, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([KP, BLOCK_V], dtype=tl.float32)
    kbase = pid_bh * L * K + offs_k
    vbase = pid_bh * L * V + offs_v
    for t in range(0, L):
        kt = tl.load(k_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        wt = tl.load(w_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + vbase + t * V, mask=mv, other=0.0).to(tl.float32)
        dot = tl.load(do_ptr + vbase + t * V, mask=mv, other=0.0).to(tl.float32)
        tl.atomic_add(dr_ptr + kbase + t * K, tl.sum(S * dot[None, :], axis=1), mask=mk)
        if t % CH == 0:  # S_{t-1} at a chunk start, for the dw anchors
            tl.store(ck_ptr + (pid_bh * nch + t // CH) * K * V + offs_k[:, None] * V
                     + offs_v[None, :], S, mask=mkv)
        S = tl.exp(wt)[:, None] * S + kt[:, None] * vt[None, :]
    tl.store(sT_ptr + soff, S, mask=mkv)


@triton.jit
def _wkv6_bwd_dkv_kernel(r_ptr, k_ptr, v_ptr, w_ptr, u_ptr, do_ptr, dsT_ptr, dk_ptr, dv_ptr,
                         ds0_ptr, ck_ptr, anc_ptr, H, L, K, V, nch, CH,
                         HAS_DST: tl.constexpr, KP: tl.constexpr, BLOCK_V: tl.constexpr):
    pid_bh = tl.program_id(0).to(tl.int64)
    head = pid_bh % H
    offs_k = tl.arange(0, KP)
    mk = offs_k < K
    offs_v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    mv = offs_v < V
    mkv = mk[:, None] & mv[None, :]
    uu = tl.load(u_ptr + head * K + offs_k, mask=mk, other=0.0).to(tl.float32)
    soff = pid_bh * K * V + offs_k[:, None] * V + offs_v[None, :]
    if HAS_DST:
        G = tl.load(dsT_ptr + soff, mask=mkv, other=0.0).to(tl.float32)
    else:
        G = tl.zeros([KP, BLOCK_V], dtype=tl.float32)
    kbase = pid_bh * L * K + offs_k
    vbase = pid_bh * L * V + offs_v
    for i in range(0, L):
        t = L - 1 - i
        rt = tl.load(r_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        kt = tl.load(k_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        wt = tl.load(w_ptr + kbase + t * K, mask=mk, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + vbase + t * V, mask=mv, other=0.0).to(tl.float32)
        dot = tl.load(do_ptr + vbase + t * V, mask=mv, other=0.0).to(tl.float32)
        tl.atomic_add(dk_ptr + kbase + t * K, tl.sum(G * vt[None, :], axis=1), mask=mk)
        dv = tl.sum(G * kt[:, None], axis=0) + tl.sum(rt * uu * kt, axis=0) * dot
        tl.store(dv_ptr + vbase + t * V, dv.to(dv_ptr.dtype.element_ty), mask=mv)
        if t % CH == 0:  # exact dw_t = exp(w_t) rowsum(G_t * S_{t-1}) at chunk starts
            Sp = tl.load(ck_ptr + (pid_bh * nch + t // CH) * K * V + offs_k[:, None] * V
                         + offs_v[None, :], mask=mkv, other=0.0)
            tl.atomic_add(anc_ptr + (pid_bh * nch + t // CH) * K + offs_k,
                          tl.exp(wt) * tl.sum(G * Sp, axis=1), mask=mk)
        G = tl.exp(wt)[:, None] * G + rt[:, None] * dot[None, :]
    tl.store(ds0_ptr + soff, G, mask=mkv)


def wkv6_bwd(r, k, v, w, u, state0, do, dsT, chunk=None):
    """Gradients ``(dr, dk, dv, dw, du, ds0)`` of RWKV-6 WKV (see the derivation above)."""
    r, k, v, w, u, do = (t.contiguous() for t in (r, k, v, w, u, do))
    b, H, L, K = r.shape
    V = v.shape[-1]
    dev = r.device
    f32 = dict(dtype=torch.float32, device=dev)
    KP = next_pow2(K)
    BV = min(next_pow2(V), 16 if interpreting() else max(16, 2048 // KP))
    CH = chunk or (8 if interpreting() else 64)
    nch = triton.cdiv(L, CH)
    grid = (b * H, triton.cdiv(V, BV))
    dr_s = torch.zeros((b, H, L, K), **f32)
    sT = torch.empty((b, H, K, V), **f32)
    ck = torch.empty((b, H, nch, K, V), **f32)
    s0 = state0.contiguous() if state0 is not None else sT
    _wkv6_bwd_dr_kernel[grid](k, v, w, do, s0, dr_s, sT, ck, H, L, K, V, nch, CH,
                              HAS_S0=state0 is not None, KP=KP, BLOCK_V=BV)
    dk_s = torch.zeros((b, H, L, K), **f32)
    dv = torch.empty((b, H, L, V), dtype=v.dtype, device=dev)
    ds0 = torch.empty((b, H, K, V), **f32)
    anchors = torch.zeros((b, H, nch, K), **f32)
    dsTc = dsT.contiguous() if dsT is not None else ds0
    _wkv6_bwd_dkv_kernel[grid](r, k, v, w, u, do, dsTc, dk_s, dv, ds0, ck, anchors, H, L, K, V,
                               nch, CH, HAS_DST=dsT is not None, KP=KP, BLOCK_V=BV)
    rf, kf, uf = r.float(), k.float(), u.float()[None, :, None, :]
    vdo = (v.float() * do.float()).sum(-1, keepdim=True)
    dr = dr_s + uf * kf * vdo
    dk = dk_s + uf * rf * vdo
    du = (rf * kf * vdo).sum((0, 2))
    # dLoss/dLam_m, summed backwards inside each chunk and anchored at the next chunk start
    x = -kf.double() * dk_s.double()
    x[:, :, :-1] += rf[:, :, 1:].double() * dr_s[:, :, 1:].double()
    if dsT is not None:
        x[:, :, -1] += (sT.double() * dsT.double()).sum(-1)
    x = torch.nn.functional.pad(x, (0, 0, 0, nch * CH - L)).view(b, H, nch, CH, K)
    nxt = torch.zeros((b, H, nch, 1, K), dtype=torch.float64, device=dev)
    nxt[:, :, :-1, 0] = anchors[:, :, 1:].double()
    dw = x.flip(3).cumsum(3).flip(3) + nxt
    dw[:, :, :, 0] = anchors.double()  # chunk starts: the exact value itself
    dw = dw.view(b, H, nch * CH, K)[:, :, :L]
    return dr, dk, dv, dw, du, ds0
