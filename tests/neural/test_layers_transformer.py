"""TransformerLayer and transformer backbones: attention from its equations, rotary positions,
bidirectional masking of padding, learned positions, KV cache."""

import math

import pytest
import torch
import torch.nn.functional as F

from probkit.neural import build_backbone
from probkit.neural.layers import TransformerLayer
from probkit.neural.layers.transformer import apply_rotary

from test_layers_common import perturb_, randn, rms, step_all


def rotary_complex(x, positions, base=10000.0):
    """RoPE as a complex rotation of the pairs (x_i, x_{i + K/2})."""
    K = x.shape[-1]
    half = K // 2
    z = torch.complex(x[..., :half], x[..., half:])
    freq = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / K)
    rot = torch.polar(torch.ones(len(positions), half, dtype=torch.float64),
                      positions.double()[:, None] * freq)
    z = z * rot
    return torch.cat([z.real, z.imag], dim=-1)


def layer_loop(layer, x, lengths=None):
    """Attention written out: softmax(q k^T / sqrt(K) + mask) v, per head and batch."""
    b, L, d = x.shape
    H, K = layer.n_heads, layer.head_size
    if layer.position_table is not None:
        x = x + layer.position_table[:L]
    h = rms(x, layer.norm1.weight, layer.norm1.eps)
    q, k, v = (h @ W.T for W in layer.qkv.weight.chunk(3, dim=0))
    q, k, v = (t.view(b, L, H, K).transpose(1, 2) for t in (q, k, v))
    if layer.positional == "rotary":
        pos = torch.arange(L)
        q, k = rotary_complex(q, pos), rotary_complex(k, pos)
    scores = q @ k.transpose(-1, -2) / math.sqrt(K)
    allowed = torch.ones(b, 1, L, L, dtype=torch.bool)
    if layer.causal:
        allowed &= torch.ones(L, L).tril().bool()
    elif lengths is not None:
        allowed &= (torch.arange(L)[None, :] < lengths[:, None])[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    attn = torch.softmax(scores, -1) @ v
    x = x + attn.transpose(1, 2).reshape(b, L, d) @ layer.out.weight.T
    h = rms(x, layer.norm2.weight, layer.norm2.eps)
    return x + F.gelu(h @ layer.mlp_in.weight.T) @ layer.mlp_out.weight.T


def make(seed=0, **kw):
    torch.manual_seed(seed)
    return perturb_(TransformerLayer(8, **kw).double())


def test_rotary_is_a_complex_rotation():
    x = randn(2, 3, 5, 6)
    pos = torch.tensor([0, 1, 7, 100, 4096])
    torch.testing.assert_close(apply_rotary(x, pos), rotary_complex(x, pos), rtol=1e-12, atol=1e-12)
    # relative: <R_m q, R_n k> depends on m - n only
    q, k = randn(1, 6, seed=2), randn(1, 6, seed=3)
    a = (apply_rotary(q, torch.tensor([3])) * apply_rotary(k, torch.tensor([1]))).sum()
    b = (apply_rotary(q, torch.tensor([12])) * apply_rotary(k, torch.tensor([10]))).sum()
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("positional", ["rotary", "learned"])
def test_forward_matches_equations(causal, positional):
    layer = make(n_heads=2, causal=causal, positional=positional,
                 max_len=12 if positional == "learned" else None)
    x = randn(2, 7, 8)
    torch.testing.assert_close(layer(x), layer_loop(layer, x), rtol=1e-10, atol=1e-12)
    if causal:
        stepped, (keys, values) = step_all(layer, x)
        torch.testing.assert_close(stepped, layer_loop(layer, x), rtol=1e-10, atol=1e-12)
        assert keys.shape == values.shape == (2, 2, 7, 4)


def test_bidirectional_sees_the_future_and_masks_padding():
    torch.manual_seed(0)
    net = perturb_(build_backbone("transformer", 8, 2, n_heads=2, causal=False).double())
    assert net.causal is False
    x = randn(3, 6, 8)
    y = net(x)
    x2 = x.clone()
    x2[:, 5] += 1.0
    assert (net(x2)[:, 0] - y[:, 0]).abs().max() > 1e-3  # position 0 sees position 5
    # with lengths, valid outputs equal those of the unpadded sequences
    lengths = torch.tensor([6, 4, 1])
    x3 = x.clone()
    x3[1, 4:] = 100.0 * randn(2, 8, seed=9)
    x3[2, 1:] = -50.0
    y3 = net(x3, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(y3[i, :n], net(x3[i:i + 1, :n])[0], rtol=1e-10, atol=1e-12)
    layer = net.layers[0]
    torch.testing.assert_close(layer(x3, lengths)[1, :4], layer_loop(layer, x3, lengths)[1, :4],
                               rtol=1e-10, atol=1e-12)
    # a sequence with no valid position gives finite (unspecified) outputs, no NaN
    assert torch.isfinite(net(x, torch.tensor([0, 6, 3]))).all()


def test_bidirectional_has_no_step():
    net = build_backbone("transformer", 8, 1, n_heads=2, causal=False)
    with pytest.raises(RuntimeError, match="causal"):
        net.init_state(2)
    with pytest.raises(RuntimeError, match="causal"):
        net.step(torch.zeros(2, 8), ((),))
    with pytest.raises(RuntimeError, match=r"forward\(return_state=True\) needs a causal"):
        net(torch.zeros(1, 3, 8), return_state=True)
    with pytest.raises(RuntimeError, match="causal=True"):
        net.layers[0].init_state(1)


def test_learned_positions():
    torch.manual_seed(0)
    net = build_backbone("transformer", 8, 3, n_heads=2, positional="learned", max_len=5).double()
    assert net.layers[0].position_table.shape == (5, 8)
    assert all(layer.position_table is None for layer in net.layers[1:])
    rotary = build_backbone("transformer", 8, 3, n_heads=2)
    assert sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in rotary.parameters()) == 40
    assert 0.01 < float(net.layers[0].position_table.detach().std()) < 0.04
    with pytest.raises(ValueError, match="L=6 exceeds max_len=5"):
        net(randn(1, 6, 8))
    x = randn(1, 5, 8)
    stepped, state = step_all(net, x)
    torch.testing.assert_close(stepped, net(x), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="position 5 is beyond max_len=5"):
        net.step(x[:, 0], state)


def test_kv_cache_grows_by_one_per_step():
    net = build_backbone("transformer", 8, 2, n_heads=4)
    state = net.init_state(3)
    assert [tuple(k.shape) for k, _ in state] == [(3, 4, 0, 2)] * 2
    for t in range(4):
        _, state = net.step(torch.randn(3, 8), state)
        assert all(k.shape[2] == t + 1 and v.shape[2] == t + 1 for k, v in state)


def test_configuration_errors():
    with pytest.raises(ValueError, match="n_heads=3 must divide d_model=8"):
        build_backbone("transformer", 8, 1, n_heads=3)
    with pytest.raises(ValueError, match="n_heads=5 must divide d_model=12"):
        TransformerLayer(12, n_heads=5)
    with pytest.raises(ValueError, match="even head size"):
        TransformerLayer(6, n_heads=2)
    assert TransformerLayer(6, n_heads=2, positional="learned").head_size == 3
    with pytest.raises(ValueError, match="positional"):
        build_backbone("transformer", 8, 1, positional="alibi")
    with pytest.raises(TypeError, match="causal"):
        TransformerLayer(8, causal="yes")


def test_parameter_count():
    d = 128
    layer = TransformerLayer(d)
    assert sum(p.numel() for p in layer.parameters()) == 8 * d * d + 2 * d == 131_328
