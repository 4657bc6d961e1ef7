"""Hybrid backbones (several layer kinds in one stack): step() == forward for a stack holding every
kind, gradient flow, the parameter count as the sum of the pure stacks', pattern parsing and errors,
and the estimators training on a hybrid backbone."""

import numpy as np
import pytest
import torch

from probkit.neural import build_backbone, count_parameters, map_state
from probkit.neural.backbones import KINDS, PATTERN_LEGEND, default_hybrid_pattern

D = 16
# options per kind that keep float64 exact paths and several heads
LAYER_KWARGS = {
    "mamba": {"d_state": 4, "backend": "cpu"},
    "mamba2": {"d_state": 4, "headdim": 8, "chunk_size": 3, "backend": "cpu"},
    "rwkv": {"n_heads": 2, "backend": "cpu"},
    "rwkv7": {"n_heads": 2, "chunk_size": 3, "backend": "cpu"},
    "transformer": {"n_heads": 2},
    "s4d": {"d_state": 8},
    "s4": {"d_state": 6},
    "lstm": {"hidden_size": 12},
}
EVERY_KIND = "SMWRCADHGLR"  # every letter of the legend, and a second RWKV-7 layer after the others


def make(pattern, n_layers=None, seed=0, perturb=0.1, **kw):
    torch.manual_seed(seed)
    kinds = {PATTERN_LEGEND[c] for c in pattern} if isinstance(pattern, str) else set(pattern)
    kw.setdefault("layer_kwargs", {k: v for k, v in LAYER_KWARGS.items() if k in kinds})
    net = build_backbone("hybrid", D, n_layers or len(pattern), pattern=pattern, **kw).double().eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run_steps(net, x, state=None):
    state = net.init_state(x.shape[0]) if state is None else state
    ys = []
    for t in range(x.shape[1]):
        y, state = net.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def test_legend_covers_every_layer_kind():
    canonical = {build_backbone(k, 8, 1).kind for k in KINDS} - {"hybrid"}
    assert set(PATTERN_LEGEND.values()) == canonical
    assert set(EVERY_KIND) == set(PATTERN_LEGEND)


@pytest.mark.parametrize("L", [1, 9])
def test_step_equals_forward_with_every_kind(L):
    net = make(EVERY_KIND)
    assert [type(layer).__name__ for layer in net.layers] == [
        "MambaLayer", "Mamba2Layer", "RWKV6Layer", "RWKV7Layer", "GatedCNNLayer", "TransformerLayer",
        "S4DLayer", "S4Layer", "GRULayer", "LSTMLayer", "RWKV7Layer"]
    assert net.causal and net.kind == "hybrid"
    x = randn(2, L, D)
    y = net(x)
    stepped, state = run_steps(net, x)
    torch.testing.assert_close(stepped, y, rtol=0, atol=1e-12)
    # one state object: a tuple with one entry per layer, each a tuple of batch-first tensors
    assert isinstance(state, tuple) and len(state) == len(EVERY_KIND)
    leaves = []
    map_state(lambda s: leaves.append(s) or s, state)
    assert all(s.shape[0] == 2 and s.dtype == torch.float64 for s in leaves)


def test_forward_state_continues_with_step_and_selects_batch_entries():
    net = make(EVERY_KIND)
    x = randn(3, 8, D, seed=2)
    full = net(x)
    _, state = net(x[:, :5], return_state=True)
    rest, _ = run_steps(net, x[:, 5:], state)
    torch.testing.assert_close(rest, full[:, 5:], rtol=0, atol=1e-12)
    idx = torch.tensor([2, 0])
    picked, _ = run_steps(net, x[idx, 5:], map_state(lambda s: s[idx], state))
    torch.testing.assert_close(picked, full[idx, 5:], rtol=0, atol=1e-12)


def test_outputs_ignore_later_inputs():
    net = make("MRAW")
    x = randn(2, 8, D)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    torch.testing.assert_close(net(x)[:, :5], net(x2)[:, :5], rtol=0, atol=0)


def test_gradients_reach_every_parameter():
    net = make(EVERY_KIND).train()
    x = randn(2, 6, D).requires_grad_()
    net(x).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("pattern, n_layers", [("MMMA", 8), ("RRWA", 6), ("SDGL", 4), ("C", 3)])
def test_parameter_count_is_the_sum_of_the_pure_stacks(pattern, n_layers):
    d = 64
    layer_kwargs = {"transformer": {"n_heads": 4}}
    order = [PATTERN_LEGEND[pattern[i % len(pattern)]] for i in range(n_layers)]
    with torch.device("meta"):
        hybrid = count_parameters(build_backbone("hybrid", d, n_layers, pattern=pattern,
                                                 layer_kwargs={k: v for k, v in layer_kwargs.items()
                                                               if k in order}))
        pure = {k: count_parameters(build_backbone(k, d, order.count(k), **layer_kwargs.get(k, {})))
                for k in set(order)}
    # every stack ends with one RMSNorm of d parameters
    assert hybrid == sum(pure.values()) - (len(pure) - 1) * d


