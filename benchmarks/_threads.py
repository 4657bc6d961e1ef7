"""One thread count for probkit and its peer, fixed before numpy, scipy or torch load.

Import this module first in a benchmark (before numpy): it reads ``--threads N`` from the
command line (or ``BENCH_THREADS``; default 1) and sets ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` so that BLAS,
OpenMP and numba pools of both libraries start with that many threads. :func:`apply`
then sets torch's intra-op threads and probkit's own thread settings to the same count,
and :func:`header` is the line every results table prints.
"""

from __future__ import annotations

import os
import sys

if "numpy" in sys.modules or "torch" in sys.modules:
    raise ImportError("import benchmarks/_threads.py before numpy and torch: thread pools size themselves at import")


def _requested():
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return os.environ.get("BENCH_THREADS", "1")


THREADS = int(_requested())
if THREADS < 1:
    raise SystemExit(f"--threads must be >= 1, got {THREADS}")
os.environ["BENCH_THREADS"] = str(THREADS)  # child processes (memory probes) inherit it
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(THREADS)


def add_argument(parser):
    """Declare ``--threads`` on an ``argparse`` parser (the value was already applied at import)."""
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="threads for both libraries (BLAS, OpenMP, numba, torch); default 1")


def apply():
    """Give torch and probkit the same thread count as the peer's BLAS/OpenMP pools."""
    import torch

    import probkit

    torch.set_num_threads(THREADS)
    probkit.set_num_threads(THREADS, workers=THREADS)


def header():
    """The line that heads every results table."""
    return (f"threads: {THREADS} for both libraries (OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS set before import, "
            f"torch.set_num_threads({THREADS}), probkit.set_num_threads({THREADS}, workers={THREADS})); "
            f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
