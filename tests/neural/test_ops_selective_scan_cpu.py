"""The selective scan's ``cpu`` path with and without its numba kernels.

On CPU tensors ``backend="cpu"`` runs the numba forward and the numba recurrences inside
the chunked backward; the pure torch code (used on other devices, or without numba) is
reached here by disabling the kernels.  Both are checked against the float64 per-step loop
and against each other (outputs, chunk-start states, saved pre-gate outputs, gradients),
and the compiled float32 ``exp`` against torch's.
"""

import math

import numpy as np
import pytest
import torch

from probkit.neural.ops import _scan_cpu, selective_scan
from probkit.neural.ops import _scan_cpu_numba as scan_numba

from test_ops_selective_scan import CASES, make_inputs, rel_err, run


@pytest.fixture
def torch_only(monkeypatch):
    """Make ``backend="cpu"`` use the pure torch code on CPU tensors."""
    monkeypatch.setattr(_scan_cpu, "compiled", lambda: None)


def test_compiled_kernels_are_used_on_cpu():
    assert _scan_cpu.compiled() is scan_numba


@pytest.mark.parametrize("name,case,softplus", CASES, ids=[c[0] for c in CASES])
def test_torch_only_path_matches_float64_reference(torch_only, name, case, softplus):
    inputs = make_inputs(len(name), **case)
    ref = run(inputs, "reference", softplus)
    got = run(inputs, "cpu", softplus, chunk=4, dtype=torch.float32)
    for k in ref:
        assert rel_err(got[k], ref[k]) <= 1e-5, (k, rel_err(got[k], ref[k]))
    got64 = run(inputs, "cpu", softplus, chunk=5)
    for k in ref:
        assert got64[k].dtype == torch.float64
        assert rel_err(got64[k], ref[k]) <= 1e-12, k


def _forward_args(inputs, softplus, dtype):
    x = {k: (None if v is None else v.to(dtype)) for k, v in inputs.items()}
    return (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"],
            softplus, x["initial_state"])


# (id, shape and options, softplus): odd L, every option, each kind of B and C
COMPARE_CASES = [
    ("odd-L-all-options", dict(b=2, d=4, L=37, N=3, D=True, z=True, bias=True, h0=True), True),
    ("grouped-B-const-C", dict(b=2, d=6, L=19, N=5, B="g3", C="const", z=True, h0=True), False),
    ("const-B-grouped-C", dict(b=1, d=4, L=16, N=16, B="const", C="g2", D=True, bias=True), True),
]
compare_cases = pytest.mark.parametrize("name,case,softplus", COMPARE_CASES,
                                        ids=[c[0] for c in COMPARE_CASES])
chunks = pytest.mark.parametrize("chunk", [1, 3, 8, 64])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
@chunks
@compare_cases
def test_compiled_and_torch_forwards_save_the_same_states(name, case, softplus, chunk, dtype, tol):
    """Outputs, last state, chunk-start states and pre-gate outputs agree between forwards.

    The backward consumes the chunk-start states and the pre-gate outputs, so both forwards
    must store the same ones (L not a multiple of the chunk included).
    """
    args = _forward_args(make_inputs(3, **case), softplus, dtype)
    got = scan_numba.scan_fwd(*args, chunk, True, dtype)
    want = _scan_cpu.scan_fwd(*args, chunk=chunk, save_for_backward=True, ct=dtype)
    L = case["L"]
    assert got[2].shape == (math.ceil(L / chunk), case["b"], case["d"], case["N"])
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert g.dtype == w.dtype == dtype
            assert rel_err(g, w) <= tol
    no_save = scan_numba.scan_fwd(*args, chunk, False, dtype)
    assert no_save[2] is None and no_save[3] is None
    assert torch.equal(no_save[0], got[0])


def test_compiled_forward_split_over_threads_is_identical(monkeypatch):
    """Blocks of channels on worker threads give bit-identical results to one block."""
    inputs = make_inputs(5, b=3, d=5, L=23, N=4, B="var", C="const", D=True, z=True, h0=True)
    args = _forward_args(inputs, True, torch.float32)
    one = scan_numba.scan_fwd(*args, 4, True, torch.float32)
    monkeypatch.setattr(scan_numba, "_MIN_WORK_FOR_THREADS", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        split = scan_numba.scan_fwd(*args, 4, True, torch.float32)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, split):
        assert torch.equal(a, b)


