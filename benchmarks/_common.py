"""Helpers shared by the benchmarks: medians of alternating repeats, peak memory of a call."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time


def alternate(funcs, repeats):
    """Time each function ``repeats`` times, alternating between them; return medians in seconds."""
    times = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, fn in funcs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}, times


def max_rss_mib():
    """High-water mark of this process's resident memory in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def peak_rss_during(fn):
    """Rise of resident memory during ``fn()`` above the resident size before it (MiB).

    Resets the kernel's peak-RSS counter first (``/proc/self/clear_refs``, Linux), so
    memory touched by imports or by earlier work does not hide the call's own peak.
    tracemalloc would miss torch's allocations.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_mib("VmRSS")
    fn()
    return _status_mib("VmHWM") - before


def peak_increase_in_subprocess(module, case, which):
    """Run ``module``'s ``measure_memory(case, which)`` in a fresh interpreter.

    The child imports every library and loads the data (from a file the parent wrote, so
    no large temporaries are freed before the fit and reused by it), then reports how
    much the fit raised the resident-memory high-water mark (MiB). Import and data costs
    are excluded for both libraries alike.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", f"import json, {module} as m; print(json.dumps(m.measure_memory({case!r}, {which!r})))"],
        capture_output=True, text=True, check=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
