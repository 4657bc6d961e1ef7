"""RWKV-7 ("Goose") recurrence: the generalised delta rule with vector-valued decay.

Per head the state ``S`` is a ``(K, V)`` matrix (rows indexed by keys, the layout of
:func:`~probkit.neural.ops.wkv6` and of flash-linear-attention), updated and read as::

    S_t = (diag(exp(w_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T
    o_t = S_t^T r_t

Transposed (``S^T``, shape ``(V, K)``) this is the form of the RWKV-7 paper and of
flash-linear-attention's ``dplr_recurrence``:
``S_t = S_{t-1} (diag(exp(w_t)) + a_t b_t^T) + v_t k_t^T``, ``o_t = S_t r_t``.  In the RWKV-7
model ``a = -kappa_hat`` (the normalised "removal key") and ``b = kappa_hat * alpha`` (times the
in-context learning rate ``alpha`` in ``(0, 1)``), so ``diag(exp(w)) + b a^T`` removes the part
of the state along ``kappa_hat`` before ``k v^T`` writes the new value.

Three implementations share these semantics:

``reference``
    a per-step Python loop (float64 for float64 inputs), differentiated by autograd;
``cpu``
    the chunked WY form (:mod:`._rwkv7_cpu`): a triangular solve and matrix products inside
    chunks, the state passed between chunks; hand-written backward (autograd for extreme
    decays); runs on any device;
``triton``
    recurrent Triton kernels (:mod:`._rwkv7_triton`), forward and backward, behind one
    :class:`torch.autograd.Function`; on CUDA tensors, or on CPU tensors under
    ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations


import torch

from probkit.utils.validation import check_int

from . import _rwkv7_cpu
from ._common import (check_nonpositive, check_same_device, check_shape, check_tensor,
                      compute_dtype, resolve_backend, restore_scan_context, save_scan_context)

__all__ = ["rwkv7", "rwkv7_step"]

_W_HINT = ("w is the log-decay; RWKV-7 forms it as w = -exp(-0.5) * sigmoid(w_raw), "
           "i.e. the model's exp(-exp(w_raw')) decay written in log space")


class _RWKV7Triton(torch.autograd.Function):
    """RWKV-7 with Triton kernels for the forward and the backward."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, state0):
        from . import _rwkv7_triton

        need = any(ctx.needs_input_grad)
        o, sT, checkpoints = _rwkv7_triton.rwkv7_fwd(r, w, k, v, a, b, state0, save_states=need)
        save_scan_context(ctx, state0, need, r, w, k, v, a, b, checkpoints)
        return o, sT

    @staticmethod
    def backward(ctx, do, dsT):
        from . import _rwkv7_triton

        (r, w, k, v, a, b, checkpoints), do, need_s0 = restore_scan_context(ctx, do, h0_index=6, out_like=3)
        grads = _rwkv7_triton.rwkv7_bwd(r, w, k, v, a, b, checkpoints, do, dsT)
        dr, dw, dk, dv, da, db, ds0 = grads
        out = [g.to(x.dtype) for g, x in zip((dr, dw, dk, dv, da, db), (r, w, k, v, a, b))]
        return (*out, ds0.to(ctx.h0_dtype) if need_s0 else None)


def _reference(r, w, k, v, a, b, state0):
    """The recurrence by a per-step loop (the oracle of the tests)."""
    ct = compute_dtype(r, w, k, v, a, b, state0)
    bsz, H, _, K = r.shape
    V = v.shape[-1]
    rr, ww, kk, vv, aa, bb = (x.to(ct) for x in (r, w, k, v, a, b))
    S = torch.zeros(bsz, H, K, V, dtype=ct, device=r.device) if state0 is None else state0.to(ct)
    outs = []
    # unbind once: indexing step by step would make autograd write a full-size gradient per step
    for step in zip(*(x.unbind(2) for x in (rr, ww, kk, vv, aa, bb))):
        o, S = _step(S, *step)
        outs.append(o)
    return torch.stack(outs, dim=2), S


