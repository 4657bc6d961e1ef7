"""Check, then time, the Triton sequence-model kernels on a CUDA device: one command.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python benchmarks/gpu_ops.py --out DIR [--quick]

Budget: under five minutes on an H200, Triton compilation and autotuning included
(``--quick``: L <= 1024 everywhere, about half).  Exit codes: 0 done, 1 a correctness check
failed (nothing is timed), 2 no CUDA device.

1. Correctness, on the device, against the float64 per-step loops run on the same device:
   selective scan forward and the gradients of every input (fp32 within 1e-5, bf16 inputs
   within 1e-2 of the loop on the bf16-rounded inputs, fp64 within 1e-10; grouped,
   ungrouped and time-invariant B and C, every optional argument, L from 1 to 1024, odd N,
   two tile lengths); the forward at the benchmark shape through the autotuned launch;
   RWKV-4 and RWKV-6 outputs and gradients (fp32, fp64), RWKV-6 ``dw`` where a strong
   decay follows a weak one, and every pair of RWKV-6 forward and backward (chunked,
   recurrent) forced, with ordinary and strong (``w ~ -exp(6)``) decay.  Output buffers are poisoned with NaN
   before each call (freed NaN blocks are what the caching allocator hands out next), fresh
   random inputs each case.
2. Ceilings measured here: device-to-device copy bandwidth (1 GiB), ``exp2`` rate of a
   Triton kernel.  Nominal ones: 4.8 TB/s, and 16 exponentials per clock per SM.
3. Timings, CUDA events after warm-up (autotuning and compilation happen in the warm-up),
   medians: selective scan at B=8, dim=2048, N=16, D + delta_bias + softplus, fp32 and bf16,
   L = 4096 (and 1024, 2048 as a sweep), forward and forward+backward; the same math in plain
   torch on the same GPU with mambapy's parallel scan (skipped with a message when mambapy is
   absent) and the sequential float loop (``backend="reference"``); RWKV-4 and RWKV-6
   (RWKV-6 forced onto recurrent forward and backward, chunked forward and recurrent
   backward, chunked forward and backward).
   Printed per row: microseconds, bytes moved (checkpoints included), achieved GB/s, time
   over the memory bound at 4.8 TB/s and over the exponential floor, and the projection of
   ``benchmarks/results_sass.json`` (static sm_90a analysis) when present.
4. ``DIR/gpu_ops.json`` (everything) and ``DIR/gpu_ops.md`` (the tables).

Bytes moved: the compulsory traffic of the launches each pass makes, counted by
``benchmarks/_kernel_model.py`` from the launches themselves (every distinct tensor argument
once, in-place buffers twice; the same count as ``sass_report.py``'s roofline).  SSD (Mamba-2,
B=8, L=4096, 32 heads x headdim 64, N=64, z, D, dt_bias, softplus) is checked and timed too,
against its chunked torch path (``backend="cpu"``) on the same GPU.  Exponentials: one
exp(dt A) per (batch, channel, step, state) per scan pass; the backward recomputes them once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _kernel_model as M  # noqa: E402

NOMINAL_BW = M.NOMINAL_BW
# sizes: the benchmark, or (--tiny) a dry run of every code path through Triton's CPU
# interpreter (TRITON_INTERPRET=1) on a machine without a GPU
SIZES = dict(scan=(8, 2048, 16), scan_L=4096, scan_L_quick=1024, sweep=(1024, 2048),
             sweep_quick=(256, 512), big_case=(2, 256, 1024, 16), wkv4=(8, 2048),
             wkv6=(8, 32, 64), ssd=(8, 32, 64, 64), copy=1 << 28, exp=(1 << 24, 256, 1024))
TINY = dict(scan=(1, 40, 3), scan_L=20, scan_L_quick=20, sweep=(12,), sweep_quick=(12,),
            big_case=(1, 32, 40, 4), wkv4=(1, 20), wkv6=(1, 1, 4), ssd=(1, 2, 4, 4),
            copy=1 << 12, exp=(1 << 10, 4, 256))
EXP_PER_CLK_SM = M.EXP_PER_CLK_SM
TARGETS = dict(fwd=1.5, fwdbwd=2.5, vs_mambapy=5.0)


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------- helpers


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(a).all():
        return math.inf
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def poison(dev, nbytes=1 << 30):
    """Leave NaN in freed blocks of the caching allocator, so unwritten outputs show up."""
    if dev.type != "cuda":
        return
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=dev)
    x.fill_(float("nan"))
    del x


def events_time(fn, warmup, reps):
    """Median milliseconds of ``fn()`` with CUDA events, after ``warmup`` calls."""
    if not torch.cuda.is_available():  # --tiny dry run on CPU: one call, wall clock
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def scan_inputs(b, d, L, N, dev, dtype, B="var", C="var", z=False, D=True, bias=True,
                h0=False, gen=None):
    g = gen or torch.Generator(device="cpu").manual_seed(0)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def bc(kind):
        if kind == "var":
            return r(b, N, L)
        if kind == "const":
            return r(d, N)
        return r(b, int(kind[1:]), N, L)

    x = dict(u=r(b, d, L), delta=r(b, d, L) * 0.5 - 2.0, A=-torch.exp(r(d, N) * 0.5),
             B=bc(B), C=bc(C), D=r(d) if D else None, z=r(b, d, L) if z else None,
             delta_bias=r(d) * 0.3 if bias else None,
             initial_state=r(b, d, N) if h0 else None)
    return {k: (None if v is None else v.to(dev, dtype)) for k, v in x.items()}


def outputs_and_grads(op, x, dtype=None, grads=True, seed=7, **kw):
    """``op(**x, return_last_state=True, **kw)``'s output, last state and (with ``grads``)
    the gradients of a random linear loss of both, with ``x`` cast to ``dtype``."""
    xs = {k: (None if v is None else (v if dtype is None else v.to(dtype)).clone()
              .requires_grad_(grads)) for k, v in x.items()}
    out, last = op(**xs, return_last_state=True, **kw)
    res = {"out": out, "last": last}
    if grads:
        g = torch.Generator(device="cpu").manual_seed(seed)
        wo = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)
        wl = torch.randn(last.shape, generator=g, dtype=torch.float64).to(out.device)
        names = [k for k, v in xs.items() if v is not None]
        gr = torch.autograd.grad((out.double() * wo).sum() + (last.double() * wl).sum(),
                                 [xs[k] for k in names])
        res.update({"d" + k: v for k, v in zip(names, gr)})
    return res


def scan_run(x, backend, dtype=None, grads=True, chunk=None, seed=7):
    """Selective scan: output, last state and (with ``grads``) the input gradients."""
    from probkit.neural.ops import selective_scan

    return outputs_and_grads(selective_scan, x, dtype, grads, seed, delta_softplus=True,
                             backend=backend, chunk_size=chunk)


def ssd_inputs(b, L, H, P, G, N, dev, dtype, z=True, h0=False, gen=None):
    g = gen or torch.Generator(device="cpu").manual_seed(0)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    x = dict(x=r(b, L, H, P), dt=r(b, L, H) * 0.5 - 1.0, A=-torch.exp(r(H) * 0.5),
             B=r(b, L, G, N), C=r(b, L, G, N), D=r(H), z=r(b, L, H, P) if z else None,
             dt_bias=r(H) * 0.3, initial_state=r(b, H, P, N) if h0 else None)
    return {k: (None if v is None else v.to(dev, dtype)) for k, v in x.items()}


def ssd_run(x, backend, dtype=None, grads=True, seed=7):
    """SSD: output, last state and (with ``grads``) the input gradients."""
    from probkit.neural.ops import ssd

    return outputs_and_grads(ssd, x, dtype, grads, seed, dt_softplus=True, backend=backend)


# --------------------------------------------------------------------------- 1. correctness


def correctness(dev, quick):
    from probkit.neural.ops import _scan_triton, wkv4, wkv6

    worst, failures = {}, []

    def check(name, got, ref, tol):
        for k in ref:
            e = rel_err(got[k], ref[k])
            worst[f"{name} {k}"] = max(worst.get(f"{name} {k}", 0.0), e)
            if not e <= tol:
                failures.append(f"{name} {k}: relative error {e:.2e} > {tol:g}")

    gen = torch.Generator(device="cpu").manual_seed(2024)
    cases = [  # (b, d, L, N, options)
        (2, 64, 300, 16, dict(z=True, h0=True)),
        (2, 48, 77, 5, dict(B="g3", C="g3", h0=True)),
        (1, 32, 129, 16, dict(B="const", C="var", z=False)),
        (2, 16, 1, 4, dict(B="g2", C="const", h0=True, z=True)),
        (*SIZES["big_case"][:2], min(SIZES["big_case"][2], 512 if quick else 1 << 30),
         SIZES["big_case"][3], dict(B="g2", C="g2", h0=True)),
    ]
    if SIZES is TINY:
        cases = [(b, min(d, 12), min(L, 20), n, o) for b, d, L, n, o in cases]
    # one launch configuration for the many shapes here: autotuning each would cost minutes
    _scan_triton.CONFIG_OVERRIDE.update(fwd=(0, 1), bwd=(0, 1))
    try:
        for i, (b, d, L, N, opt) in enumerate(cases):
            x64 = scan_inputs(b, d, L, N, dev, torch.float64, gen=gen, **opt)
            ref = scan_run(x64, "reference")
            for chunk in ((None, 16) if i != 4 and SIZES is not TINY else (None,)):
                poison(dev)
                check(f"scan fp32 case{i} chunk={chunk}", scan_run(x64, "triton",
                      torch.float32, chunk=chunk), ref, 1e-5)
            if i in (0, 1):
                xb = {k: (None if v is None else v.bfloat16().double()) for k, v in x64.items()}
                poison(dev)
                check(f"scan bf16 case{i}", scan_run(xb, "triton", torch.bfloat16),
                      scan_run(xb, "reference"), 1e-2)
            if i == 0:
                poison(dev)
                check("scan fp64 case0", scan_run(x64, "triton"), ref, 1e-10)
    finally:
        _scan_triton.CONFIG_OVERRIDE.update(fwd=None, bwd=None)
    # the benchmark shape itself through the autotuned launch, forward, vs float64 on device
    L = SIZES["scan_L_quick" if quick else "scan_L"]
    big = scan_inputs(*SIZES["scan"][:2], L, SIZES["scan"][2], dev, torch.float64, gen=gen)
    with torch.no_grad():
        ref = scan_run(big, "reference", grads=False)
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
            if dtype == torch.float32:
                xin, r = big, ref
            else:
                xin = {k: (None if v is None else v.to(dtype).double()) for k, v in big.items()}
                r = scan_run(xin, "reference", grads=False)
            poison(dev)
            check(f"scan bench-shape {str(dtype)[6:]}", scan_run(xin, "triton", dtype,
                                                                  grads=False), r, tol)
    del big, ref
    torch.cuda.empty_cache()

    def rr(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dev)

    def wkv_run(fn, xs, backend, dtype):
        ys = [x.to(dtype).clone().requires_grad_() for x in xs]
        out, last = fn(*ys[:-1], initial_state=ys[-1], return_last_state=True, backend=backend)
        g = torch.Generator(device="cpu").manual_seed(5)
        lo = (out.double() * torch.randn(out.shape, generator=g, dtype=torch.float64)
              .to(dev)).sum() + (last.double() * torch.randn(last.shape, generator=g,
                                                              dtype=torch.float64).to(dev)).sum()
        res = {"out": out, "last": last}
        res.update({f"d{i}": gr for i, gr in enumerate(torch.autograd.grad(lo, ys))})
        return res

    c4, l4, l6, k6 = (192, 257, 200, 64) if SIZES is not TINY else (8, 13, 11, 4)
    wkv_cases = {
        "wkv4": (wkv4, [-torch.exp(rr(c4)), rr(c4), rr(2, l4, c4) * 3, rr(2, l4, c4),
                        torch.stack([rr(2, c4), rr(2, c4).abs() + 0.5, rr(2, c4)], 1)]),
        "wkv6": (wkv6, [rr(2, 4, l6, k6), rr(2, 4, l6, k6), rr(2, 4, l6, k6),
                        -torch.exp(rr(2, 4, l6, k6)), rr(4, k6), rr(2, 4, k6, k6)]),
    }
    lm, km = (40, 16) if SIZES is not TINY else (10, 4)
    w_mixed = torch.full((1, 2, lm, km), -0.05, dtype=torch.float64, device=dev)
    w_mixed[:, :, ::2] = -40.0
    wkv_cases["wkv6 strong-after-weak decay"] = (
        wkv6, [rr(1, 2, lm, km), rr(1, 2, lm, km), rr(1, 2, lm, km), w_mixed, rr(2, km),
               rr(1, 2, km, km)])
    for name, (fn, xs) in wkv_cases.items():
        ref = wkv_run(fn, xs, "reference", torch.float64)
        poison(dev)
        check(f"{name} fp32", wkv_run(fn, xs, "triton", torch.float32), ref, 1e-5)
        if name == "wkv6 strong-after-weak decay":  # dw at the forgetting steps, elementwise
            got = wkv_run(fn, xs, "triton", torch.float32)["d3"].double()
            strong = (w_mixed == -40.0)
            scale = ref["d3"][strong].abs().max()
            e = float((got - ref["d3"])[strong].abs().max() / scale)
            worst[name + " dw at strong steps"] = e
            if not e <= 1e-5:
                failures.append(f"{name}: dw at strong steps off by {e:.2e} of its scale")
        else:
            poison(dev)
            check(f"{name} fp64", wkv_run(fn, xs, "triton", torch.float64), ref, 1e-10)
    # the RWKV-6 forward / backward pairs, forced whatever the rule picks at this length,
    # with ordinary and strong (w ~ -exp(6)) decay
    from probkit.neural.ops import _wkv6_chunked_bwd_triton as CB
    from probkit.neural.ops import _wkv6_chunked_triton as CH

    xs6 = wkv_cases["wkv6"][1]
    strong = -torch.exp(6.0 + 0.2 * rr(*xs6[3].shape))
    for fwd, bwd in (("chunked", "recurrent"), ("recurrent", "recurrent"),
                     ("chunked", "chunked"), ("recurrent", "chunked")):
        CH.FORWARD, CB.BACKWARD = fwd, bwd
        try:
            for label, w in (("", xs6[3]), (" strong decay", strong)):
                xs = xs6[:3] + [w] + xs6[4:]
                ref = wkv_run(wkv6, xs, "reference", torch.float64)
                poison(dev)
                check(f"wkv6 {fwd}{label} fp32" + (", chunked bwd" if bwd == "chunked" else ""),
                      wkv_run(wkv6, xs, "triton", torch.float32), ref, 1e-5)
        finally:
            CH.FORWARD, CB.BACKWARD = "auto", "auto"
    ssd_cases = [  # (b, L, H, P, G, N, options)
        (2, 300 if SIZES is not TINY else 37, 4, 64 if SIZES is not TINY else 3, 2,
         64 if SIZES is not TINY else 5, dict(z=True, h0=True)),
        (1, 129 if SIZES is not TINY else 20, 3, 20, 3, 17, dict(z=False, h0=False)),
    ]
    for i, (b, L, H, P, G, N, opt) in enumerate(ssd_cases):
        x64 = ssd_inputs(b, L, H, P, G, N, dev, torch.float64, gen=gen, **opt)
        ref = ssd_run(x64, "reference")
        poison(dev)
        check(f"ssd fp32 case{i}", ssd_run(x64, "triton", torch.float32), ref, 2e-5)
        xb = {k: (None if v is None else v.bfloat16().double()) for k, v in x64.items()}
        poison(dev)
        check(f"ssd bf16 case{i}", ssd_run(xb, "triton", torch.bfloat16),
              ssd_run(xb, "reference"), 1e-2)
    return failures, worst


# --------------------------------------------------------------------------- 2. ceilings


def copy_bandwidth(dev):
    n = SIZES["copy"]  # 1 GiB of fp32
    src = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    ms = events_time(lambda: dst.copy_(src), 3, 20)
    del src, dst
    return 2 * n * 4 / (ms * 1e-3)


def exp_rate(dev):
    import triton
    import triton.language as tl

    @triton.jit
    def _exp_chain(x_ptr, out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for _ in range(ITERS):
            x = tl.exp2(x * -0.5)  # stays in (0, 1]: a dependent chain per element
            acc += x
        tl.store(out_ptr + offs, acc)

    n, iters, block = SIZES["exp"]
    x = torch.rand(n, device=dev)
    out = torch.empty_like(x)
    ms = events_time(lambda: _exp_chain[(n // block,)](x, out, ITERS=iters, BLOCK=block), 2, 10)
    return n * iters / (ms * 1e-3)


# --------------------------------------------------------------------------- 3. timings


def pass_bytes(passes):
    """(inference forward bytes, forward-with-saving + backward bytes) of the model's passes."""
    return M.pass_bytes(passes["fwd"]), M.pass_bytes(passes.get("fwd train", passes["fwd"])
                                                      + passes["bwd"])


