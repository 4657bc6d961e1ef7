"""SSD scan (Mamba-2): every backend against the float64 recurrence, gradcheck, dense matrix form.

The Triton kernels run through Triton's interpreter on machines without a GPU (the root
conftest sets TRITON_INTERPRET=1), on small shapes; on a CUDA machine the same cases run on
the GPU.
"""

import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from probkit.neural.ops import ssd, ssd_state_update

HAS_CUDA = torch.cuda.is_available()
ORDER = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"]


def dev_for(backend):
    """Triton cases run on the GPU when there is one, else on CPU through the interpreter."""
    return "cuda" if (backend == "triton" and HAS_CUDA) else "cpu"


def rel_err(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def make_inputs(seed, b, L, H, P, G, N, D=None, z=False, bias=False, h0=False,
                dtype=torch.float64, device="cpu"):
    """Random inputs; ``D`` is None, "head" (nheads,) or "channel" (nheads, headdim)."""
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    x = dict(x=r(b, L, H, P), dt=r(b, L, H) * 0.5 - 0.5, A=-torch.exp(r(H) * 0.5),
             B=r(b, L, G, N), C=r(b, L, G, N))
    x["D"] = {None: None, "head": r(H), "channel": r(H, P)}[D]
    x["z"] = r(b, L, H, P) if z else None
    x["dt_bias"] = r(H) * 0.3 if bias else None
    x["initial_state"] = r(b, H, P, N) if h0 else None
    return {k: (None if v is None else v.to(device=device, dtype=dtype)) for k, v in x.items()}


def run(inputs, backend, softplus=True, dt_limit=None, chunk=None, dtype=None, with_grad=True):
    """Output, last state and all input gradients of a fixed random loss."""
    xs = {k: (None if v is None else (v if dtype is None else v.to(dtype)).clone().requires_grad_())
          for k, v in inputs.items()}
    out, last = ssd(**xs, dt_softplus=softplus, dt_limit=dt_limit, return_last_state=True,
                    backend=backend, chunk_size=chunk)
    res = {"out": out, "last": last}
    if with_grad:
        g = torch.Generator().manual_seed(99)
        wo = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)
        wl = torch.randn(last.shape, generator=g, dtype=torch.float64).to(out.device)
        loss = (out.double() * wo).sum() + (last.double() * wl).sum()
        names = [k for k in ORDER if xs[k] is not None]
        grads = torch.autograd.grad(loss, [xs[k] for k in names])
        res.update({"d" + k: gr for k, gr in zip(names, grads)})
    return res


def dense_ssd(x, dt, A, B, C, D=None, h0=None):
    """The SSD map as one dense lower-triangular (L x L) matrix per head (the paper's
    semiseparable form), plus the decayed initial state: an independent formula."""
    b, L, H, P = x.shape
    G = B.shape[2]
    Bh = B.repeat_interleave(H // G, dim=2)
    Ch = C.repeat_interleave(H // G, dim=2)
    a = dt * A  # (b, L, H)
    cs = torch.cumsum(a, dim=1)
    seg = cs[:, :, None, :] - cs[:, None, :, :]  # (b, t, s, H)
    causal = torch.ones(L, L, dtype=torch.bool).tril()[None, :, :, None]
    decay = torch.where(causal, torch.exp(torch.where(causal, seg, 0.0)), 0.0)
    M = torch.einsum("bthn,bshn->btsh", Ch, Bh) * decay * dt[:, None, :, :]
    y = torch.einsum("btsh,bshp->bthp", M, x)
    if h0 is not None:
        y = y + torch.einsum("bthn,bhpn->bthp", Ch, h0) * torch.exp(cs)[..., None]
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    return y


# ----------------------------------------------------------------------------- the reference


def test_reference_equals_dense_semiseparable_matrix():
    x = make_inputs(1, b=2, L=9, H=4, P=3, G=2, N=5, D="channel", h0=True)
    dt = F.softplus(x["dt"])
    want = dense_ssd(x["x"], dt, x["A"], x["B"], x["C"], x["D"], x["initial_state"])
    got = ssd(**x, dt_softplus=True, backend="reference")
    assert rel_err(got, want) <= 1e-13


def test_reference_is_the_per_head_recurrence():
    # one head, one group, written out: S_t = exp(dt A) S + dt x B^T, y = S C
    x = make_inputs(2, b=1, L=5, H=1, P=2, G=1, N=3)
    S = torch.zeros(2, 3, dtype=torch.float64)
    ys = []
    for t in range(5):
        d = float(x["dt"][0, t, 0])
        S = math.exp(d * float(x["A"][0])) * S + d * torch.outer(x["x"][0, t, 0], x["B"][0, t, 0])
        ys.append(S @ x["C"][0, t, 0])
    got = ssd(**x, backend="reference")
    assert rel_err(got[0, :, 0], torch.stack(ys)) <= 1e-14


# ----------------------------------------------------------------------------- cpu path, float64

FULL = dict(D="channel", z=True, bias=True, h0=True)


@pytest.mark.parametrize("L", [1, 7, 19])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 19, 40])
def test_chunked_equals_recurrence_float64(L, chunk):
    inputs = make_inputs(L * 100 + chunk, b=2, L=L, H=4, P=3, G=2, N=5, **FULL)
    ref = run(inputs, "reference", dt_limit=(0.3, 1.2))
    got = run(inputs, "cpu", dt_limit=(0.3, 1.2), chunk=chunk)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == torch.float64, k
        assert rel_err(got[k], ref[k]) <= 1e-12, (k, rel_err(got[k], ref[k]))


