"""The layer options that published checkpoints need (biases, LayerNorm, tanh GELU, norm
epsilons, the RWKV-4 layer): equations written out in float64, step == forward, and the
defaults unchanged."""

import math

import pytest
import torch

from probkit.neural import build_backbone, count_parameters
from probkit.neural.backbones import Backbone
from probkit.neural.layers import MambaLayer, RMSNorm, RWKV4Layer, TransformerLayer, make_norm

from test_layers_common import perturb_, randn, step_all


def layer_norm(x, weight, bias, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gpt2_block(layer, x):
    """A GPT-2 block written out: LayerNorms, biased projections, causal softmax attention."""
    b, L, d = x.shape
    H, K = layer.n_heads, layer.head_size
    h = layer_norm(x, layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    qkv = h @ layer.qkv.weight.T + layer.qkv.bias
    q, k, v = (t.reshape(b, L, H, K).transpose(1, 2) for t in qkv.split(d, dim=-1))
    scores = (q @ k.transpose(-1, -2) / math.sqrt(K)).masked_fill(
        ~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    attn = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, L, d)
    x = x + attn @ layer.out.weight.T + layer.out.bias
    h = layer_norm(x, layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    return x + gelu_tanh(h @ layer.mlp_in.weight.T + layer.mlp_in.bias) @ layer.mlp_out.weight.T \
        + layer.mlp_out.bias


def test_transformer_checkpoint_options_match_equations_and_step():
    torch.manual_seed(0)
    layer = perturb_(TransformerLayer(8, n_heads=2, positional="learned", bias=True, norm="layer",
                                      norm_eps=1e-5, activation="gelu_tanh").double(), scale=0.3)
    assert isinstance(layer.norm1, torch.nn.LayerNorm) and layer.norm1.eps == 1e-5
    x = randn(2, 7, 8)
    torch.testing.assert_close(layer(x), gpt2_block(layer, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(step_all(layer, x)[0], layer(x), rtol=1e-12, atol=1e-12)


def test_defaults_are_unchanged():
    t = TransformerLayer(8)
    assert isinstance(t.norm1, RMSNorm) and t.norm1.eps == 1e-6 and t.activation == "gelu"
    assert all(m.bias is None for m in (t.qkv, t.out, t.mlp_in, t.mlp_out))
    m = MambaLayer(8)
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv_bias is not None
    assert m.norm.eps == 1e-6
    net = build_backbone("mamba", 8, 1)
    assert isinstance(net.norm, RMSNorm) and net.norm.eps == 1e-6


def test_mamba_bias_options_step_equals_forward_and_count():
    torch.manual_seed(0)
    plain = MambaLayer(8, d_state=4)
    layer = perturb_(MambaLayer(8, d_state=4, bias=True, conv_bias=False, norm_eps=1e-3).double())
    E = layer.d_inner
    # in_proj and out_proj biases (2E + d) added, the convolution's bias (E) removed
    assert count_parameters(layer) == count_parameters(plain) + 2 * E + 8 - E
    assert layer.norm.eps == 1e-3
    x = randn(2, 9, 8)
    torch.testing.assert_close(step_all(layer, x)[0], layer(x), rtol=1e-10, atol=1e-12)


def test_backbone_final_norm_and_bad_options():
    net = Backbone([TransformerLayer(8, norm="layer")], norm="layer", norm_eps=1e-5)
    assert isinstance(net.norm, torch.nn.LayerNorm) and net.norm.eps == 1e-5
    with pytest.raises(ValueError, match="norm must be one of \\('rms', 'layer'\\), got 'batch'"):
        make_norm("batch", 4)
    with pytest.raises(ValueError, match="norm must be one of"):
        Backbone([TransformerLayer(8)], norm="batch")
    with pytest.raises(ValueError, match="activation must be one of \\('gelu', 'gelu_tanh'\\)"):
        TransformerLayer(8, activation="relu")


# ---------------------------------------------------------------------- RWKV-4


def test_rwkv4_layer_state_continues_forward():
    torch.manual_seed(0)
    layer = perturb_(RWKV4Layer(8, attention_size=6, ffn_hidden=12, input_norm=True).double())
    x = randn(2, 10, 8)
    full = layer(x)
    torch.testing.assert_close(step_all(layer, x)[0], full, rtol=1e-12, atol=1e-12)
    _, state = layer(x[:, :6], return_state=True)
    ys = []
    for t in range(6, 10):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), full[:, 6:], rtol=1e-12, atol=1e-12)
    # a fresh layer is the identity plus its input norm (zero output projections)
    fresh = RWKV4Layer(8, input_norm=True).double()
    torch.testing.assert_close(fresh(x), fresh.input_norm(x))
    assert [tuple(s.shape) for s in layer.init_state(2)] == [(2, 8), (2, 3, 6), (2, 8)]
