"""Static Hopper (sm_90a) analysis of every shipped Triton kernel configuration; no GPU needed.

    PYTHONPATH=. python benchmarks/sass_report.py [--out benchmarks/results_sass.md]

Each kernel is launched through its own host wrapper with ``meta``-device tensors of the
benchmark shapes (nothing is allocated or run): the wrapper's arguments are captured, given
the specialisation Triton's JIT would give them (16-byte alignment, divisibility by 16,
unit values), and compiled offline for ``GPUTarget("cuda", 90, 32)`` once per configuration
of the kernel's autotuner.  ``ptxas`` (the one bundled with Triton) reports registers and
spills; ``nvdisasm`` gives the SASS, in which the hottest loop (the backward branch with the
largest body) is located.  Its instructions are counted per element processed by one thread
in one iteration, where an element is one ``(batch, channel, step, state)`` update for the
selective scan, one ``(batch, channel, step)`` step for RWKV-4 and one
``(batch, head, step, k, v)`` state entry for RWKV-6.  Columns: all instructions, warp
shuffles (SHFL), shared-memory instructions (LDS/STS/LDSM/STSM/atomics on shared), barriers
(BAR), MUFU (exp2/log2/rcp), global memory instructions, local-memory (spill) traffic.

The loop body is counted once per iteration; branches inside it (predicated stores of the
last partial tile are outside it) count as executed.  Static counts say nothing about
memory stalls: timings come from ``benchmarks/gpu_ops.py`` on a device.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, without the warning
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from triton.backends.compiler import BaseBackend, GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
TARGETS = {  # per-element budgets from the design notes (None: no target)
    "scan fwd": dict(instr=15, comm=1.0),
    "scan bwd": dict(instr=45, comm=None),
}


# --------------------------------------------------------------------------- capture


class _Recorder:
    """Stands in for a launcher: ``rec[grid](*args, **meta)`` stores the call."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((args, meta))


def capture(module, names, host_call):
    """Run ``host_call()`` with the launchers ``module.<names>`` replaced by recorders."""
    saved = {n: getattr(module, n) for n in names}
    recs = {n: _Recorder() for n in names}
    try:
        for n in names:
            setattr(module, n, recs[n])
        host_call()
    finally:
        for n, v in saved.items():
            setattr(module, n, v)
    return {n: r.calls for n, r in recs.items()}


def _specialise(arg, specialize, align):
    try:
        from triton._C.libtriton import native_specialize_impl

        return native_specialize_impl(BaseBackend, arg, False, specialize, align)
    except ImportError:  # pragma: no cover - older Triton: the same rules by hand
        if isinstance(arg, torch.Tensor):
            return "*" + {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16",
                          torch.float64: "fp64"}[arg.dtype], "D"
        if specialize and arg == 1:
            return "constexpr", 1
        return ("i64" if abs(arg) >= 2 ** 31 else "i32"), ("D" if arg % 16 == 0 else "")


def compile_call(kernel, args, meta, config):
    """Compile one captured launch of the @triton.jit ``kernel`` under ``config``."""
    names = kernel.arg_names
    no_spec = set(kernel.do_not_specialize or ())
    consts = dict(meta)
    consts.update(config.kwargs)
    sig, attrs, constexprs = {}, {}, {}
    runtime = [n for n in names if n not in consts]
    for i, n in enumerate(names):
        if n in consts:
            sig[n] = "constexpr"
            constexprs[n] = consts[n]
            continue
        value = args[runtime.index(n)]
        ty, spec = _specialise(value, n not in no_spec and names.index(n) not in no_spec, True)
        if ty == "constexpr":
            sig[n] = "constexpr"
            constexprs[n] = spec
            continue
        sig[n] = ty
        if spec:
            attrs[(i,)] = BaseBackend.parse_attr(spec)
    src = ASTSource(fn=kernel, signature=sig, constexprs=constexprs, attrs=attrs)
    opts = dict(num_warps=config.num_warps, num_stages=config.num_stages)
    return triton.compile(src, target=TARGET, options=opts)


# --------------------------------------------------------------------------- tools


