"""Shared pieces of the layers (RMSNorm, argument helpers) and the plain-torch helpers used by
the other ``test_layers_*`` files (float64 loops written from the equations)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probkit.neural.layers import RMSNorm
from probkit.neural.layers.base import check_dropout, inverse_softplus, log_uniform_
from probkit.utils.validation import check_int


def randn(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def perturb_(module, scale=0.1, seed=100):
    """Add noise to every parameter (so zero-initialised maps are not the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def rms(x, weight, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def causal_conv_loop(u, weight, bias):
    """u (batch, L, C), weight (C, W): y_t = bias + sum_j weight[:, j] u_{t - (W - 1) + j}."""
    b, L, C = u.shape
    W = weight.shape[1]
    ys = []
    for t in range(L):
        acc = bias.expand(b, C).clone()
        for j in range(W):
            s = t - (W - 1) + j
            if s >= 0:
                acc = acc + weight[:, j] * u[:, s]
        ys.append(acc)
    return torch.stack(ys, 1)


def step_all(layer, x):
    """Run ``layer.step`` over the positions of ``x`` (batch, L, d) from ``init_state``."""
    state = layer.init_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def silu(x):
    return x * torch.sigmoid(x)


def softplus(x):
    return F.softplus(x)


# ------------------------------------------------------------------ tests of the shared pieces


def test_rmsnorm_matches_formula_and_scales():
    norm = RMSNorm(5, eps=1e-3).double()
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 6.0))
    x = randn(3, 4, 5)
    torch.testing.assert_close(norm(x), rms(x, norm.weight, 1e-3), rtol=1e-14, atol=0)
    # invariant to a positive rescaling of the input (up to eps)
    torch.testing.assert_close(RMSNorm(5, eps=0.0).double()(x * 7.0), RMSNorm(5, eps=0.0).double()(x))


def test_inverse_softplus_and_log_uniform():
    y = torch.tensor([1e-4, 1e-3, 0.5, 3.0, 30.0], dtype=torch.float64)
    torch.testing.assert_close(F.softplus(inverse_softplus(y)), y, rtol=1e-12, atol=0)
    g = torch.Generator().manual_seed(0)
    v = log_uniform_(torch.empty(4000, dtype=torch.float64), 1e-3, 1e-1, generator=g)
    assert v.min() >= 1e-3 and v.max() <= 1e-1
    # uniform in log space: about half below the geometric midpoint 1e-2
    assert abs(float((v < 1e-2).double().mean()) - 0.5) < 0.05


def test_argument_helpers():
    # the layers use the one integer check; a wrong type and a wrong value raise an error that is both
    assert check_int(3, "n") == 3 and check_int(np.int64(3), "n") == 3
    for bad in (0, -2, 2.5, True, "3"):
        for kind in (ValueError, TypeError):
            with pytest.raises(kind, match="n must be a positive integer"):
                check_int(bad, "n")
    assert check_dropout(0.25) == 0.25
    with pytest.raises(ValueError, match="dropout"):
        check_dropout(1.0)
    assert math.isclose(float(inverse_softplus(torch.tensor(math.log(2.0)))), 0.0, abs_tol=1e-6)
