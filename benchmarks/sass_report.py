"""Static Hopper (sm_90a) analysis of the Triton kernels, with a roofline projection; no GPU.

    PYTHONPATH=. python benchmarks/sass_report.py [--all] [--all-configs] [--only TEXT]

Kernels: the selective scan (forward, forward with checkpoints, backward), RWKV-4 and
RWKV-6 (forward, forward with saved states, backward; RWKV-6's chunked forward and chunked
backward as well) and the SSD of Mamba-2 (three forward
and four or five backward launches).  Each host wrapper is called with ``meta``-device
tensors of the benchmark shapes (``benchmarks/_kernel_model.py``: nothing is allocated or
run) and its launches are captured, given the specialisation Triton's JIT would give the
arguments (16-byte alignment, divisibility by 16, unit values), and compiled offline for
``GPUTarget("cuda", 90, 32)``.  ``ptxas -v`` (the one bundled with Triton) reports registers
and spills; ``nvdisasm`` gives the SASS.  In a kernel with a loop the hottest loop (the
backward branch spanning the most code) is counted once per iteration, nested loops times
their trip counts; a straight-line kernel (the SSD chunk kernels) is counted whole.  Counts
are per element (the ``unit`` column) processed by one thread: all instructions, warp
shuffles (SHFL), shared-memory instructions (LDS/STS/LDSM/STSM/shared atomics), barriers
(BAR), MUFU (exp2/log2/rcp), tensor-core instructions (MMA: HMMA/HGMMA/DMMA, one
instruction per warp or warpgroup tile product, counted like the others), global memory
instructions; "spill B" is ptxas's spill bytes.

Roofline projection of each launch on an H200 (132 SMs at 1.98 GHz, 4.8 TB/s):
``max(memory, issue, MUFU)`` with memory = bytes / 4.8 TB/s (the compulsory-traffic count of
``_kernel_model``), issue = instructions x elements / (132 x 4 x 32 per clock), MUFU = MUFU
instructions x elements / (132 x 16 per clock).  Latency, occupancy and memory stalls are
not modelled: the projection is what the instruction stream and the traffic allow at best,
and ``benchmarks/gpu_ops.py`` measures on a device how close the kernels get.

By default one launch configuration per kernel (``REPORT_CONFIG``; the autotuner picks
among ``--all-configs`` on the device) and the variants without ``z`` (``--all``: with
``z``, and the SSD in bf16, too).  Writes ``benchmarks/results_sass.md`` and
``benchmarks/results_sass.json`` (read by ``gpu_ops.py`` for its projected column).
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
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from triton.backends.compiler import BaseBackend, GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import _kernel_model as M  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
# the launch configuration reported per autotuned kernel (log2 warps, stages)
REPORT_CONFIG = {"scan fwd": dict(LOGW=1, num_stages=1), "scan bwd": dict(LOGW=1, num_stages=1)}
TARGETS = {  # per-element budgets from the design notes (None: no target)
    "scan fwd": dict(instr=15, comm=1.0),
    "scan bwd": dict(instr=45, comm=None),
}


# --------------------------------------------------------------------------- compile


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
    if op in ("HMMA", "HGMMA", "DMMA", "IMMA", "IGMMA", "QGMMA"):
        return "mma"
    if op in ("LDG", "STG", "RED", "REDG", "ATOMG", "ATOM", "LDGSTS", "UBLKCP", "UTMALDG"):
        return "gmem"
    if op in ("LDL", "STL"):
        return "local"
    return None


def loop_counts(text, inner_trips=(1,)):
    """Dynamic instruction counts of one iteration of the main loop.

    The main loop is the backward branch spanning the most code.  A loop nested ``k`` levels
    inside it runs ``inner_trips[k - 1]`` times per iteration of its parent (averages when
    the trip count varies); a tuple there gives the trips of the sibling loops of that level
    in code order.  Returns ``(instructions, Counter by kind, Counter by opcode)``.
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
    inner = sorted((a, b) for a, b in spans if lo <= a and b <= hi and (a, b) != (lo, hi))
    trips, seen = {}, collections.Counter()
    for a, b in inner:
        level = sum(1 for c, d in inner if c <= a and b <= d) - 1  # loops around it
        t = inner_trips[min(level, len(inner_trips) - 1)]
        trips[a, b] = t[seen[level] % len(t)] if isinstance(t, tuple) else t
        seen[level] += 1
    kinds, ops, total = collections.Counter(), collections.Counter(), 0.0
    for addr, op, mods, args in ins:
        if not lo <= addr <= hi:
            continue
        w = 1.0
        for a, b in inner:
            if a <= addr <= b:
                w *= trips[a, b]
        total += w
        ops[op] += w
        k = _kind(op, mods)
        if k:
            kinds[k] += w
    return total, kinds, ops