def test_single_kind_hybrid_is_the_pure_stack():
    torch.manual_seed(3)
    hybrid = build_backbone("hybrid", D, 3, pattern="R", layer_kwargs={"rwkv7": {"n_heads": 2}})
    torch.manual_seed(3)
    pure = build_backbone("rwkv7", D, 3, n_heads=2)
    assert [layer.layer_id for layer in hybrid.layers] == [0, 1, 2]
    for (n1, p1), (n2, p2) in zip(hybrid.named_parameters(), pure.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_pattern_forms():
    names = ["mamba2", "attention", "RWKV6", "gated_cnn"]
    net = build_backbone("hybrid", D, 4, pattern=names)
    assert [type(layer).__name__ for layer in net.layers] == [
        "Mamba2Layer", "TransformerLayer", "RWKV6Layer", "GatedCNNLayer"]
    # the pattern repeats and is cut at n_layers; case, spaces and separators do not matter
    net = build_backbone("hybrid", D, 6, pattern="mm-MA")
    assert [type(layer).__name__[0] for layer in net.layers] == list("MMMTMM")
    assert default_hybrid_pattern(1) == "A" and default_hybrid_pattern(6) == "MMMAMM"
    net = build_backbone("hybrid", D, 2)
    assert [type(layer).__name__ for layer in net.layers] == ["Mamba2Layer", "TransformerLayer"]
    # options shared by every layer and options per kind
    net = build_backbone("hybrid", D, 2, pattern="GA", dropout=0.25,
                         layer_kwargs={"attention": {"n_heads": 2, "dropout": 0.5}})
    assert net.layers[0].dropout.p == 0.25 and net.layers[1].dropout.p == 0.5
    assert net.layers[1].n_heads == 2


def test_bidirectional_attention_makes_a_non_causal_stack():
    net = build_backbone("hybrid", D, 2, pattern="MA", layer_kwargs={"attention": {"causal": False}})
    assert not net.causal
    with pytest.raises(RuntimeError, match="needs a causal backbone"):
        net.init_state(1)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"unknown letters \['X'\]"):
        build_backbone("hybrid", D, 2, pattern="MX")
    with pytest.raises(ValueError, match="must be a non-empty string"):
        build_backbone("hybrid", D, 2, pattern="")
    with pytest.raises(ValueError, match=r"describes 4 layers but n_layers=2"):
        build_backbone("hybrid", D, 2, pattern="MMMA")
    with pytest.raises(ValueError, match=r"pattern\[1\]: unknown backbone kind 'conv'"):
        build_backbone("hybrid", D, 2, pattern=["mamba", "conv"])
    with pytest.raises(ValueError, match="cannot contain 'hybrid'"):
        build_backbone("hybrid", D, 2, pattern=["hybrid"])
    with pytest.raises(TypeError, match="pattern must be a str"):
        build_backbone("hybrid", D, 2, pattern=3)
    with pytest.raises(ValueError, match=r"options for 'lstm', which is not in the stack"):
        build_backbone("hybrid", D, 2, pattern="MA", layer_kwargs={"lstm": {}})
    with pytest.raises(TypeError, match=r"layer_kwargs\['mamba2'\].*d_sate"):
        build_backbone("hybrid", D, 2, pattern="MA", layer_kwargs={"mamba2": {"d_sate": 4}})
    with pytest.raises(ValueError, match=r"the 'transformer' layers of the hybrid stack: n_heads=3"):
        build_backbone("hybrid", D, 2, pattern="MA", layer_kwargs={"attention": {"n_heads": 3}})
    with pytest.raises(TypeError, match="layer_kwargs must be a dict"):
        build_backbone("hybrid", D, 2, pattern="MA", layer_kwargs=[1])


# ----------------------------------------------------------------------------- estimators

HYBRID = {"pattern": "RA", "layer_kwargs": {"rwkv7": {"n_heads": 2}, "attention": {"n_heads": 2}}}


def test_sequence_density_trains_on_a_hybrid_and_generates():
    from probkit.neural import SequenceDensity

    text = "abcabcabd" * 12
    tokens = np.array([ord(c) - ord("a") for c in text])
    lm = SequenceDensity(backbone="hybrid", d_model=16, n_layers=2, backbone_kwargs=HYBRID, vocab_size=4,
                         window=24, max_epochs=25, lr=1e-2, early_stopping=False, random_state=0).fit(tokens)
    kinds = [type(layer).__name__ for layer in lm.module_.backbone.layers]
    assert kinds == ["RWKV7Layer", "TransformerLayer"]
    assert lm.score(tokens) > -np.log(4) + 0.3  # clearly better than uniform
    out = lm.generate(tokens[:5], n_steps=6, random_state=0)
    assert out.shape == (6,)


def test_neural_hmm_and_deep_ssm_accept_a_hybrid():
    from probkit.neural import DeepStateSpaceModel, NeuralHMM

    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(20, 1) - 2, rng.randn(20, 1) + 2] * 3)
    nh = NeuralHMM(2, backbone="hybrid", d_model=8, n_layers=2, backbone_kwargs={
        "pattern": "MA", "layer_kwargs": {"mamba2": {"headdim": 4, "d_state": 4}, "attention": {"n_heads": 2}}},
        max_epochs=3, random_state=0).fit(X, lengths=[60, 60])
    assert np.isfinite(nh.score(X, lengths=[60, 60]))
    ds = DeepStateSpaceModel(latent_dim=1, backbone="hybrid", d_model=8, n_layers=2, hidden_dim=8,
                             backbone_kwargs={"pattern": "GR", "layer_kwargs": {"rwkv7": {"n_heads": 1}}},
                             max_epochs=2, random_state=0).fit(X, lengths=[60, 60])
    assert ds.transform(X[:60]).shape == (60, 1)
