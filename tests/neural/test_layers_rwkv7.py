"""RWKV7Layer: a two-layer stack (value residual included) against a per-token loop written from
the RWKV-7 equations, step() against forward, initialisation and parameter count."""

import math

import pytest
import torch

from probkit.neural.backbones import Backbone
from probkit.neural.layers import RWKV7Layer

from test_layers_common import perturb_, randn, rms
from test_layers_rwkv import group_norm_heads

D = 8


def rwkv7_stack_loop(layers, x):
    """The layers token by token; each head's (K, V) state updated with explicit matrices."""
    b, L, d = x.shape
    H, K = layers[0].n_heads, layers[0].head_size
    states = [torch.zeros(b, H, K, K, dtype=x.dtype) for _ in layers]
    prev_t = [torch.zeros(b, d, dtype=x.dtype) for _ in layers]
    prev_c = [torch.zeros(b, d, dtype=x.dtype) for _ in layers]
    ys = []
    for t in range(L):
        xt = x[:, t]
        v_first = None
        for n, layer in enumerate(layers):
            h = rms(xt, layer.norm1.weight, layer.norm1.eps)
            dh = prev_t[n] - h
            hr, hw, hk, hv, ha, hg = (h + dh * layer.mix[i] for i in range(6))
            r = hr @ layer.receptance.weight.T
            k = hk @ layer.key.weight.T
            v = hv @ layer.value.weight.T
            w = -math.exp(-0.5) * torch.sigmoid(
                layer.decay_base + torch.tanh(hw @ layer.decay_down) @ layer.decay_up)
            if n == 0:
                v_first = v
            else:
                gate = torch.sigmoid(layer.value_base + hv @ layer.value_down @ layer.value_up)
                v = (1 - gate) * v + gate * v_first
            alpha = torch.sigmoid(layer.iclr_base + ha @ layer.iclr_down @ layer.iclr_up)
            g = torch.sigmoid(hg @ layer.gate_down) @ layer.gate_up
            kap = (k * layer.removal_scale).view(b, H, K)
            kap = kap / kap.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            k = k * (1 + (alpha - 1) * layer.key_iclr)
            rh, kh, vh, ah, wh = (z.view(b, H, K) for z in (r, k, v, alpha, w))
            o = torch.zeros(b, H, K, dtype=x.dtype)
            for bi in range(b):
                for hi in range(H):
                    kk = kap[bi, hi]
                    transition = torch.diag(torch.exp(wh[bi, hi])) - torch.outer(kk * ah[bi, hi], kk)
                    S = transition @ states[n][bi, hi] + torch.outer(kh[bi, hi], vh[bi, hi])
                    states[n][bi, hi] = S
                    o[bi, hi] = S.T @ rh[bi, hi]
            gn = layer.head_norm
            o = group_norm_heads(o.reshape(b, d), H, gn.weight, gn.bias, gn.eps)
            bonus = (rh * kh * layer.bonus).sum(-1, keepdim=True) * vh
            xt = xt + (o + bonus.reshape(b, d)) * g @ layer.output.weight.T
            prev_t[n] = h
            h = rms(xt, layer.norm2.weight, layer.norm2.eps)
            dh = prev_c[n] - h
            xt = xt + torch.relu((h + dh * layer.cmix_k) @ layer.ffn_key.weight.T) ** 2 @ layer.ffn_value.weight.T
            prev_c[n] = h
        ys.append(xt)
    return torch.stack(ys, 1), states


def make_stack(n=2, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("backend", "cpu")
    kw.setdefault("n_heads", 2)
    layers = [RWKV7Layer(D, decay_rank=3, iclr_rank=2, value_rank=2, gate_rank=4, layer_id=i,
                         n_layers=n, **kw) for i in range(n)]
    return [perturb_(layer.double(), seed=100 + i) for i, layer in enumerate(layers)]


def run_stack(layers, x):
    context = {}
    for layer in layers:
        x = layer(x, context=context)
    return x


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("L", [1, 7, 19])
def test_stack_matches_equations(backend, L):
    layers = make_stack(backend=backend, ffn_ratio=1.5, chunk_size=4)
    x = randn(2, L, D)
    expected, _ = rwkv7_stack_loop(layers, x)
    torch.testing.assert_close(run_stack(layers, x), expected, rtol=1e-10, atol=1e-12)


def test_step_equals_forward_and_states():
    layers = make_stack(n=3, chunk_size=5)
    x = randn(2, 13, D, seed=3)
    states = [layer.init_state(2) for layer in layers]
    ys = []
    for t in range(13):
        context, xt = {}, x[:, t]
        for n, layer in enumerate(layers):
            xt, states[n] = layer.step(xt, states[n], context=context)
        ys.append(xt)
    torch.testing.assert_close(torch.stack(ys, 1), run_stack(layers, x), rtol=0, atol=1e-12)
    _, S_ref = rwkv7_stack_loop(layers, x)
    for (_, S, _), want in zip(states, S_ref):
        torch.testing.assert_close(S, want, rtol=1e-10, atol=1e-12)
    # the state returned by forward continues with step
    context, out, last = {}, x[:, :9], []
    for layer in layers:
        out, s = layer(out, return_state=True, context=context)
        last.append(s)
    context, xt = {}, x[:, 9]
    for n, layer in enumerate(layers):
        xt, _ = layer.step(xt, last[n], context=context)
    torch.testing.assert_close(xt, torch.stack(ys, 1)[:, 9], rtol=0, atol=1e-12)


def test_value_residual_reaches_the_first_layer_values():
    layers = make_stack()
    net = Backbone(layers)
    x = randn(2, 6, D).requires_grad_()
    net(x).sum().backward()
    v_grad = layers[0].value.weight.grad
    assert v_grad is not None and v_grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad.abs().sum() > 0 for p in (layers[1].value_base, layers[1].value_up, layers[1].value_down))


