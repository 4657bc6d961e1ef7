"""Causal depthwise 1-D convolution (the short convolution of Mamba blocks) and its step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_same_device, check_shape, check_tensor, compute_dtype

__all__ = ["causal_conv1d", "causal_conv1d_update"]

_ACTIVATIONS = (None, "silu")


def _check_common(weight, bias, activation, d):
    check_tensor(weight, "weight", ndim=2)
    if weight.shape[0] != d or weight.shape[1] < 1:
        raise ValueError(f"weight must have shape (dim, width) = ({d}, width >= 1), "
                         f"got {tuple(weight.shape)}")
    check_tensor(bias, "bias", ndim=1, allow_none=True)
    check_shape(bias, "bias", (d,))
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")


def causal_conv1d(x, weight, bias=None, activation=None, initial_state=None,
                  return_final_state=False):
    r"""Depthwise causal convolution over the time axis.

    ``y[b, i, t] = bias[i] + sum_j weight[i, j] * x[b, i, t - (width - 1) + j]``, with the
    inputs before ``t = 0`` taken from ``initial_state`` (zeros by default), followed by an
    optional SiLU.

    Parameters
    ----------
    x : Tensor, shape (batch, dim, L)
    weight : Tensor, shape (dim, width)
        ``weight[:, -1]`` multiplies the current input.
    bias : Tensor of shape (dim,), optional
    activation : {None, "silu"}, default None
    initial_state : Tensor of shape (batch, dim, width - 1), optional
        The ``width - 1`` inputs preceding ``x``, oldest first (the rolling state of
        :func:`causal_conv1d_update`).
    return_final_state : bool, default False
        Also return the last ``width - 1`` inputs, to continue with
        :func:`causal_conv1d_update` or another call.

    Returns
    -------
    y : Tensor, shape (batch, dim, L), dtype of ``x``
    final_state : Tensor, shape (batch, dim, width - 1)
        Only with ``return_final_state=True``.

    Notes
    -----
    Computed with ``torch.nn.functional.conv1d`` (``groups=dim``) in float32 for
    bfloat16/float16 inputs; gradients come from autograd.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import causal_conv1d
    >>> x = torch.arange(5.0).view(1, 1, 5)
    >>> causal_conv1d(x, torch.tensor([[1.0, 1.0]]))
    tensor([[[0., 1., 3., 5., 7.]]])
    """
    check_tensor(x, "x", ndim=3)
    b, d, L = x.shape
    if L == 0:
        raise ValueError("x has sequence length L=0; causal_conv1d needs L >= 1")
    _check_common(weight, bias, activation, d)
    W = weight.shape[1]
    check_tensor(initial_state, "initial_state", ndim=3, allow_none=True)
    check_shape(initial_state, "initial_state", (b, d, W - 1), "(batch, dim, width - 1)")
    check_same_device("x", x, weight=weight, bias=bias, initial_state=initial_state)
    ct = compute_dtype(x, weight, bias, initial_state)
    xx = x.to(ct)
    if initial_state is None:
        xp = F.pad(xx, (W - 1, 0))
    else:
        xp = torch.cat([initial_state.to(ct), xx], dim=-1)
    y = F.conv1d(xp, weight.to(ct).unsqueeze(1), None if bias is None else bias.to(ct),
                 groups=d)
    if activation == "silu":
        y = F.silu(y)
    y = y.to(x.dtype)
    if return_final_state:
        return y, xp[..., xp.shape[-1] - (W - 1):].to(x.dtype)
    return y


def causal_conv1d_update(x_t, conv_state, weight, bias=None, activation=None):
    r"""One step of :func:`causal_conv1d` with a rolling state.

    Parameters
    ----------
    x_t : Tensor, shape (batch, dim)
        Input at the current step.
    conv_state : Tensor, shape (batch, dim, width - 1)
        The previous ``width - 1`` inputs, oldest first.
    weight, bias, activation
        As in :func:`causal_conv1d`.

    Returns
    -------
    y_t : Tensor, shape (batch, dim)
    new_state : Tensor, shape (batch, dim, width - 1)
        ``conv_state`` shifted by one with ``x_t`` appended (a new tensor).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.ops import causal_conv1d_update
    >>> w = torch.tensor([[1.0, 2.0, 3.0]])
    >>> state = torch.zeros(1, 1, 2)
    >>> y, state = causal_conv1d_update(torch.tensor([[1.0]]), state, w)
    >>> y, state
    (tensor([[3.]]), tensor([[[0., 1.]]]))
    """
    check_tensor(x_t, "x_t", ndim=2)
    b, d = x_t.shape
    _check_common(weight, bias, activation, d)
    W = weight.shape[1]
    check_tensor(conv_state, "conv_state", ndim=3)
    check_shape(conv_state, "conv_state", (b, d, W - 1), "(batch, dim, width - 1)")
    check_same_device("x_t", x_t, conv_state=conv_state, weight=weight, bias=bias)
    ct = compute_dtype(x_t, conv_state, weight, bias)
    window = torch.cat([conv_state.to(ct), x_t.to(ct).unsqueeze(-1)], dim=-1)
    y = (window * weight.to(ct)).sum(-1)
    if bias is not None:
        y = y + bias.to(ct)
    if activation == "silu":
        y = F.silu(y)
    return y.to(x_t.dtype), window[..., 1:].to(conv_state.dtype)
