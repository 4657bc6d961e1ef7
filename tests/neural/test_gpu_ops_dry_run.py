"""benchmarks/gpu_ops.py --tiny: the device command runs end to end through Triton's CPU
interpreter (or on the GPU when there is one), so that it is known to work before a device
is lent.  Its timings mean nothing here; its correctness checks and byte counts do."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_ops_tiny_dry_run(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_ops.py"),
                           "--tiny", "--out", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_ops.json").read_text())
    assert (tmp_path / "gpu_ops.md").exists()
    assert res["failures"] == []
    # every kernel family was checked against its float64 loop, within the script's tolerances
    checked = res["correctness"]
    for family in ("scan fp32", "scan bf16", "scan fp64", "wkv4 fp32", "wkv6 fp32",
                   "wkv6 strong-after-weak decay", "wkv6 chunked fp32",
                   "wkv6 chunked strong decay fp32", "wkv6 recurrent fp32", "ssd fp32",
                   "ssd bf16"):
        assert any(k.startswith(family) for k in checked), family
    for k, e in checked.items():
        assert e <= (1e-2 if ("bf16" in k or "bfloat16" in k) else 2e-5), (k, e)
    impls = {r["impl"] for r in res["rows"]}
    assert {"triton", "reference loop", "triton wkv4", "triton wkv6", "triton wkv6 chunked",
            "triton ssd",
            "ssd torch chunked (cpu path)"} <= impls
    # bytes of the fp32 inference forward of the scan at the dry-run shape (b=1, dim=40,
    # N=3, L=20, B and C (b, N, L), D and delta_bias): u, delta and out, B and C, A, D,
    # delta_bias and the last state, each once
    b, d, N, L = 1, 40, 3, 20
    expected = 4 * (3 * b * d * L + 2 * b * N * L + d * N + 2 * d + b * d * N)
    row = next(r for r in res["rows"] if r["impl"] == "triton" and r["pass_"] == "fwd"
               and r["dtype"] == "float32" and r["L"] == L and not r["z"])
    assert row["bytes"] == expected
