"""Chunked torch implementation of the SSD scan (the ``cpu`` backend of :func:`~.ssd.ssd`).

Per head ``h`` (headdim ``P``, state ``N``) the recurrence is ``S_t = exp(dt_t A) S_{t-1} +
dt_t x_t B_t^T`` and ``y_t = S_t C_t + D x_t``.  The sequence is cut into chunks of ``T``
steps.  Writing ``a_t = dt_t A``, ``cs_t`` its cumulative sum inside the chunk and
``seg[t, s] = cs_t - cs_s`` (``s <= t``), ``u_s = dt_s x_s`` and ``S_0`` the state entering
the chunk, the chunk's outputs and its final state are

* ``Y = (C B^T o exp(seg) o causal_mask) u + diag(exp(cs)) C S_0^T`` (the quadratic,
  attention-like form inside the chunk plus the contribution of the carried state),
* ``S_T = exp(cs_T) S_0 + sum_s exp(cs_T - cs_s) u_s B_s^T``.

Everything except the carried state is computed for all chunks at once with batched
matrix products laid out ``(batch, chunk, group, head-in-group, T, .)``; the state passing
``S <- exp(cs_T) S + S_local`` is a loop over chunks only.  ``seg`` is formed as a masked
cumulative sum of the step log-decays (``sum_{s < r <= t} a_r``) rather than as a
difference of cumulative sums, so its rounding error is relative to the segment and not to
the whole chunk.

Backward (by hand; checked with ``gradcheck`` in the tests).  With ``g`` the gradient
reaching ``y`` and ``dS_T`` the gradient reaching a chunk's final state (the adjoint
states, passed from the last chunk to the first with the same recursion as the forward),
``M = C B^T o exp(seg)``:

* ``du = M^T g + w o (B dS_T^T)`` with ``w_s = exp(cs_T - cs_s)``,
* ``dM = g u^T``  ->  ``d(C B^T) = dM o exp(seg)``, ``dseg = dM o C B^T o exp(seg)``,
* ``dC = d(C B^T) B + diag(exp(cs)) g S_0``, ``dB = d(C B^T)^T C + (u o w) dS_T``,
* ``dS_0 = exp(cs_T) dS_T + (diag(exp(cs)) g)^T C``,
* ``d cs`` collects the row sums minus the column sums of ``dseg``, ``g . Y_off`` and the
  terms of ``w`` and ``exp(cs_T)``; ``da`` is its reverse cumulative sum,
  ``d dt = x . du + A da`` and ``dA = sum dt da``.

The forward keeps only the states entering each chunk (``1/T`` of the state history) and,
with a gate, the output before the gate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 64


def default_chunk(L):
    """Chunk length of the ``cpu`` path: 64, or ``L`` when the sequence is shorter."""
    return max(1, min(DEFAULT_CHUNK, L))


def prepare_dt(dt, dt_bias, softplus, dt_limit, ct, need_grad_factor=False):
    """``clamp(softplus(dt + dt_bias), *dt_limit)`` in dtype ``ct``, and d(result)/d(dt)."""
    raw = dt.to(ct)
    if dt_bias is not None:
        raw = raw + dt_bias.to(ct)
    val = F.softplus(raw) if softplus else raw
    factor = None
    lo, hi = dt_limit
    clamped = lo > float("-inf") or hi < float("inf")
    if need_grad_factor:
        factor = torch.sigmoid(raw) if softplus else torch.ones_like(raw)
        if clamped:
            factor = factor * ((val >= lo) & (val <= hi)).to(ct)
    if clamped:
        val = val.clamp(lo, hi)
    return val, factor


class _Chunks:
    """The per-chunk quantities shared by the forward and the backward.

    Shapes: ``b`` batch, ``c`` chunks, ``g`` groups, ``k`` heads per group, ``T`` chunk
    length, ``P`` head dimension, ``N`` state size.
    """

    def __init__(self, x, dtv, A, B, C, T, ct):
        b, L, H, P = x.shape
        G, N = B.shape[2], B.shape[3]
        k = H // G
        nc = (L + T - 1) // T
        pad = nc * T - L
        self.shape = (b, L, H, P, G, N, k, nc, T, pad)

        def chunked(t):  # (b, L, ...) -> (b, c, T, ...), zero padded
            t = t.to(ct)
            if pad:
                t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
            return t.reshape(b, nc, T, *t.shape[2:])

        dtc = chunked(dtv)  # (b, c, T, H); zero dt on padding: no decay, no input
        self.dt_h = dtc.permute(0, 1, 3, 2).reshape(b, nc, G, k, T)
        a = self.dt_h * A.to(ct).view(1, 1, G, k, 1)
        self.cs = torch.cumsum(a, dim=-1)
        # seg[t, s] = sum_{s < r <= t} a_r, as a masked cumulative sum down the rows
        tri_strict = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(-1)
        seg = torch.cumsum(a.unsqueeze(-1).expand(b, nc, G, k, T, T).masked_fill(~tri_strict, 0.0), dim=-2)
        tri = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        self.Lm = torch.exp(seg).masked_fill_(~tri, 0.0)  # (b, c, g, k, T, T)
        self.w = self.Lm[..., T - 1, :]  # exp(cs_T - cs_s)
        self.ecs = torch.exp(self.cs)  # exp(cs_t)
        self.dec = self.ecs[..., T - 1]  # decay over the whole chunk, (b, c, g, k)
        self.Bc = chunked(B).permute(0, 1, 3, 2, 4)  # (b, c, g, T, N)
        self.Cc = chunked(C).permute(0, 1, 3, 2, 4)
        self.xh = chunked(x).reshape(b, nc, T, G, k, P).permute(0, 1, 3, 4, 2, 5)  # (b, c, g, k, T, P)
        self.uh = self.xh * self.dt_h.unsqueeze(-1)
        self.CB = torch.matmul(self.Cc, self.Bc.transpose(-1, -2))  # (b, c, g, T, T)
        self.M = self.Lm * self.CB.unsqueeze(3)

    def heads_to_rows(self, t):
        """(b, c, g, k, T, P) -> (b, c, g, T, k*P): the heads of a group side by side."""
        b, c, g, k, T, P = t.shape
        return t.permute(0, 1, 2, 4, 3, 5).reshape(b, c, g, T, k * P)

    def states_to_rows(self, S):
        """(b, c, g, k, P, N) -> (b, c, g, k*P, N)."""
        b, c, g, k, P, N = S.shape
        return S.reshape(b, c, g, k * P, N)

    def c_states(self, starts):
        """``C_t . S_0`` for every head: (b, c, g, k, T, P), one product per group."""
        b, L, H, P, G, N, k, nc, T, pad = self.shape
        out = torch.matmul(self.Cc, self.states_to_rows(starts).transpose(-1, -2))
        return out.reshape(b, nc, G, T, k, P).permute(0, 1, 2, 4, 3, 5)

    def to_sequence(self, t):
        """(b, c, g, k, T, P) -> (b, L, H, P)."""
        b, L, H, P, G, N, k, nc, T, pad = self.shape
        t = t.permute(0, 1, 4, 2, 3, 5).reshape(b, nc * T, H, P)
        return t[:, :L]


def pass_states(local, dec, S, reverse=False):
    """``out[c] = S; S = dec[c] S + local[c]`` over the chunks (last to first if ``reverse``).

    ``local`` is ``(b, c, g, k, P, N)``, ``dec`` ``(b, c, g, k)``.  Returns ``(out, S)``:
    the states entering each chunk (or, reversed, the adjoints leaving it) and the final one.
    """
    nc = local.shape[1]
    out = torch.empty_like(local)
    order = range(nc - 1, -1, -1) if reverse else range(nc)
    for c in order:
        out[:, c] = S
        S = torch.addcmul(local[:, c], dec[:, c, :, :, None, None], S)
    return out, S


def ssd_fwd(x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, h0, chunk, ct,
            save_for_backward=False):
    """Forward.  Returns ``(out, final_state, chunk_start_states, y_before_gate)``."""
    b, L, H, P = x.shape
    N = B.shape[-1]
    G = B.shape[2]
    dtv, _ = prepare_dt(dt, dt_bias, softplus, dt_limit, ct)
    ch = _Chunks(x, dtv, A, B, C, chunk, ct)
    k = ch.shape[6]
    y_diag = torch.matmul(ch.M, ch.uh)  # (b, c, g, k, T, P)
    local = torch.matmul((ch.uh * ch.w.unsqueeze(-1)).transpose(-1, -2), ch.Bc.unsqueeze(3))
    S = (torch.zeros((b, G, k, P, N), dtype=ct, device=x.device) if h0 is None
         else h0.to(ct).reshape(b, G, k, P, N))
    starts, S = pass_states(local, ch.dec, S)
    y = ch.to_sequence(torch.addcmul(y_diag, ch.c_states(starts), ch.ecs.unsqueeze(-1)))
    xx = x.to(ct)
    if D is not None:
        y = y + xx * (D.to(ct).unsqueeze(-1) if D.dim() == 1 else D.to(ct))
    ypre = y if (z is not None and save_for_backward) else None
    if z is not None:
        y = y * F.silu(z.to(ct))
    final = S.reshape(b, H, P, N)
    return y.to(x.dtype), final, (starts if save_for_backward else None), ypre


def ssd_bwd(gout, gfinal, x, dt, A, B, C, D, z, dt_bias, softplus, dt_limit, starts, ypre,
            chunk, ct, need_h0_grad=False):
    """Backward.  Returns ``(dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dh0)``."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    dtv, factor = prepare_dt(dt, dt_bias, softplus, dt_limit, ct, need_grad_factor=True)
    ch = _Chunks(x, dtv, A, B, C, chunk, ct)
    k, nc, T, pad = ch.shape[6], ch.shape[7], ch.shape[8], ch.shape[9]
    xx = x.to(ct)
    g = gout.to(ct)
    dz = None
    if z is not None:
        zz = z.to(ct)
        s = torch.sigmoid(zz)
        dz = g * ypre * s * (1 + zz * (1 - s))
        g = g * zz * s
    dD = None
    if D is not None:
        gx = (g * xx).sum((0, 1))
        dD = gx.sum(-1) if D.dim() == 1 else gx
    gp = F.pad(g, (0, 0, 0, 0, 0, pad)) if pad else g
    gh = gp.reshape(b, nc, T, G, k, P).permute(0, 1, 3, 4, 2, 5)  # (b, c, g, k, T, P)
    ge = gh * ch.ecs.unsqueeze(-1)  # gradient of C S_0^T
    # adjoint states: dS leaving chunk c is passed back with the forward's recursion
    dlocal = torch.matmul(ge.transpose(-1, -2), ch.Cc.unsqueeze(3))  # (b, c, g, k, P, N)
    dS = (torch.zeros((b, G, k, P, N), dtype=ct, device=x.device) if gfinal is None
          else gfinal.to(ct).reshape(b, G, k, P, N))
    dS_end, dS = pass_states(dlocal, ch.dec, dS, reverse=True)
    dh0 = dS.reshape(b, H, P, N) if need_h0_grad else None
    # du
    BdS = torch.matmul(ch.Bc.unsqueeze(3), dS_end.transpose(-1, -2))  # (b, c, g, k, T, P)
    du = torch.matmul(ch.M.transpose(-1, -2), gh)
    du.addcmul_(BdS, ch.w.unsqueeze(-1))
    # through C B^T and exp(seg)
    dM = torch.matmul(gh, ch.uh.transpose(-1, -2))  # (b, c, g, k, T, T)
    dML = dM.mul_(ch.Lm)
    dCB = dML.sum(3)  # (b, c, g, T, T)
    dseg = dML.mul_(ch.CB.unsqueeze(3))
    dC = torch.matmul(dCB, ch.Bc) + torch.matmul(
        ch.heads_to_rows(ge), ch.states_to_rows(starts))
    uw = ch.uh * ch.w.unsqueeze(-1)
    dB = torch.matmul(dCB.transpose(-1, -2), ch.Cc) + torch.matmul(
        ch.heads_to_rows(uw), ch.states_to_rows(dS_end))
    # d cs
    dcs = dseg.sum(-1) - dseg.sum(-2) + (ge * ch.c_states(starts)).sum(-1)
    dww = (ch.uh * BdS).sum(-1) * ch.w  # d w_s * w_s
    dcs -= dww
    dcs[..., T - 1] += dww.sum(-1) + ch.dec * (starts * dS_end).sum((-1, -2))
    da = dcs.flip(-1).cumsum(-1).flip(-1)
    # back to the inputs
    dx = ch.to_sequence(du * ch.dt_h.unsqueeze(-1))
    if D is not None:
        dx = dx + g * (D.to(ct).unsqueeze(-1) if D.dim() == 1 else D.to(ct))
    ddt_h = (ch.xh * du).sum(-1) + da * A.to(ct).view(1, 1, G, k, 1)  # (b, c, g, k, T)
    dA = (ch.dt_h * da).sum((0, 1, 4)).reshape(H)
    ddt = ddt_h.permute(0, 1, 4, 2, 3).reshape(b, nc * T, H)[:, :L] * factor
    ddt_bias = ddt.sum((0, 1)) if dt_bias is not None else None

    def unchunk_bc(t):  # (b, c, g, T, N) -> (b, L, g, N)
        return t.permute(0, 1, 3, 2, 4).reshape(b, nc * T, G, N)[:, :L]

    return dx, ddt, dA, unchunk_bc(dB), unchunk_bc(dC), dD, dz, ddt_bias, dh0
