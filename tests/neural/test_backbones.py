"""Contract tests shared by every backbone kind of probkit.neural.build_backbone.

Float64 wherever outputs are compared exactly; tiny sizes so the file runs in seconds.
"""

import copy
import math
import pickle

import pytest
import torch

from probkit.neural import (KINDS, Backbone, build_backbone, count_parameters,
                            d_model_for_budget, map_state)

D_MODEL = 16
# options per kind for the tests: float64-capable op backends, several heads
OPTIONS = {
    "mamba": {"d_state": 4, "backend": "cpu"},
    "mamba2": {"d_state": 4, "headdim": 8, "ngroups": 2, "chunk_size": 3, "backend": "cpu"},
    "rwkv": {"n_heads": 2, "backend": "cpu"},
    "rwkv7": {"n_heads": 2, "backend": "cpu", "chunk_size": 3},
    "hybrid": {"pattern": "RA", "layer_kwargs": {"rwkv7": {"n_heads": 2, "backend": "cpu"},
                                                 "attention": {"n_heads": 2}}},
    "mambaout": {},
    "transformer": {"n_heads": 2},
    "transformer_learned": {"n_heads": 4, "positional": "learned", "max_len": 16},
    "bert": {"n_heads": 2, "causal": False},
    "s4d": {"d_state": 8, "init": "inv"},
    "s4": {"d_state": 6},
    "gru": {},
    "lstm": {"hidden_size": 12},
}
KIND_OF = {"transformer_learned": "transformer", "bert": "transformer"}
CANONICAL = sorted(OPTIONS)
CAUSAL = [k for k in CANONICAL if k != "bert"]


