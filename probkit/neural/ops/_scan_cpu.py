"""Chunked torch implementation of the selective scan (the ``cpu`` backend).

The sequence is cut into chunks of ``chunk`` time steps.  Inside a chunk every quantity
that does not depend on the previous state is computed with whole-chunk tensor operations
laid out as ``(T, batch, dim, N)`` (time outermost, so one time step is one contiguous
slab): the decays ``exp(dt * A)``, the inputs ``dt * u * B``, the contraction with ``C``
and all the gradient reductions.  The only sequential work is the first-order recurrence
``h_t = a_t * h_{t-1} + x_t``, done as one fused in-place ``addcmul_`` per time step on a
contiguous ``(batch, dim, N)`` slab.  Only one chunk of ``(T, batch, dim, N)`` tensors is
alive at a time, so memory is ``O(chunk * batch * dim * N)`` and no ``(batch, dim, L, N)``
tensor is ever formed.

The decay of a step is applied as a product of per-step factors ``exp(dt_t * A)`` rather
than as ``exp`` of a difference of cumulative sums, so there is neither overflow nor
cancellation, for any sign of ``A``.

Backward (derived by hand, checked with ``gradcheck`` in the tests).  With the adjoint
``lam_t = dLoss/dh_t`` the recurrence runs backwards,
``lam_t = g_t C_t + a_{t+1} lam_{t+1}``, and, writing ``x_t = dt_t B_t u_t`` and
``a_t = exp(dt_t A)``:

* ``d(dt_t A) = lam_t * a_t * h_{t-1}``      -> ``dA += sum_t d(dt_t A) dt_t``
* ``d dt_t = sum_n d(dt_t A) A + u_t sum_n lam_t B_t``
* ``d u_t = dt_t sum_n lam_t B_t + D g_t``,  ``d B_t = sum_d lam_t dt_t u_t``,
  ``d C_t = sum_d g_t h_t``,  ``d h_{-1} = a_0 lam_0``,

where ``g_t`` is the gradient reaching ``y_t`` (after the z gate).  The forward stores
only the states at chunk starts; the backward walks the chunks last to first, recomputes
the chunk's states from its stored start state, runs the adjoint recurrence and forms the
gradients with chunk-wide reductions.

On CPU tensors the forward is the numba kernel of :mod:`._scan_cpu_numba` (it stores the
same chunk-start states), and in the backward the two per-step recurrences of each chunk
(states, adjoints) run in its kernels; the reductions stay the torch code below.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 64


@functools.lru_cache(maxsize=None)
def compiled():
    """The numba kernels (:mod:`._scan_cpu_numba`) for CPU tensors, or ``None`` without numba.

    Imported on first use: loading numba costs a noticeable fraction of a second.
    """
    try:  # numba is a declared dependency; the torch code below keeps working without it
        from . import _scan_cpu_numba
    except ImportError:  # pragma: no cover - exercised only where numba is missing
        return None
    return _scan_cpu_numba


def default_chunk(b, d, N):
    """Chunk length: about 2**18 elements per ``(T, batch, dim, N)`` chunk tensor, in [16, 128].

    Measured on a 2-core x86 machine (benchmarks/results_neural_ops.md): small per-step slabs
    want long chunks (fewer torch calls), large slabs short ones (chunk tensors stay in cache).
    """
    t = max(1, (1 << 18) // max(1, b * d * N))
    return max(16, min(128, 1 << (t.bit_length() - 1)))


class _BCLayout:
    """How B (or C) maps onto channels: time-invariant ``(dim, N)`` or ``(batch, G, N, L)``."""

    def __init__(self, X, d, ct):
        self.const = X.dim() == 2
        self.N = X.shape[-1] if self.const else X.shape[-2]
        if self.const:
            self.G = d
            self.X = X.to(ct)
        else:
            self.X = X.unsqueeze(1) if X.dim() == 3 else X
            self.G = self.X.shape[1]
        self.dg = d // self.G
        self.ct = ct

    def block(self, l0, l1):
        """Broadcastable to ``(T, batch, G, dim // G, N)``."""
        if self.const:
            return self.X.view(1, 1, self.G, 1, self.N)
        return self.X[..., l0:l1].to(self.ct).permute(3, 0, 1, 2).unsqueeze(3)

    def outer(self, s, l0, l1, out):
        """``out[t, b, i, n] = s[t, b, i] * X[b, group(i), n, t]`` written into ``out``."""
        T, b, d = s.shape
        torch.mul(s.view(T, b, self.G, self.dg, 1), self.block(l0, l1),
                  out=out.view(T, b, self.G, self.dg, self.N))
        return out

    def contract_block(self, h, l0, l1):
        """``y[t, b, i] = sum_n h[t, b, i, n] * X[b, group(i), n, t]``."""
        T, b, d, N = h.shape
        if self.const:
            return (h * self.X).sum(-1)
        Xb = self.block(l0, l1).transpose(-1, -2)  # (T, b, G, N, 1)
        return torch.matmul(h.view(T, b, self.G, self.dg, N), Xb).view(T, b, d)

    def grad_block(self, h, s):
        """``sum_i h[t, b, i, n] * s[t, b, i]`` over the channels of each group.

        Returns ``(T, b, G, N)`` for time-varying X and ``(dim, N)`` summed over ``t, b``
        for time-invariant X.
        """
        T, b, d, N = h.shape
        if self.const:  # mul + sum over leading dims: ~6x faster than einsum here
            return (h * s.unsqueeze(-1)).sum((0, 1))
        return torch.matmul(s.view(T, b, self.G, 1, self.dg),
                            h.view(T, b, self.G, self.dg, N)).view(T, b, self.G, N)


def _dt_block(delta, bias, softplus, l0, l1, ct, need_sig=False):
    x = delta[:, :, l0:l1].to(ct)
    if bias is not None:
        x = x + bias[:, None]
    if softplus:
        return F.softplus(x), (torch.sigmoid(x) if need_sig else None)
    return x, None


def _tbd(x, l0, l1, ct):
    """``x[:, :, l0:l1]`` as a contiguous ``(T, batch, dim)`` tensor of dtype ``ct``."""
    return x[:, :, l0:l1].to(ct).permute(2, 0, 1).contiguous()


def _operands(A, B, C, D, delta_bias, d, ct):
    """``A``, ``D``, the step bias and the layouts of ``B`` and ``C`` in the compute dtype ``ct``."""
    return (A.to(ct), None if D is None else D.to(ct), None if delta_bias is None else delta_bias.to(ct),
            _BCLayout(B, d, ct), _BCLayout(C, d, ct))


def _chunk_inputs(u, delta, bias, softplus, A, l0, l1, ct, buf_a, need_sig=False, decays=True):
    """Steps ``l0:l1`` as ``(T, batch, dim)``: step sizes, their sigmoid (``need_sig``), inputs, and
    the decays ``exp(dt A)`` written into ``buf_a[:T]`` (left unwritten without ``decays``)."""
    dt, sig = _dt_block(delta, bias, softplus, l0, l1, ct, need_sig=need_sig)
    dtT = dt.permute(2, 0, 1).contiguous()
    a = buf_a[: l1 - l0]
    if decays:
        torch.mul(dtT.unsqueeze(-1), A, out=a)
        a.exp_()
    return dtT, sig, _tbd(u, l0, l1, ct), a

def scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus, h0, chunk=DEFAULT_CHUNK,
             save_for_backward=False, ct=torch.float32):
    """Forward pass.  Returns ``(out, last_state, chunk_start_states, y_before_gate)``."""
    b, d, L = u.shape
    N = A.shape[1]
    dev = u.device
    A_, D_, bias, Bl, Cl = _operands(A, B, C, D, delta_bias, d, ct)
    out = torch.empty((b, d, L), dtype=u.dtype, device=dev)
    ypre = torch.empty((b, d, L), dtype=ct, device=dev) if (z is not None and save_for_backward) else None
    nch = (L + chunk - 1) // chunk
    ckpt = torch.empty((nch, b, d, N), dtype=ct, device=dev) if save_for_backward else None
    h = torch.zeros((b, d, N), dtype=ct, device=dev) if h0 is None else h0.to(ct)
    Tmax = min(chunk, L)
    buf_a = torch.empty((Tmax, b, d, N), dtype=ct, device=dev)
    for ci in range(nch):
        l0 = ci * chunk
        l1 = min(L, l0 + chunk)
        T = l1 - l0
        if ckpt is not None:
            ckpt[ci].copy_(h)
        dtT, _, uT, a = _chunk_inputs(u, delta, bias, softplus, A_, l0, l1, ct, buf_a)
        hs = Bl.outer(dtT * uT, l0, l1, torch.empty((T, b, d, N), dtype=ct, device=dev))
        hs[0].addcmul_(a[0], h)
        for t in range(1, T):
            hs[t].addcmul_(a[t], hs[t - 1])
        h = hs[T - 1]
        y = Cl.contract_block(hs, l0, l1)
        if D_ is not None:
            y = y.addcmul_(uT, D_)
        y = y.permute(1, 2, 0)
        if z is not None:
            if ypre is not None:
                ypre[:, :, l0:l1] = y
            y = y * F.silu(z[:, :, l0:l1].to(ct))
        out[:, :, l0:l1] = y
    return out, h.clone(), ckpt, ypre


