"""GPU check and timing of the Triton selective-scan kernels (one prepared script).

Run on a machine with a CUDA GPU::

    PYTHONPATH=. python benchmarks/gpu_ops.py [--quick] [--json out.json]

1. Correctness on the device, against the float64 reference loop run on the same device:
   forward and all gradients of the Triton path (fp32 and bf16, grouped/ungrouped/
   time-invariant B and C, all optional arguments), the full benchmark shape forward, and
   the WKV kernels.  The script stops with exit code 1 if a check fails.
2. Measured roofline of the device: copy bandwidth (a large device-to-device copy) and the
   ``exp2`` throughput of a Triton kernel.
3. Timing (medians, ``triton.testing.do_bench``) at B=8, L=4096, dim=2048, N=16,
   fp32 and bf16, with and without z: Triton forward, forward+backward, a small sweep of
   launch configurations, and the ``cpu`` (chunked torch) path on the same GPU.
   Reported: microseconds, the memory and exp bounds and % of the larger bound.

Bytes counted (forward): u, delta (and z) read, y written, B and C read.  Exponentials
counted: one ``exp(dt A)`` per (batch, dim, L, N) element; the backward recomputes it once
(two-map scans give h_{t-1} and the adjoint without other exponentials), reads u, delta,
(z), dy, B, C and the chunk states, writes du, ddelta, (dz) and accumulates dB, dC.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def make(b, d, L, N, dev, dtype, B="var", C="var", z=True, D=True, bias=True, h0=False, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

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
             delta_bias=r(d) * 0.3 if bias else None, initial_state=r(b, d, N) if h0 else None)
    return {k: (None if v is None else v.to(dev, dtype)) for k, v in x.items()}


def fwd_bwd(x, backend, dtype=None, grads=True, chunk=None):
    from probkit.neural.ops import selective_scan

    xs = {k: (None if v is None else (v if dtype is None else v.to(dtype)).clone().requires_grad_(grads))
          for k, v in x.items()}
    out, last = selective_scan(**xs, delta_softplus=True, return_last_state=True,
                               backend=backend, chunk_size=chunk)
    res = {"out": out, "last": last}
    if grads:
        g = torch.Generator(device="cpu").manual_seed(7)
        wo = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)
        wl = torch.randn(last.shape, generator=g, dtype=torch.float64).to(out.device)
        names = [k for k, v in xs.items() if v is not None]
        gr = torch.autograd.grad((out.double() * wo).sum() + (last.double() * wl).sum(),
                                 [xs[k] for k in names])
        res.update({"d" + k: v for k, v in zip(names, gr)})
    return res


def correctness(dev, quick):
    from probkit.neural.ops import wkv4, wkv6

    worst = {}
    cases = [
        dict(b=2, d=64, L=300, N=16),
        dict(b=2, d=48, L=77, N=5, B="g3", C="g3", h0=True),
        dict(b=1, d=32, L=129, N=16, B="const", C="var", z=False),
        dict(b=2, d=16, L=1, N=4, B="g2", C="const", h0=True),
        dict(b=2, d=256, L=1024, N=16, B="g2", C="g2", h0=True),
    ]
    ok = True
    for case in cases[: 3 if quick else None]:
        x64 = make(**case, dev=dev, dtype=torch.float64)
        ref = fwd_bwd(x64, "reference")
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
            xin = x64 if dtype == torch.float32 else {k: (None if v is None else v.to(dtype).double()) for k, v in x64.items()}
            r = ref if dtype == torch.float32 else fwd_bwd(xin, "reference")
            for chunk in (None, 16):
                got = fwd_bwd(xin, "triton", dtype=dtype, chunk=chunk)
                for k in r:
                    e = rel_err(got[k], r[k])
                    key = f"scan {dtype} {k}"
                    worst[key] = max(worst.get(key, 0.0), e)
                    if e > tol:
                        ok = False
                        print(f"FAIL {case} {dtype} chunk={chunk} {k}: rel err {e:.2e} > {tol}")
    # the benchmark shape itself, forward only (reference in float64 on the device)
    big = make(8, 2048, 4096 if not quick else 1024, 16, dev, torch.float64, z=True)
    with torch.no_grad():
        ref = fwd_bwd(big, "reference", grads=False)
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
            xin = big if dtype == torch.float32 else {k: (None if v is None else v.to(dtype).double()) for k, v in big.items()}
            r = ref if dtype == torch.float32 else fwd_bwd(xin, "reference", grads=False)
            got = fwd_bwd(xin, "triton", dtype=dtype, grads=False)
            for k in ("out", "last"):
                e = rel_err(got[k], r[k])
                worst[f"bench-shape {dtype} {k}"] = e
                if e > tol:
                    ok = False
                    print(f"FAIL benchmark shape {dtype} {k}: rel err {e:.2e}")
    del big, ref
    # WKV kernels: outputs, last states and all gradients against the float64 loops
    g = torch.Generator(device="cpu").manual_seed(3)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dev)

    wkv_cases = {
        "wkv4": (wkv4, [-torch.exp(r(192)), r(192), r(2, 257, 192) * 3, r(2, 257, 192),
                        torch.stack([r(2, 192), r(2, 192).abs() + 0.5, r(2, 192)], 1)]),
        "wkv6": (wkv6, [r(2, 4, 200, 64), r(2, 4, 200, 64), r(2, 4, 200, 64),
                        -torch.exp(r(2, 4, 200, 64)), r(4, 64), r(2, 4, 64, 64)]),
    }
    for name, (fn, xs) in wkv_cases.items():
        res = {}
        for backend, dtype in (("reference", torch.float64), ("triton", torch.float32)):
            ys = [x.to(dtype).clone().requires_grad_() for x in xs]
            out, last = fn(*ys[:-1], initial_state=ys[-1], return_last_state=True,
                           backend=backend)
            gw = torch.Generator(device="cpu").manual_seed(5)
            lo = (out.double() * torch.randn(out.shape, generator=gw, dtype=torch.float64).to(dev)).sum() \
                + (last.double() * torch.randn(last.shape, generator=gw, dtype=torch.float64).to(dev)).sum()
            res[backend] = [out, last] + list(torch.autograd.grad(lo, ys))
        for i, (a, b) in enumerate(zip(res["triton"], res["reference"])):
            e = rel_err(a, b)
            worst[f"{name} tensor {i}"] = e
            if e > 1e-5:
                ok = False
                print(f"FAIL {name} output/grad #{i}: rel err {e:.2e}")
    return ok, worst


def copy_bandwidth(dev):
    import triton.testing as tt

    n = 1 << 28  # 1 GiB of fp32
    src = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    ms = tt.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return 2 * src.numel() * 4 / (ms * 1e-3)  # bytes/s (read + write)


def exp_throughput(dev):
    import triton
    import triton.language as tl
    import triton.testing as tt

    @triton.jit
    def _exp_kernel(x_ptr, out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for _ in range(ITERS):
            x = tl.exp2(x * -0.5)  # stays in (0, 1]: a dependent chain per element
            acc += x
        tl.store(out_ptr + offs, acc)

    n, iters, block = 1 << 24, 256, 1024
    x = torch.rand(n, device=dev)
    out = torch.empty_like(x)
    ms = tt.do_bench(lambda: _exp_kernel[(n // block,)](x, out, ITERS=iters, BLOCK=block),
                     warmup=10, rep=100, return_mode="median")
    return n * iters / (ms * 1e-3)  # exps/s


def timing(dev, bw, exps, quick):
    import triton.testing as tt

    from probkit.neural.ops import _scan_triton, selective_scan

    b, d, L, N = 8, 2048, (4096 if not quick else 1024), 16
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for with_z in (False, True):
            x = make(b, d, L, N, dev, dtype, z=with_z, D=True, bias=True)
            x = {k: v for k, v in x.items() if v is not None}
            el = torch.tensor([], dtype=dtype).element_size()
            io = (3 + with_z) * b * d * L * el + 2 * b * N * L * el
            n_exp = b * d * L * N
            fwd_bound = max(io / bw, n_exp / exps)
            # backward: read u, delta, dy (and z), B, C, chunk states; write du, ddelta (and dz),
            # dB, dC (fp32).  One exp(dt A) per element again (states are recomputed).
            bwd_io = ((5 + 2 * with_z) * b * d * L * el + 2 * b * N * L * el
                      + b * d * (L // 32) * N * 4 + 2 * b * N * L * 4)
            fb_bound = max((io + bwd_io) / bw, 2 * n_exp / exps)

            def fwd():
                with torch.no_grad():
                    return selective_scan(**x, delta_softplus=True, backend="triton")

            xg = {k: v.clone().requires_grad_() for k, v in x.items()}
            gy = torch.randn(b, d, L, device=dev, dtype=dtype)

            def fb():
                y = selective_scan(**xg, delta_softplus=True, backend="triton")
                torch.autograd.grad(y, list(xg.values()), gy)

            best = (None, float("inf"))
            for cfg in [None, (4, 32, 4), (8, 32, 4), (16, 16, 4), (8, 64, 8), (4, 64, 4), (16, 32, 8)]:
                _scan_triton.CONFIG_OVERRIDE["fwd"] = cfg
                try:
                    t = tt.do_bench(fwd, warmup=5, rep=50, return_mode="median")
                except Exception as exc:  # a config that does not compile (registers) is skipped
                    print(f"config {cfg}: {type(exc).__name__}: {exc}"[:200])
                    continue
                if t < best[1]:
                    best = (cfg, t)
            _scan_triton.CONFIG_OVERRIDE["fwd"] = best[0]
            t_fwd = best[1] * 1e3
            t_fb = tt.do_bench(fb, warmup=3, rep=20, return_mode="median") * 1e3

            def cpu_fwd():
                with torch.no_grad():
                    return selective_scan(**x, delta_softplus=True, backend="cpu")

            def cpu_fb():
                y = selective_scan(**xg, delta_softplus=True, backend="cpu")
                torch.autograd.grad(y, list(xg.values()), gy)

            t_cpu = tt.do_bench(cpu_fwd, warmup=1, rep=5, return_mode="median") * 1e3
            t_cpu_fb = tt.do_bench(cpu_fb, warmup=1, rep=3, return_mode="median") * 1e3
            _scan_triton.CONFIG_OVERRIDE["fwd"] = None
            rows.append(dict(dtype=str(dtype).split(".")[-1], z=with_z, best_fwd_config=best[0],
                             fwd_us=t_fwd, fwd_bound_us=fwd_bound * 1e6,
                             fwd_pct_of_bound=100 * fwd_bound * 1e6 / t_fwd,
                             fwdbwd_us=t_fb, fwdbwd_bound_us=fb_bound * 1e6,
                             fwdbwd_pct_of_bound=100 * fb_bound * 1e6 / t_fb,
                             mem_bound_fwd_us=io / bw * 1e6, exp_bound_fwd_us=n_exp / exps * 1e6,
                             bytes_fwd=io, cpu_path_fwd_us=t_cpu, cpu_path_fwdbwd_us=t_cpu_fb,
                             speedup_vs_cpu_path_fwd=t_cpu / t_fwd,
                             speedup_vs_cpu_path_fwdbwd=t_cpu_fb / t_fb))
            del x, xg, gy
            torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller L and fewer cases")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to do (the Triton kernels are tested on CPU by the "
              "normal suite through TRITON_INTERPRET=1)")
        return 2
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"# device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    ok, worst = correctness(dev, args.quick)
    print("## correctness (worst relative error vs float64 reference on device)")
    for k, v in worst.items():
        print(f"- {k}: {v:.2e}")
    if not ok:
        print("CORRECTNESS FAILED: not timing")
        return 1
    bw = copy_bandwidth(dev)
    exps = exp_throughput(dev)
    print(f"## roofline: copy bandwidth {bw / 1e12:.2f} TB/s, exp2 throughput {exps / 1e12:.2f} T/s")
    rows = timing(dev, bw, exps, args.quick)
    print("\n| dtype | z | fwd µs | fwd bound µs (mem / exp) | % of bound | fwd+bwd µs "
          "| fwd+bwd bound µs | % | cpu path fwd µs | speedup fwd | speedup fwd+bwd | config |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['z']} | {r['fwd_us']:.0f} | {r['fwd_bound_us']:.0f} "
              f"({r['mem_bound_fwd_us']:.0f} / {r['exp_bound_fwd_us']:.0f}) | {r['fwd_pct_of_bound']:.0f}% "
              f"| {r['fwdbwd_us']:.0f} | {r['fwdbwd_bound_us']:.0f} | {r['fwdbwd_pct_of_bound']:.0f}% "
              f"| {r['cpu_path_fwd_us']:.0f} | {r['speedup_vs_cpu_path_fwd']:.1f}x "
              f"| {r['speedup_vs_cpu_path_fwdbwd']:.1f}x | {r['best_fwd_config']} |")
    out = dict(device=torch.cuda.get_device_name(dev), copy_bw=bw, exp_rate=exps,
               correctness=worst, timing=rows)
    path = args.json or (os.path.join(os.environ["OUT"], "gpu_ops.json") if os.environ.get("OUT") else None)
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
