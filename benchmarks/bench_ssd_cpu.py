"""CPU benchmark of the SSD scan (Mamba-2): chunked ``cpu`` path vs the plain recurrence.

Problem: batch 2, 4 heads x headdim 64 (= 256 channels), N 64, one B/C group, float32,
``dt = softplus(dt + dt_bias)``, D skip, L in {1024, 4096}.

* ``recurrence`` -- ``ssd(..., backend="reference")``: one Python step of
  ``S_t = exp(dt A) S_{t-1} + dt x B^T`` per time index, differentiated by autograd;
* ``transformers`` -- ``transformers``' pure-torch chunked SSD of ``Mamba2Mixer``'s slow path
  (``modeling_mamba2.mamba2_chunk_scan``, chunk 64, autograd), when transformers is installed;
* ``cpu`` -- ``ssd(..., backend="cpu")`` (chunk 64, hand-written backward).

"fwd" runs under ``torch.no_grad()``; "fwd+bwd" is a forward with autograd and the backward of
a fixed random linear loss to x, dt, A, B, C, D and dt_bias.  The implementations of one
(L, mode) are timed in alternation (one call of each per round, after one warm-up round);
the table gives the medians of wall-clock time and, in brackets, of process CPU time (less
sensitive to other jobs on a shared machine).  The thread count is set through ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` before torch is imported, and with
``torch.set_num_threads``, the same for every implementation, and printed in the header.

Usage::

    python benchmarks/bench_ssd_cpu.py                     # 1 thread, L 1024 and 4096
    python benchmarks/bench_ssd_cpu.py --threads 2 --lengths 4096 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=64)
    return ap.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # before torch is imported
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import torch  # noqa: E402

from probkit.neural.ops import ssd  # noqa: E402

BATCH, HEADS, HEADDIM, N, GROUPS = 2, 4, 64, 64, 1


def make_inputs(L, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, L, HEADS, HEADDIM, generator=g)
    dt = torch.randn(BATCH, L, HEADS, generator=g) * 0.5 - 3.0  # softplus(dt + bias) ~ 0.05
    A = -torch.linspace(1.0, 16.0, HEADS)  # Mamba-2's initial range
    B = torch.randn(BATCH, L, GROUPS, N, generator=g)
    C = torch.randn(BATCH, L, GROUPS, N, generator=g)
    D = torch.randn(HEADS, generator=g)
    dt_bias = torch.randn(HEADS, generator=g) * 0.1
    return [x, dt, A, B, C, D, dt_bias]


def implementations(chunk):
    impls = {
        "recurrence": lambda x, dt, A, B, C, D, bias: ssd(
            x, dt, A, B, C, D=D, dt_bias=bias, dt_softplus=True, backend="reference"),
        "cpu": lambda x, dt, A, B, C, D, bias: ssd(
            x, dt, A, B, C, D=D, dt_bias=bias, dt_softplus=True, backend="cpu", chunk_size=chunk),
    }
    try:
        from transformers.models.mamba2.modeling_mamba2 import mamba2_chunk_scan
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the "falling back to torch" notice
        impls["transformers"] = lambda x, dt, A, B, C, D, bias: mamba2_chunk_scan(
            x, dt, A, B, C, chunk, D=D, dt_bias=bias, dt_softplus=True)
    except ImportError:
        pass
    return impls


def runner(fn, xs, mode, gw):
    if mode == "fwd":
        def once():
            with torch.no_grad():
                fn(*xs)
    else:
        def once():
            ys = [x.detach().requires_grad_() for x in xs]
            torch.autograd.grad((fn(*ys) * gw).sum(), ys)
    return once


def alternate_timed(funcs, repeats):
    """Medians of wall-clock and process CPU time, one call of each function per round."""
    wall = {n: [] for n in funcs}
    cpu = {n: [] for n in funcs}
    for _ in range(repeats):
        for n, f in funcs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    return ({n: statistics.median(v) for n, v in wall.items()},
            {n: statistics.median(v) for n, v in cpu.items()})


def fmt(s):
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def main(args):
    torch.set_num_threads(args.threads)
    impls = implementations(args.chunk)
    names = [n for n in ("recurrence", "transformers", "cpu") if n in impls]
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(OMP/MKL/OPENBLAS_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), batch {BATCH}, "
          f"{HEADS} heads x headdim {HEADDIM}, N {N}, {GROUPS} group, float32, chunk {args.chunk}, "
          f"medians of {args.repeats} alternating repeats\n")
    xs = make_inputs(256)
    with torch.no_grad():
        outs = {n: impls[n](*xs) for n in names}
    ref = outs["recurrence"]
    print("max |y - y_recurrence| / max |y_recurrence| at L=256: "
          + ", ".join(f"{n} {float((outs[n] - ref).abs().max() / ref.abs().max()):.1e}"
                      for n in names if n != "recurrence") + "\n")
    cols = " | ".join(names)
    print(f"| L | mode | {cols} | cpu vs recurrence"
          + (" | cpu vs transformers" if "transformers" in names else "") + " |")
    print("|---|---|" + "---|" * (len(names) + (2 if "transformers" in names else 1)))
    for L in args.lengths:
        xs = make_inputs(L)
        gw = torch.randn(BATCH, L, HEADS, HEADDIM, generator=torch.Generator().manual_seed(1))
        for mode in ("fwd", "fwd+bwd"):
            funcs = {n: runner(impls[n], xs, mode, gw) for n in names}
            for f in funcs.values():  # warm-up round
                f()
            med, cpu = alternate_timed(funcs, args.repeats)
            row = f"| {L} | {mode} | " + " | ".join(f"{fmt(med[n])} ({fmt(cpu[n])})" for n in names)
            row += f" | {med['recurrence'] / med['cpu']:.1f}x ({cpu['recurrence'] / cpu['cpu']:.1f}x)"
            if "transformers" in names:
                row += f" | {med['transformers'] / med['cpu']:.1f}x ({cpu['transformers'] / cpu['cpu']:.1f}x)"
            row += " |"
            print(row, flush=True)


if __name__ == "__main__":
    main(ARGS)