def test_low_precision_and_non_contiguous_inputs():
    inputs = make_inputs(8, b=2, d=3, L=13, N=4, D=True, z=True, bias=True)
    for dtype in (torch.bfloat16, torch.float16):
        rounded = {k: (None if v is None else v.to(dtype).double()) for k, v in inputs.items()}
        ref = run(rounded, "reference", True)
        got = run(rounded, "cpu", True, chunk=4, dtype=dtype)
        assert got["out"].dtype == dtype
        for k in ref:  # inputs are exact in dtype, so only the output rounding differs
            assert rel_err(got[k], ref[k]) <= 1e-2, (k, dtype)
    nc = {k: (None if v is None or v.dim() < 2 else v.transpose(-1, -2).contiguous().transpose(-1, -2))
          for k, v in inputs.items()}
    nc = {k: (inputs[k] if v is None else v) for k, v in nc.items()}
    assert not nc["u"].is_contiguous()
    a = selective_scan(**inputs, delta_softplus=True)
    b = selective_scan(**nc, delta_softplus=True)
    # torch's vectorised and strided softplus may differ in the last bit
    assert rel_err(b, a) <= 1e-14


def test_exp32_matches_torch_exp():
    """The compiled float32 exp: relative error of torch's own, inf/0/NaN at the limits."""
    x = np.concatenate([np.linspace(-87.0, 88.0, 100_001, dtype=np.float32),
                        np.float32([0.0, -0.0, 1e-30, -1e-30, 88.7, -88.0, -103.0])])
    out = np.empty_like(x)
    scan_numba.exp32_array(x, out)
    exact = torch.exp(torch.from_numpy(x).double())
    normal = (exact >= torch.finfo(torch.float32).tiny) & (exact <= torch.finfo(torch.float32).max)
    err = ((torch.from_numpy(out).double() - exact).abs() / exact)[normal]
    torch_err = ((torch.exp(torch.from_numpy(x)).double() - exact).abs() / exact)[normal]
    assert err.max() <= 2 * max(float(torch_err.max()), 6e-8)
    # below float32's normal range: subnormal or zero, never more than the gap to zero
    assert np.all(np.abs(out[~normal.numpy()] - exact[~normal].numpy()) <= 1.2e-38)
    edge = np.float32([np.nan, np.inf, -np.inf, 89.0, 100.0, -104.0, -200.0])
    out = np.empty_like(edge)
    scan_numba.exp32_array(edge, out)
    assert np.isnan(out[0]) and np.all(np.isinf(out[[1, 3, 4]])) and np.all(out[[2, 5, 6]] == 0)


def test_overflowing_decay_gives_inf_like_the_reference():
    # without softplus, a negative dt and a strong A make exp(dt * A) overflow float32
    inputs = make_inputs(2, b=1, d=2, L=6, N=2)
    inputs["delta"] = torch.full_like(inputs["delta"], -200.0)
    inputs["A"] = torch.full_like(inputs["A"], -1.0)
    x = {k: (None if v is None else v.float()) for k, v in inputs.items()}
    got = selective_scan(**x, backend="cpu")
    ref = selective_scan(**x, backend="reference")
    assert torch.equal(torch.isfinite(got), torch.isfinite(ref))


@chunks
@compare_cases
def test_compiled_and_torch_backwards_agree(monkeypatch, name, case, softplus, chunk):
    """Every gradient (with a loss on the output and on the last state) in float64 and float32."""
    inputs = make_inputs(4, **case)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        got = run(inputs, "cpu", softplus, chunk=chunk, dtype=dtype)
        with monkeypatch.context() as m:
            m.setattr(_scan_cpu, "compiled", lambda: None)
            want = run(inputs, "cpu", softplus, chunk=chunk, dtype=dtype)
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == dtype
            assert rel_err(got[k], want[k]) <= tol, (k, dtype, rel_err(got[k], want[k]))