def mambapy_fns(x):
    """mambapy's selective scan (its parallel scan on (B, L, D, N) tensors), same math."""
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None
    import torch.nn.functional as F

    u = x["u"].transpose(1, 2).contiguous()
    dl = x["delta"].transpose(1, 2).contiguous()
    B = x["B"].transpose(1, 2).contiguous()
    C = x["C"].transpose(1, 2).contiguous()

    def run(u, dl, A, B, C, D, bias):
        dt = F.softplus(dl + bias)
        dA = torch.exp(dt.unsqueeze(-1) * A)
        BX = (dt * u).unsqueeze(-1) * B.unsqueeze(2)
        hs = pscan(dA, BX)
        return (hs @ C.unsqueeze(-1)).squeeze(3) + D * u

    args = [u, dl, x["A"], B, C, x["D"], x["delta_bias"]]
    return run, args


def time_scan(dev, dtype, L, reps, with_mambapy, with_reference, with_z=False):
    from probkit.neural.ops import selective_scan

    b, d, N = SIZES["scan"]
    x = scan_inputs(b, d, L, N, dev, dtype, z=with_z)
    x = {k: v for k, v in x.items() if v is not None}
    inf_b, fb_b = pass_bytes(M.scan_launches(dtype, with_z, b, d, L, N))
    n_exp = b * d * L * N
    xg = {k: v.clone().requires_grad_() for k, v in x.items()}
    gy = torch.randn(b, d, L, device=dev, dtype=dtype)

    def fwd():
        with torch.no_grad():
            return selective_scan(**x, delta_softplus=True, backend="triton")

    def fb():
        y = selective_scan(**xg, delta_softplus=True, backend="triton")
        torch.autograd.grad(y, list(xg.values()), gy)

    rows = [dict(impl="triton", kernel="scan", dtype=str(dtype)[6:], L=L, z=with_z, pass_="fwd",
                 ms=events_time(fwd, 3, reps), bytes=inf_b, exps=n_exp),
            dict(impl="triton", kernel="scan", dtype=str(dtype)[6:], L=L, z=with_z,
                 pass_="fwd+bwd",
                 ms=events_time(fb, 2, reps), bytes=fb_b, exps=2 * n_exp)]
    if with_mambapy:
        mp = mambapy_fns(x)
        if mp is None:
            log("mambapy is not installed here: its rows are skipped")
        else:
            run, args = mp
            argsg = [a.detach().clone().requires_grad_() for a in args]
            gyt = gy.transpose(1, 2).contiguous()

            def mfwd():
                with torch.no_grad():
                    return run(*args)

            def mfb():
                torch.autograd.grad(run(*argsg), argsg, gyt)

            rows.append(dict(impl="mambapy pscan", dtype=str(dtype)[6:], L=L, z=with_z,
                             pass_="fwd", ms=events_time(mfwd, 1, max(3, reps // 4)),
                             bytes=inf_b, exps=n_exp))
            rows.append(dict(impl="mambapy pscan", dtype=str(dtype)[6:], L=L, z=with_z,
                             pass_="fwd+bwd", ms=events_time(mfb, 1, max(3, reps // 4)),
                             bytes=fb_b, exps=2 * n_exp))
            torch.cuda.empty_cache()
    if with_reference:
        def rfwd():
            with torch.no_grad():
                return selective_scan(**x, delta_softplus=True, backend="reference")

        def rfb():
            y = selective_scan(**xg, delta_softplus=True, backend="reference")
            torch.autograd.grad(y, list(xg.values()), gy)

        rows.append(dict(impl="reference loop", dtype=str(dtype)[6:], L=L, z=with_z,
                         pass_="fwd", ms=events_time(rfwd, 1, 2), bytes=inf_b, exps=n_exp))
        rows.append(dict(impl="reference loop", dtype=str(dtype)[6:], L=L, z=with_z,
                         pass_="fwd+bwd", ms=events_time(rfb, 1, 2), bytes=fb_b,
                         exps=2 * n_exp))
    del x, xg, gy
    torch.cuda.empty_cache()
    return rows


def time_wkv(dev, quick, reps):
    import triton

    from probkit.neural.ops import _wkv6_chunked_triton as CH
    from probkit.neural.ops import wkv4, wkv6

    rows = []
    L = SIZES["scan_L_quick" if quick else "scan_L"]
    g = torch.Generator(device="cpu").manual_seed(1)
    b, C = SIZES["wkv4"]
    w, u = -torch.exp(torch.randn(C, generator=g)).to(dev), torch.randn(C, generator=g).to(dev)
    k, v = (torch.randn(b, L, C, generator=g).to(dev) for _ in range(2))
    xs = [w, u, k, v]
    xg = [t.clone().requires_grad_() for t in xs]
    gy = torch.randn(b, L, C, device=dev)
    inf_b, fb_b = pass_bytes(M.wkv4_launches(b, L, C))
    rows.append(dict(impl="triton wkv4", kernel="wkv4", dtype="float32", L=L, z=False,
                     pass_="fwd", ms=events_time(lambda: wkv4(*xs, backend="triton"), 2, reps),
                     bytes=inf_b, exps=4 * b * L * C))
    rows.append(dict(impl="triton wkv4", kernel="wkv4", dtype="float32", L=L, z=False,
                     pass_="fwd+bwd",
                     ms=events_time(lambda: torch.autograd.grad(wkv4(*xg, backend="triton"),
                                                                xg, gy), 2, reps),
                     bytes=fb_b, exps=10 * b * L * C))
    b, H, K = SIZES["wkv6"]
    r, kk, vv = (torch.randn(b, H, L, K, generator=g).to(dev) for _ in range(3))
    ww = -torch.exp(torch.randn(b, H, L, K, generator=g)).to(dev)
    uu = torch.randn(H, K, generator=g).to(dev)
    xs = [r, kk, vv, ww, uu]
    xg = [t.clone().requires_grad_() for t in xs]
    go = torch.randn(b, H, L, K, device=dev)
    # the forward / backward pairs, forced: recurrent / recurrent, chunked / recurrent,
    # chunked / chunked; exponentials of the chunked forward: CHUNK per (step, channel) for
    # the intra-chunk matrix, per block of value columns, and 2 for the decays of r and k;
    # the chunked backward: 2 CHUNK per (step, channel) and value block (its two (C, C)
    # decay tensors) and 3 for the decays of the inter-chunk terms
    from probkit.neural.ops import _wkv6_chunked_bwd_triton as CB

    recurrent = M.wkv6_launches(b, H, L, K)
    chunked = M.wkv6_chunked_launches(b, H, L, K)
    chunked_bwd = M.wkv6_chunked_bwd_launches(b, H, L, K)
    n_vb = triton.cdiv(K, CH._blocks(K, K)[2])
    fwd_exps = CH.CHUNK * n_vb + 2
    for fwd, bwd, impl, kernel, inf_b, fb_b, exps, bwd_exps in (
            ("recurrent", "recurrent", "triton wkv6", "wkv6", *pass_bytes(recurrent), 1, 2),
            ("chunked", "recurrent", "triton wkv6 chunked fwd, recurrent bwd",
             "wkv6 chunked fwd recurrent bwd", M.pass_bytes(chunked["fwd"]),
             M.pass_bytes(chunked["fwd train"] + recurrent["bwd"]), fwd_exps, 2),
            ("chunked", "chunked", "triton wkv6 chunked", "wkv6 chunked",
             M.pass_bytes(chunked["fwd"]),
             M.pass_bytes(chunked_bwd["fwd train"] + chunked_bwd["bwd"]), fwd_exps,
             2 * CH.CHUNK * n_vb + 3)):
        CH.FORWARD, CB.BACKWARD = fwd, bwd
        try:
            rows.append(dict(impl=impl, kernel=kernel, dtype="float32", L=L, z=False,
                             pass_="fwd", ms=events_time(lambda: wkv6(*xs, backend="triton"),
                                                         2, reps),
                             bytes=inf_b, exps=exps * b * H * L * K))
            rows.append(dict(impl=impl, kernel=kernel, dtype="float32", L=L, z=False,
                             pass_="fwd+bwd",
                             ms=events_time(lambda: torch.autograd.grad(
                                 wkv6(*xg, backend="triton"), xg, go), 1, max(3, reps // 4)),
                             bytes=fb_b, exps=(exps + bwd_exps) * b * H * L * K))
        finally:
            CH.FORWARD, CB.BACKWARD = "auto", "auto"
    return rows


def time_ssd(dev, dtype, L, reps):
    """SSD forward and forward+backward: the Triton kernels and the chunked torch path."""
    from probkit.neural.ops import ssd

    b, H, P, N = SIZES["ssd"]
    x = ssd_inputs(b, L, H, P, 1, N, dev, dtype)
    x = {k: v for k, v in x.items() if v is not None}
    xg = {k: v.clone().requires_grad_() for k, v in x.items()}
    gy = torch.randn(b, L, H, P, device=dev, dtype=dtype)
    inf_b, fb_b = pass_bytes(M.ssd_launches(dtype, True, b, L, H, P, N, 1))
    # exponentials: the (T x T) decay matrix of every chunk and head (T = 32), formed by the
    # forward's chunk kernel and again by three backward kernels
    n_exp = b * L * H * 32
    rows = []
    for impl, backend in (("triton ssd", "triton"), ("ssd torch chunked (cpu path)", "cpu")):
        def fwd(backend=backend):
            with torch.no_grad():
                return ssd(**x, dt_softplus=True, backend=backend)

        def fb(backend=backend):
            y = ssd(**xg, dt_softplus=True, backend=backend)
            torch.autograd.grad(y, list(xg.values()), gy)

        n = reps if backend == "triton" else max(3, reps // 4)
        for pass_, fn, nbytes in (("fwd", fwd, inf_b), ("fwd+bwd", fb, fb_b)):
            rows.append(dict(impl=impl, kernel="ssd" if backend == "triton" else None,
                             dtype=str(dtype)[6:], L=L, z=True, pass_=pass_,
                             ms=events_time(fn, 2, n), bytes=nbytes,
                             exps=n_exp * (1 if pass_ == "fwd" else 4)))
    del x, xg, gy
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def projections():
    """Per-pass projections of benchmarks/results_sass.json (static sm_90a analysis)."""
    path = os.path.join(ROOT, "benchmarks", "results_sass.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f).get("passes", {})


def projected_ms(row, proj):
    """The static roofline projection of the row's pass, scaled from the analysed shape by
    the bytes moved (both grow linearly with L); None without one."""
    if row.get("kernel") is None:
        return None
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[row["dtype"]]
    p = proj.get(f"{row['kernel']} {row['pass_']} {M.pass_variant(dtype, row['z'])}")
    if p is None:
        return None
    return p["proj_us"] * 1e-3 * row["bytes"] / p["bytes"]


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="output folder")
    ap.add_argument("--quick", action="store_true", help="L <= 1024 everywhere")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--tiny", action="store_true",
                    help="tiny shapes: a dry run of every code path (on CPU through Triton's "
                         "interpreter when TRITON_INTERPRET=1 and there is no GPU); its "
                         "numbers mean nothing")
    args = ap.parse_args()
    global SIZES
    if args.tiny:
        SIZES = TINY
        args.reps = 1
    tiny_cpu = args.tiny and not torch.cuda.is_available() \
        and os.environ.get("TRITON_INTERPRET") == "1"
    if not torch.cuda.is_available() and not tiny_cpu:
        log("no CUDA device: nothing to do (the Triton kernels are tested on CPU by the normal "
            "suite through TRITON_INTERPRET=1; benchmarks/sass_report.py gives static figures)")
        return 2
    os.makedirs(args.out, exist_ok=True)
    import triton

    t_start = time.time()
    dev = torch.device("cpu" if tiny_cpu else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    if tiny_cpu:
        name, sms = "CPU (Triton interpreter dry run)", 132
    else:
        props = torch.cuda.get_device_properties(dev)
        name, sms = props.name, props.multi_processor_count
    info = dict(device=name, sms=sms, torch=torch.__version__, triton=triton.__version__,
                python=platform.python_version(), cuda=torch.version.cuda)
    log(f"# {info}")
    failures, worst = correctness(dev, args.quick)
    log(f"## correctness ({time.time() - t_start:.0f} s): worst relative error per check")
    for k, v in worst.items():
        log(f"- {k}: {v:.2e}")
    result = dict(info=info, correctness=worst, failures=failures)
    if failures:
        log("CORRECTNESS FAILED (not timing):")
        for f in failures:
            log("  " + f)
        with open(os.path.join(args.out, "gpu_ops.json"), "w") as f:
            json.dump(result, f, indent=1)
        return 1
    bw, er = copy_bandwidth(dev), exp_rate(dev)
    clock = M.H200_CLOCK  # for the nominal exponential floor
    nominal_exp = sms * EXP_PER_CLK_SM * clock
    log(f"## ceilings: copy {bw / 1e12:.2f} TB/s (nominal {NOMINAL_BW / 1e12:.1f}), exp2 "
        f"{er / 1e12:.2f} T/s (nominal {nominal_exp / 1e12:.2f})")
    rows = []
    main_L = SIZES["scan_L_quick" if args.quick else "scan_L"]
    for dtype in (torch.float32, torch.bfloat16):
        rows += time_scan(dev, dtype, main_L, args.reps, with_mambapy=True,
                          with_reference=dtype == torch.float32)
        log(f"  timed scan {dtype} L={main_L} ({time.time() - t_start:.0f} s)")
    rows += time_scan(dev, torch.float32, main_L, args.reps, False, False, with_z=True)
    for L in SIZES["sweep_quick" if args.quick else "sweep"]:
        for dtype in (torch.float32, torch.bfloat16):
            rows += time_scan(dev, dtype, L, args.reps, dtype == torch.float32, False)
    log(f"  timed the L sweep ({time.time() - t_start:.0f} s)")
    rows += time_wkv(dev, args.quick, args.reps)
    for dtype in (torch.float32, torch.bfloat16):
        rows += time_ssd(dev, dtype, main_L, args.reps)
    log(f"  timed RWKV and SSD ({time.time() - t_start:.0f} s)")
    proj = projections()
    for r in rows:
        t = r["ms"] * 1e-3
        r["GBps"] = r["bytes"] / t / 1e9
        r["mem_bound_ms"] = r["bytes"] / NOMINAL_BW * 1e3
        r["exp_floor_ms"] = r["exps"] / nominal_exp * 1e3
        r["x_mem_bound"] = t * 1e3 / r["mem_bound_ms"]
        r["x_exp_floor"] = t * 1e3 / r["exp_floor_ms"]
        r["x_bound"] = t * 1e3 / max(r["mem_bound_ms"], r["exp_floor_ms"])
        r["projected_ms"] = projected_ms(r, proj)
    # the targets, for the main rows
    verdict = {}
    for r in rows:
        if r["impl"] == "triton" and r["L"] == main_L and not r["z"]:
            lim = TARGETS["fwd" if r["pass_"] == "fwd" else "fwdbwd"]
            verdict[f"{r['dtype']} {r['pass_']} <= {lim}x bound"] = r["x_bound"] <= lim
            if r["pass_"] == "fwd+bwd":
                m = [q for q in rows if q["impl"] == "mambapy pscan" and q["L"] == r["L"]
                     and q["dtype"] == r["dtype"] and q["pass_"] == "fwd+bwd"]
                if m:
                    verdict[f"{r['dtype']} fwd+bwd >= {TARGETS['vs_mambapy']}x faster than "
                            "mambapy"] = m[0]["ms"] / r["ms"] >= TARGETS["vs_mambapy"]
    head = ("| impl | dtype | L | z | pass | µs | MB moved | GB/s | x mem bound (4.8 TB/s) | "
            "x exp floor | x max bound | projected µs (static) |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        pj = "" if r["projected_ms"] is None else f"{r['projected_ms'] * 1e3:.0f}"
        lines.append(
            f"| {r['impl']} | {r['dtype']} | {r['L']} | {r['z']} | {r['pass_']} | "
            f"{r['ms'] * 1e3:.0f} | {r['bytes'] / 1e6:.0f} | {r['GBps']:.0f} | "
            f"{r['x_mem_bound']:.2f} | {r['x_exp_floor']:.2f} | {r['x_bound']:.2f} | {pj} |")
    table = "\n".join(lines)
    targets = "\n".join(f"- {k}: {'met' if v else 'NOT met'}" for k, v in verdict.items())
    elapsed = time.time() - t_start
    md = (f"# gpu_ops on {info['device']}\n\n{info}\n\nCeilings: copy {bw / 1e12:.2f} TB/s, "
          f"exp2 {er / 1e12:.2f} T/s (nominal {nominal_exp / 1e12:.2f}).  Selective scan: "
          "B=8, dim=2048, N=16, D + delta_bias + softplus; RWKV-4 B=8, C=2048; RWKV-6 B=8, "
          "H=32, K=V=64; SSD B=8, 32 heads x headdim 64, N=64, z, D, dt_bias, softplus.  "
          f"Wall time {elapsed:.0f} s.\n\n{table}\n\nTargets:\n{targets}\n")
    log("\n" + table + "\n\nTargets:\n" + targets + f"\n\nwall time {elapsed:.0f} s")
    result.update(ceilings=dict(copy_Bps=bw, exp_per_s=er, nominal_exp_per_s=nominal_exp),
                  rows=rows, targets=verdict, wall_s=elapsed)
    with open(os.path.join(args.out, "gpu_ops.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "gpu_ops.md"), "w") as f:
        f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
