"""Plain-loop reference implementations (the oracles of the test-suite).

Every function here is a literal transcription of the recurrence it implements: one
Python-level step per time index, computed in float64 when the inputs are float64 and in
float32 otherwise.  They are slow and meant for checking the fast paths, not for training.
Gradients come from autograd through the loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import compute_dtype


def _bc_at(X, t, b, d, ct):
    """B or C at time ``t`` as a ``(batch, dim, N)`` tensor."""
    if X.dim() == 2:  # time-invariant (dim, N)
        return X.to(ct).unsqueeze(0).expand(b, d, X.shape[1])
    if X.dim() == 3:  # (batch, N, L): shared by all channels
        return X[:, :, t].to(ct).unsqueeze(1).expand(b, d, X.shape[1])
    G = X.shape[1]  # (batch, G, N, L): channel i uses group i // (dim // G)
    return X[:, :, :, t].to(ct).repeat_interleave(d // G, dim=1)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False, initial_state=None):
    """Selective scan by a per-step loop (see :func:`probkit.neural.ops.selective_scan`)."""
    ct = compute_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state)
    b, d, L = u.shape
    N = A.shape[1]
    uu = u.to(ct)
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    AA = A.to(ct)
    if initial_state is None:
        h = torch.zeros(b, d, N, dtype=ct, device=u.device)
    else:
        h = initial_state.to(ct)
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, :, t, None] * AA)
        h = decay * h + (dt[:, :, t] * uu[:, :, t])[:, :, None] * _bc_at(B, t, b, d, ct)
        ys.append((h * _bc_at(C, t, b, d, ct)).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(ct)[:, None] * uu
    if z is not None:
        y = y * F.silu(z.to(ct))
    out = y.to(u.dtype)
    return (out, h) if return_last_state else out


def wkv4_ref(w, u, k, v, initial_state=None, return_last_state=False):
    """RWKV-4 WKV by a per-step loop in the running-max form.

    ``w`` is the log-decay (<= 0) per channel, ``u`` the bonus, ``k, v`` are ``(batch, L, C)``;
    the state is ``(batch, 3, C)`` = (aa, bb, pp).
    """
    ct = compute_dtype(w, u, k, v, initial_state)
    b, L, Cn = k.shape
    ww, uu, kk, vv = w.to(ct), u.to(ct), k.to(ct), v.to(ct)
    if initial_state is None:
        aa = torch.zeros(b, Cn, dtype=ct, device=k.device)
        bb = torch.zeros(b, Cn, dtype=ct, device=k.device)
        pp = torch.full((b, Cn), -1e38, dtype=ct, device=k.device)
    else:
        aa, bb, pp = initial_state.to(ct).unbind(1)
    ys = []
    for t in range(L):
        kt, vt = kk[:, t], vv[:, t]
        q = uu + kt
        p = torch.maximum(pp, q)
        e1, e2 = torch.exp(pp - p), torch.exp(q - p)
        ys.append((e1 * aa + e2 * vt) / (e1 * bb + e2))
        q = ww + pp
        p = torch.maximum(q, kt)
        e1, e2 = torch.exp(q - p), torch.exp(kt - p)
        aa = e1 * aa + e2 * vt
        bb = e1 * bb + e2
        pp = p
    y = torch.stack(ys, dim=1).to(v.dtype)
    state = torch.stack([aa, bb, pp], dim=1)
    return (y, state) if return_last_state else y


def wkv6_ref(r, k, v, w, u, initial_state=None, return_last_state=False):
    """RWKV-6 WKV by a per-step loop.

    ``r, k, w`` are ``(batch, heads, L, K)``, ``v`` is ``(batch, heads, L, V)``, ``w`` is the
    log-decay (<= 0), ``u`` is ``(heads, K)``; the state is ``(batch, heads, K, V)``:
    ``o_t = r_t (S_{t-1} + diag(u) k_t v_t^T)``, ``S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T``.
    """
    ct = compute_dtype(r, k, v, w, u, initial_state)
    b, H, L, K = r.shape
    V = v.shape[-1]
    rr, kk, vv, ww, uu = (t.to(ct) for t in (r, k, v, w, u))
    if initial_state is None:
        S = torch.zeros(b, H, K, V, dtype=ct, device=r.device)
    else:
        S = initial_state.to(ct)
    outs = []
    for t in range(L):
        kv = kk[:, :, t, :, None] * vv[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", rr[:, :, t], S + uu[None, :, :, None] * kv))
        S = torch.exp(ww[:, :, t])[..., None] * S + kv
    o = torch.stack(outs, dim=2).to(v.dtype)
    return (o, S) if return_last_state else o


def causal_conv1d_ref(x, weight, bias=None, activation=None):
    """Depthwise causal convolution by a loop over the kernel taps."""
    ct = compute_dtype(x, weight, bias)
    b, d, L = x.shape
    W = weight.shape[1]
    xx, ww = x.to(ct), weight.to(ct)
    y = torch.zeros(b, d, L, dtype=ct, device=x.device)
    for j in range(W):  # tap j multiplies x[t - (W - 1 - j)]
        shift = W - 1 - j
        if shift < L:
            y[:, :, shift:] += ww[:, j, None] * xx[:, :, : L - shift]
    if bias is not None:
        y = y + bias.to(ct)[:, None]
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype)