GRADCHECK_CASES = [
    # (id, shape and options, softplus, dt_limit)
    ("minimal", dict(b=1, L=1, H=1, P=1, G=1, N=1), True, None),
    ("head-D-gate-raw-dt", dict(b=2, L=5, H=2, P=2, G=1, N=2, D="head", z=True), False, None),
    ("groups-channel-D-clamped", dict(b=1, L=7, H=4, P=1, G=2, N=2, D="channel", bias=True, h0=True),
     True, (0.4, 1.0)),
    ("one-head-per-group", dict(b=2, L=5, H=3, P=2, G=3, N=2, z=True, bias=True, h0=True), True, None),
]


@pytest.mark.parametrize("name,case,softplus,limit", GRADCHECK_CASES, ids=[c[0] for c in GRADCHECK_CASES])
def test_cpu_gradcheck(name, case, softplus, limit):
    inputs = make_inputs(11, **case)
    if not softplus:  # keep raw steps positive so the decays stay below one
        inputs["dt"] = inputs["dt"].abs() + 0.1
    names = [k for k in ORDER if inputs[k] is not None]

    def f(*args):
        return ssd(**dict(zip(names, args)), dt_softplus=softplus, dt_limit=limit,
                   return_last_state=True, backend="cpu", chunk_size=2)

    args = [inputs[k].clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(f, args, fast_mode=name != "minimal")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 2), G=st.sampled_from([1, 2]),
       k=st.integers(1, 3), P=st.integers(1, 4), L=st.integers(1, 24), N=st.integers(1, 5),
       flags=st.integers(0, 31), chunk=st.integers(1, 12))
def test_cpu_path_random_shapes(seed, b, G, k, P, L, N, flags, chunk):
    case = dict(b=b, L=L, H=G * k, P=P, G=G, N=N, D=("head" if flags & 1 else None),
                z=bool(flags & 2), bias=bool(flags & 4), h0=bool(flags & 8))
    inputs = make_inputs(seed, **case)
    ref = run(inputs, "reference", softplus=bool(flags & 16))
    got = run(inputs, "cpu", softplus=bool(flags & 16), chunk=chunk)
    for key in ref:
        assert rel_err(got[key], ref[key]) <= 1e-11, (key, rel_err(got[key], ref[key]))


def test_cpu_float32_matches_reference():
    inputs = make_inputs(3, b=2, L=45, H=4, P=8, G=2, N=6, **FULL)
    ref = run(inputs, "reference")
    got = run(inputs, "cpu", chunk=16, dtype=torch.float32)
    for k in ref:
        assert got[k].dtype == torch.float32
        assert rel_err(got[k], ref[k]) <= 1e-5, (k, rel_err(got[k], ref[k]))


# ----------------------------------------------------------------------------- Triton

TRITON_CASES = [
    ("all-options-3-chunks", dict(b=2, L=37, H=4, P=3, G=2, N=5, **FULL), True, None),
    ("L1", dict(b=1, L=1, H=2, P=2, G=1, N=3, D="head", z=True), True, None),
    ("head-D-no-gate-raw-dt", dict(b=1, L=20, H=3, P=5, G=3, N=17, D="head", h0=True), False, None),
    ("clamped-dt-P-20", dict(b=2, L=16, H=2, P=20, G=1, N=4, D="channel", bias=True), True, (0.3, 0.9)),
]


