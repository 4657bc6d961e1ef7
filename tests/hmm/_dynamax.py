"""Run a dynamax script in a child process (64-bit jax on the CPU) and read what it wrote."""

import os
import subprocess
import sys

import numpy as np
import pytest


def run_dynamax(script, tmp_path, **arrays):
    """Write ``arrays`` to ``in.npz``, run ``script in.npz out.npz`` in a fresh interpreter, load ``out.npz``.

    Skips the calling test, with the reason, where dynamax or jax does not import.
    """
    np.savez(tmp_path / "in.npz", **arrays)
    (tmp_path / "run.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1"))
    if proc.returncode != 0 and "ImportError" in proc.stderr:
        pytest.skip(f"dynamax does not import here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(tmp_path / "out.npz")
