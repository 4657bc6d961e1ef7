"""RWKV6Layer: initialisation, agreement with a per-token loop written from the RWKV-6 equations."""

import pytest
import torch

from probkit.neural.layers import RWKV6Layer

from test_layers_common import perturb_, randn, rms, silu, step_all


def group_norm_heads(o, n_heads, weight, bias, eps):
    """Normalise each head's slice of o (batch, d) to zero mean / unit variance, then scale."""
    b, d = o.shape
    oh = o.view(b, n_heads, d // n_heads)
    mean = oh.mean(-1, keepdim=True)
    var = ((oh - mean) ** 2).mean(-1, keepdim=True)
    return ((oh - mean) / torch.sqrt(var + eps)).view(b, d) * weight + bias


def rwkv6_layer_loop(layer, x):
    """The layer token by token, with the matrix-valued WKV state updated explicitly."""
    b, L, d = x.shape
    H, K, r_mix = layer.n_heads, layer.head_size, layer.mix_rank
    S = torch.zeros(b, H, K, K, dtype=x.dtype)
    prev_t = torch.zeros(b, d, dtype=x.dtype)
    prev_c = torch.zeros(b, d, dtype=x.dtype)
    u = layer.bonus
    ys = []
    for t in range(L):
        xt = x[:, t]
        # time mixing
        h = rms(xt, layer.norm1.weight, layer.norm1.eps)
        dh = prev_t - h
        low = torch.tanh((h + dh * layer.mix_x) @ layer.mix_down).view(b, 5, r_mix)
        mixed = []
        for i in range(5):
            coeff = layer.mix_base[i] + low[:, i] @ layer.mix_up[i]
            mixed.append(h + dh * coeff)
        hw, hk, hv, hr, hg = mixed
        r = (hr @ layer.receptance.weight.T).view(b, H, K)
        k = (hk @ layer.key.weight.T).view(b, H, K)
        v = (hv @ layer.value.weight.T).view(b, H, K)
        g = silu(hg @ layer.gate.weight.T)
        w = -torch.exp(layer.decay_base + torch.tanh(hw @ layer.decay_down) @ layer.decay_up)
        w = w.view(b, H, K)
        o = torch.zeros(b, H, K, dtype=x.dtype)
        for bi in range(b):
            for hi in range(H):
                kv = torch.outer(k[bi, hi], v[bi, hi])
                o[bi, hi] = r[bi, hi] @ (S[bi, hi] + u[hi][:, None] * kv)
                S[bi, hi] = torch.exp(w[bi, hi])[:, None] * S[bi, hi] + kv
        gn = layer.head_norm
        o = group_norm_heads(o.reshape(b, d), H, gn.weight, gn.bias, gn.eps)
        xt = xt + (o * g) @ layer.output.weight.T
        prev_t = h
        # channel mixing
        h = rms(xt, layer.norm2.weight, layer.norm2.eps)
        dh = prev_c - h
        kk = torch.relu((h + dh * layer.cmix_k) @ layer.ffn_key.weight.T) ** 2
        rr = torch.sigmoid((h + dh * layer.cmix_r) @ layer.ffn_receptance.weight.T)
        xt = xt + rr * (kk @ layer.ffn_value.weight.T)
        prev_c = h
        ys.append(xt)
    return torch.stack(ys, 1), S


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("backend", "cpu")
    kw.setdefault("n_heads", 2)
    return perturb_(RWKV6Layer(8, mix_rank=3, decay_rank=4, **kw).double())


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("L", [1, 7, 19])
def test_forward_matches_equations(backend, L):
    layer = make(backend=backend, ffn_ratio=1.5, layer_id=1, n_layers=3)
    x = randn(2, L, 8)
    expected, _ = rwkv6_layer_loop(layer, x)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-12)


def test_step_state_is_the_wkv_state_and_last_inputs():
    layer = make()
    x = randn(2, 6, 8, seed=3)
    stepped, (shift_t, S, shift_c) = step_all(layer, x)
    expected, S_ref = rwkv6_layer_loop(layer, x)
    torch.testing.assert_close(stepped, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(shift_t, rms(x[:, -1], layer.norm1.weight, layer.norm1.eps))
    assert shift_c.shape == (2, 8)


def test_initialisation():
    torch.manual_seed(0)
    d, n = 64, 4
    layers = [RWKV6Layer(d, layer_id=i, n_layers=n) for i in range(n)]
    first, last = layers[0], layers[-1]
    assert first.n_heads == 1 and first.head_size == 64
    assert RWKV6Layer(128).n_heads == 2
    for layer in layers:
        w = -torch.exp(layer.decay_base)
        assert (w < 0).all()
        # per-step decay factors exp(w) between exp(-exp(-1)) and exp(-exp(-6))
        torch.testing.assert_close(layer.decay_base[[0, -1]], torch.tensor([-6.0, -1.0]))
        assert (layer.decay_base.diff() > 0).all()
        for coeff in (layer.mix_x, *layer.mix_base, layer.cmix_k, layer.cmix_r):
            assert (coeff >= 0).all() and (coeff <= 1).all() and (coeff.diff() <= 0).all()
        assert torch.equal(layer.mix_up, torch.zeros_like(layer.mix_up))
        assert torch.equal(layer.decay_up, torch.zeros_like(layer.decay_up))
        assert layer.mix_down.abs().max() <= 0.01 and layer.decay_down.abs().max() <= 0.01
    # deeper layers shift less (smaller interpolation towards the previous token)
    assert last.mix_x.mean() < first.mix_x.mean()
    # zero output projections: every layer starts as the identity
    x = torch.randn(2, 5, d)
    for layer in layers:
        torch.testing.assert_close(layer(x), x, rtol=0, atol=0)
    assert first.bonus.shape == (1, 64)


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_heads=3 must divide d_model=8"):
        RWKV6Layer(8, n_heads=3)
    with pytest.raises(ValueError, match="layer_id"):
        RWKV6Layer(8, layer_id=2, n_layers=2)
    with pytest.raises(ValueError, match="ffn_ratio"):
        RWKV6Layer(8, ffn_ratio=0)


def test_parameter_count():
    d, F, r, rd = 128, 128, 8, 16
    layer = RWKV6Layer(d)
    assert (layer.ffn_hidden, layer.mix_rank, layer.decay_rank) == (F, r, rd)
    expected = 6 * d * d + 2 * F * d + 6 * d + 10 * r * d + d + 2 * rd * d + d + 2 * d + 2 * d + 2 * d
    assert sum(p.numel() for p in layer.parameters()) == expected == 147_200
