"""Static sm_90a report of the SSD Triton kernels (no GPU needed).

Each kernel of ``probkit.neural.ops._ssd_triton`` is compiled offline for an H100/H200
(``GPUTarget("cuda", 90, 32)``, i.e. ``sm_90a``) at the shapes of a Mamba-2 layer
(headdim 64, state 64, all options on), and the cubin is read back with the CUDA tools that
ship with Triton:

* ``cuobjdump -res-usage``: registers per thread and stack bytes per thread;
* ``nvdisasm``: the SASS, from which the instructions are counted by class, and spills
  (``STL``/``LDL``, local-memory stores and loads) are found.

"Warp instr / element" is the static SASS instruction count times the number of warps,
divided by the elements the program produces (``T x headdim`` outputs for the chunk
kernels, all with a 64-wide headdim tile; for the state-passing kernel, the loop body against the ``P x N`` block of one
chunk).  The chunk kernels are straight-line code (``tl.dot`` is fully unrolled), so this is
the issue slots each element costs, before masking; it is a static measure, not a timing.

Usage::

    python benchmarks/sass_ssd.py                  # the default configuration
    python benchmarks/sass_ssd.py --sweep          # chunk {32, 64} x warps {4, 8} x dot {ieee, tf32}
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter

os.environ.pop("TRITON_INTERPRET", None)  # compile, do not interpret
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from probkit.neural.ops import _ssd_triton as K  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
HEADDIM, NSTATE = 64, 64
PTR_ARGS_16BIT = {"x_ptr", "dt_ptr", "B_ptr", "C_ptr", "z_ptr", "g_ptr", "out_ptr", "dx_ptr",
                  "ddt_ptr", "dz_ptr"}
FLOAT_ARGS = {"lo", "hi"}
CLASSES = [  # (label, opcode regex)
    ("tensor (HMMA/WGMMA)", r"^(HMMA|WGMMA|HGMMA)"),
    ("FFMA/FMUL/FADD", r"^(FFMA|FMUL|FADD|FMNMX|FSEL|FSETP)"),
    ("MUFU (exp, rcp)", r"^MUFU"),
    ("global ld/st", r"^(LDG|STG|RED|ATOM)"),
    ("shared ld/st", r"^(LDS|STS|LDSM|STSM)"),
    ("spill ld/st", r"^(LDL|STL)"),
]


def tool(name):
    here = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    return here if os.path.exists(here) else name


def _signature(fn, constexprs, input_bits):
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*bf16" if (input_bits == 16 and name in PTR_ARGS_16BIT) else "*fp32"
        elif name in FLOAT_ARGS:
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def compile_kernel(fn, constexprs, num_warps, input_bits=32):
    src = ASTSource(fn, _signature(fn, constexprs, input_bits), constexprs=constexprs)
    return triton.compile(src, target=TARGET, options=dict(num_warps=num_warps))


def analyse(compiled):
    """Registers, stack and SASS instruction counts of a compiled kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        res = subprocess.run([tool("cuobjdump"), "-res-usage", path], capture_output=True,
                             text=True, check=True).stdout
        sass = subprocess.run([tool("nvdisasm"), "-c", path], capture_output=True, text=True,
                              check=True).stdout
    regs = int(re.search(r"REG:(\d+)", res).group(1))
    stack = int(re.search(r"STACK:(\d+)", res).group(1))
    ops = []
    for line in sass.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m:
            ops.append(m.group(2).split(".")[0])
    counts = Counter(ops)
    by_class = {label: sum(n for op, n in counts.items() if re.match(rx, op)) for label, rx in CLASSES}
    return dict(regs=regs, stack=stack, n_instr=len(ops), classes=by_class,
                ptx_target=next((ln.split()[1] for ln in compiled.asm["ptx"].splitlines()
                                 if ln.startswith(".target")), "?"))


def kernels(T, precision):
    """(name, jit function, constexprs, elements produced per program)."""
    chunk = dict(T=T, PP=HEADDIM, NP=NSTATE, DOT_PREC=precision)
    return [
        ("chunk_state (fwd 1/3)", K._chunk_state_kernel,
         dict(chunk, HAS_BIAS=True, SOFTPLUS=True, CLAMP=False), T * HEADDIM),
        ("state_pass (fwd 2/3, bwd 3/5)", K._state_pass_kernel,
         dict(T=T, BLOCK=1024, HAS_INIT=True, REVERSE=False), 1024),
        ("chunk_scan (fwd 3/3)", K._chunk_scan_kernel,
         dict(chunk, HAS_D=True, D_PER_P=False, HAS_Z=True, GATE_BWD=False), T * HEADDIM),
        ("chunk_scan gate (bwd 1/5)", K._chunk_scan_kernel,
         dict(chunk, HAS_D=True, D_PER_P=False, HAS_Z=True, GATE_BWD=True), T * HEADDIM),
        ("chunk_dstate (bwd 2/5)", K._chunk_dstate_kernel, chunk, T * HEADDIM),
        ("chunk_bwd_dx (bwd 4/5)", K._chunk_bwd_dx_kernel,
         dict(chunk, HAS_D=True, D_PER_P=False), T * HEADDIM),
        ("chunk_bwd_dbc (bwd 5/5)", K._chunk_bwd_dbc_kernel,
         dict(chunk, HAS_BIAS=True, SOFTPLUS=True, CLAMP=False), T * HEADDIM),
    ]


def report(T, warps_fwd, warps_bwd, precision, input_bits=32, header=True):
    rows = []
    for name, fn, cons, elems in kernels(T, precision):
        if name.startswith("state_pass"):
            warps = 4
        else:
            warps = warps_bwd if "bwd" in name else warps_fwd
        info = analyse(compile_kernel(fn, cons, warps, input_bits))
        spills = info["classes"]["spill ld/st"]
        per_elem = info["n_instr"] * warps / elems
        rows.append((name, T, warps, precision, info, spills, per_elem))
    if header:
        print("| kernel | T | warps | dot | regs | stack B | spill ld/st | SASS instr | "
              "warp instr / element | tensor | FP32 | MUFU | global | shared |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, T_, warps, prec, info, spills, per_elem in rows:
        c = info["classes"]
        print(f"| {name} | {T_} | {warps} | {prec} | {info['regs']} | {info['stack']} | {spills} "
              f"| {info['n_instr']} | {per_elem:.1f} | {c['tensor (HMMA/WGMMA)']} "
              f"| {c['FFMA/FMUL/FADD']} | {c['MUFU (exp, rcp)']} | {c['global ld/st']} "
              f"| {c['shared ld/st']} |", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", action="store_true", help="every chunk x warps x dot precision below")
    ap.add_argument("--chunks", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--warps", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--precisions", nargs="+", default=["ieee", "tf32"])
    ap.add_argument("--bf16", action="store_true", help="16-bit input and output pointers")
    args = ap.parse_args()
    bits = 16 if args.bf16 else 32
    print(f"# triton {triton.__version__}, target {TARGET}, headdim {HEADDIM}, N {NSTATE}, "
          f"{'bf16' if bits == 16 else 'fp32'} inputs\n")
    if args.sweep:
        first = True
        for T in args.chunks:
            for warps in args.warps:
                for prec in args.precisions:
                    report(T, warps, warps, prec, bits, header=first)
                    first = False
        return
    T, wf, wb = K._config(None)  # the GPU defaults
    rows = report(T, wf, wb, K.DOT_PRECISION, bits)
    print(f"\nPTX target: {rows[0][4]['ptx_target']}")
    return rows


if __name__ == "__main__":
    main()