def _tool(name):
    from triton.backends.nvidia.compiler import get_ptxas

    if name == "ptxas":
        return get_ptxas(TARGET.arch).path
    return os.path.join(os.path.dirname(get_ptxas(TARGET.arch).path), name)


def ptxas_resources(kernel):
    """(registers, spill-store bytes, spill-load bytes) reported by ``ptxas -v``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(kernel.asm["ptx"])
        out = subprocess.run([_tool("ptxas"), "-v", "--regAllocOptLevel=2",
                              f"--gpu-name=sm_{TARGET.arch}a", src, "-o",
                              os.path.join(tmp, "k.o")], capture_output=True, text=True)
    log = out.stderr + out.stdout
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return regs, int(spill.group(1)), int(spill.group(2))


def disassemble(kernel):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(kernel.asm["cubin"])
        out = subprocess.run([_tool("nvdisasm"), "-c", path], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return out.stdout


_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)([.A-Z0-9_]*)\s*([^;]*);")
_LBL = re.compile(r"^\s*(\.L_x_\d+):")


def parse_sass(text):
    ins, labels, pending = [], {}, []
    for line in text.splitlines():
        m = _LBL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INS.search(line)
        if m:
            addr = int(m.group(1), 16)
            for p in pending:
                labels[p] = addr
            pending = []
            ins.append((addr, m.group(2), m.group(3), m.group(4)))
    return ins, labels


def _kind(op, mods):
    if op == "SHFL":
        return "shfl"
    if op in ("LDS", "STS", "LDSM", "STSM", "ATOMS", "REDS"):
        return "smem"
    if op in ("BAR", "BARRIER"):
        return "bar"
    if op == "MUFU":
        return "mufu"
    if op in ("LDG", "STG", "RED", "REDG", "ATOMG", "ATOM", "LDGSTS", "UBLKCP", "UTMALDG"):
        return "gmem"
    if op in ("LDL", "STL"):
        return "local"
    return None


def loop_counts(text, inner_trips=(1,)):
    """Dynamic instruction counts of one iteration of the main loop.

    The main loop is the backward branch spanning the most code.  A loop nested ``k`` levels
    inside it runs ``inner_trips[k - 1]`` times per iteration of its parent (averages when
    the trip count varies).  Returns ``(instructions, Counter by kind, Counter by opcode)``.
    """
    ins, labels = parse_sass(text)
    spans = []
    for addr, op, mods, args in ins:
        if op != "BRA":
            continue
        m = re.search(r"(\.L_x_\d+)", args)
        if m and labels.get(m.group(1), addr + 1) <= addr:
            spans.append((labels[m.group(1)], addr))
    if not spans:
        raise RuntimeError("no loop found in the SASS")
    lo, hi = max(spans, key=lambda s: s[1] - s[0])
    inner = [(a, b) for a, b in spans if lo <= a and b <= hi and (a, b) != (lo, hi)]
    kinds, ops, total = collections.Counter(), collections.Counter(), 0.0
    for addr, op, mods, args in ins:
        if not lo <= addr <= hi:
            continue
        depth = sum(1 for a, b in inner if a <= addr <= b)
        w = 1.0
        for k in range(depth):
            w *= inner_trips[min(k, len(inner_trips) - 1)]
        total += w
        ops[op] += w
        k = _kind(op, mods)
        if k:
            kinds[k] += w
    return total, kinds, ops


# --------------------------------------------------------------------------- cases


def _meta(shape, dtype):
    return torch.empty(shape, dtype=dtype, device="meta")


def scan_cases():
    from probkit.neural.ops import _scan_triton as S

    b, d, L, N = 8, 2048, 4096, 16
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        dn = "fp32" if dtype == torch.float32 else "bf16"
        u, delta, z = (_meta((b, d, L), dtype) for _ in range(3))
        A = _meta((d, N), torch.float32)
        B, C = _meta((b, N, L), dtype), _meta((b, N, L), dtype)
        D, bias = _meta((d,), torch.float32), _meta((d,), torch.float32)
        for with_z, ckpt in ((False, False), (False, True), (True, True)):
            zz = z if with_z else None
            calls = capture(S, ["_fwd"], lambda: S.scan_fwd(
                u, delta, A, B, C, D, zz, bias, True, None, None, save_for_backward=ckpt))
            args, meta = calls["_fwd"][0]
            what = ("z" if with_z else "no z") + (", checkpoints" if ckpt else ", inference")
            out.append(("scan fwd", f"{dn}, {what}", S._scan_fwd_kernel, S._fwd.configs, args,
                        meta, lambda m, c: m["TT"] * m["N"], (1,)))
            if ckpt:
                CK = meta["CK"]
                ck = _meta((b, triton.cdiv(L, CK), d, N), torch.float32)
                calls = capture(S, ["_bwd"], lambda: S.scan_bwd(
                    u, None, u, delta, A, B, C, D, zz, bias, True, ck, CK, need_h0_grad=False))
                args, meta = calls["_bwd"][0]
                out.append(("scan bwd", f"{dn}, {'z' if with_z else 'no z'}", S._scan_bwd_kernel,
                            S._bwd.configs, args, meta, lambda m, c: m["TT"] * m["N"],
                            (triton.cdiv(N, 2),)))
    return out


def wkv_cases():
    from probkit.neural.ops import _wkv_triton as W

    out = []
    plain = triton.Config({}, num_warps=4, num_stages=3)  # Triton's launch defaults

    def threads(c):
        return 32 * c.num_warps

    # RWKV-4: one (batch, step, channel) per thread and step
    b, L, C = 8, 4096, 2048
    w, u = _meta((C,), torch.float32), _meta((C,), torch.float32)
    k, v = _meta((b, L, C), torch.float32), _meta((b, L, C), torch.float32)
    for hist in (False, True):
        calls = capture(W, ["_wkv4_fwd_kernel"], lambda: W.wkv4_fwd(w, u, k, v, None, hist))
        args, meta = calls["_wkv4_fwd_kernel"][0]
        out.append(("wkv4 fwd", "fp32, state history" if hist else "fp32, inference",
                    W._wkv4_fwd_kernel, [plain], args, meta,
                    lambda m, c: m["BLOCK_C"] / threads(c), (1,)))
    hist = _meta((b, L, 3, C), torch.float32)
    calls = capture(W, ["_wkv4_bwd_kernel"], lambda: W.wkv4_bwd(w, u, k, v, k, hist, k, None))
    args, meta = calls["_wkv4_bwd_kernel"][0]
    out.append(("wkv4 bwd", "fp32", W._wkv4_bwd_kernel, [plain], args, meta,
                lambda m, c: m["BLOCK_C"] / threads(c), (1,)))
    # RWKV-6: one (batch, head, step, k, v) state entry per thread and step
    b, H, L, K = 8, 32, 4096, 64
    r, kk, vv, ww = (_meta((b, H, L, K), torch.float32) for _ in range(4))
    uu = _meta((H, K), torch.float32)
    for ck in (False, True):
        calls = capture(W, ["_wkv6_fwd_kernel"],
                        lambda: W.wkv6_fwd(r, kk, vv, ww, uu, None, save_chunks=ck))
        args, meta = calls["_wkv6_fwd_kernel"][0]
        out.append(("wkv6 fwd", "fp32, chunk states" if ck else "fp32, inference",
                    W._wkv6_fwd_kernel, [plain], args, meta,
                    lambda m, c: m["KP"] * m["BLOCK_V"] / threads(c), (1,)))
    sub, nsub = W._wkv6_chunks(L)
    ckm = _meta((b, H, triton.cdiv(L, sub * nsub), K, K), torch.float32)
    calls = capture(W, ["_wkv6_bwd_kernel"],
                    lambda: W.wkv6_bwd(r, kk, vv, ww, uu, ckm, vv, None))
    args, meta = calls["_wkv6_bwd_kernel"][0]
    # per chunk: NSUB sub-chunks, each re-stepping on average (NSUB - 1) / 2 sub-chunks
    out.append(("wkv6 bwd", "fp32", W._wkv6_bwd_kernel, [plain], args, meta,
                lambda m, c: m["SUB"] * m["NSUB"] * m["KP"] * m["BLOCK_V"] / threads(c),
                (nsub, (nsub - 1) / 2 * sub)))
    return out


def all_cases():
    return scan_cases() + wkv_cases()


# --------------------------------------------------------------------------- report


def analyse(case):
    op, variant, kernel, configs, args, meta, per_thread, inner_trips = case
    rows = []
    for cfg in configs:
        t0 = time.time()
        k = compile_call(kernel, args, meta, cfg)
        regs, spill_st, spill_ld = ptxas_resources(k)
        n, kinds, ops = loop_counts(disassemble(k), inner_trips)
        m = dict(meta)
        m.update(cfg.kwargs)
        el = per_thread(m, cfg)
        rows.append(dict(
            op=op, variant=variant, config=", ".join(f"{k}={v}" for k, v in cfg.kwargs.items())
            + f", warps={cfg.num_warps}, stages={cfg.num_stages}", regs=regs,
            spill=spill_st + spill_ld, elements=el, instr=n / el,
            shfl=kinds["shfl"] / el, smem=kinds["smem"] / el, bar=kinds["bar"] / el,
            mufu=kinds["mufu"] / el, gmem=kinds["gmem"] / el, local=kinds["local"] / el,
            top=", ".join(f"{o} {c / el:.2f}" for o, c in ops.most_common(6)),
            compile_s=time.time() - t0))
        print(f"  {op} / {variant} / {rows[-1]['config']}: {time.time() - t0:.0f} s",
              file=sys.stderr)
    return rows


def verdict(r):
    t = TARGETS.get(r["op"])
    if t is None:
        return ""
    ok = r["instr"] <= t["instr"] and r["spill"] == 0
    if t["comm"] is not None:
        ok = ok and r["shfl"] + r["smem"] <= t["comm"]
    return "yes" if ok else "**no**"


def table(rows):
    head = ("| op | variant | config | regs | spill B | elem/thread/iter | instr/elem | SHFL | "
            "shared | BAR | MUFU | global | target met | top opcodes per element |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['variant']} | {r['config']} | {r['regs']} | {r['spill']} | "
            f"{r['elements']:g} | {r['instr']:.2f} | {r['shfl']:.2f} | {r['smem']:.2f} | "
            f"{r['bar']:.3f} | {r['mufu']:.2f} | {r['gmem']:.2f} | {verdict(r)} | {r['top']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results_sass.md"),
                    help="markdown file to write ('-' for none)")
    ap.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results_sass.json"),
                    help="JSON file of the rows ('-' for none); gpu_ops.py reads it for its "
                         "projections")
    ap.add_argument("--only", default=None, help="substring of 'op variant' to keep")
    args = ap.parse_args()
    rows = []
    for case in all_cases():
        if args.only and args.only not in f"{case[0]} {case[1]}":
            continue
        rows += analyse(case)
        print(f"compiled {case[0]} / {case[1]}", file=sys.stderr)
    ptxas = subprocess.run([_tool("ptxas"), "--version"], capture_output=True,
                           text=True).stdout.strip().splitlines()[-1]
    header = (f"Triton {triton.__version__}, target sm_90a, {ptxas}; shapes: selective scan "
              "B=8, L=4096, dim=2048, N=16; RWKV-4 B=8, L=4096, C=2048; RWKV-6 B=8, H=32, "
              "L=4096, K=V=64.")
    text = table(rows)
    print(header)
    print(text)
    if args.json != "-":
        import json

        with open(args.json, "w") as f:
            json.dump(dict(triton=triton.__version__, ptxas=ptxas, rows=rows), f, indent=1)
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write("# Static sm_90a analysis of the Triton kernels\n\n")
            f.write("Generated by `PYTHONPATH=. python benchmarks/sass_report.py` (no GPU "
                    "needed; see the script's docstring for the method).\n\n")
            f.write(header + "\n\n")
            f.write("Targets: scan forward <= 15 instructions and <= 1 shuffle + shared-memory "
                    "instruction per element, scan backward <= 45 instructions, no spills.\n\n")
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
