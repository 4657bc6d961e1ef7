"""RWKV-6 chunked Triton forward and backward (``tl.dot`` per chunk) against the float64
per-step loop differentiated by autograd.

Without a GPU the kernels run through Triton's CPU interpreter.  The op's triton backend is
forced onto the chunked forward and backward (``FORWARD = BACKWARD = "chunked"``); the
mixed pairs (chunked forward with the recurrent backward and the converse) are tested too.
"""

import pytest
import torch

pytest.importorskip("triton")

from probkit.neural.ops import _wkv6_chunked_bwd_triton as CB  # noqa: E402
from probkit.neural.ops import _wkv6_chunked_triton as CH  # noqa: E402
from probkit.neural.ops import wkv6  # noqa: E402

from test_ops_wkv import _prep, dev_for, grads_of, rel_err, wkv6_fn, wkv6_inputs  # noqa: E402

DEV = dev_for("triton")


@pytest.fixture
def chunked(monkeypatch):
    monkeypatch.setattr(CH, "FORWARD", "chunked")
    monkeypatch.setattr(CB, "BACKWARD", "chunked")


def strong_decay(w, seed):
    """w of about -exp(6) per step (a factor ~e^-400: the state is all but forgotten)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(w.shape, generator=g, dtype=torch.float64)
    return -torch.exp(6.0 + 0.2 * noise).to(w.device)


CASES = [
    dict(b=1, H=2, L=37, K=5, V=20, state=True),   # odd L; K padded to 16; two V blocks
    dict(b=2, H=1, L=32, K=4, state=False),        # L a multiple of the chunk
    dict(b=1, H=1, L=5, K=3, V=2, state=True),     # L shorter than one chunk
    dict(b=1, H=1, L=19, K=20, V=7, state=True),   # K over two channel slices of A
]


@pytest.mark.parametrize("case", CASES, ids=["odd-L", "L=2C", "L<C", "K=20"])
def test_chunked_matches_float64_reference(chunked, case):
    xs = wkv6_inputs(21, **case, device=DEV)
    got = grads_of(wkv6_fn("triton"), _prep(xs, torch.float32))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    assert got[0].dtype == torch.float32
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))


@pytest.mark.parametrize("decay", ["strong", "weak", "strong-then-weak"])
def test_chunked_decay_extremes_are_exact(chunked, decay):
    r, k, v, w, u, s0 = wkv6_inputs(22, b=1, H=2, L=35, K=6, state=True, device=DEV)
    if decay == "strong":
        w = strong_decay(w, 1)
    elif decay == "weak":
        w = w * 1e-4
    else:
        # a strong step, then weak ones: the cumulative log-decay inside the chunk is large
        # while the exponents of the weak stretch are small, so a plain float32 difference
        # of cumulative sums would lose ~1e-4 in those factors
        w = w * 1e-2
        w[:, :, ::7] = strong_decay(w[:, :, ::7], 2)
    xs = [r, k, v, w, u, s0]
    got = grads_of(wkv6_fn("triton"), _prep(xs, torch.float32))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert torch.isfinite(a).all(), i
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))
    if decay == "strong":
        # with the state forgotten every step, o_t = r_t.(u o k_t) v_t + r_t.k_{t-1} v_{t-1}
        o = ref[0].detach()
        rf, kf, vf = r.double(), k.double(), v.double()
        cur = (rf * u.double()[None, :, None, :] * kf).sum(-1, keepdim=True) * vf
        prev = torch.zeros_like(cur)
        prev[:, :, 1:] = (rf[:, :, 1:] * kf[:, :, :-1]).sum(-1, keepdim=True) * vf[:, :, :-1]
        prev[:, :, :1] = torch.einsum("bhk,bhkv->bhv", rf[:, :, 0], s0.double())[:, :, None]
        assert rel_err(got[0], cur + prev) <= 1e-5
        # dw is e^{w_t} (~e^-400) times bounded factors: zero in float32, not rounding noise
        assert got[5].abs().max() <= 1e-30


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_chunked_half_precision_inputs(chunked, dtype):
    # computed in float32 from the 16-bit inputs: compared with the loop on the rounded inputs
    xs = [None if x is None else x.to(dtype).double()
          for x in wkv6_inputs(23, b=1, H=2, L=21, K=5, V=9, state=True, device=DEV)]
    got = grads_of(wkv6_fn("triton"), _prep(xs, dtype))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    assert got[0].dtype == dtype
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= tol, (i, rel_err(a, b))


def test_chunked_float64_is_computed_in_float64(chunked):
    xs = wkv6_inputs(24, b=1, H=2, L=27, K=3, V=4, state=True, device=DEV)
    xs[3] = xs[3] * 3.0
    got = grads_of(wkv6_fn("triton"), _prep(xs, torch.float64))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    assert got[0].dtype == got[1].dtype == torch.float64
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-11, (i, rel_err(a, b))


def test_chunked_without_gradients_and_chaining(chunked):
    # inference (no saved states) and a sequence split at a step that is not a chunk boundary
    r, k, v, w, u, s0 = [x.float() for x in wkv6_inputs(25, b=1, H=1, L=41, K=4, state=True,
                                                          device=DEV)]
    full, last = wkv6(r, k, v, w, u, initial_state=s0, return_last_state=True, backend="triton")
    ref, ref_last = wkv6(*(x.double() for x in (r, k, v, w, u)), initial_state=s0.double(),
                         return_last_state=True, backend="reference")
    assert rel_err(full, ref) <= 1e-5 and rel_err(last, ref_last) <= 1e-5
    o1, s1 = wkv6(r[:, :, :23], k[:, :, :23], v[:, :, :23], w[:, :, :23], u, initial_state=s0,
                  return_last_state=True, backend="triton")
    o2, s2 = wkv6(r[:, :, 23:], k[:, :, 23:], v[:, :, 23:], w[:, :, 23:], u, initial_state=s1,
                  return_last_state=True, backend="triton")
    assert rel_err(torch.cat([o1, o2], 2), ref) <= 1e-5
    assert rel_err(s2, ref_last) <= 1e-5


@pytest.mark.parametrize("fwd,bwd,L", [("chunked", "chunked", 100),
                                        ("chunked", "recurrent", 37),
                                        ("recurrent", "chunked", 37)],
                         ids=["two-saved-blocks", "recurrent-bwd", "recurrent-fwd"])
def test_backward_pairs_and_saved_blocks(monkeypatch, fwd, bwd, L):
    # L = 100: two saved states 64 steps apart, the chunks of the first block recomputed
    # from its saved state; the mixed pairs read the other forward's spacing of states
    monkeypatch.setattr(CH, "FORWARD", fwd)
    monkeypatch.setattr(CB, "BACKWARD", bwd)
    xs = wkv6_inputs(29, b=1, H=1, L=L, K=18, V=5, state=True, device=DEV)
    got = grads_of(wkv6_fn("triton"), _prep(xs, torch.float32))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))


def test_chunked_backward_checks_the_saved_states():
    r, k, v, w, u = [x.float() for x in wkv6_inputs(30, b=1, H=1, L=40, K=2, device=DEV)[:5]]
    _, _, ck = CH.wkv6_fwd_chunked(r, k, v, w, u, None, save_every=16)
    with pytest.raises(ValueError, match="ck must hold the state every save_every"):
        CB.wkv6_bwd_chunked(r, k, v, w, u, ck, torch.ones_like(v), None, save_every=32)


def _spy_lengths(monkeypatch, module, name):
    """Replace ``module.name`` by a wrapper recording the length L of each call."""
    calls, real = [], getattr(module, name)

    def spy(*a, **kw):
        calls.append(a[0].shape[2])
        return real(*a, **kw)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_dispatch_rule(monkeypatch):
    # "auto": chunked from CHUNKED_MIN_L steps on, recurrent below and for float64
    assert CH.FORWARD == "auto"
    assert CH.use_chunked(CH.CHUNKED_MIN_L, torch.float32)
    assert not CH.use_chunked(CH.CHUNKED_MIN_L - 1, torch.float32)
    assert not CH.use_chunked(4096, torch.float64)
    calls = _spy_lengths(monkeypatch, CH, "wkv6_fwd_chunked")
    monkeypatch.setattr(CH, "CHUNKED_MIN_L", 20)  # keep the interpreter run short
    for L in (19, 20):
        xs = [x.float() for x in wkv6_inputs(26, b=1, H=1, L=L, K=2, device=DEV)[:5]]
        o = wkv6(*xs, backend="triton")
        assert rel_err(o, wkv6(*(x.double() for x in xs), backend="reference")) <= 1e-5
    assert calls == [20]
    # the backward follows the same rule with its own switch
    assert CB.BACKWARD == "auto"
    assert CB.use_chunked_backward(CH.CHUNKED_MIN_L, torch.float32)
    assert not CB.use_chunked_backward(CH.CHUNKED_MIN_L - 1, torch.bfloat16)
    assert not CB.use_chunked_backward(4096, torch.float64)
    bwd_calls = _spy_lengths(monkeypatch, CB, "wkv6_bwd_chunked")
    for L in (19, 20):
        xs = [x.float().requires_grad_() for x in wkv6_inputs(26, b=1, H=1, L=L, K=2,
                                                               device=DEV)[:5]]
        wkv6(*xs, backend="triton").sum().backward()
    assert bwd_calls == [20]


def test_save_every_must_be_a_multiple_of_the_chunk():
    xs = [x.float() for x in wkv6_inputs(27, b=1, H=1, L=8, K=2, device=DEV)[:5]]
    with pytest.raises(ValueError, match="save_every must be a multiple"):
        CH.wkv6_fwd_chunked(*xs, None, save_every=CH.CHUNK + 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("decay", ["normal", "strong-then-weak"])
def test_cuda_chunked_tensor_cores(chunked, decay):
    # on the device the dots run on the tensor cores (3xTF32): about float32 accuracy
    r, k, v, w, u, s0 = wkv6_inputs(28, b=2, H=3, L=200, K=64, state=True, device="cuda")
    if decay != "normal":
        w = w * 1e-2
        w[:, :, ::5] = strong_decay(w[:, :, ::5], 3)
    xs = [r, k, v, w, u, s0]
    got = grads_of(wkv6_fn("triton"), _prep(xs, torch.float32))
    ref = grads_of(wkv6_fn("reference"), _prep(xs, torch.float64))
    for i, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) <= 2e-5, (i, rel_err(a, b))
