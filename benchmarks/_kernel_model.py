"""The launches of the Triton kernels at benchmark shapes, and a roofline of their traffic.

Shared by ``sass_report.py`` (static sm_90a analysis, no GPU) and ``gpu_ops.py`` (the device
command), so that both speak of the same launches and count the same bytes.

A pass (e.g. the selective-scan backward) is described by the launches its host wrapper
makes.  They are captured, not run: the wrapper is called with ``meta``-device tensors (no
memory, no work) while its launchers are replaced by recorders.

Bytes moved (the compulsory-traffic model): every distinct tensor argument of a launch is
read or written once, in full (``nbytes``); buffers updated in place (atomic sums,
read-modify-write carries, named per launch in ``rmw``) count twice.  Re-reads that the
kernels make through the cache (a ``B``/``C`` row read by every channel block, a head's
``B`` read by every head of its group) and host-side torch work in the wrappers are not
counted.  The memory bound of a pass is its bytes over the H200's 4.8 TB/s.
"""

from __future__ import annotations

import math

import torch
import triton

NOMINAL_BW = 4.8e12  # bytes/s, H200 HBM3e datasheet
H200_SMS = 132
H200_CLOCK = 1.98e9  # boost clock, Hz
EXP_PER_CLK_SM = 16  # MUFU.EX2 results per clock per SM (Hopper)
ISSUE_PER_CLK_SM = 4 * 32  # 4 warp schedulers x 32 lanes: thread instructions per clock

# benchmark shapes
SCAN = dict(b=8, d=2048, L=4096, N=16)
WKV4 = dict(b=8, L=4096, C=2048)
WKV6 = dict(b=8, H=32, L=4096, K=64)
SSD = dict(b=8, L=4096, H=32, P=64, N=64, G=1)


