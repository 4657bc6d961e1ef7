"""MambaLayer: paper initialisation, agreement with a loop written from the block equations."""

import math

import pytest
import torch

from probkit.neural.layers import MambaLayer

from test_layers_common import causal_conv_loop, perturb_, randn, rms, silu, softplus, step_all


def mamba_block_loop(layer, x):
    """The Mamba layer from its equations: one explicit state update per position."""
    h = rms(x, layer.norm.weight, layer.norm.eps)
    xz = h @ layer.in_proj.weight.T
    E, N, R = layer.d_inner, layer.d_state, layer.dt_rank
    u, z = xz[..., :E], xz[..., E:]
    u = silu(causal_conv_loop(u, layer.conv_weight, layer.conv_bias))
    dbc = u @ layer.x_proj.weight.T
    dt_low, B, C = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
    dt = softplus(dt_low @ layer.dt_proj.weight.T + layer.dt_proj.bias)
    A = -torch.exp(layer.A_log)
    state = torch.zeros(x.shape[0], E, N, dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        dA = torch.exp(dt[:, t, :, None] * A)
        state = dA * state + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        y = (state * C[:, t, None, :]).sum(-1) + layer.D * u[:, t]
        ys.append(y * silu(z[:, t]))
    return x + torch.stack(ys, 1) @ layer.out_proj.weight.T


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("backend", "cpu")
    return perturb_(MambaLayer(12, d_state=5, **kw).double())


def test_paper_initialisation():
    torch.manual_seed(0)
    layer = MambaLayer(64)
    E, N = 128, 16
    assert (layer.d_inner, layer.d_state, layer.dt_rank, layer.d_conv) == (E, N, 4, 4)
    A = -torch.exp(layer.A_log)
    torch.testing.assert_close(A, -torch.arange(1.0, N + 1).repeat(E, 1), rtol=1e-6, atol=0)
    assert torch.equal(layer.D, torch.ones(E))
    dt = softplus(layer.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    # log-uniform: both decades of [1e-3, 1e-1] are populated
    assert (dt < 1e-2).sum() > 20 and (dt > 1e-2).sum() > 20
    bound = layer.dt_rank ** -0.5
    assert layer.dt_proj.weight.abs().max() <= bound
    assert layer.conv_weight.abs().max() <= 0.5 and layer.conv_bias.abs().max() <= 0.5
    assert layer.in_proj.bias is None and layer.out_proj.bias is None


def test_custom_dt_range_and_sizes():
    torch.manual_seed(1)
    layer = MambaLayer(16, d_state=8, expand=3, d_conv=2, dt_rank=5, dt_min=0.01, dt_max=0.02)
    dt = softplus(layer.dt_proj.bias)
    assert dt.min() >= 0.01 * (1 - 1e-5) and dt.max() <= 0.02 * (1 + 1e-5)
    assert layer.conv_weight.shape == (48, 2) and layer.x_proj.weight.shape == (5 + 16, 48)
    with pytest.raises(ValueError, match="dt_min"):
        MambaLayer(8, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="d_state"):
        MambaLayer(8, d_state=0)


@pytest.mark.parametrize("L", [1, 6, 11])
def test_forward_matches_equations(L):
    layer = make()
    x = randn(2, L, 12)
    torch.testing.assert_close(layer(x), mamba_block_loop(layer, x), rtol=1e-10, atol=1e-12)


def test_backends_agree_and_step_matches():
    layer = make(backend="reference")
    x = randn(3, 9, 12, seed=4)
    ref = layer(x)
    layer.backend = "cpu"
    torch.testing.assert_close(layer(x), ref, rtol=1e-10, atol=1e-12)
    stepped, (conv_state, ssm_state) = step_all(layer, x)
    torch.testing.assert_close(stepped, ref, rtol=1e-10, atol=1e-12)
    assert conv_state.shape == (3, 24, 3) and ssm_state.shape == (3, 24, 5)
    # the conv state holds the last d_conv - 1 conv inputs, oldest first
    u_last = (rms(x, layer.norm.weight, layer.norm.eps) @ layer.in_proj.weight.T)[:, -3:, :24]
    torch.testing.assert_close(conv_state, u_last.transpose(1, 2), rtol=1e-12, atol=1e-12)


def test_parameter_count_formula():
    d, E, N, R, W = 128, 256, 16, 8, 4
    layer = MambaLayer(d)
    expected = 3 * d * E + E * (W + 3 + 2 * R + 3 * N) + d
    assert sum(p.numel() for p in layer.parameters()) == expected == 116_608
    assert math.ceil(d / 16) == R


def test_float32_state_for_bfloat16_model():
    torch.manual_seed(0)
    layer = MambaLayer(8, d_state=4).to(torch.bfloat16)
    conv_state, ssm_state = layer.init_state(2)
    assert conv_state.dtype == torch.bfloat16 and ssm_state.dtype == torch.float32
    y, (_, ssm_state) = layer.step(torch.randn(2, 8, dtype=torch.bfloat16), (conv_state, ssm_state))
    assert y.dtype == torch.bfloat16 and ssm_state.dtype == torch.float32