@pytest.mark.parametrize("name,case,softplus,limit", TRITON_CASES, ids=[c[0] for c in TRITON_CASES])
def test_triton_matches_float64_reference(name, case, softplus, limit):
    inputs = make_inputs(zlib.crc32(name.encode()), **case, device=dev_for("triton"))
    if not softplus:
        inputs["dt"] = inputs["dt"].abs() + 0.1
    ref = run(inputs, "reference", softplus=softplus, dt_limit=limit)
    got = run(inputs, "triton", softplus=softplus, dt_limit=limit, chunk=16, dtype=torch.float32)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == torch.float32, k
        assert rel_err(got[k], ref[k]) <= 2e-5, (k, rel_err(got[k], ref[k]))


def test_triton_chunk_sizes_agree():
    inputs = make_inputs(4, b=1, L=40, H=2, P=4, G=1, N=4, D="head", z=True,
                         dtype=torch.float32, device=dev_for("triton"))
    outs = [ssd(**inputs, dt_softplus=True, backend="triton", chunk_size=c) for c in (16, 32, 128)]
    ref = ssd(**inputs, dt_softplus=True, backend="reference")
    for o in outs:
        assert rel_err(o, ref) <= 1e-5


# ----------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(backend, dtype):
    inputs = make_inputs(3, b=2, L=19, H=2, P=4, G=1, N=4, D="head", z=True, bias=True, h0=True,
                         device=dev_for(backend))
    rounded = {k: (None if v is None else v.to(dtype).double()) for k, v in inputs.items()}
    ref = run(rounded, "reference")
    got = run(rounded, backend, chunk=16, dtype=dtype)
    assert got["out"].dtype == dtype and got["last"].dtype == torch.float32
    for k in ref:
        assert rel_err(got[k], ref[k]) <= 1e-2, (k, rel_err(got[k], ref[k]))


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_initial_state_chains_two_halves(backend):
    inputs = make_inputs(5, b=2, L=18, H=4, P=3, G=2, N=3, D="head", z=True, bias=True, h0=True,
                         dtype=torch.float32, device=dev_for(backend))
    full, last = ssd(**inputs, dt_softplus=True, return_last_state=True, backend=backend,
                     chunk_size=16)
    cut = 7

    def half(sl, h0):
        kw = {k: (v[:, sl] if (v is not None and k in ("x", "dt", "z", "B", "C")) else v)
              for k, v in inputs.items()}
        kw["initial_state"] = h0
        return ssd(**kw, dt_softplus=True, return_last_state=True, backend=backend, chunk_size=16)

    o1, h1 = half(slice(0, cut), inputs["initial_state"])
    o2, h2 = half(slice(cut, None), h1)
    assert rel_err(torch.cat([o1, o2], 1), full) <= 1e-5
    assert rel_err(h2, last) <= 1e-5


def test_state_update_steps_equal_full_sequence():
    x = make_inputs(8, b=2, L=9, H=4, P=3, G=2, N=4, D="channel", z=True, bias=True, h0=True)
    full, last = ssd(**x, dt_softplus=True, dt_limit=(0.2, 2.0), return_last_state=True,
                     backend="cpu", chunk_size=4)
    S = x["initial_state"]
    ys = []
    for t in range(9):
        y, S = ssd_state_update(S, x["x"][:, t], x["dt"][:, t], x["A"], x["B"][:, t],
                                x["C"][:, t], D=x["D"], z=x["z"][:, t], dt_bias=x["dt_bias"],
                                dt_softplus=True, dt_limit=(0.2, 2.0))
        ys.append(y)
    assert rel_err(torch.stack(ys, 1), full) <= 1e-12
    assert rel_err(S, last) <= 1e-12
    state = x["initial_state"].clone()
    y, s = ssd_state_update(state, x["x"][:, 0], x["dt"][:, 0], x["A"], x["B"][:, 0],
                            x["C"][:, 0], inplace=True)
    assert s is state
    y2, s2 = ssd_state_update(x["initial_state"], x["x"][:, 0], x["dt"][:, 0], x["A"],
                              x["B"][:, 0], x["C"][:, 0])
    assert torch.equal(s, s2) and torch.equal(y, y2)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_non_contiguous_inputs(backend):
    x = make_inputs(4, b=2, L=10, H=2, P=3, G=1, N=3, D="head", z=True, bias=True, h0=True,
                    dtype=torch.float32, device=dev_for(backend))
    nc = {k: v.transpose(0, -1).contiguous().transpose(0, -1) for k, v in x.items()}
    nc["x"] = torch.cat([x["x"], x["x"]], dim=1)[:, ::2]
    x["x"] = nc["x"].contiguous()
    assert not nc["x"].is_contiguous() and not nc["B"].is_contiguous()
    a = ssd(**x, dt_softplus=True, backend=backend, chunk_size=16)
    b = ssd(**nc, dt_softplus=True, backend=backend, chunk_size=16)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend,chunk", [("cpu", 64), ("triton", 32)])
