"""CPU benchmark of the selective scan: ``cpu`` path vs a sequential loop vs mambapy.

Problem: batch 2, dim 256, N 16, float32, L in {256, 1024, 4096}; ``dt = softplus(delta)``,
time-varying B and C, D skip (the configuration of mambapy's ``selective_scan``).

* ``loop``     -- ``selective_scan(..., backend="reference")``: one Python step per time index
                 (differentiated by autograd through the loop);
* ``mambapy``  -- ``mambapy.mamba.MambaBlock.selective_scan`` (Blelloch parallel scan over the
                 whole sequence, materialising ``(batch, L, dim, N)`` tensors), inputs given in
                 its ``(batch, L, dim)`` layout, prepared outside the timed region;
* ``cpu``      -- ``selective_scan(..., backend="cpu")``: numba-compiled forward, chunked
                 torch backward whose two recurrences run in numba kernels;
* ``cpu_torch`` -- the same path with the numba kernels switched off (pure torch: chunked
                 forward and backward, as used on non-CPU devices) -- the previous version.

Thread count: ``--threads N`` (default 1) is applied through ``benchmarks/_threads.py``,
imported before numpy and torch: ``OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS`` are set in the
environment of every process and torch's intra-op threads follow, for all three
implementations alike; the header line of the table says so.
Every (implementation, L, mode) runs in its own subprocess with the same thread count,
``--rounds`` times (default 2), the implementations alternating within each round; a
cell is the median over rounds of the per-process medians.
The timed processes run with ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-active`` keeps the default):
on a machine shared with other jobs, OpenMP's spinning barriers made multi-threaded torch
ops up to ~10x slower and erratic (measured here: the ``cpu`` path forward+backward at
L=4096 took 2.7-11 s with spinning waits and 0.37 s with passive waits, 2 threads), and
the loop suffered the same way.
Repeats: at least 3 (5 for ``cpu``), raised to about 2 s worth (at most 31) for fast cases;
the L=4096 loop forward+backward (~30 s) runs once after its warm-up.
Besides wall-clock medians, the process CPU time (all threads, ``time.process_time``) is
recorded: on a shared machine it is less sensitive to other jobs than wall-clock time.
"fwd" is a forward under ``torch.no_grad()``; "fwd+bwd" is a forward with autograd and the
backward of a fixed random linear loss to all of u, delta, A, B, C, D.  Times are medians
of the repeats after one warm-up.  Peak memory is the process's peak resident set size
during the timed runs minus its resident size just before them: the kernel's peak counter
(VmHWM) is reset through /proc/self/clear_refs after the warm-up, and read from
/proc/self/status afterwards (tracemalloc does not see torch's allocations); one-time costs
of the warm-up (loading numba and the compiled kernels, about 100 MB) are thereby left out
for every implementation alike.

Usage::

    python benchmarks/bench_neural_ops_cpu.py                # the full table, 1 thread
    python benchmarks/bench_neural_ops_cpu.py --threads 2    # 2 threads on both sides
    python benchmarks/bench_neural_ops_cpu.py --lengths 256  # quick
    python benchmarks/bench_neural_ops_cpu.py --tune         # chunk-size sweep of the cpu path

mambapy (``pip install mambapy==1.2.0``) is a benchmark-only dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import _threads  # noqa: E402  (first: sets the thread count of all libraries before numpy/torch load)

BATCH, DIM, N = 2, 256, 16


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_inputs(L, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    u = torch.randn(BATCH, DIM, L, generator=g)
    delta = torch.randn(BATCH, DIM, L, generator=g) * 0.5 - 3.0  # dt = softplus(delta) ~ 0.05
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(DIM, 1)  # Mamba's S4D-real init
    B = torch.randn(BATCH, N, L, generator=g)
    C = torch.randn(BATCH, N, L, generator=g)
    D = torch.randn(DIM, generator=g)
    return u, delta, A, B, C, D


def build(impl, L, chunk=None):
    """Return (fn(*tensors) -> y of shape (batch, dim, L), tensors)."""
    import torch.nn.functional as F

    u, delta, A, B, C, D = make_inputs(L)
    if impl == "mambapy":
        from mambapy.mamba import MambaBlock

        x = u.transpose(1, 2).contiguous()
        dl = delta.transpose(1, 2).contiguous()
        Bm, Cm = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()

        def fn(x, dl, A, Bm, Cm, D):
            y = MambaBlock.selective_scan(None, x, F.softplus(dl), A, Bm, Cm, D)
            return y.transpose(1, 2)

        return fn, [x, dl, A, Bm, Cm, D]
    from probkit.neural.ops import selective_scan

    backend = {"loop": "reference", "cpu": "cpu", "cpu_torch": "cpu"}[impl]
    if impl == "cpu_torch":
        from probkit.neural.ops import _scan_cpu

        _scan_cpu.compiled = lambda: None

    def fn(u, delta, A, B, C, D):
        return selective_scan(u, delta, A, B, C, D, delta_softplus=True, backend=backend,
                              chunk_size=chunk)

    return fn, [u, delta, A, B, C, D]


def run_case(impl, L, mode, reps, chunk=None):
    import torch

    _threads.apply()
    fn, xs = build(impl, L, chunk)
    gw = torch.randn(BATCH, DIM, L, generator=torch.Generator().manual_seed(1))

    def once():
        if mode == "fwd":
            with torch.no_grad():
                fn(*xs)
        else:
            ys = [x.detach().requires_grad_() for x in xs]
            y = fn(*ys)
            torch.autograd.grad((y * gw).sum(), ys)

    t0 = time.perf_counter()
    once()  # warm-up (also loads numba and its compiled kernels: excluded from the peak)
    warm = time.perf_counter() - t0
    rss0 = _status_kb("VmRSS")
    ok = _reset_peak()
    if reps > 1:  # fast cases get more repeats (about 2 s worth, at most 31) for a stable median
        reps = max(reps, min(31, int(2.0 / max(warm, 1e-3))))
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        once()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = _status_kb("VmHWM") if ok else None
    return {"impl": impl, "L": L, "mode": mode, "reps": reps, "times": times,
            "median": statistics.median(times), "cpu_median": statistics.median(cpu),
            "peak_mb": None if peak is None else (peak - rss0) / 1024}


OMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
IMPLS = ("loop", "mambapy", "cpu_torch", "cpu")


def subprocess_case(impl, L, mode, reps, chunk=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--case", impl, str(L), mode, str(reps),
           "--threads", str(_threads.THREADS)]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(OMP_ENV)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_agreement(L=256):
    """Max relative difference of every implementation's output from the loop's, one problem."""
    import torch

    outs = {}
    for impl in ("loop", "mambapy", "cpu", "cpu_torch"):
        fn, xs = build(impl, L)
        with torch.no_grad():
            outs[impl] = fn(*xs)
    ref = outs["loop"]
    return {k: float((v - ref).abs().max() / ref.abs().max()) for k, v in outs.items() if k != "loop"}


def reps_for(impl, L, mode):
    if impl == "loop" and mode == "fwd+bwd":
        return 1 if L >= 4096 else (2 if L >= 1024 else 3)
    if impl == "mambapy" and L >= 4096:
        return 3
    return 5 if impl.startswith("cpu") else 3


def fmt_t(s):
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", nargs=4, metavar=("IMPL", "L", "MODE", "REPS"))
    ap.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 4096])
    _threads.add_argument(ap)
    ap.add_argument("--rounds", type=int, default=2,
                    help="subprocess per (implementation, L, mode) this many times, alternating")
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS),
                    help="implementations in the table (default: all)")
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--tune", action="store_true", help="sweep the cpu path's chunk size")
    ap.add_argument("--omp-active", action="store_true",
                    help="keep OpenMP's default (spinning) wait policy in the timed processes")
    args = ap.parse_args()
    if args.omp_active:
        OMP_ENV.clear()
    if args.case:
        impl, L, mode, reps = args.case
        print(json.dumps(run_case(impl, int(L), mode, int(reps), args.chunk)))
        return
    import torch

    _threads.apply()
    print(f"# {_threads.header()}\n# torch {torch.__version__}, batch {BATCH}, dim {DIM}, "
          f"N {N}, float32, env {OMP_ENV or 'default OpenMP wait policy'}, "
          f"{args.rounds} alternating rounds\n")
    if args.tune:
        print("wall-clock medians (process CPU time)\n")
        print("| L | chunk | fwd | fwd+bwd |\n|---|---|---|---|")
        for L in args.lengths:
            for chunk in (16, 32, 64, 128, 256):
                f = subprocess_case("cpu", L, "fwd", 5, chunk)
                fb = subprocess_case("cpu", L, "fwd+bwd", 5, chunk)
                print(f"| {L} | {chunk} | {fmt_t(f['median'])} ({fmt_t(f['cpu_median'])}) "
                      f"| {fmt_t(fb['median'])} ({fmt_t(fb['cpu_median'])}) |", flush=True)
        return
    agree = check_agreement()
    print("max |y - y_loop| / max |y_loop| at L=256: "
          + ", ".join(f"{k} {v:.1e}" for k, v in agree.items()) + "\n")
    print("Wall-clock medians (process CPU-time medians in brackets):\n")
    cols = [k for k in IMPLS if k in args.impls]
    ratios = [(a, p) for a, p in (("cpu", "loop"), ("cpu", "mambapy"), ("cpu_torch", "loop"))
              if a in cols and p in cols]
    print("| " + " | ".join(["L", "mode", *cols, *(f"{a} vs {p}" for a, p in ratios),
                             *(f"peak MB {k}" for k in cols)]) + " |")
    print("|---" * (2 + len(ratios) + 2 * len(cols)) + "|")
    for L in args.lengths:
        for mode in ("fwd", "fwd+bwd"):
            runs = {impl: [] for impl in cols}
            for _ in range(args.rounds):
                for impl in cols:
                    runs[impl].append(subprocess_case(impl, L, mode, reps_for(impl, L, mode)))
            m = {k: statistics.median(x["median"] for x in v) for k, v in runs.items()}
            c = {k: statistics.median(x["cpu_median"] for x in v) for k, v in runs.items()}
            pk = {k: ("n/a" if v[0]["peak_mb"] is None
                      else f"{max(0.0, max(x['peak_mb'] for x in v)):.0f}") for k, v in runs.items()}
            cells = [f"{fmt_t(m[k])} ({fmt_t(c[k])})" for k in cols]
            cells += [f"{m[p] / m[a]:.1f}x ({c[p] / c[a]:.1f}x)" for a, p in ratios]
            cells += [pk[k] for k in cols]
            print(f"| {L} | {mode} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
