"""RWKV-4 / RWKV-6 WKV: backends against the float64 loops, gradcheck, recurrence, stability."""

import sys

import pytest
import torch

from probkit.neural.ops import wkv4, wkv4_step, wkv6, wkv6_step

HAS_CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
BACKENDS = [("cpu", 4), ("cpu", None), ("triton", None)]
BACKEND_IDS = ["cpu-chunk4", "cpu-default", "triton"]


def dev_for(backend):
    """Triton cases run on the GPU when there is one, else on CPU through the interpreter."""
    return "cuda" if (backend == "triton" and HAS_CUDA) else "cpu"


def rel_err(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def grads_of(fn, xs, seed=99):
    """Outputs and gradients of a fixed random linear loss of (output, last state)."""
    out, state = fn(*xs)
    g = torch.Generator().manual_seed(seed)
    wo = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)
    ws = torch.randn(state.shape, generator=g, dtype=torch.float64).to(out.device)
    loss = (out.double() * wo).sum() + (state.double() * ws).sum()
    wrt = [x for x in xs if x is not None]
    return [out, state] + list(torch.autograd.grad(loss, wrt))


# ----------------------------------------------------------------------------- RWKV-4


def wkv4_inputs(seed, b, L, C, state=False, key_scale=2.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    w = -torch.exp(r(C))  # w = -exp(time_decay)
    xs = [w, r(C), r(b, L, C) * key_scale, r(b, L, C)]
    s0 = torch.stack([r(b, C), torch.rand(b, C, generator=g, dtype=torch.float64) + 0.5,
                      r(b, C)], dim=1) if state else None
    return [x.to(device) for x in xs] + [None if s0 is None else s0.to(device)]


def wkv4_fn(backend, chunk=None):
    return lambda w, u, k, v, s: wkv4(w, u, k, v, initial_state=s, return_last_state=True,
                                      backend=backend, chunk_size=chunk)


def _prep(xs, dtype):
    return [None if x is None else x.to(dtype).clone().requires_grad_() for x in xs]


WKV4_CASES = [dict(b=2, L=21, C=5, state=True), dict(b=1, L=1, C=1), dict(b=1, L=1, C=3, state=True),
              dict(b=3, L=16, C=2), dict(b=2, L=33, C=7, state=True, key_scale=8.0)]


@pytest.mark.parametrize("backend,chunk", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("case", WKV4_CASES)
def test_wkv4_matches_float64_reference(case, backend, chunk):
    xs = wkv4_inputs(1, **case, device=dev_for(backend))
    ref = grads_of(wkv4_fn("reference"), _prep(xs, torch.float64))
    got = grads_of(wkv4_fn(backend, chunk), _prep(xs, torch.float32))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_wkv4_bfloat16(backend):
    xs = [None if x is None else x.bfloat16().double()
          for x in wkv4_inputs(2, b=2, L=13, C=4, state=True, device=dev_for(backend))]
    ref = grads_of(wkv4_fn("reference"), _prep(xs, torch.float64))
    got = grads_of(wkv4_fn(backend, 4), _prep(xs, torch.bfloat16))
    assert got[0].dtype == torch.bfloat16
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-2, (i, rel_err(a, b))


def test_wkv4_gradcheck():
    xs = _prep(wkv4_inputs(3, b=2, L=7, C=3, state=True), torch.float64)
    assert torch.autograd.gradcheck(wkv4_fn("cpu", 3), xs)


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_wkv4_huge_keys_stay_finite(backend):
    w, u, k, v, s0 = wkv4_inputs(4, b=2, L=20, C=4, device=dev_for(backend))
    k = k.sign() * 1e3 + k  # keys of magnitude ~1e3
    xs = _prep([w, u, k, v, None], torch.float32)
    out = grads_of(wkv4_fn(backend, 4), xs)
    for t in out:
        assert torch.isfinite(t).all()
    # float64 loop on the same (float32-rounded) inputs.  The fp32 spacing at 1e3 is 6.1e-5,
    # so an exponent such as u + k is only known to ~3e-5 in fp32 arithmetic: the attainable
    # relative accuracy at this key size is ~1e-4, not the 1e-5 of ordinary inputs.
    ref = wkv4(*[x.float().double() for x in (w, u, k, v)], backend="reference")
    assert rel_err(out[0], ref) <= 1e-4


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_wkv4_steps_and_chaining(backend):
    w, u, k, v, s0 = [x if x is None else x.float() for x in wkv4_inputs(5, b=2, L=12, C=3, state=True,
                                                                       device=dev_for(backend))]
    full, last = wkv4(w, u, k, v, initial_state=s0, return_last_state=True, backend=backend,
                      chunk_size=4)
    s, ys = s0, []
    for t in range(12):
        y, s = wkv4_step(w, u, k[:, t], v[:, t], s)
        ys.append(y)
    assert rel_err(torch.stack(ys, 1), full) <= 1e-5
    y1, s1 = wkv4(w, u, k[:, :5], v[:, :5], initial_state=s0, return_last_state=True,
                  backend=backend, chunk_size=4)
    y2, s2 = wkv4(w, u, k[:, 5:], v[:, 5:], initial_state=s1, return_last_state=True,
                  backend=backend, chunk_size=4)
    assert rel_err(torch.cat([y1, y2], 1), full) <= 1e-5
    # the state is a (aa, bb, pp) representation: compare the represented sums
    for a, b in ((s2, last), (s, last)):
        assert rel_err(a[:, :2] * a[:, 2:].exp(), b[:, :2] * b[:, 2:].exp()) <= 1e-5


# ----------------------------------------------------------------------------- RWKV-6


def wkv6_inputs(seed, b, H, L, K, V=None, state=False, decay_scale=1.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    V = V or K

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    xs = [r(b, H, L, K), r(b, H, L, K), r(b, H, L, V),
          -torch.exp(r(b, H, L, K) * decay_scale), r(H, K)]
    s0 = r(b, H, K, V) if state else None
    return [x.to(device) for x in xs] + [None if s0 is None else s0.to(device)]


def wkv6_fn(backend, chunk=None):
    return lambda r, k, v, w, u, s: wkv6(r, k, v, w, u, initial_state=s, return_last_state=True,
                                         backend=backend, chunk_size=chunk)


WKV6_CASES = [dict(b=2, H=2, L=19, K=4, state=True), dict(b=1, H=1, L=1, K=1),
              dict(b=1, H=3, L=1, K=3, V=5, state=True), dict(b=2, H=1, L=16, K=8, V=2),
              dict(b=1, H=2, L=23, K=5, state=True, decay_scale=2.5)]


@pytest.mark.parametrize("backend,chunk", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("case", WKV6_CASES)
def test_wkv6_matches_float64_reference(case, backend, chunk):
    xs = wkv6_inputs(1, **case, device=dev_for(backend))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    got = grads_of(wkv6_fn(backend, chunk), _prep(xs, torch.float32))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_wkv6_bfloat16(backend):
    xs = [None if x is None else x.bfloat16().double()
          for x in wkv6_inputs(2, b=1, H=2, L=11, K=4, state=True, device=dev_for(backend))]
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    got = grads_of(wkv6_fn(backend, 4), _prep(xs, torch.bfloat16))
    assert got[0].dtype == torch.bfloat16
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-2, (i, rel_err(a, b))


def test_wkv6_gradcheck():
    xs = _prep(wkv6_inputs(3, b=1, H=2, L=7, K=2, V=3, state=True), torch.float64)
    assert torch.autograd.gradcheck(wkv6_fn("cpu", 3), xs)


def test_wkv6_extreme_decay_is_finite_and_exact():
    # decays down to exp(-400) per step: the chunked path only exponentiates differences <= 0
    r, k, v, w, u, s0 = wkv6_inputs(6, b=1, H=1, L=20, K=3, state=True)
    w = w * 100
    xs = _prep([r, k, v, w, u, s0], torch.float32)
    got = grads_of(wkv6_fn("cpu", 8), xs)
    ref = grads_of(wkv6_fn("reference"), _prep([r, k, v, w, u, s0], torch.float64))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert torch.isfinite(a).all()
        assert rel_err(a, b) <= 1e-5, i


def test_wkv6_triton_dw_exact_when_strong_decay_follows_weak():
    # every other step forgets the state (w = -40); the float64 loop gives dw there of size
    # exp(-40) * O(1).  A reverse cumulative sum of r.dr - k.dk (which cancels) returned
    # errors of ~1e-7 at those steps; the product form exp(w_t) rowsum(G_t * S_{t-1}) keeps
    # fp32 relative accuracy.
    r, k, v, w, u, s0 = wkv6_inputs(9, b=1, H=2, L=12, K=4, state=True, device=dev_for("triton"))
    w = torch.full_like(w, -0.05)
    w[:, :, ::2] = -40.0
    xs = [r, k, v, w, u, s0]
    got = grads_of(wkv6_fn("triton"), _prep(xs, torch.float32))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))
    dw, dw_ref = got[5].detach().double().cpu(), ref[5].detach().cpu()
    strong = (w == -40.0).cpu()
    scale = dw_ref[strong].abs().max()
    assert 1e-19 < scale < 1e-14
    assert (dw - dw_ref)[strong].abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("op", ["wkv4", "wkv6"])
def test_triton_awkward_shapes(op, dtype):
    # channels (RWKV-4) and value columns (RWKV-6) 20: two blocks of 16 under the
    # interpreter, the second holding 4; L 13: odd, a multiple of no chunk; K 5: padded to 8.
    # 16-bit inputs are compared on their rounded values.
    if op == "wkv4":
        xs, fn = wkv4_inputs(14, b=2, L=13, C=20, state=True, device=dev_for("triton")), wkv4_fn
    else:
        xs = wkv6_inputs(14, b=1, H=2, L=13, K=5, V=20, state=True, device=dev_for("triton"))
        fn = wkv6_fn
    if dtype != torch.float32:
        xs = [None if x is None else x.to(dtype).double() for x in xs]
    ref = grads_of(fn("reference"), _prep(xs, torch.float64))
    got = grads_of(fn("triton"), _prep(xs, dtype))
    assert got[0].dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for i, (a, b) in enumerate(zip(got, ref)):
        assert torch.isfinite(a).all(), i
        assert rel_err(a, b) <= tol, (i, rel_err(a, b))


@pytest.mark.parametrize("op", ["wkv4", "wkv6"])
def test_triton_gradcheck(op):
    # finite differences of the Triton forward against the Triton backward, float64
    # (gradcheck's fast mode: one random projection of the Jacobian per input)
    if op == "wkv4":
        xs, fn = wkv4_inputs(15, b=1, L=5, C=3, state=True, device=dev_for("triton")), wkv4_fn
    else:
        xs = wkv6_inputs(15, b=1, H=1, L=5, K=2, V=3, state=True, device=dev_for("triton"))
        fn = wkv6_fn
    assert torch.autograd.gradcheck(fn("triton"), _prep(xs, torch.float64), fast_mode=True)


@pytest.mark.parametrize("op", ["wkv4", "wkv6"])
def test_triton_float64_inputs_are_computed_in_float64(op):
    if op == "wkv4":
        xs, fn = wkv4_inputs(10, b=2, L=9, C=3, state=True, device=dev_for("triton")), wkv4_fn
    else:
        xs, fn = wkv6_inputs(10, b=1, H=2, L=9, K=3, state=True, device=dev_for("triton")), wkv6_fn
    got = grads_of(fn("triton"), _prep(xs, torch.float64))
    ref = grads_of(fn("reference"), _prep(xs, torch.float64))
    assert got[0].dtype == got[1].dtype == torch.float64
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-11, (i, rel_err(a, b))


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_wkv6_steps_and_chaining(backend):
    r, k, v, w, u, s0 = [x.float() for x in wkv6_inputs(5, b=2, H=2, L=10, K=3, state=True,
                                                                     device=dev_for(backend))]
    full, last = wkv6(r, k, v, w, u, initial_state=s0, return_last_state=True, backend=backend,
                      chunk_size=4)
    s, outs = s0, []
    for t in range(10):
        o, s = wkv6_step(r[:, :, t], k[:, :, t], v[:, :, t], w[:, :, t], u, s)
        outs.append(o)
    assert rel_err(torch.stack(outs, 2), full) <= 1e-5
    assert rel_err(s, last) <= 1e-5
    o1, s1 = wkv6(r[:, :, :3], k[:, :, :3], v[:, :, :3], w[:, :, :3], u, initial_state=s0,
                  return_last_state=True, backend=backend, chunk_size=4)
    o2, s2 = wkv6(r[:, :, 3:], k[:, :, 3:], v[:, :, 3:], w[:, :, 3:], u, initial_state=s1,
                  return_last_state=True, backend=backend, chunk_size=4)
    assert rel_err(torch.cat([o1, o2], 2), full) <= 1e-5
    assert rel_err(s2, last) <= 1e-5


# ----------------------------------------------------------------------------- errors


def test_wkv_bad_arguments():
    w, u, k, v, _ = [x if x is None else x.float() for x in wkv4_inputs(0, b=1, L=4, C=3)]
    with pytest.raises(ValueError, match="w must be <= 0"):
        wkv4(-w, u, k, v)
    with pytest.raises(ValueError, match="v must have shape"):
        wkv4(w, u, k, v[:, :3])
    with pytest.raises(ValueError, match="u must have shape"):
        wkv4(w, u[:2], k, v)
    with pytest.raises(ValueError, match="L=0"):
        wkv4(w, u, k[:, :0], v[:, :0])
    with pytest.raises(TypeError, match="k must have a floating"):
        wkv4(w, u, k.long(), v)
    with pytest.raises(ValueError, match="initial_state must have shape"):
        wkv4(w, u, k, v, initial_state=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="state must have 3 dimensions"):
        wkv4_step(w, u, k[:, 0], v[:, 0], torch.zeros(1, 3))
    r, k6, v6, w6, u6, _ = [x if x is None else x.float() for x in wkv6_inputs(0, 1, 2, 4, 3)]
    with pytest.raises(ValueError, match="w must be <= 0"):
        wkv6(r, k6, v6, -w6, u6)
    with pytest.raises(ValueError, match="u must have shape"):
        wkv6(r, k6, v6, w6, u6.T)
    with pytest.raises(ValueError, match="k must have shape"):
        wkv6(r, k6[:, :, :2], v6, w6, u6)
    with pytest.raises(ValueError, match="v must have shape"):
        wkv6(r, k6, v6[:, :1], w6, u6)
    with pytest.raises(ValueError, match="L=0"):
        wkv6(r[:, :, :0], k6[:, :, :0], v6[:, :, :0], w6[:, :, :0], u6)
    with pytest.raises(ValueError, match="w is on device meta"):
        wkv6(r, k6, v6, torch.zeros(w6.shape, device="meta"), u6)
    with pytest.raises(ValueError, match="chunk_size"):
        wkv6(r, k6, v6, w6, u6, chunk_size=-1)


def test_wkv_triton_unavailable(monkeypatch):
    w, u, k, v, _ = [x if x is None else x.float() for x in wkv4_inputs(0, b=1, L=4, C=3)]
    monkeypatch.setitem(sys.modules, "triton", None)
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        wkv4(w, u, k, v, backend="triton")
    assert torch.allclose(wkv4(w, u, k, v), wkv4(w, u, k, v, backend="reference"), atol=1e-6)


@cuda_only
@pytest.mark.parametrize("case", WKV6_CASES)
def test_cuda_wkv6(case):
    xs = wkv6_inputs(1, **case, device="cuda")
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    got = grads_of(wkv6_fn("auto"), _prep(xs, torch.float32))
    for a, b in zip(got, ref):
        assert rel_err(a, b) <= 1e-5


@cuda_only
@pytest.mark.parametrize("case", WKV4_CASES)
def test_cuda_wkv4(case):
    xs = wkv4_inputs(1, **case, device="cuda")
    ref = grads_of(wkv4_fn("reference"), _prep(xs, torch.float64))
    got = grads_of(wkv4_fn("auto"), _prep(xs, torch.float32))
    for a, b in zip(got, ref):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("use", ["output", "state"])
def test_wkv6_gradients_of_output_only_or_state_only(backend, use):
    xs = wkv6_inputs(7, b=1, H=2, L=9, K=3, state=True, device=dev_for(backend))

    def grads(be, dtype):
        ys = _prep(xs, dtype)
        o, s = wkv6(*ys[:5], initial_state=ys[5], return_last_state=True, backend=be,
                    chunk_size=4)
        t = o if use == "output" else s
        wt = torch.cos(torch.arange(t.numel(), dtype=torch.float64)).view(t.shape).to(t.device)
        return torch.autograd.grad((t.double() * wt).sum(), ys, allow_unused=True)

    for a, b in zip(grads(backend, torch.float32), grads("reference", torch.float64)):
        if b is None or not b.abs().sum():  # r does not reach the state
            assert a is None or not a.abs().sum()
        else:
            assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("use", ["output", "state"])
def test_wkv4_gradients_of_output_only_or_state_only(backend, use):
    xs = wkv4_inputs(8, b=2, L=9, C=3, state=True, device=dev_for(backend))

    def grads(be, dtype):
        ys = _prep(xs, dtype)
        y, s = wkv4(*ys[:4], initial_state=ys[4], return_last_state=True, backend=be,
                    chunk_size=4)
        t = y if use == "output" else s
        wt = torch.cos(torch.arange(t.numel(), dtype=torch.float64)).view(t.shape).to(t.device)
        return torch.autograd.grad((t.double() * wt).sum(), ys, allow_unused=True)

    for a, b in zip(grads(backend, torch.float32), grads("reference", torch.float64)):
        if b is None or not b.abs().sum():  # u does not reach the state
            assert a is None or not a.abs().sum()
        else:
            assert rel_err(a, b) <= 1e-5
