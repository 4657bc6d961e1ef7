"""CPU benchmark of the sequence backbones of probkit.neural: training and generation speed.

For every causal kind of :func:`probkit.neural.build_backbone` at its default options
(d_model 128, 4 layers: 0.46-0.60 M parameters, printed), float32, batch 2:

* **training tokens/s**: one step = forward on ``(batch, L, d_model)`` random inputs, mean
  squared error to a random target, backward, ``torch.optim.AdamW`` step; ``batch * L``
  tokens per step, L = 1024;
* **generation tokens/s**: ``step()`` called 256 times from ``init_state`` under
  ``torch.no_grad()``, each output fed back as the next input; ``batch * 256`` tokens;
* **generation cost per token vs context length**: milliseconds per ``step()`` call (the
  whole batch) from a state "after T tokens", T in {0, 256, 1024, 4096}.  A recurrent
  state has a fixed size, so a random state of ``init_state``'s shapes stands for any T;
  the transformer's KV cache is filled with T random keys and values per layer (its values
  do not change the cost).

Every kind runs in its own subprocess with the same thread count (2 by default) and
``OMP_WAIT_POLICY=PASSIVE``: on this shared 2-core machine OpenMP's spinning barriers made
multi-threaded torch ops erratic and several times slower (see results_neural_ops.md).
Times are medians of the repeats after one warm-up (training: 5 repeats; generation:
5 runs of 256 steps; context sweep: 5 runs of 16 steps per T).  Process CPU time (all
threads) is recorded too: on a shared machine it is less sensitive to other jobs.
The ops run their ``cpu`` backends (the ``auto`` choice on CPU).

Usage::

    PYTHONPATH=. python benchmarks/bench_backbones.py                       # ~3-5 min
    PYTHONPATH=. python benchmarks/bench_backbones.py --quick               # smoke run
    PYTHONPATH=. python benchmarks/bench_backbones.py --write benchmarks/results_backbones.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

KINDS = ["mamba", "rwkv", "mambaout", "transformer", "s4d", "gru", "lstm"]


def _timed(fn, repeats):
    """Median wall-clock and process-CPU seconds of ``fn()`` over ``repeats`` after a warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _state_at_context(net, batch, T, generator):
    """A state standing for T tokens of context (see the module docstring)."""
    import torch

    from probkit.neural import map_state

    state = net.init_state(batch)
    if net.kind == "transformer":
        return tuple(tuple(torch.randn(k.shape[0], k.shape[1], T, k.shape[3], generator=generator)
                           for k in layer_state) for layer_state in state)
    return map_state(lambda s: torch.randn(s.shape, generator=generator, dtype=s.dtype), state)


def worker(cfg):
    """Measure one kind; returns a JSON-able dict."""
    import torch

    from probkit.neural import build_backbone, count_parameters

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    B, L, d = cfg["batch"], cfg["length"], cfg["d_model"]
    net = build_backbone(cfg["kind"], d, cfg["layers"])
    out = {"kind": cfg["kind"], "params": count_parameters(net)}

    x = torch.randn(B, L, d, generator=g)
    target = torch.randn(B, L, d, generator=g)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = (net(x) - target).pow(2).mean()
        loss.backward()
        opt.step()

    wall, cpu = _timed(train_step, cfg["train_repeats"])
    out["train_s"], out["train_cpu_s"] = wall, cpu
    out["train_tok_s"] = B * L / wall

    net.eval()
    n_gen = cfg["gen_steps"]
    x0 = torch.randn(B, d, generator=g)

    def generate():
        state, x_t = net.init_state(B), x0
        for _ in range(n_gen):
            x_t, state = net.step(x_t, state)

    with torch.no_grad():
        wall, cpu = _timed(generate, cfg["gen_repeats"])
        out["gen_s"], out["gen_cpu_s"] = wall, cpu
        out["gen_tok_s"] = B * n_gen / wall
        per_token = {}
        for T in cfg["contexts"]:
            state0 = _state_at_context(net, B, T, g)

            def steps_from_context():
                state, x_t = state0, x0
                for _ in range(cfg["ctx_steps"]):
                    x_t, state = net.step(x_t, state)

            wall, cpu = _timed(steps_from_context, cfg["gen_repeats"])
            per_token[str(T)] = (1e3 * wall / cfg["ctx_steps"], 1e3 * cpu / cfg["ctx_steps"])
        out["ms_per_step"] = per_token
    return out


def run_kind(kind, cfg, omp_passive=True):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    payload = json.dumps(dict(cfg, kind=kind))
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", payload],
                         capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{kind} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fmt_rate(v):
    return f"{v / 1e3:.1f} k" if v >= 1e4 else f"{v:.0f}"


def tables(results, cfg):
    B, L = cfg["batch"], cfg["length"]
    lines = [
        f"| kind | parameters | training tokens/s (B={B}, L={L}) | step time (CPU time) "
        f"| generation tokens/s (B={B}, {cfg['gen_steps']} steps) | ms per step() (CPU time) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['kind']} | {r['params']:,} | {_fmt_rate(r['train_tok_s'])} "
            f"| {r['train_s'] * 1e3:.0f} ms ({r['train_cpu_s'] * 1e3:.0f} ms) "
            f"| {_fmt_rate(r['gen_tok_s'])} "
            f"| {1e3 * r['gen_s'] / cfg['gen_steps']:.2f} ({1e3 * r['gen_cpu_s'] / cfg['gen_steps']:.2f}) |")
    ctx = cfg["contexts"]
    lines += ["", "Generation: milliseconds per `step()` call (whole batch) after T tokens of context, "
              "wall-clock (process CPU time)",
              "", "| kind | " + " | ".join(f"T={T}" for T in ctx) + " |",
              "|---|" + "---|" * len(ctx)]
    for r in results:
        lines.append(f"| {r['kind']} | " + " | ".join(
            "{:.2f} ({:.2f})".format(*r["ms_per_step"][str(T)]) for T in ctx) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--omp-active", action="store_true",
                    help="keep OpenMP's default (spinning) wait policy in the timed processes")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    ap.add_argument("--write", help="also write the markdown report to this file")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    cfg = dict(threads=args.threads, batch=args.batch, length=args.length, d_model=args.d_model,
               layers=args.layers, train_repeats=5, gen_steps=256, gen_repeats=5, ctx_steps=16,
               contexts=[0, 256, 1024, 4096])
    if args.quick:
        cfg.update(length=64, d_model=32, layers=2, train_repeats=1, gen_steps=8, gen_repeats=1,
                   ctx_steps=2, contexts=[0, 64])
    kinds = args.kinds.split(",")
    results = []
    for kind in kinds:
        t0 = time.perf_counter()
        results.append(run_kind(kind, cfg, omp_passive=not args.omp_active))
        print(f"# {kind}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    head = (f"d_model={cfg['d_model']}, {cfg['layers']} layers, float32, batch {cfg['batch']}, "
            f"{cfg['threads']} torch threads, OMP_WAIT_POLICY="
            f"{'default' if args.omp_active else 'PASSIVE'}; torch "
            f"{__import__('torch').__version__}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.1f}")
    report = head + "\n\n" + tables(results, cfg)
    print(report)
    if args.write:
        command = "PYTHONPATH=. python benchmarks/bench_backbones.py " + " ".join(
            a for a in sys.argv[1:] if not a.startswith("--write") and a != args.write)
        with open(args.write, "w") as f:
            f.write(f"# probkit.neural backbones — CPU benchmark\n\nCommand: `{command.strip()}`\n\n"
                    f"{report}\n")


if __name__ == "__main__":
    main()