def test_later_layer_needs_the_first_layer_values():
    first, second = make_stack()
    x = randn(1, 4, D)
    with pytest.raises(ValueError, match=r"layer_id=1\) mixes in the values of the stack's first"):
        second(x)
    with pytest.raises(ValueError, match="context"):
        second.step(x[:, 0], second.init_state(1))
    first(x)  # the first layer runs alone


def test_initialisation():
    torch.manual_seed(0)
    d, n = 64, 4
    layers = [RWKV7Layer(d, layer_id=i, n_layers=n) for i in range(n)]
    first, last = layers[0], layers[-1]
    assert first.n_heads == 1 and first.head_size == 64 and RWKV7Layer(128).n_heads == 2
    assert not hasattr(first, "value_base") and hasattr(last, "value_base")
    x, context = torch.randn(2, 5, d), {}
    for layer in layers:
        # log-decays in (-exp(-1/2), 0): per-step factors between exp(-exp(-1/2)) and 1
        w = -math.exp(-0.5) * torch.sigmoid(layer.decay_base)
        assert (w < 0).all() and (w > -math.exp(-0.5)).all()
        assert ((layer.mix >= 0) & (layer.mix <= 1)).all() and (layer.mix.diff(dim=-1) <= 0).all()
        for down in (layer.decay_down, layer.iclr_down, layer.gate_down):
            assert torch.equal(down, torch.zeros_like(down))
        torch.testing.assert_close(layer(x, context=context), x, rtol=0, atol=0)  # zero output maps
    # deeper layers shift less
    assert last.mix.mean() < first.mix.mean()


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_heads=3 must divide d_model=8"):
        RWKV7Layer(8, n_heads=3)
    with pytest.raises(ValueError, match="layer_id"):
        RWKV7Layer(8, layer_id=2, n_layers=2)
    with pytest.raises(ValueError, match="ffn_ratio"):
        RWKV7Layer(8, ffn_ratio=0)
    with pytest.raises(ValueError, match="gate_rank"):
        RWKV7Layer(8, gate_rank=0)
    with pytest.raises(TypeError, match="chunk_size"):
        RWKV7Layer(8, chunk_size=2.5)


def test_parameter_count():
    d, F, rw, ra, rv, rg = 128, 256, 16, 16, 8, 32
    first, later = RWKV7Layer(d), RWKV7Layer(d, layer_id=1, n_layers=2)
    assert (first.ffn_hidden, first.decay_rank, first.iclr_rank, first.value_rank, first.gate_rank) == (F, rw, ra, rv, rg)
    expected = (4 * d * d + 2 * F * d + 6 * d + d + 2 * rw * d + d + 2 * ra * d + 2 * rg * d + 3 * d
                + 2 * d + d + 2 * d)
    assert sum(p.numel() for p in first.parameters()) == expected == 149_504
    assert sum(p.numel() for p in later.parameters()) == expected + d + 2 * rv * d == 151_680


def test_float32_triton_backend_matches_cpu():
    torch.manual_seed(0)
    layers = [RWKV7Layer(D, n_heads=2, layer_id=i, n_layers=2, backend=be) for i, be in enumerate(["cpu", "cpu"])]
    for layer in layers:
        perturb_(layer)
    x = randn(1, 5, D).float()
    ref = run_stack(layers, x)
    for layer in layers:
        layer.backend = "triton"
    torch.testing.assert_close(run_stack(layers, x), ref, rtol=1e-5, atol=1e-5)