def whole_counts(text):
    """Instruction counts of a straight-line kernel, every instruction once."""
    ins, _ = parse_sass(text)
    kinds, ops = collections.Counter(), collections.Counter()
    for addr, op, mods, args in ins:
        if op == "NOP":  # alignment padding
            continue
        ops[op] += 1
        k = _kind(op, mods)
        if k:
            kinds[k] += 1
    return sum(ops.values()), kinds, ops


# --------------------------------------------------------------------------- cases


def launches(everything):
    """(pass name, [Launch]) pairs; a pass is what one call of the op runs."""
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        for with_z in ((False, True) if everything else (False,)):
            p = M.scan_launches(dtype, with_z)
            out.append((f"scan fwd {M.pass_variant(dtype, with_z)}", p["fwd"]))
            out.append((f"scan fwd+bwd {M.pass_variant(dtype, with_z)}",
                        p["fwd train"] + p["bwd"]))
    for fn in (M.wkv4_launches, M.wkv6_launches):
        p = fn()
        name = p["fwd"][0].op.split()[0]
        out.append((f"{name} fwd {M.pass_variant(torch.float32, False)}", p["fwd"]))
        out.append((f"{name} fwd+bwd {M.pass_variant(torch.float32, False)}",
                    p["fwd train"] + p["bwd"]))
    chunked, chunked_bwd = M.wkv6_chunked_launches(), M.wkv6_chunked_bwd_launches()
    out.append((f"wkv6 chunked fwd {M.pass_variant(torch.float32, False)}", chunked["fwd"]))
    out.append((f"wkv6 chunked fwd+bwd {M.pass_variant(torch.float32, False)}",
                chunked_bwd["fwd train"] + chunked_bwd["bwd"]))
    for dtype in ((torch.float32, torch.bfloat16) if everything else (torch.float32,)):
        p = M.ssd_launches(dtype, with_z=True)
        out.append((f"ssd fwd {M.pass_variant(dtype, True)}", p["fwd"]))
        out.append((f"ssd fwd+bwd {M.pass_variant(dtype, True)}", p["fwd"] + p["bwd"]))
    return out


def configs_of(ln, all_configs):
    if all_configs or ln.op not in REPORT_CONFIG:
        return ln.configs
    want = REPORT_CONFIG[ln.op]
    return [c for c in ln.configs if c.kwargs.get("LOGW") == want["LOGW"]
            and c.num_stages == want["num_stages"]] or ln.configs[:1]


# --------------------------------------------------------------------------- report


def analyse(ln, cfg):
    t0 = time.time()
    k = compile_call(ln.kernel, ln.args, ln.meta, cfg)
    regs, spill_st, spill_ld = ptxas_resources(k)
    sass = disassemble(k)
    n, kinds, ops = whole_counts(sass) if ln.straight else loop_counts(sass, ln.inner_trips)
    m = dict(ln.meta)
    m.update(cfg.kwargs)
    el = ln.per_thread(m, cfg)
    row = dict(
        op=ln.op, variant=ln.variant, config=", ".join(f"{a}={b}" for a, b in cfg.kwargs.items())
        + (", " if cfg.kwargs else "") + f"warps={cfg.num_warps}, stages={cfg.num_stages}",
        regs=regs, spill=spill_st + spill_ld, unit=ln.unit, per_thread=el, instr=n / el,
        shfl=kinds["shfl"] / el, smem=kinds["smem"] / el, bar=kinds["bar"] / el,
        mufu=kinds["mufu"] / el, mma=kinds["mma"] / el, gmem=kinds["gmem"] / el, local=kinds["local"] / el,
        top=", ".join(f"{o} {c / el:.2f}" for o, c in ops.most_common(6)),
        elements=ln.elements, bytes=ln.bytes, bytes_per_el=ln.bytes / ln.elements)
    clk = M.H200_CLOCK * M.H200_SMS
    row["mem_us"] = M.memory_bound_s(ln.bytes) * 1e6
    row["issue_us"] = row["instr"] * ln.elements / (clk * M.ISSUE_PER_CLK_SM) * 1e6
    row["mufu_us"] = row["mufu"] * ln.elements / (clk * M.EXP_PER_CLK_SM) * 1e6
    row["proj_us"] = max(row["mem_us"], row["issue_us"], row["mufu_us"])
    row["bound"] = max(("memory", row["mem_us"]), ("issue", row["issue_us"]),
                       ("MUFU", row["mufu_us"]), key=lambda x: x[1])[0]
    row["compile_s"] = time.time() - t0
    print(f"  {ln.op} / {ln.variant} / {row['config']}: {row['compile_s']:.0f} s",
          file=sys.stderr, flush=True)
    return row