class _Recorder:
    """Stands in for a launcher: ``rec[grid](*args, **meta)`` appends to ``calls``."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((self.name, grid, args, meta))


def capture(module, names, host_call):
    """Run ``host_call()`` with the launchers ``module.<names>`` replaced by recorders.

    Returns the launches as ``(name, grid, args, meta)`` in launch order.
    """
    saved = {n: getattr(module, n) for n in names}
    calls = []
    try:
        for n in names:
            setattr(module, n, _Recorder(n, calls))
        host_call()
    finally:
        for n, v in saved.items():
            setattr(module, n, v)
    return calls


def meta_tensor(shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


def launch_bytes(kernel, args, rmw=()):
    """Bytes of one launch under the compulsory-traffic model (see the module docstring)."""
    seen, total = set(), 0
    for n, a in zip(kernel.arg_names, args):  # constexprs come last, as keywords
        if isinstance(a, torch.Tensor) and id(a) not in seen:
            seen.add(id(a))
            total += a.numel() * a.element_size() * (2 if n in rmw else 1)
    return total


class Launch:
    """One captured kernel launch of a pass.

    ``unit`` names an element; ``elements`` is how many the launch processes in all;
    ``per_thread(meta, config)`` how many one thread processes per iteration of the kernel's
    main loop (or in all, for a kernel without a loop); ``inner_trips`` the trip counts of
    loops nested in the main loop (see ``sass_report.loop_counts``).
    """

    def __init__(self, op, variant, kernel, configs, args, meta, unit, elements, per_thread,
                 inner_trips=(1,), rmw=(), straight=False):
        self.op, self.variant, self.kernel, self.configs = op, variant, kernel, configs
        self.args, self.meta, self.unit, self.elements = args, meta, unit, elements
        self.per_thread, self.inner_trips, self.rmw = per_thread, inner_trips, rmw
        self.straight = straight
        self.bytes = launch_bytes(kernel, args, rmw)


def _plain():
    return triton.Config({}, num_warps=4, num_stages=3)  # Triton's launch defaults


def _threads(c):
    return 32 * c.num_warps


# --------------------------------------------------------------------------- selective scan


def scan_launches(dtype=torch.float32, with_z=False, b=None, d=None, L=None, N=None):
    """{pass: [Launch]} for "fwd" (inference), "fwd train" (checkpoints) and "bwd"."""
    from probkit.neural.ops import _scan_triton as S

    b, d, L, N = (b or SCAN["b"], d or SCAN["d"], L or SCAN["L"], N or SCAN["N"])
    dn = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    u, delta = meta_tensor((b, d, L), dtype), meta_tensor((b, d, L), dtype)
    z = meta_tensor((b, d, L), dtype) if with_z else None
    A = meta_tensor((d, N))
    B, C = meta_tensor((b, N, L), dtype), meta_tensor((b, N, L), dtype)
    D, bias = meta_tensor((d,)), meta_tensor((d,))
    zs = "z" if with_z else "no z"
    el = b * d * L * N
    out = {}
    for ckpt in (False, True):
        calls = capture(S, ["_fwd"], lambda: S.scan_fwd(u, delta, A, B, C, D, z, bias, True,
                                                        None, None, save_for_backward=ckpt))
        _, _, args, meta = calls[0]
        out["fwd train" if ckpt else "fwd"] = [Launch(
            "scan fwd", f"{dn}, {zs}, " + ("checkpoints" if ckpt else "inference"),
            S._scan_fwd_kernel, S._fwd.configs, args, meta, "(b, d, l, n)", el,
            lambda m, c: m["TT"] * m["N"])]
        if ckpt:
            CK = meta["CK"]
            ck = meta_tensor((b, triton.cdiv(L, CK), d, N))
            calls = capture(S, ["_bwd"], lambda: S.scan_bwd(
                u, None, u, delta, A, B, C, D, z, bias, True, ck, CK, need_h0_grad=False))
            _, _, args, meta = calls[0]
            out["bwd"] = [Launch(
                "scan bwd", f"{dn}, {zs}", S._scan_bwd_kernel, S._bwd.configs, args, meta,
                "(b, d, l, n)", el, lambda m, c: m["TT"] * m["N"], (triton.cdiv(N, 2),),
                rmw=("mu_ptr", "dA_ptr", "dB_ptr", "dC_ptr"))]
    return out


# --------------------------------------------------------------------------- RWKV


def wkv4_launches(b=None, L=None, C=None):
    from probkit.neural.ops import _wkv_triton as W

    b, L, C = b or WKV4["b"], L or WKV4["L"], C or WKV4["C"]
    w, u = meta_tensor((C,)), meta_tensor((C,))
    k, v = meta_tensor((b, L, C)), meta_tensor((b, L, C))
    out = {}
    for hist in (False, True):
        calls = capture(W, ["_wkv4_fwd_kernel"], lambda: W.wkv4_fwd(w, u, k, v, None, hist))
        _, _, args, meta = calls[0]
        out["fwd train" if hist else "fwd"] = [Launch(
            "wkv4 fwd", "fp32, state history" if hist else "fp32, inference",
            W._wkv4_fwd_kernel, [_plain()], args, meta, "(b, l, c)", b * L * C,
            lambda m, c: m["BLOCK_C"] / _threads(c))]
    hist = meta_tensor((b, L, 3, C))
    calls = capture(W, ["_wkv4_bwd_kernel"], lambda: W.wkv4_bwd(w, u, k, v, k, hist, k, None))
    _, _, args, meta = calls[0]
    out["bwd"] = [Launch("wkv4 bwd", "fp32", W._wkv4_bwd_kernel, [_plain()], args, meta,
                         "(b, l, c)", b * L * C, lambda m, c: m["BLOCK_C"] / _threads(c))]
    return out


def wkv6_launches(b=None, H=None, L=None, K=None):
    from probkit.neural.ops import _wkv_triton as W

    b, H, L, K = b or WKV6["b"], H or WKV6["H"], L or WKV6["L"], K or WKV6["K"]
    r, kk, vv, ww = (meta_tensor((b, H, L, K)) for _ in range(4))
    uu = meta_tensor((H, K))
    el = b * H * L * K * K
    out = {}
    for ck in (False, True):
        calls = capture(W, ["_wkv6_fwd_kernel"],
                        lambda: W.wkv6_fwd(r, kk, vv, ww, uu, None, save_chunks=ck))
        _, _, args, meta = calls[0]
        out["fwd train" if ck else "fwd"] = [Launch(
            "wkv6 fwd", "fp32, chunk states" if ck else "fp32, inference", W._wkv6_fwd_kernel,
            [_plain()], args, meta, "(b, h, l, k, v)", el,
            lambda m, c: m["KP"] * m["BLOCK_V"] / _threads(c))]
    sub, nsub = W._wkv6_chunks(L)
    ckm = meta_tensor((b, H, triton.cdiv(L, sub * nsub), K, K))
    calls = capture(W, ["_wkv6_bwd_kernel"], lambda: W.wkv6_bwd(r, kk, vv, ww, uu, ckm, vv, None))
    _, _, args, meta = calls[0]
    # per chunk: NSUB sub-chunks, each re-stepping on average (NSUB - 1) / 2 sub-chunks
    out["bwd"] = [Launch(
        "wkv6 bwd", "fp32", W._wkv6_bwd_kernel, [_plain()], args, meta, "(b, h, l, k, v)", el,
        lambda m, c: m["SUB"] * m["NSUB"] * m["KP"] * m["BLOCK_V"] / _threads(c),
        (nsub, (nsub - 1) / 2 * sub), rmw=("dr_ptr", "dk_ptr", "dw_ptr"))]
    return out


def wkv6_chunked_launches(b=None, H=None, L=None, K=None):
    """{pass: [Launch]}: the chunked forward, "fwd" (inference) and "fwd train" (chunk
    states, spaced as the recurrent backward of :func:`wkv6_launches` reads them)."""
    from probkit.neural.ops import _wkv6_chunked_triton as CH
    from probkit.neural.ops import _wkv_triton as W

    b, H, L, K = b or WKV6["b"], H or WKV6["H"], L or WKV6["L"], K or WKV6["K"]
    r, kk, vv, ww = (meta_tensor((b, H, L, K)) for _ in range(4))
    uu = meta_tensor((H, K))
    sub, nsub = W._wkv6_chunks(L)
    out = {}
    for ck in (False, True):
        calls = capture(CH, ["_wkv6_chunk_fwd_kernel"], lambda: CH.wkv6_fwd_chunked(
            r, kk, vv, ww, uu, None, save_every=sub * nsub if ck else None))
        # main loop: one chunk of C steps; nested: the KP / KB channel slices of A
        out["fwd train" if ck else "fwd"] = [_chunked_launch(
            "wkv6 chunked fwd", "fp32, chunk states" if ck else "fp32, inference",
            CH._wkv6_chunk_fwd_kernel, calls[0], b * H * L * K * K,
            lambda m: (m["KP"] // m["KB"],))]
    return out


def _chunked_launch(op, variant, kernel, call, elements, inner_trips, rmw=()):
    """Launch of an RWKV-6 chunked kernel; its main loop handles ``C`` steps (the forward)
    or ``C * NCH`` (the backward) of a (KP, BLOCK_V) state slice."""
    _, _, args, meta = call
    cfg = triton.Config({}, num_warps=meta.get("num_warps", 4), num_stages=3)
    m = {k: v for k, v in meta.items() if k != "num_warps"}
    return Launch(op, variant, kernel, [cfg], args, m, "(b, h, l, k, v)", elements,
                  lambda mm, c: mm["C"] * mm.get("NCH", 1) * mm["KP"] * mm["BLOCK_V"]
                  / _threads(c), inner_trips(m), rmw=rmw)


def wkv6_chunked_bwd_launches(b=None, H=None, L=None, K=None):
    """{pass: [Launch]}: the chunked backward ("bwd") and the chunked forward saving the
    states it reads ("fwd train", every ``SAVE_EVERY`` steps)."""
    from probkit.neural.ops import _wkv6_chunked_bwd_triton as CB
    from probkit.neural.ops import _wkv6_chunked_triton as CH

    b, H, L, K = b or WKV6["b"], H or WKV6["H"], L or WKV6["L"], K or WKV6["K"]
    r, kk, vv, ww = (meta_tensor((b, H, L, K)) for _ in range(4))
    uu = meta_tensor((H, K))
    calls = capture(CH, ["_wkv6_chunk_fwd_kernel"], lambda: CH.wkv6_fwd_chunked(
        r, kk, vv, ww, uu, None, save_every=CB.SAVE_EVERY))
    out = {"fwd train": [_chunked_launch(
        "wkv6 chunked fwd", "fp32, chunk states", CH._wkv6_chunk_fwd_kernel, calls[0],
        b * H * L * K * K, lambda m: (m["KP"] // m["KB"],))]}
    ckm = meta_tensor((b, H, triton.cdiv(L, CB.SAVE_EVERY), K, K))
    calls = capture(CB, ["_wkv6_chunk_bwd_kernel"],
                    lambda: CB.wkv6_bwd_chunked(r, kk, vv, ww, uu, ckm, vv, None))
    # main loop: one saved block; nested: its NCH chunks, and in each the recomputation of
    # the chunk's start (on average (NCH - 1) / 2 chunk updates), then the KP / KB slices
    out["bwd"] = [_chunked_launch(
        "wkv6 chunked bwd", "fp32", CB._wkv6_chunk_bwd_kernel, calls[0], b * H * L * K * K,
        lambda m: (m["NCH"], ((m["NCH"] - 1) / 2, m["KP"] // m["KB"])),
        rmw=("dr_ptr", "dk_ptr", "dw_ptr"))]
    return out


# --------------------------------------------------------------------------- SSD (Mamba-2)

_SSD_NAMES = ["_chunk_state_kernel", "_state_pass_kernel", "_chunk_scan_kernel",
              "_chunk_dstate_kernel", "_chunk_bwd_dx_kernel", "_chunk_bwd_dbc_kernel"]
_SSD_RMW = {"_state_pass_kernel": ("states_ptr",)}  # in place, chunk by chunk


def ssd_launches(dtype=torch.float32, with_z=True, b=None, L=None, H=None, P=None, N=None,
                 G=None):
    """{pass: [Launch]}: "fwd" (3 launches) and "bwd" (5 with z, else 4)."""
    from probkit.neural.ops import _ssd_triton as K

    s = dict(SSD)
    s.update({k: v for k, v in dict(b=b, L=L, H=H, P=P, N=N, G=G).items() if v is not None})
    b, L, H, P, N, G = (s[k] for k in ("b", "L", "H", "P", "N", "G"))
    dn = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    x = meta_tensor((b, L, H, P), dtype)
    dt = meta_tensor((b, L, H), dtype)
    A, D, bias = meta_tensor((H,)), meta_tensor((H,)), meta_tensor((H,))
    B, C = meta_tensor((b, L, G, N), dtype), meta_tensor((b, L, G, N), dtype)
    z = meta_tensor((b, L, H, P), dtype) if with_z else None
    lim = (0.0, math.inf)
    res = {}
    fwd = capture(K, _SSD_NAMES, lambda: res.setdefault(
        "f", K.ssd_fwd(x, dt, A, B, C, D, z, bias, True, lim, None, None, True)))
    _, _, saved, T = res["f"]
    bwd = capture(K, _SSD_NAMES, lambda: K.ssd_bwd(x, None, x, dt, A, B, C, D, z, bias, True,
                                                   lim, saved, T))
    nc = triton.cdiv(L, T)
    variant = f"{dn}, {'z' if with_z else 'no z'}"
    out = {}
    for pas, calls in (("fwd", fwd), ("bwd", bwd)):
        launches = []
        for name, grid, args, meta in calls:
            kern = getattr(K, name)
            cfg = triton.Config({}, num_warps=meta.get("num_warps", 4), num_stages=3)
            m = {k: v for k, v in meta.items() if k != "num_warps"}
            label = name.strip("_").replace("_kernel", "")
            if name == "_chunk_scan_kernel" and m.get("GATE_BWD"):
                label += " gate"
            if name == "_state_pass_kernel":
                # loop over chunks; one iteration moves BLOCK state entries of one chunk
                launches.append(Launch(
                    f"ssd {pas}", f"{variant}: {label}", kern, [cfg], args, m,
                    "(b, h, chunk, p, n)", b * H * nc * P * N,
                    lambda mm, c: mm["BLOCK"] / _threads(c), rmw=_SSD_RMW[name]))
            else:
                launches.append(Launch(
                    f"ssd {pas}", f"{variant}: {label}", kern, [cfg], args, m,
                    "(b, l, h, p)", b * nc * T * H * P,
                    lambda mm, c, P=P: mm["T"] * P / _threads(c), straight=True))
        out[pas] = launches
    return out


# --------------------------------------------------------------------------- roofline


def pass_variant(dtype, with_z):
    """The name shared by ``sass_report``'s passes and ``gpu_ops``'s rows, e.g. "fp32, no z"."""
    dn = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return f"{dn}, {'z' if with_z else 'no z'}"


def memory_bound_s(nbytes, bandwidth=NOMINAL_BW):
    return nbytes / bandwidth


def pass_bytes(launches):
    return sum(ln.bytes for ln in launches)
