"""CPU benchmark of the RWKV-7 recurrence: chunked ``cpu`` path vs the plain recurrence.

Problem: batch 2, 4 heads x head size 64 (= 256 channels), float32, RWKV-7's inputs
(log-decays in ``(-0.6, 0)``, ``a = -kappa``, ``b = kappa * alpha`` with a unit removal key
``kappa`` and a learning rate ``alpha`` in ``(0, 1)``), L in {1024, 4096}.

* ``recurrence`` -- ``rwkv7(..., backend="reference")``: one Python step of
  ``S <- (diag(e^w) + b a^T) S + k v^T`` per time index, differentiated by autograd;
* ``fla naive`` -- flash-linear-attention's pure-torch ``dplr_recurrence`` (the reference
  loop of its RWKV-7 kernels, autograd), when ``fla`` is installed;
* ``cpu`` -- ``rwkv7(..., backend="cpu")``: the chunked WY form (chunk 32) with its
  hand-written backward.

"fwd" runs under ``torch.no_grad()``; "fwd+bwd" is a forward with autograd and the backward of
a fixed random linear loss to r, w, k, v, a and b.  The implementations of one (L, mode) are
timed in alternation (one call of each per round, after one warm-up round); the table gives
the medians of wall-clock time and, in brackets, of process CPU time (less sensitive to other
jobs on a shared machine).  The thread count is set through ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` before torch is imported, and with
``torch.set_num_threads``, the same for every implementation, and printed in the header.

Usage::

    python benchmarks/bench_rwkv7_cpu.py                      # 1 thread, L 1024 and 4096
    python benchmarks/bench_rwkv7_cpu.py --threads 2 --lengths 4096 --repeats 5 --skip-fla
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--skip-fla", action="store_true", help="leave out flash-linear-attention's naive loop")
    return ap.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # before torch is imported
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_ssd_cpu import alternate_timed, fmt, runner  # noqa: E402
from probkit.neural.ops import rwkv7  # noqa: E402

BATCH, HEADS, HEAD_SIZE = 2, 4, 64


def make_inputs(L, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (BATCH, HEADS, L, HEAD_SIZE)
    r, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
    w = -0.6 * torch.rand(*shape, generator=g)
    kappa = F.normalize(torch.randn(*shape, generator=g), dim=-1)
    alpha = torch.rand(*shape, generator=g)
    return [r, w, k, v, -kappa, kappa * alpha]


def implementations(chunk, with_fla=True):
    impls = {
        "recurrence": lambda r, w, k, v, a, b: rwkv7(r, w, k, v, a, b, backend="reference"),
        "cpu": lambda r, w, k, v, a, b: rwkv7(r, w, k, v, a, b, backend="cpu", chunk_size=chunk),
    }
    if not with_fla:
        return impls
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fla.ops.generalized_delta_rule.dplr.naive import dplr_recurrence
        scale = HEAD_SIZE ** 0.5  # fla scales the queries by K^-1/2; RWKV-7 uses scale 1
        impls["fla naive"] = lambda r, w, k, v, a, b: dplr_recurrence(
            r * scale, k, v, a, b, w, output_final_state=False)[0]
    except Exception:  # noqa: BLE001 - fla missing or not importable on this machine
        pass
    return impls


def main(args):
    torch.set_num_threads(args.threads)
    impls = implementations(args.chunk, with_fla=not args.skip_fla)
    names = [n for n in ("recurrence", "fla naive", "cpu") if n in impls]
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(OMP/MKL/OPENBLAS_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), batch {BATCH}, "
          f"{HEADS} heads x head size {HEAD_SIZE}, float32, chunk {args.chunk}, "
          f"medians of {args.repeats} alternating repeats\n")
    xs = make_inputs(256)
    with torch.no_grad():
        outs = {n: impls[n](*xs) for n in names}
    ref = outs["recurrence"]
    print("max |o - o_recurrence| / max |o_recurrence| at L=256: "
          + ", ".join(f"{n} {float((outs[n] - ref).abs().max() / ref.abs().max()):.1e}"
                      for n in names if n != "recurrence") + "\n")
    has_fla = "fla naive" in names
    print(f"| L | mode | {' | '.join(names)} | cpu vs recurrence"
          + (" | cpu vs fla naive" if has_fla else "") + " |")
    print("|---|---|" + "---|" * (len(names) + (2 if has_fla else 1)))
    for L in args.lengths:
        xs = make_inputs(L)
        gw = torch.randn(BATCH, HEADS, L, HEAD_SIZE, generator=torch.Generator().manual_seed(1))
        for mode in ("fwd", "fwd+bwd"):
            funcs = {n: runner(impls[n], xs, mode, gw) for n in names}
            for f in funcs.values():  # warm-up round
                f()
            med, cpu = alternate_timed(funcs, args.repeats)
            row = f"| {L} | {mode} | " + " | ".join(f"{fmt(med[n])} ({fmt(cpu[n])})" for n in names)
            row += f" | {med['recurrence'] / med['cpu']:.1f}x ({cpu['recurrence'] / cpu['cpu']:.1f}x)"
            if has_fla:
                row += f" | {med['fla naive'] / med['cpu']:.1f}x ({cpu['fla naive'] / cpu['cpu']:.1f}x)"
            print(row + " |", flush=True)


if __name__ == "__main__":
    main(ARGS)