def verdict(r):
    t = TARGETS.get(r["op"])
    if t is None:
        return ""
    ok = r["instr"] <= t["instr"] and r["spill"] == 0
    if t["comm"] is not None:
        ok = ok and r["shfl"] + r["smem"] <= t["comm"]
    return "yes" if ok else "**no**"


def markdown_table(columns, rows):
    """A markdown table: ``columns`` are (title, function of a row giving the cell text)."""
    lines = ["| " + " | ".join(t for t, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f(r) for _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def _col(key, fmt="{}"):
    return lambda r: fmt.format(r[key])


KERNEL_COLUMNS = [
    ("op", _col("op")), ("variant", _col("variant")), ("config", _col("config")),
    ("regs", _col("regs")), ("spill B", _col("spill")), ("unit", _col("unit")),
    ("per thread/iter", _col("per_thread", "{:g}")), ("instr", _col("instr", "{:.2f}")),
    ("SHFL", _col("shfl", "{:.2f}")), ("shared", _col("smem", "{:.2f}")),
    ("BAR", _col("bar", "{:.3f}")), ("MUFU", _col("mufu", "{:.2f}")),
    ("MMA", lambda r: f"{r.get('mma', 0):.3f}"),
    ("global", _col("gmem", "{:.2f}")), ("target met", verdict),
    ("top opcodes per element", _col("top"))]
ROOFLINE_COLUMNS = [
    ("op", _col("op")), ("variant", _col("variant")), ("config", _col("config")),
    ("bytes/element", _col("bytes_per_el", "{:.3f}")),
    ("MB moved", lambda r: f"{r['bytes'] / 1e6:.0f}"), ("memory µs", _col("mem_us", "{:.0f}")),
    ("issue µs", _col("issue_us", "{:.0f}")), ("MUFU µs", _col("mufu_us", "{:.0f}")),
    ("projected µs", _col("proj_us", "{:.0f}")), ("bound by", _col("bound"))]
PASS_COLUMNS = [
    ("pass", _col("name")), ("launches", _col("launches")),
    ("MB moved", lambda p: f"{p['bytes'] / 1e6:.0f}"),
    ("memory bound µs (4.8 TB/s)", _col("mem_us", "{:.0f}")),
    ("projected µs", _col("proj_us", "{:.0f}")),
    ("projected / memory bound", lambda p: f"{p['proj_us'] / p['mem_us']:.2f}")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results_sass.md"),
                    help="markdown file to write ('-' for none)")
    ap.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results_sass.json"),
                    help="JSON file of the rows ('-' for none); gpu_ops.py reads it for its "
                         "projections")
    ap.add_argument("--only", default=None, help="substring of the pass name to keep")
    ap.add_argument("--all", action="store_true", help="every variant (z, bf16 SSD) too")
    ap.add_argument("--all-configs", action="store_true",
                    help="every configuration of the autotuned kernels")
    args = ap.parse_args()
    rows, passes, done = [], {}, {}
    for name, lns in launches(args.all):
        if args.only and args.only not in name:
            continue
        best = []
        for ln in lns:
            key = (ln.op, ln.variant)
            if key not in done:  # a launch shared by two passes is compiled once
                done[key] = [analyse(ln, c) for c in configs_of(ln, args.all_configs)]
                rows += done[key]
            best.append(min(done[key], key=lambda r: r["proj_us"]))
        passes[name] = dict(launches=len(lns), bytes=sum(b["bytes"] for b in best),
                            mem_us=sum(b["mem_us"] for b in best),
                            proj_us=sum(b["proj_us"] for b in best))
    ptxas = subprocess.run([_tool("ptxas"), "--version"], capture_output=True,
                           text=True).stdout.strip().splitlines()[-1]
    header = (f"Triton {triton.__version__}, target sm_90a, {ptxas}.  Shapes: selective scan "
              "B=8, L=4096, dim=2048, N=16 (D, delta_bias, softplus); RWKV-4 B=8, L=4096, "
              "C=2048; RWKV-6 B=8, H=32, L=4096, K=V=64; SSD B=8, L=4096, 32 heads x "
              "headdim 64, N=64, one group (D, z, dt_bias, softplus).")
    text = ("### Per kernel: registers, spills, instructions per element\n\n"
            + markdown_table(KERNEL_COLUMNS, rows)
            + "\n\n### Per kernel: traffic and roofline (H200)\n\n"
            + markdown_table(ROOFLINE_COLUMNS, rows)
            + "\n\n### Per pass: projected time at the roofline\n\n"
            + markdown_table(PASS_COLUMNS, [dict(p, name=n) for n, p in passes.items()]))
    print(header)
    print(text)
    if args.json != "-":
        import json

        with open(args.json, "w") as f:
            json.dump(dict(triton=triton.__version__, ptxas=ptxas, rows=rows, passes=passes),
                      f, indent=1)
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