def scan_bwd(gout, glast, u, delta, A, B, C, D, z, delta_bias, softplus, ckpt, ypre,
             chunk=DEFAULT_CHUNK, ct=torch.float32, need_h0_grad=False):
    """Backward pass.  Returns grads ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0)``."""
    b, d, L = u.shape
    N = A.shape[1]
    dev = u.device
    A_, D_, bias, Bl, Cl = _operands(A, B, C, D, delta_bias, d, ct)
    du = torch.empty((b, d, L), dtype=ct, device=dev)
    ddelta = torch.empty((b, d, L), dtype=ct, device=dev)
    dz = torch.empty((b, d, L), dtype=ct, device=dev) if z is not None else None
    dA = torch.zeros((d, N), dtype=ct, device=dev)
    dD = torch.zeros((d,), dtype=ct, device=dev) if D is not None else None
    dbias = torch.zeros((d,), dtype=ct, device=dev) if delta_bias is not None else None
    dB = torch.zeros((d, N) if Bl.const else Bl.X.shape, dtype=ct, device=dev)
    dC = torch.zeros((d, N) if Cl.const else Cl.X.shape, dtype=ct, device=dev)
    mu = None if glast is None else glast.detach().to(ct)
    nch = ckpt.shape[0]
    Tmax = min(chunk, L)
    buf_a = torch.empty((Tmax, b, d, N), dtype=ct, device=dev)
    buf_h = torch.empty((Tmax + 1, b, d, N), dtype=ct, device=dev)
    buf_l = torch.empty((Tmax, b, d, N), dtype=ct, device=dev)
    # on CPU the two recurrences (states, adjoints) run in the compiled kernels
    nb = compiled() if dev.type == "cpu" else None
    if nb is not None:
        dt_all, _ = _dt_block(delta.detach(), bias, softplus, 0, L, ct)
        dt_np = dt_all.contiguous().view(b * d, L).numpy()
        u_np = u.detach().to(ct).contiguous().view(b * d, L).numpy()
        A_np = A_.detach().contiguous().numpy()
        Bm, bs = nb.rows(B.detach(), b, d, ct)
        Cm, cs = nb.rows(C.detach(), b, d, ct)
    for ci in range(nch - 1, -1, -1):
        l0 = ci * chunk
        l1 = min(L, l0 + chunk)
        T = l1 - l0
        # on CPU the compiled kernel writes the decays together with the states
        dtT, sig, uT, a = _chunk_inputs(u, delta, bias, softplus, A_, l0, l1, ct, buf_a, need_sig=True,
                                        decays=nb is None)
        # recompute the chunk's states; hb[0] is the state before the chunk
        hb = buf_h[: T + 1]
        dtu = dtT * uT
        if nb is not None:
            nb.recompute_chunk(l0, T, dt_np, u_np, A_np, Bm, bs,
                               ckpt[ci].view(b * d, N).numpy(), a.view(T, b * d, N).numpy(),
                               hb.view(T + 1, b * d, N).numpy())
        else:
            hb[0].copy_(ckpt[ci])
            Bl.outer(dtu, l0, l1, hb[1:])
            for t in range(T):
                hb[t + 1].addcmul_(a[t], hb[t])
        gT = _tbd(gout, l0, l1, ct)
        if z is not None:
            zT = _tbd(z, l0, l1, ct)
            s = torch.sigmoid(zT)
            gy = gT * zT * s
            yT = ypre[:, :, l0:l1].permute(2, 0, 1)
            dz[:, :, l0:l1] = (gT * yT * s * (1 + zT * (1 - s))).permute(1, 2, 0)
        else:
            gy = gT
        # adjoint recurrence lam_t = gy_t C_t + a_{t+1} lam_{t+1}
        lam = buf_l[:T]
        if nb is not None:
            mu_next = torch.empty((b, d, N), dtype=ct)
            nb.adjoint_chunk(d, l0, T, gy.contiguous().view(T, b * d).numpy(), Cm, cs,
                             a.view(T, b * d, N).numpy(),
                             (mu_next if mu is None else mu.contiguous()).view(b * d, N).numpy(),
                             mu is not None, lam.view(T, b * d, N).numpy(),
                             mu_next.view(b * d, N).numpy())
            mu = mu_next
        else:
            Cl.outer(gy, l0, l1, lam)
            if mu is not None:
                lam[T - 1] += mu
            for t in range(T - 2, -1, -1):
                lam[t].addcmul_(a[t + 1], lam[t + 1])
            mu = a[0] * lam[0]
        gdtA = a.mul_(hb[:T]).mul_(lam)  # lam_t * a_t * h_{t-1}
        dA += (gdtA * dtT.unsqueeze(-1)).sum((0, 1))
        ddt = torch.einsum("tbdn,dn->tbd", gdtA, A_)
        lamB = Bl.contract_block(lam, l0, l1)
        gB = Bl.grad_block(lam, dtu)
        gC = Cl.grad_block(hb[1:], gy)
        if Bl.const:
            dB += gB
        else:
            dB[..., l0:l1] = gB.permute(1, 2, 3, 0)
        if Cl.const:
            dC += gC
        else:
            dC[..., l0:l1] = gC.permute(1, 2, 3, 0)
        ddt.addcmul_(uT, lamB)
        duT = dtT * lamB
        if D_ is not None:
            duT.addcmul_(gy, D_)
            dD += (gy * uT).sum((0, 1))
        if softplus:
            ddt = ddt * sig.permute(2, 0, 1)
        if dbias is not None:
            dbias += ddt.sum((0, 1))
        du[:, :, l0:l1] = duT.permute(1, 2, 0)
        ddelta[:, :, l0:l1] = ddt.permute(1, 2, 0)
    if B.dim() == 3:
        dB = dB.squeeze(1)
    if C.dim() == 3:
        dC = dC.squeeze(1)
    dh0 = mu if need_h0_grad else None
    return du, ddelta, dA, dB, dC, dD, dz, dbias, dh0