def make(kind, n_layers=2, d_model=D_MODEL, seed=0, perturb=0.1, **extra):
    """A float64 backbone in eval mode; parameters get noise so that no layer is the identity
    (several start with zero output projections) and no coefficient is exactly symmetric."""
    torch.manual_seed(seed)
    kw = dict(OPTIONS[kind], **extra)
    net = build_backbone(KIND_OF.get(kind, kind), d_model, n_layers, **kw).double().eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def randn(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def run_steps(net, x):
    state = net.init_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y_t, state = net.step(x[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, 1), state


def leaves(state):
    out = []
    map_state(lambda s: out.append(s) or s, state)
    return out


def test_every_kind_is_tested():
    canonical = {build_backbone(k, 8, 1).kind for k in KINDS}
    assert canonical == {KIND_OF.get(k, k) for k in CANONICAL}
    assert build_backbone("gated_cnn", 8, 1).kind == "mambaout"


@pytest.mark.parametrize("kind", CANONICAL)
def test_attributes_and_shapes(kind):
    net = make(kind, n_layers=3)
    assert isinstance(net, Backbone)
    assert (net.d_model, net.n_layers, net.kind) == (D_MODEL, 3, KIND_OF.get(kind, kind))
    assert isinstance(net.causal, bool)
    y = net(randn(2, 5, D_MODEL))
    assert y.shape == (2, 5, D_MODEL) and y.dtype == torch.float64
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("L", [1, 7])
def test_step_reproduces_forward(kind, L):
    net = make(kind, n_layers=3)
    assert net.causal
    x = randn(3, L, D_MODEL)
    full = net(x)
    stepped, state = run_steps(net, x)
    torch.testing.assert_close(stepped, full, rtol=1e-10, atol=1e-12)
    assert isinstance(state, tuple) and len(state) == 3
    for layer_state in state:
        assert isinstance(layer_state, tuple)
        for s in layer_state:
            assert s.shape[0] == 3


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("prompt", [1, 6])
def test_forward_state_continues_with_step(kind, prompt):
    net = make(kind)
    x = randn(2, 9, D_MODEL, seed=4)
    full = net(x)
    y, state = net(x[:, :prompt], return_state=True)
    torch.testing.assert_close(y, full[:, :prompt], rtol=1e-10, atol=1e-12)
    _, stepped_state = run_steps(net, x[:, :prompt])
    for a, b in zip(leaves(state), leaves(stepped_state)):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for t in range(prompt, 9):
        y_t, state = net.step(x[:, t], state)
        torch.testing.assert_close(y_t, full[:, t], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", CAUSAL)
def test_step_does_not_modify_input_state(kind):
    net = make(kind)
    assert net.causal
    x = randn(2, 3, D_MODEL)
    _, state = run_steps(net, x[:, :2])
    before = map_state(torch.clone, state)
    net.step(x[:, 2], state)
    for a, b in zip(leaves(before), leaves(state)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", CAUSAL)
def test_causal_outputs_ignore_later_inputs(kind):
    net = make(kind)
    assert net.causal
    L, t0 = 9, 5
    x = randn(2, L, D_MODEL)
    x2 = x.clone()
    x2[:, t0:] += randn(2, L - t0, D_MODEL, seed=7)
    y, y2 = net(x), net(x2)
    torch.testing.assert_close(y2[:, :t0], y[:, :t0], rtol=1e-12, atol=1e-12)
    assert (y2[:, t0] - y[:, t0]).abs().max() > 1e-6


@pytest.mark.parametrize("kind", CANONICAL)
def test_right_padding_does_not_change_valid_outputs(kind):
    net = make(kind)
    x = randn(2, 8, D_MODEL)
    lengths = torch.tensor([8, 5])
    y = net(x, lengths)
    x2 = x.clone()
    x2[1, 5:] = randn(3, D_MODEL, seed=3)
    y2 = net(x2, lengths)
    torch.testing.assert_close(y2[1, :5], y[1, :5], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y2[0], y[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", CANONICAL)
def test_gradients_reach_every_parameter(kind):
    net = make(kind).train()
    x = randn(2, 6, D_MODEL)
    weights = randn(2, 6, D_MODEL, seed=5)
    # at the paper initialisations some gradients vanish exactly (e.g. a low-rank factor
    # whose partner starts at zero), so connectivity is checked after a random perturbation
    (net(x) * weights).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    net.zero_grad()
    (net(x) * weights).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("kind", CANONICAL)
def test_pickle_and_deepcopy_round_trip(kind):
    net = make(kind)
    x = randn(2, 5, D_MODEL)
    y = net(x)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert torch.equal(clone(x), y)
        assert clone.kind == net.kind and clone.causal == net.causal


@pytest.mark.parametrize("kind", CANONICAL)
def test_float32_forward_and_step(kind):
    net = make(kind).float()
    x = randn(2, 6, D_MODEL).float()
    y = net(x)
    assert y.dtype == torch.float32
    if net.causal:
        stepped, _ = run_steps(net, x)
        torch.testing.assert_close(stepped, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", CAUSAL)
def test_init_state_defaults_follow_parameters(kind):
    net = make(kind)
    assert net.causal
    for s in leaves(net.init_state(4)):
        assert s.dtype == torch.float64 and s.shape[0] == 4
    for s in leaves(net.init_state(1, dtype=torch.float32)):
        assert s.dtype == torch.float32


# ------------------------------------------------------------------ errors


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(ValueError, match="unknown backbone kind 'cnn'.*gru.*lstm"):
        build_backbone("cnn", 8, 1)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="n_hedas"):
        build_backbone("gru", 8, 1, n_hedas=2)


@pytest.mark.parametrize("arg, value", [("d_model", 0), ("n_layers", -1)])
def test_non_positive_sizes(arg, value):
    kw = {"d_model": 8, "n_layers": 1, arg: value}
    with pytest.raises(ValueError, match=arg):
        build_backbone("gru", **kw)


def test_bad_inputs_name_the_argument():
    net = make("gru")
    with pytest.raises(ValueError, match=r"x must have last dimension d_model=16"):
        net(randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"x must have at least one position"):
        net(randn(2, 0, D_MODEL))
    with pytest.raises(ValueError, match=r"x must be 3-D"):
        net(randn(3, D_MODEL))
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        net(torch.zeros(2, 3, D_MODEL, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x_t must be 2-D"):
        net.step(randn(2, 1, D_MODEL), net.init_state(2))
    with pytest.raises(ValueError, match=r"x_t must have last dimension"):
        net.step(randn(2, 3), net.init_state(2))
    with pytest.raises(ValueError, match="state must be a tuple of 2"):
        net.step(randn(2, D_MODEL), net.init_state(2)[:1])
    with pytest.raises(ValueError, match=r"lengths must have one entry per sequence \(2\), got 1"):
        net(randn(2, 3, D_MODEL), torch.tensor([3]))
    with pytest.raises(ValueError, match="lengths must not exceed the padded length 3"):
        net(randn(2, 3, D_MODEL), torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="lengths must be non-negative"):
        net(randn(2, 3, D_MODEL), torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="lengths must hold integers"):
        net(randn(2, 3, D_MODEL), torch.tensor([3.5, 1.0]))
    with pytest.raises(ValueError, match="batch_size"):
        net.init_state(0)


# ------------------------------------------------------------------ helpers


def test_count_parameters_counts_trainable_only_by_default():
    net = make("gru", n_layers=1)
    total = count_parameters(net)
    assert total == sum(p.numel() for p in net.parameters())
    net.norm.weight.requires_grad_(False)
    assert count_parameters(net) == total - D_MODEL
    assert count_parameters(net, trainable_only=False) == total


@pytest.mark.parametrize("kind", CANONICAL)
def test_d_model_for_budget_picks_the_closest_width(kind):
    budget = 60_000
    kw = dict(OPTIONS[kind])
    kind = KIND_OF.get(kind, kind)
    d = d_model_for_budget(kind, 2, budget, **kw)
    step = 8 if "n_heads" not in kw else 8 * kw["n_heads"] // math.gcd(8, kw["n_heads"])
    assert d % step == 0
    counts = {m: count_parameters(build_backbone(kind, m, 2, **kw))
              for m in (d - step, d, d + step) if m > 0}
    assert all(abs(counts[d] - budget) <= abs(c - budget) for c in counts.values())


def test_documented_parameter_counts():
    # the table in probkit.neural.backbones' docstring (d_model 128, 4 layers, defaults)
    documented = {"mamba": 466_560, "mamba2": 470_192, "rwkv": 588_928, "mambaout": 530_216, "transformer": 525_440,
                  "s4d": 526_976, "gru": 462_976, "lstm": 595_072, "rwkv7": 604_672, "hybrid": 484_004}
    with torch.device("meta"):
        counts = {k: count_parameters(build_backbone(k, 128, 4)) for k in documented}
    assert counts == documented
    import probkit.neural.backbones as module
    for count in documented.values():
        assert f"{count:,}" in module.__doc__


def test_map_state_selects_batch_entries():
    net = make("lstm")
    x = randn(3, 4, D_MODEL)
    _, state = run_steps(net, x)
    idx = torch.tensor([2, 0])
    picked = map_state(lambda s: s[idx], state)
    y_full, _ = net.step(x[:, 3], state)
    y_pick, _ = net.step(x[idx, 3], picked)
    torch.testing.assert_close(y_pick, y_full[idx], rtol=0, atol=0)
    with pytest.raises(TypeError, match="state must be made of tensors"):
        map_state(torch.clone, (1,))