@pytest.mark.parametrize("a_value,shift", [(-80.0, 3.0), (-0.01, -2.0)])
def test_strong_and_weak_decay(backend, chunk, a_value, shift):
    # exp(dt A) from ~0 (underflow) to ~1: finite everywhere, and accurate
    x = make_inputs(2, b=1, L=40, H=2, P=3, G=1, N=4, D="head", z=True, device=dev_for(backend))
    x["A"] = torch.full_like(x["A"], a_value)
    x["dt"] = x["dt"] + shift
    ref = run(x, "reference")
    got = run(x, backend, chunk=chunk, dtype=torch.float32)
    for k in ref:
        assert torch.isfinite(got[k]).all(), k
        if ref[k].abs().max() > 1e-20:
            assert rel_err(got[k], ref[k]) <= 1e-5, (k, rel_err(got[k], ref[k]))
        else:
            assert got[k].abs().max() <= 1e-20


def test_auto_backend_is_cpu_for_cpu_tensors():
    x = make_inputs(6, b=1, L=5, H=2, P=2, G=1, N=2, dtype=torch.float32)
    assert torch.equal(ssd(**x, backend="auto", chunk_size=2), ssd(**x, backend="cpu", chunk_size=2))


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    x = make_inputs(0, b=2, L=5, H=4, P=3, G=2, N=3, dtype=torch.float32)

    def call(**over):
        kw = dict(x)
        kw.update(over)
        return ssd(**kw, backend="cpu")

    with pytest.raises(ValueError, match=r"x must have 4 dimensions"):
        call(x=x["x"][0])
    with pytest.raises(ValueError, match=r"L=0"):
        call(x=x["x"][:, :0], dt=x["dt"][:, :0], B=x["B"][:, :0], C=x["C"][:, :0])
    with pytest.raises(ValueError, match=r"dt must have shape \(2, 5, 4\)"):
        call(dt=x["dt"][:, :4])
    with pytest.raises(ValueError, match=r"A must have shape \(4,\)"):
        call(A=x["A"][:3])
    with pytest.raises(ValueError, match=r"A must be <= 0"):
        call(A=-x["A"])
    with pytest.raises(ValueError, match=r"B has 3 groups, which must divide the number of heads \(4\)"):
        call(B=torch.zeros(2, 5, 3, 3), C=torch.zeros(2, 5, 3, 3))
    with pytest.raises(ValueError, match=r"C must have shape \(2, 5, 2, 3\)"):
        call(C=x["C"][..., :2])
    with pytest.raises(ValueError, match=r"D must have shape"):
        call(D=torch.zeros(3))
    with pytest.raises(ValueError, match=r"z must have shape"):
        call(z=torch.zeros(2, 5, 4, 2))
    with pytest.raises(ValueError, match=r"dt_bias must have shape"):
        call(dt_bias=torch.zeros(5))
    with pytest.raises(ValueError, match=r"initial_state must have shape \(2, 4, 3, 3\)"):
        call(initial_state=torch.zeros(2, 4, 3, 2))
    with pytest.raises(TypeError, match=r"x must have a floating-point dtype"):
        call(x=torch.zeros(2, 5, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"B must be a torch.Tensor"):
        call(B=[[0.0]])
    with pytest.raises(ValueError, match=r"dt_limit must satisfy low <= high"):
        ssd(**x, dt_limit=(1.0, 0.5))
    with pytest.raises(ValueError, match=r"dt_limit must be None or a pair"):
        ssd(**x, dt_limit=0.5)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        ssd(**x, chunk_size=0)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        ssd(**x, backend="gpu")


def test_state_update_bad_inputs():
    S = torch.zeros(2, 4, 3, 5)
    xt, dt, A = torch.zeros(2, 4, 3), torch.zeros(2, 4), -torch.ones(4)
    B = torch.zeros(2, 2, 5)
    with pytest.raises(ValueError, match=r"x must have shape \(2, 4, 3\)"):
        ssd_state_update(S, xt[:, :3], dt, A, B, B)
    with pytest.raises(ValueError, match=r"B has 3 groups"):
        ssd_state_update(S, xt, dt, A, torch.zeros(2, 3, 5), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"C must have shape \(2, 2, 5\)"):
        ssd_state_update(S, xt, dt, A, B, torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"A must be <= 0"):
        ssd_state_update(S, xt, dt, -A, B, B)
    with pytest.raises(ValueError, match=r"state must have 4 dimensions"):
        ssd_state_update(S[0], xt, dt, A, B, B)
