"""RWKV-7 recurrence: reference vs the written-out matrix recurrence and flash-linear-attention's
naive recurrence, chunked path vs reference in float64 (outputs, state and every gradient),
gradcheck, the Triton kernels (through Triton's interpreter on machines without a GPU), steps,
chaining and argument errors."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from probkit.neural.ops import _rwkv7_cpu, rwkv7, rwkv7_step

HAS_CUDA = torch.cuda.is_available()
NAMES = ["r", "w", "k", "v", "a", "b", "initial_state"]


def dev_for(backend):
    return "cuda" if (backend == "triton" and HAS_CUDA) else "cpu"


def rel_err(x, y):
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    return float((x - y).norm() / y.norm().clamp_min(1e-300))


def make_inputs(seed, b, H, L, K, V, h0=True, w_scale=0.6065, kind="rwkv7", device="cpu"):
    """RWKV-7-like inputs (``a = -kappa``, ``b = kappa * alpha``, ``|kappa| = 1``) or, with
    ``kind="generic"``, small unconstrained ``a``, ``b``; float64."""
    g = torch.Generator().manual_seed(seed)

    def rn(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    x = dict(r=rn(b, H, L, K), w=-w_scale * torch.rand(b, H, L, K, generator=g, dtype=torch.float64),
             k=rn(b, H, L, K), v=rn(b, H, L, V))
    if kind == "rwkv7":
        kappa = F.normalize(rn(b, H, L, K), dim=-1)
        alpha = torch.rand(b, H, L, K, generator=g, dtype=torch.float64)
        x["a"], x["b"] = -kappa, kappa * alpha
    else:
        x["a"], x["b"] = 0.3 * rn(b, H, L, K), 0.3 * rn(b, H, L, K)
    x["initial_state"] = rn(b, H, K, V) if h0 else None
    return {n: (None if t is None else t.to(device)) for n, t in x.items()}


def run(inputs, backend, chunk=None, dtype=None, with_grad=True):
    """Output, final state and the gradients of a fixed random loss of both."""
    xs = {n: (None if t is None else (t if dtype is None else t.to(dtype)).clone().requires_grad_())
          for n, t in inputs.items()}
    o, S = rwkv7(**xs, return_last_state=True, backend=backend, chunk_size=chunk)
    res = {"o": o, "S": S}
    if with_grad:
        g = torch.Generator().manual_seed(7)
        wo = torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device)
        ws = torch.randn(S.shape, generator=g, dtype=torch.float64).to(o.device)
        loss = (o.double() * wo).sum() + (S.double() * ws).sum()
        names = [n for n in NAMES if xs[n] is not None]
        grads = torch.autograd.grad(loss, [xs[n] for n in names])
        res.update({"d" + n: gr for n, gr in zip(names, grads)})
    return res


def assert_close_all(got, ref, tol):
    assert set(got) == set(ref)
    for n in ref:
        assert torch.isfinite(got[n]).all(), n
        assert rel_err(got[n], ref[n]) <= tol, (n, rel_err(got[n], ref[n]))


# ----------------------------------------------------------------------------- the reference


def test_reference_is_the_written_out_matrix_recurrence():
    # one head: S_t = (diag(exp w_t) + b_t a_t^T) S_{t-1} + k_t v_t^T, o_t = S_t^T r_t
    x = make_inputs(1, b=1, H=1, L=6, K=3, V=2, kind="generic")
    S = x["initial_state"][0, 0].clone()
    outs = []
    for t in range(6):
        r, w, k, v, a, b = (x[n][0, 0, t] for n in "rwkvab")
        S = (torch.diag(torch.exp(w)) + torch.outer(b, a)) @ S + torch.outer(k, v)
        outs.append(S.T @ r)
    o, last = rwkv7(**x, return_last_state=True, backend="reference")
    assert rel_err(o[0, 0], torch.stack(outs)) <= 1e-14
    assert rel_err(last[0, 0], S) <= 1e-14


def _import_fla_naive():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from fla.ops.generalized_delta_rule.dplr import naive
        except Exception as exc:  # pragma: no cover - depends on the installation
            pytest.skip(f"flash-linear-attention's naive RWKV-7 reference does not import here: {exc!r}")
    return naive


@pytest.mark.parametrize("kind", ["rwkv7", "generic"])
def test_matches_flash_linear_attention_naive_recurrence(kind):
    naive = _import_fla_naive()
    x = make_inputs(2, b=2, H=3, L=32, K=8, V=6, kind=kind)
    ours, S = rwkv7(**x, return_last_state=True, backend="cpu", chunk_size=16)
    # fla: S_t = S_{t-1} o exp(gk) + k v^T + beta (alpha^T S_{t-1}) with q scaled by K^-1/2;
    # it computes in float32
    f = {n: t.float() for n, t in x.items()}
    q = f["r"] * math.sqrt(8)
    theirs, S_fla = naive.dplr_recurrence(q, f["k"], f["v"], f["a"], f["b"], f["w"],
                                          initial_state=f["initial_state"], output_final_state=True)
    assert rel_err(theirs, ours) <= 2e-5
    assert rel_err(S_fla, S) <= 2e-5
    # and their chunked naive form (L a multiple of the chunk)
    theirs_chunked, _ = naive.dplr_chunkwise(q, f["k"], f["v"], f["a"], f["b"], f["w"],
                                             initial_state=f["initial_state"], chunk_size=16)
    assert rel_err(theirs_chunked, ours) <= 2e-5


# ----------------------------------------------------------------------------- cpu path, float64


@pytest.mark.parametrize("L", [1, 7, 19, 40])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 16, 19, 32, 64])
def test_chunked_equals_reference_float64(L, chunk):
    inputs = make_inputs(100 * L + chunk, b=2, H=2, L=L, K=4, V=3)
    assert_close_all(run(inputs, "cpu", chunk=chunk), run(inputs, "reference"), 1e-12)


@pytest.mark.parametrize("block", [1, 2 * 2 * 3 * 5 * 2, 10**9])
def test_blocks_of_chunks_equal_reference(monkeypatch, block):
    # forward and backward in blocks of 1, 2 (the last one shorter) or all 9 chunks, the last
    # chunk padded (25 = 8 * 3 + 1)
    monkeypatch.setattr(_rwkv7_cpu, "BLOCK_ELEMENTS", block)
    inputs = make_inputs(11, b=2, H=2, L=25, K=5, V=4)
    ref = run(inputs, "reference")
    assert_close_all(run(inputs, "cpu", chunk=3), ref, 1e-12)
    # without gradients the forward keeps nothing for a backward: its own buffers per block
    with torch.no_grad():
        o, S = rwkv7(**inputs, return_last_state=True, backend="cpu", chunk_size=3)
    assert rel_err(o, ref["o"]) <= 1e-12 and rel_err(S, ref["S"]) <= 1e-12


@pytest.mark.parametrize("use", ["output", "state"])
def test_blocks_of_chunks_gradients_of_output_only_or_state_only(monkeypatch, use):
    # the adjoint state starts at zero (output only) or the output gradient is absent (state
    # only), across blocks of 2 chunks
    monkeypatch.setattr(_rwkv7_cpu, "BLOCK_ELEMENTS", 2 * 2 * 3 * 5 * 2)
    inputs = make_inputs(17, b=2, H=2, L=25, K=5, V=4)

    def grads(backend):
        xs = {n: t.clone().requires_grad_() for n, t in inputs.items()}
        o, S = rwkv7(**xs, return_last_state=True, backend=backend, chunk_size=3)
        loss = (o * torch.linspace(-1, 1, o.shape[-1], dtype=o.dtype)).sum() if use == "output" else S.sum()
        gs = torch.autograd.grad(loss, list(xs.values()), allow_unused=True)
        return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, xs.values())]

    for name, g, want in zip(inputs, grads("cpu"), grads("reference")):
        if want.abs().max() == 0:  # r does not reach the final state
            assert g.abs().max() == 0, name
        else:
            assert rel_err(g, want) <= 1e-12, name


@pytest.mark.parametrize("path", ["one-block", "sub-blocks", "pairwise-diagonal"])
@pytest.mark.parametrize("kind", ["rwkv7", "generic"])
def test_chunked_paths_against_reference(monkeypatch, path, kind):
    # force each way of forming the intra-chunk matrices through the overflow threshold
    limit = {"one-block": 1e9, "sub-blocks": 8.0, "pairwise-diagonal": 1e-3}[path]
    monkeypatch.setitem(_rwkv7_cpu.SAFE_SPAN, torch.float64, limit)
    inputs = make_inputs(3, b=1, H=2, L=45, K=5, V=4, w_scale=1.0, kind=kind)
    assert_close_all(run(inputs, "cpu", chunk=32), run(inputs, "reference"), 1e-12)


def test_strong_decay_uses_exact_weights():
    # log-decays down to -80 per step: naive factorisations would overflow
    inputs = make_inputs(4, b=1, H=2, L=40, K=4, V=3, w_scale=80.0)
    ref = run(inputs, "reference")
    assert_close_all(run(inputs, "cpu", chunk=32), ref, 1e-12)
    got = run(inputs, "cpu", chunk=32, dtype=torch.float32)
    for n in ref:
        assert torch.isfinite(got[n]).all(), n
        assert rel_err(got[n], ref[n]) <= 1e-5, (n, rel_err(got[n], ref[n]))


@pytest.mark.parametrize("path", ["one-block", "pairwise-diagonal"])
@pytest.mark.parametrize("case", [
    dict(b=1, H=1, L=1, K=1, V=1, h0=False),
    dict(b=1, H=2, L=5, K=3, V=2, h0=True),
    dict(b=2, H=1, L=7, K=2, V=3, h0=True, kind="generic"),
])
def test_cpu_gradcheck(monkeypatch, case, path):
    # the one-block path has a hand-written backward, the others are differentiated by autograd
    monkeypatch.setitem(_rwkv7_cpu.SAFE_SPAN, torch.float64, 1e9 if path == "one-block" else 1e-3)
    inputs = make_inputs(5, **case)
    xs = [t.clone().requires_grad_() for t in inputs.values() if t is not None]
    has_h0 = inputs["initial_state"] is not None

    def f(*ts):
        kw = dict(zip(NAMES[:6], ts[:6]))
        return rwkv7(**kw, initial_state=ts[6] if has_h0 else None, return_last_state=True,
                     backend="cpu", chunk_size=3)

    assert torch.autograd.gradcheck(f, xs)


def test_cpu_float32_matches_reference():
    inputs = make_inputs(6, b=2, H=2, L=100, K=16, V=8)
    ref = run(inputs, "reference")
    got = run(inputs, "cpu", dtype=torch.float32)
    for n in ref:
        assert got[n].dtype == torch.float32
        assert rel_err(got[n], ref[n]) <= 2e-5, (n, rel_err(got[n], ref[n]))


# ----------------------------------------------------------------------------- triton

TRITON_CASES = [
    ("two-segments-V-split", dict(b=1, H=1, L=18, K=5, V=40)),
    ("L1-no-state", dict(b=1, H=1, L=1, K=3, V=2, h0=False)),
    ("generic-ab", dict(b=2, H=1, L=9, K=16, V=4, kind="generic")),
]


@pytest.mark.parametrize("name,case", TRITON_CASES, ids=[c[0] for c in TRITON_CASES])
def test_triton_matches_float64_reference(name, case):
    inputs = make_inputs(8, **case, device=dev_for("triton"))
    ref = run(inputs, "reference")
    got = run(inputs, "triton", dtype=torch.float32)
    for n in ref:
        assert got[n].dtype == torch.float32, n
        assert rel_err(got[n], ref[n]) <= 2e-5, (n, rel_err(got[n], ref[n]))


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("use", ["output", "state"])
def test_gradients_of_output_only_or_state_only(backend, use):
    inputs = make_inputs(9, b=1, H=1, L=5, K=3, V=2, device=dev_for(backend))

    def grads(backend):
        xs = {n: t.float().clone().requires_grad_() for n, t in inputs.items()}
        o, S = rwkv7(**xs, return_last_state=True, backend=backend, chunk_size=2)
        loss = (o.sum() if use == "output" else S.sum())
        gs = torch.autograd.grad(loss, list(xs.values()), allow_unused=True)
        return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, xs.values())]

    for g, want in zip(grads(backend), grads("reference")):
        if want.abs().max() == 0:  # r does not reach the final state
            assert g.abs().max() == 0
        else:
            assert rel_err(g, want) <= 1e-5


# ----------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_low_precision_inputs(backend):
    inputs = make_inputs(10, b=1, H=2, L=9, K=4, V=4, device=dev_for(backend))
    rounded = {n: t.to(torch.bfloat16).double() for n, t in inputs.items()}
    ref = run(rounded, "reference", with_grad=False)
    got = run(rounded, backend, dtype=torch.bfloat16, with_grad=False)
    assert got["o"].dtype == torch.bfloat16 and got["S"].dtype == torch.float32
    for n in ref:
        assert rel_err(got[n], ref[n]) <= 1e-2, (n, rel_err(got[n], ref[n]))


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_initial_state_chains_two_halves(backend):
    inputs = make_inputs(11, b=2, H=1, L=12, K=3, V=2, device=dev_for(backend))
    x = {n: t.float() for n, t in inputs.items()}
    full, last = rwkv7(**x, return_last_state=True, backend=backend, chunk_size=4)
    cut = 5

    def half(sl, S0):
        kw = {n: x[n][:, :, sl] for n in "rwkvab"}
        return rwkv7(**kw, initial_state=S0, return_last_state=True, backend=backend, chunk_size=4)

    o1, S1 = half(slice(0, cut), x["initial_state"])
    o2, S2 = half(slice(cut, None), S1)
    assert rel_err(torch.cat([o1, o2], 2), full) <= 1e-5
    assert rel_err(S2, last) <= 1e-5


def test_steps_equal_full_sequence():
    x = make_inputs(12, b=2, H=3, L=9, K=4, V=5)
    full, last = rwkv7(**x, return_last_state=True, backend="cpu", chunk_size=4)
    S, outs = x["initial_state"], []
    for t in range(9):
        o, S = rwkv7_step(*(x[n][:, :, t] for n in "rwkvab"), state=S)
        outs.append(o)
    assert rel_err(torch.stack(outs, 2), full) <= 1e-12
    assert rel_err(S, last) <= 1e-12
    o0, S0 = rwkv7_step(*(x[n][:, :, 0] for n in "rwkvab"))  # zero state by default
    o1, S1 = rwkv7_step(*(x[n][:, :, 0] for n in "rwkvab"), state=torch.zeros_like(S))
    assert torch.equal(o0, o1) and torch.equal(S0, S1)


def test_auto_backend_is_cpu_for_cpu_tensors():
    x = {n: t.float() for n, t in make_inputs(13, b=1, H=1, L=5, K=2, V=2).items()}
    assert torch.equal(rwkv7(**x, backend="auto", chunk_size=2), rwkv7(**x, backend="cpu", chunk_size=2))


def test_non_contiguous_inputs():
    x = {n: t.float() for n, t in make_inputs(14, b=2, H=2, L=6, K=3, V=4).items()}
    nc = {n: t.transpose(0, 1).contiguous().transpose(0, 1) for n, t in x.items()}
    assert not nc["r"].is_contiguous()
    for backend in ("cpu", "triton"):
        assert torch.allclose(rwkv7(**x, backend=backend), rwkv7(**nc, backend=backend), atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    x = {n: t.float() for n, t in make_inputs(15, b=2, H=2, L=5, K=3, V=4).items()}

    def call(**over):
        kw = dict(x)
        kw.update(over)
        return rwkv7(**kw, backend="cpu")

    with pytest.raises(ValueError, match=r"r must have 4 dimensions"):
        call(r=x["r"][0])
    with pytest.raises(ValueError, match=r"L=0"):
        call(**{n: x[n][:, :, :0] for n in "rwkvab"})
    with pytest.raises(ValueError, match=r"k must have shape \(2, 2, 5, 3\)"):
        call(k=x["k"][..., :2])
    with pytest.raises(ValueError, match=r"v must have shape \(2, 2, 5, 'V'\)"):
        call(v=x["v"][:, :, :4])
    with pytest.raises(ValueError, match=r"w must be <= 0.*log-decay"):
        call(w=-x["w"] + 0.1)
    with pytest.raises(ValueError, match=r"w must be <= 0"):
        call(w=torch.full_like(x["w"], float("nan")))
    with pytest.raises(ValueError, match=r"initial_state must have shape \(2, 2, 3, 4\)"):
        call(initial_state=x["initial_state"][..., :3])
    with pytest.raises(TypeError, match=r"a must have a floating-point dtype"):
        call(a=x["a"].long())
    with pytest.raises(TypeError, match=r"b must be a torch.Tensor"):
        call(b=x["b"].numpy())
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        rwkv7(**x, chunk_size=0)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        rwkv7(**x, backend="cuda")
    with pytest.raises(ValueError, match=r"state must have shape"):
        rwkv7_step(*(x[n][:, :, 0] for n in "rwkvab"), state=x["initial_state"][:1])
    with pytest.raises(ValueError, match=r"r must have 3 dimensions"):
        rwkv7_step(*(x[n] for n in "rwkvab"))


def test_triton_unavailable_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = {n: t.float() for n, t in make_inputs(16, b=1, H=1, L=3, K=2, V=2).items()}
    if HAS_CUDA:
        pytest.skip("CUDA machine: the kernels are available")
    with pytest.raises(RuntimeError, match="rwkv7: backend='triton' is unavailable"):
        rwkv7(**x, backend="triton")
