"""GPU check and timing of the sequence backbones (one prepared script, ~3-5 min on one GPU).

Run on a machine with a CUDA GPU::

    PYTHONPATH=. python benchmarks/gpu_backbones.py [--quick] [--out report.md]

1. Correctness on the device, for every causal kind (d_model 64, 2 layers, perturbed
   parameters so that no layer starts as the identity):

   * float32: forward and backward finite; for Mamba and RWKV-6 the forward and all
     gradients with ``backend="auto"`` (the Triton kernels) against the same module with
     ``backend="cpu"`` (the chunked torch path, on the GPU); ``step()`` over the sequence
     against the forward;
   * float64 (``auto`` falls back to the torch path): ``step()`` against the forward to 1e-10;
   * bfloat16 autocast forward+backward is finite.

   The script stops with exit code 1 if a check fails.
2. Timing as in ``bench_backbones.py`` (d_model 128, 4 layers, float32, L = 1024): training
   tokens/s (forward, backward, AdamW step) and generation tokens/s (``step()`` loop,
   256 steps) at batch 2 (the CPU benchmark's) and batch 16; milliseconds per ``step()`` after
   T tokens of context.
3. Mamba vs Transformer training throughput at L = 8192 (d_model 256, 4 layers, batch 1;
   float32 and bfloat16 autocast), with peak memory.

Times are medians (CUDA-synchronised) after warm-up runs that also compile the Triton kernels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from probkit.neural import build_backbone, count_parameters, map_state  # noqa: E402

CAUSAL = ["mamba", "rwkv", "mambaout", "transformer", "s4d", "gru", "lstm"]
OP_KINDS = {"mamba", "rwkv"}  # kinds with a `backend` option
FAILURES = []


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check(name, err, tol):
    ok = err <= tol
    print(f"  {'ok ' if ok else 'FAIL'} {name}: {err:.2e} (tol {tol:.0e})")
    if not ok:
        FAILURES.append(name)


def build(kind, d, layers, dev, dtype, backend=None, seed=0):
    torch.manual_seed(seed)
    kw = {"backend": backend} if backend and kind in OP_KINDS else {}
    net = build_backbone(kind, d, layers, **kw).to(dev, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_((0.05 * torch.randn(p.shape, generator=g, dtype=torch.float64)).to(dev, dtype))
    return net


def stepped(net, x):
    state, ys = net.init_state(x.shape[0]), []
    for t in range(x.shape[1]):
        y, state = net.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


def correctness(dev, quick):
    print("## Correctness on", torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev)
    L = 40 if quick else 300
    g = torch.Generator().manual_seed(0)
    x64 = torch.randn(2, L, 64, generator=g, dtype=torch.float64)
    w64 = torch.randn(2, L, 64, generator=g, dtype=torch.float64)
    for kind in CAUSAL:
        print(f"- {kind}")
        x, w = x64.to(dev, torch.float32), w64.to(dev, torch.float32)
        net = build(kind, 64, 2, dev, torch.float32, backend="auto")
        xa = x.clone().requires_grad_()
        ya = net(xa)
        (ya * w).sum().backward()
        finite = bool(torch.isfinite(ya).all()) and all(torch.isfinite(p.grad).all()
                                                        for p in net.parameters())
        check(f"{kind} fp32 forward+backward finite", 0.0 if finite else float("inf"), 0.0)
        if kind in OP_KINDS:  # Triton kernels (auto on CUDA) against the torch path
            ref = build(kind, 64, 2, dev, torch.float32, backend="cpu")
            xr = x.clone().requires_grad_()
            yr = ref(xr)
            (yr * w).sum().backward()
            check(f"{kind} fp32 forward auto vs torch path", rel_err(ya, yr), 1e-4)
            check(f"{kind} fp32 input grad auto vs torch path", rel_err(xa.grad, xr.grad), 1e-3)
            worst = max(rel_err(p.grad, q.grad) for p, q in zip(net.parameters(), ref.parameters()))
            check(f"{kind} fp32 parameter grads auto vs torch path (worst)", worst, 1e-3)
        with torch.no_grad():
            check(f"{kind} fp32 step() vs forward", rel_err(stepped(net, x), ya), 1e-4)
        net64 = build(kind, 64, 2, dev, torch.float64, backend="auto")
        with torch.no_grad():
            check(f"{kind} fp64 step() vs forward", rel_err(stepped(net64, x64.to(dev)), net64(x64.to(dev))), 1e-10)
        if dev.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yb = net(x.clone().requires_grad_())
            yb.float().square().mean().backward()
            finite = torch.isfinite(yb).all() and all(torch.isfinite(p.grad).all() for p in net.parameters())
            check(f"{kind} bf16 autocast forward+backward finite", 0.0 if finite else float("inf"), 0.0)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_rate(kind, d, layers, B, L, dev, repeats, autocast=None, seed=0):
    torch.manual_seed(seed)
    net = build_backbone(kind, d, layers).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(B, L, d, device=dev)
    target = torch.randn(B, L, d, device=dev)

    def one():
        opt.zero_grad(set_to_none=True)
        if autocast is None:
            loss = (net(x) - target).pow(2).mean()
        else:
            with torch.autocast(dev.type, dtype=autocast):
                loss = (net(x).float() - target).pow(2).mean()
        loss.backward()
        opt.step()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t = timed(one, dev, repeats)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")
    return B * L / t, t, peak, count_parameters(net)


def gen_rate(kind, d, layers, B, steps, dev, contexts, ctx_steps, repeats):
    torch.manual_seed(0)
    net = build_backbone(kind, d, layers).to(dev).eval()
    x0 = torch.randn(B, d, device=dev)

    def run(state0, n):
        state, x_t = state0, x0
        for _ in range(n):
            x_t, state = net.step(x_t, state)

    with torch.no_grad():
        t = timed(lambda: run(net.init_state(B), steps), dev, repeats, warmup=1)
        per = {}
        for T in contexts:
            state = net.init_state(B)
            if kind == "transformer":
                state = tuple(tuple(torch.randn(k.shape[0], k.shape[1], T, k.shape[3], device=dev)
                                    for k in s) for s in state)
            else:
                state = map_state(torch.randn_like, state)
            per[T] = 1e3 * timed(lambda: run(state, ctx_steps), dev, repeats, warmup=1) / ctx_steps
    return B * steps / t, per


def timing(dev, quick, out):
    d, layers, L = (32, 2, 128) if quick else (128, 4, 1024)
    steps, contexts = (16, [0, 128]) if quick else (256, [0, 1024, 4096, 16384])
    reps = 1 if quick else 5
    for B in ((2,) if quick else (2, 16)):
        out.append(f"\n### d_model={d}, {layers} layers, float32, L={L}, batch {B}\n")
        out.append("| kind | parameters | training tokens/s | generation tokens/s | "
                   + " | ".join(f"ms/step T={T}" for T in contexts) + " |")
        out.append("|---|---|---|---|" + "---|" * len(contexts))
        for kind in CAUSAL:
            rate, _, _, n = train_rate(kind, d, layers, B, L, dev, reps)
            grate, per = gen_rate(kind, d, layers, B, steps, dev, contexts, 16 if not quick else 2, 3)
            out.append(f"| {kind} | {n:,} | {rate:,.0f} | {grate:,.0f} | "
                       + " | ".join(f"{per[T]:.2f}" for T in contexts) + " |")
            print(out[-1], flush=True)


def long_context(dev, quick, out):
    d, layers, L, B = (32, 2, 256, 1) if quick else (256, 4, 8192, 1)
    out.append(f"\n### Mamba vs Transformer training at L={L} (d_model={d}, {layers} layers, batch {B})\n")
    out.append("| kind | precision | training tokens/s | step time | peak memory MiB |")
    out.append("|---|---|---|---|---|")
    precisions = [("float32", None)]
    if dev.type == "cuda":
        precisions.append(("bf16 autocast", torch.bfloat16))
    for kind in ("mamba", "transformer"):
        for name, ac in precisions:
            rate, t, peak, _ = train_rate(kind, d, layers, B, L, dev, 1 if quick else 5, autocast=ac)
            out.append(f"| {kind} | {name} | {rate:,.0f} | {t * 1e3:.1f} ms | {peak:,.0f} |")
            print(out[-1], flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, e.g. on CPU)")
    ap.add_argument("--out", help="write the markdown tables to this file")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device; pass --device cpu --quick for a smoke run")
    correctness(dev, args.quick)
    out = [f"## Backbones on {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else dev}"
           f" (torch {torch.__version__})"]
    timing(dev, args.quick, out)
    long_context(dev, args.quick, out)
    report = "\n".join(out)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {FAILURES}")
        sys.exit(1)


if __name__ == "__main__":
    main()
