"""Static sm_90a report of the RWKV-7 Triton kernels (no GPU needed).

Each kernel of ``probkit.neural.ops._rwkv7_triton`` is compiled offline for an H100/H200
(``GPUTarget("cuda", 90, 32)``, i.e. ``sm_90a``) at the shapes of an RWKV-7 layer (head size
64), and the cubin is read back with the CUDA tools that ship with Triton (as in
``benchmarks/sass_ssd.py``, whose helpers this script reuses): registers and stack per thread
(``cuobjdump -res-usage``), SASS instruction counts by class and spills (``STL``/``LDL``)
(``nvdisasm``).

The kernels are recurrent: a program walks the sequence, one iteration of its innermost loop
per time step, updating its ``K x BV`` slice of the state.  The innermost loops are found in
the SASS as the backward branches that contain no other loop; "warp instr / state element /
step" is the static instruction count of those loop bodies times the number of warps, divided
by the ``K x BV`` state elements a step updates (the backward runs two loops per step: the
recomputation of the state and the reverse step).  It is a static measure of the issue slots a
step costs, not a timing.

Usage::

    python benchmarks/sass_rwkv7.py             # the configuration the kernels use
    python benchmarks/sass_rwkv7.py --sweep     # BV {16, 32, 64} x warps {2, 4, 8}
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)  # compile, do not interpret
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import triton  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from probkit.neural.ops import _rwkv7_triton as K  # noqa: E402
from sass_ssd import CLASSES, TARGET, analyse, tool  # noqa: E402

HEAD_SIZE = 64
INPUT_PTRS = {"r_ptr", "w_ptr", "k_ptr", "v_ptr", "a_ptr", "b_ptr", "o_ptr", "do_ptr"}


def compile_kernel(fn, constexprs, num_warps, input_bits=32):
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*bf16" if (input_bits == 16 and name in INPUT_PTRS) else "*fp32"
        else:
            sig[name] = "i32"
    return triton.compile(ASTSource(fn, sig, constexprs=constexprs), target=TARGET,
                          options=dict(num_warps=num_warps))


def innermost_loops(compiled):
    """Instruction lists of the innermost loops (backward branches enclosing no other loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        sass = subprocess.run([tool("nvdisasm"), "-c", path], capture_output=True, text=True,
                              check=True).stdout
    instrs, labels, pending = [], {}, []
    for line in sass.splitlines():
        lab = re.match(r"\s*(\.L_x_\d+):", line)
        if lab:
            pending.append(lab.group(1))
            continue
        m = re.match(r"\s*/\*([0-9a-f]+)\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*)", line)
        if m:
            for name in pending:
                labels[name] = len(instrs)
            pending = []
            instrs.append((m.group(3).split(".")[0], m.group(4)))
    loops = []
    for i, (op, rest) in enumerate(instrs):
        target = re.search(r"`\((\.L_x_\d+)\)", rest)
        # a backward branch; one to itself is the trap after EXIT, not a loop
        if op == "BRA" and target and labels.get(target.group(1), i) < i:
            loops.append((labels[target.group(1)], i))
    inner = [(s, e) for s, e in loops if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)]
    return [[op for op, _ in instrs[s:e + 1]] for s, e in sorted(inner)]


def kernels(BV):
    """(name, jit function, constexprs)."""
    base = dict(BK=HEAD_SIZE, BV=BV, CK=K.CHECKPOINT_EVERY)
    return [
        ("forward (training: saves states)", K._fwd_kernel, dict(base, HAS_S0=True, SAVE=True)),
        ("forward (inference)", K._fwd_kernel, dict(base, HAS_S0=True, SAVE=False)),
        ("backward", K._bwd_kernel, dict(base, HAS_DST=True)),
    ]


def report(BV, warps, input_bits=32, header=True):
    if header:
        print("| kernel | BV | warps | regs | stack B | spill ld/st | SASS instr | loop instr / step | "
              "warp instr / state element / step | FP32 in loops | MUFU in loops | global ld/st in loops |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, fn, cons in kernels(BV):
        compiled = compile_kernel(fn, cons, warps, input_bits)
        info = analyse(compiled)
        loops = innermost_loops(compiled)
        body = [op for loop in loops for op in loop]

        def count(label):
            rx = dict(CLASSES)[label]
            return sum(1 for op in body if re.match(rx, op))

        per_elem = len(body) * warps / (HEAD_SIZE * BV)
        spills = info["classes"]["spill ld/st"]
        print(f"| {name} | {BV} | {warps} | {info['regs']} | {info['stack']} | {spills} | {info['n_instr']} "
              f"| {len(body)} ({len(loops)} loop{'s' if len(loops) != 1 else ''}) | {per_elem:.2f} "
              f"| {count('FFMA/FMUL/FADD')} | {count('MUFU (exp, rcp)')} | {count('global ld/st')} |",
              flush=True)
        rows.append((name, info, loops))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", action="store_true", help="every BV x warps below")
    ap.add_argument("--bv", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--warps", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--bf16", action="store_true", help="16-bit input and output pointers")
    args = ap.parse_args()
    bits = 16 if args.bf16 else 32
    print(f"# triton {triton.__version__}, target {TARGET}, head size {HEAD_SIZE}, "
          f"checkpoint every {K.CHECKPOINT_EVERY} steps, {'bf16' if bits == 16 else 'fp32'} inputs\n")
    if args.sweep:
        first = True
        for BV in args.bv:
            for warps in args.warps:
                report(BV, warps, bits, header=first)
                first = False
        return
    BV, warps = K._config(HEAD_SIZE)  # the configuration the kernels use
    rows = report(BV, warps, bits)
    print(f"\nPTX target: {rows[0][1]['ptx_target']}")


if __name__ == "__main__":
    main()
