"""Mamba2Layer: a loop written from the block equations, step == forward, and transformers'
Mamba2 (its slow torch path) on the same weights, through the reusable weight mapping."""

import math

import pytest
import torch

from probkit.neural import build_backbone
from probkit.neural.layers import (Mamba2Layer, hf_mamba2_layer_options, load_hf_mamba2_block_state,
                                   load_hf_mamba2_model_state)

from test_layers_common import causal_conv_loop, perturb_, randn, rms, silu, softplus, step_all


def mamba2_block_loop(layer, x):
    """The Mamba-2 layer from its equations: an explicit per-head state update per position."""
    E, H, P, G, N = layer.d_inner, layer.nheads, layer.headdim, layer.ngroups, layer.d_state
    h = rms(x, layer.norm.weight, layer.norm.eps)
    proj = h @ layer.in_proj.weight.T
    z, xbc, dt = proj[..., :E], proj[..., E:E + layer.conv_dim], proj[..., E + layer.conv_dim:]
    xbc = silu(causal_conv_loop(xbc, layer.conv_weight, layer.conv_bias))
    xs, B, C = xbc[..., :E], xbc[..., E:E + G * N], xbc[..., E + G * N:]
    dt = softplus(dt + layer.dt_bias)
    A = -torch.exp(layer.A_log)
    b, L = x.shape[:2]
    S = [torch.zeros(b, P, N, dtype=x.dtype) for _ in range(H)]  # one (headdim, N) state per head
    ys = []
    for t in range(L):
        y_heads = []
        for hd in range(H):
            grp = hd // (H // G)
            Bt, Ct = B[:, t, grp * N:(grp + 1) * N], C[:, t, grp * N:(grp + 1) * N]
            xt = xs[:, t, hd * P:(hd + 1) * P]
            d = dt[:, t, hd]
            S[hd] = torch.exp(d * A[hd])[:, None, None] * S[hd] \
                + (d[:, None] * xt)[:, :, None] * Bt[:, None, :]
            y_heads.append((S[hd] * Ct[:, None, :]).sum(-1) + layer.D[hd] * xt)
        y = torch.cat(y_heads, -1) * silu(z[:, t])
        yg = y.view(b, G, E // G)
        yg = yg / torch.sqrt((yg * yg).mean(-1, keepdim=True) + layer.out_norm.eps)
        ys.append(yg.reshape(b, E) * layer.out_norm.weight)
    return x + torch.stack(ys, 1) @ layer.out_proj.weight.T


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("backend", "cpu")
    kw.setdefault("d_state", 5)
    kw.setdefault("headdim", 6)
    return perturb_(Mamba2Layer(12, **kw).double())


@pytest.mark.parametrize("L", [1, 6, 11])
@pytest.mark.parametrize("ngroups", [1, 2])
def test_forward_matches_equations(L, ngroups):
    layer = make(ngroups=ngroups, chunk_size=4)
    x = randn(2, L, 12)
    torch.testing.assert_close(layer(x), mamba2_block_loop(layer, x), rtol=1e-10, atol=1e-12)


def test_step_equals_forward_and_backends_agree():
    layer = make(ngroups=2, backend="reference")
    x = randn(3, 9, 12, seed=4)
    ref = layer(x)
    layer.backend = "cpu"
    layer.chunk_size = 4
    torch.testing.assert_close(layer(x), ref, rtol=1e-12, atol=1e-12)
    stepped, (conv_state, ssm_state) = step_all(layer, x)
    torch.testing.assert_close(stepped, ref, rtol=1e-12, atol=1e-12)
    assert conv_state.shape == (3, layer.conv_dim, 3) and ssm_state.shape == (3, 4, 6, 5)
    # forward's final state continues with step
    _, state = layer(x[:, :5], return_state=True)
    torch.testing.assert_close(state[1], step_all(layer, x[:, :5])[1][1], rtol=1e-12, atol=1e-12)
    for t in range(5, 9):
        y_t, state = layer.step(x[:, t], state)
        torch.testing.assert_close(y_t, ref[:, t], rtol=1e-12, atol=1e-12)


def test_gradients_match_equations():
    layer = make(ngroups=2, chunk_size=3)
    x = randn(2, 7, 12, seed=2).requires_grad_()
    w = randn(2, 7, 12, seed=3)
    g_op = torch.autograd.grad((layer(x) * w).sum(), [x, *layer.parameters()])
    g_loop = torch.autograd.grad((mamba2_block_loop(layer, x) * w).sum(), [x, *layer.parameters()])
    for a, b in zip(g_op, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_initialisation():
    torch.manual_seed(0)
    layer = Mamba2Layer(64, ngroups=2)
    assert (layer.d_inner, layer.headdim, layer.nheads, layer.d_state) == (128, 64, 2, 64)
    torch.manual_seed(1)
    layer = Mamba2Layer(256, headdim=16, dt_min=1e-3, dt_max=1e-1)
    A = -torch.exp(layer.A_log)
    assert A.shape == (32,) and (A <= -1).all() and (A >= -16).all()
    assert torch.equal(layer.D, torch.ones(32))
    dt = softplus(layer.dt_bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert layer.conv_weight.abs().max() <= 0.5 and layer.conv_bias.abs().max() <= 0.5
    assert layer.in_proj.bias is None and layer.out_proj.bias is None
    assert Mamba2Layer(12).headdim == math.gcd(64, 24) == 8


def test_parameter_count_formula():
    d, E, N, G, H, W = 128, 256, 64, 1, 4, 4
    expected = d * (2 * E + 2 * G * N + H) + (E + 2 * G * N) * (W + 1) + 3 * H + E + E * d + d
    assert sum(p.numel() for p in Mamba2Layer(d).parameters()) == expected == 117_516


def test_bad_options():
    with pytest.raises(ValueError, match="headdim=5 must divide the inner width"):
        Mamba2Layer(8, headdim=5)
    with pytest.raises(ValueError, match="ngroups=3 must divide the number of heads"):
        Mamba2Layer(8, headdim=4, ngroups=3)
    with pytest.raises(ValueError, match="dt_min"):
        Mamba2Layer(8, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="A_init_range"):
        Mamba2Layer(8, A_init_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="dt_limit"):
        Mamba2Layer(8, dt_limit=(1.0, 0.1))
    with pytest.raises(ValueError, match="d_state"):
        Mamba2Layer(8, d_state=0)


def test_float32_state_for_bfloat16_model():
    torch.manual_seed(0)
    layer = Mamba2Layer(8, d_state=4, headdim=4).to(torch.bfloat16)
    conv_state, ssm_state = layer.init_state(2)
    assert conv_state.dtype == torch.bfloat16 and ssm_state.dtype == torch.float32
    y, (_, ssm_state) = layer.step(torch.randn(2, 8, dtype=torch.bfloat16), (conv_state, ssm_state))
    assert y.dtype == torch.bfloat16 and ssm_state.dtype == torch.float32


# ---------------------------------------------------------------------- transformers' Mamba2

transformers = pytest.importorskip("transformers")


def hf_model(seed=0, **over):
    from transformers import Mamba2Config, Mamba2Model

    kw = dict(hidden_size=16, state_size=8, expand=2, head_dim=8, num_heads=4, n_groups=2,
              conv_kernel=4, chunk_size=8, num_hidden_layers=2, vocab_size=11)
    kw.update(over)
    cfg = Mamba2Config(**kw)
    torch.manual_seed(seed)
    model = Mamba2Model(cfg).eval()
    perturb_(model, scale=0.2, seed=seed + 7)  # no parameter at its (symmetric) init value
    return cfg, model


def ours_from(cfg, model):
    opts = hf_mamba2_layer_options(cfg)
    net = build_backbone("mamba2", opts.pop("d_model"), cfg.num_hidden_layers, backend="cpu", **opts)
    return load_hf_mamba2_model_state(net.eval(), model.state_dict())


@pytest.mark.parametrize("over", [{}, dict(n_groups=1, use_bias=True, use_conv_bias=False),
                                  dict(time_step_limit=(0.05, 0.5))],
                         ids=["grouped", "biases", "dt-limit"])
def test_block_equals_transformers_mamba2_block(over):
    cfg, model = hf_model(**over)
    block = model.layers[0]
    opts = hf_mamba2_layer_options(cfg)
    layer = load_hf_mamba2_block_state(Mamba2Layer(**opts, backend="cpu"), block.state_dict())
    x = randn(2, 21, 16, seed=5).float()  # three of transformers' chunks of 8, the last partial
    with torch.no_grad():
        want = block(x)
        got = layer(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the same weights in float64 reproduce transformers' float32 output to its own rounding
    with torch.no_grad():
        got64 = layer.double()(x.double())
    torch.testing.assert_close(got64.float(), want, rtol=1e-5, atol=1e-5)


def test_backbone_equals_transformers_mamba2_model_and_its_cached_decoding():
    cfg, model = hf_model(seed=3)
    net = ours_from(cfg, model)
    x = randn(2, 19, 16, seed=6).float()
    with torch.no_grad():
        out = model(inputs_embeds=x[:, :12], use_cache=True)
        torch.testing.assert_close(net(x[:, :12]), out.last_hidden_state, rtol=1e-5, atol=1e-5)
        # our recurrent steps against transformers' cached single-token decoding
        _, state = net(x[:, :12], return_state=True)
        cache = out.cache
        for t in range(12, 19):
            step_hf = model(inputs_embeds=x[:, t:t + 1], cache=cache, use_cache=True)
            cache = step_hf.cache
            y_t, state = net.step(x[:, t], state)
            torch.testing.assert_close(y_t, step_hf.last_hidden_state[:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x), model(inputs_embeds=x).last_hidden_state,
                                   rtol=1e-5, atol=1e-5)


def test_options_from_a_transformers_config():
    from transformers import Mamba2Config

    cfg = Mamba2Config(hidden_size=32, state_size=16, expand=2, head_dim=16, num_heads=4,
                       n_groups=2, conv_kernel=3, chunk_size=64, use_bias=True,
                       layer_norm_epsilon=1e-6, time_step_limit=(0.0, float("inf")))
    opts = hf_mamba2_layer_options(cfg)
    assert opts == dict(d_model=32, d_state=16, expand=2, headdim=16, ngroups=2, d_conv=3,
                        dt_limit=None, bias=True, conv_bias=True, norm_eps=1e-6)
    layer = Mamba2Layer(**opts)
    assert layer.nheads == 4 and layer.norm.eps == layer.out_norm.eps == 1e-6
    bad = cfg.to_dict()
    bad["num_heads"] = 3
    with pytest.raises(ValueError, match="num_heads \\* head_dim"):
        hf_mamba2_layer_options(bad)
    with pytest.raises(ValueError, match="no 'state_size' entry"):
        hf_mamba2_layer_options({k: v for k, v in cfg.to_dict().items() if k != "state_size"})


def test_loading_errors_name_the_key():
    cfg, model = hf_model()
    opts = hf_mamba2_layer_options(cfg)
    layer = Mamba2Layer(**opts)
    sd = model.layers[0].state_dict()
    missing = {k: v for k, v in sd.items() if k != "mixer.A_log"}
    with pytest.raises(ValueError, match="no entry 'mixer.A_log'"):
        load_hf_mamba2_block_state(layer, missing)
    wrong = dict(sd, **{"mixer.D": torch.zeros(5)})
    with pytest.raises(ValueError, match=r"'mixer.D' has shape \(5,\), the layer expects \(4,\)"):
        load_hf_mamba2_block_state(layer, wrong)
    with pytest.raises(ValueError, match="no place for: \\['mixer.extra'\\]"):
        load_hf_mamba2_block_state(layer, dict(sd, **{"mixer.extra": torch.zeros(1)}))
    with pytest.raises(TypeError, match="layer must be a Mamba2Layer"):
        load_hf_mamba2_block_state(torch.nn.Linear(2, 2), sd)
    net = build_backbone("mamba2", opts.pop("d_model"), 1, **opts)
    with pytest.raises(ValueError, match="no place for: \\['layers.1"):
        load_hf_mamba2_model_state(net, model.state_dict())
    with pytest.raises(TypeError, match="Backbone of Mamba2Layer"):
        load_hf_mamba2_model_state(build_backbone("gru", 16, 1), model.state_dict())