def _step(S, r, w, k, v, a, b):
    """One step on (batch, heads, .) tensors: ``S <- diag(e^w) S + b (a^T S) + k v^T``, ``o = S^T r``."""
    sa = torch.einsum("bhk,bhkv->bhv", a, S)
    S = torch.exp(w)[..., None] * S + b[..., None] * sa[..., None, :] + k[..., None] * v[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", r, S), S


def _check(r, w, k, v, a, b, state, state_name, step=False):
    dims = 3 if step else 4
    check_tensor(r, "r", ndim=dims)
    if not step and r.shape[2] == 0:
        raise ValueError("r has sequence length L=0; rwkv7 needs L >= 1")
    if min(r.shape) == 0:
        raise ValueError(f"r must have non-empty batch, heads and head size, got shape {tuple(r.shape)}")
    for name, x in (("w", w), ("k", k), ("a", a), ("b", b)):
        check_tensor(x, name, ndim=dims)
        check_shape(x, name, r.shape, "same as r: (batch, heads, L, K)" if not step else
                    "same as r: (batch, heads, K)")
    check_tensor(v, "v", ndim=dims)
    lead = tuple(r.shape[:-1])
    if tuple(v.shape[:-1]) != lead or v.shape[-1] == 0:
        raise ValueError(f"v must have shape {lead + ('V',)} with V >= 1, got {tuple(v.shape)}")
    check_tensor(state, state_name, ndim=4, allow_none=True)
    check_shape(state, state_name, (r.shape[0], r.shape[1], r.shape[-1], v.shape[-1]),
                "(batch, heads, K, V)")
    check_same_device("r", r, w=w, k=k, v=v, a=a, b=b, **{state_name: state})
    check_nonpositive(w, "w", _W_HINT)


def rwkv7(r, w, k, v, a, b, initial_state=None, return_last_state=False, backend="auto",
          chunk_size=None):
    r"""RWKV-7 recurrence (generalised delta rule, vector-valued decay), per head.

    With a state ``S`` of shape ``(K, V)`` per head starting at ``initial_state`` (zeros by
    default)::

        S_t = (diag(exp(w_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T
        o_t = S_t^T r_t

    (the ``S^T`` of flash-linear-attention's ``S_t = S_{t-1} (diag(exp(w_t)) + a_t b_t^T) +
    v_t k_t^T``, ``o_t = S_t r_t``, with scale 1).

    Parameters
    ----------
    r, w, k, a, b : Tensor, shape (batch, heads, L, K)
        Receptance (query), log-decay ``w <= 0`` (per channel and step), key, and the two
        vectors of the rank-one state transition (RWKV-7: ``a = -kappa_hat``,
        ``b = kappa_hat * alpha`` with ``kappa_hat`` the normalised removal key and ``alpha``
        the in-context learning rate).
    v : Tensor, shape (batch, heads, L, V)
        Values.
    initial_state : Tensor of shape (batch, heads, K, V), optional
        Gradients flow into it.
    return_last_state : bool, default False
    backend : {"auto", "reference", "cpu", "triton"}, default "auto"
        ``"auto"`` uses Triton for CUDA tensors and ``"cpu"`` otherwise.
    chunk_size : int, optional
        Steps per chunk of the ``cpu`` path (default 32, at most ``L``); results do not
        depend on it beyond rounding.

    Returns
    -------
    o : Tensor, shape (batch, heads, L, V), dtype of ``v``
    last_state : Tensor, shape (batch, heads, K, V)
        Only with ``return_last_state=True``; float32 (float64 for float64 inputs).

    Notes
    -----
    Accumulations are float64 for float64 inputs on the ``reference`` and ``cpu`` paths and
    float32 otherwise; the Triton kernels compute in float32 and, with gradients, save the
    state every 16 steps.  The recurrence is only as stable as its transitions: with
    RWKV-7's ``a``, ``b`` (``alpha`` in ``(0, 1)``) and ``w <= 0`` they are contractions.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from probkit.neural.ops import rwkv7
    >>> g = torch.Generator().manual_seed(0)
    >>> bsz, H, L, K = 2, 2, 11, 4
    >>> r, k, v = (torch.randn(bsz, H, L, K, generator=g) for _ in range(3))
    >>> w = -0.6 * torch.rand(bsz, H, L, K, generator=g)
    >>> kappa = F.normalize(torch.randn(bsz, H, L, K, generator=g), dim=-1)
    >>> alpha = torch.rand(bsz, H, L, K, generator=g)
    >>> o, S = rwkv7(r, w, k, v, -kappa, kappa * alpha, return_last_state=True, chunk_size=4)
    >>> o.shape, S.shape
    (torch.Size([2, 2, 11, 4]), torch.Size([2, 2, 4, 4]))
    >>> ref = rwkv7(r, w, k, v, -kappa, kappa * alpha, backend="reference")
    >>> bool(torch.allclose(o, ref, atol=1e-5))
    True
    """
    _check(r, w, k, v, a, b, initial_state, "initial_state")
    chunk_size = check_int(chunk_size, "chunk_size", allow_none=True)
    backend = resolve_backend(backend, r.device, "rwkv7", r.dtype)
    L = r.shape[2]
    if backend == "reference":
        o, s = _reference(r, w, k, v, a, b, initial_state)
    elif backend == "cpu":
        T = min(int(chunk_size), L) if chunk_size else _rwkv7_cpu.default_chunk(L)
        ct = compute_dtype(r, w, k, v, a, b, initial_state)
        o, s = _rwkv7_cpu.rwkv7_chunked(r, w, k, v, a, b, initial_state, T, ct)
    else:
        o, s = _RWKV7Triton.apply(r, w, k, v, a, b, initial_state)
        s = s.to(compute_dtype(r, w, k, v, a, b, initial_state))
    o = o.to(v.dtype)
    return (o, s) if return_last_state else o


def rwkv7_step(r, w, k, v, a, b, state=None):
    r"""One RWKV-7 step for recurrent inference: exactly one time step of :func:`rwkv7`.

    Parameters
    ----------
    r, w, k, a, b : Tensor, shape (batch, heads, K)
    v : Tensor, shape (batch, heads, V)
    state : Tensor of shape (batch, heads, K, V), optional (zeros when omitted)

    Returns
    -------
    o : Tensor, shape (batch, heads, V), dtype of ``v``
    new_state : Tensor, shape (batch, heads, K, V)
        float32 (float64 for float64 inputs).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import rwkv7, rwkv7_step
    >>> g = torch.Generator().manual_seed(0)
    >>> r, k, v, a, b = (0.5 * torch.randn(1, 2, 5, 3, generator=g) for _ in range(5))
    >>> w = -torch.rand(1, 2, 5, 3, generator=g)
    >>> S, outs = None, []
    >>> for t in range(5):
    ...     o, S = rwkv7_step(r[:, :, t], w[:, :, t], k[:, :, t], v[:, :, t], a[:, :, t], b[:, :, t], S)
    ...     outs.append(o)
    >>> bool(torch.allclose(torch.stack(outs, 2), rwkv7(r, w, k, v, a, b), atol=1e-5))
    True
    """
    _check(r, w, k, v, a, b, state, "state", step=True)
    ct = compute_dtype(r, w, k, v, a, b, state)
    bsz, H, K = r.shape
    S = torch.zeros(bsz, H, K, v.shape[-1], dtype=ct, device=r.device) if state is None else state.to(ct)
    o, S = _step(S, *(x.to(ct) for x in (r, w, k, v, a, b)))
    return o.to(v.dtype), S
