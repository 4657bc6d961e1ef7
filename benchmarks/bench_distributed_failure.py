"""Distributed EM failure handling: how long the other ranks take to stop when one rank fails.

Two local gloo processes run the failure scenarios of ``tests/product/_dist_worker.py``.
Rank 1 fails and then stays alive (as a script that caught the error would) until rank 0
has exited:

``fail_inside``
    Rank 1's shard fails validation inside ``distributed_em()``; rank 0 is told at its
    first collective operation.
``fail_outside``
    Rank 1 fails before it enters ``distributed_em()``; rank 0 waits inside until the
    timeout given to ``init_distributed``.

Reported: seconds from rank 1's failure until rank 0 raises, until rank 0 has exited, and
until both have exited (rank 1 is released as soon as rank 0 has exited); medians over
``--repeats`` runs (one
run for ``fail_outside`` with the default timeout, which takes that long by design). Also
the price of the agreement in a healthy fit: one all-reduce of a flag before each
collective operation, against the all-reduce of the statistics it precedes.

Usage: ``PYTHONPATH=. python benchmarks/bench_distributed_failure.py [--repeats 3] [--quick]``
(``--quick`` skips the run that waits for the default timeout).
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from probkit.distributed import DEFAULT_TIMEOUT  # noqa: E402
from tests.product._dist_worker import launch, results  # noqa: E402

SHORT_TIMEOUT = 5.0
# Statistics of a full-covariance GaussianMixture with K=16 components in D=8 dimensions
# (counts, first and second moments), plus the log-likelihood and the sample count.
STATS_SIZE = 16 * (1 + 8 + 64) + 2


def one_run(scenario, timeout):
    """(rank 0 raised, rank 0 exited, both exited) in seconds after rank 1's failure."""
    with tempfile.TemporaryDirectory() as folder:
        release = os.path.join(folder, "release")
        env = {"PROBKIT_DIST_RELEASE": release, "PROBKIT_DIST_READY_DIR": folder}
        if timeout is not None:
            env["PROBKIT_DIST_TIMEOUT"] = str(timeout)
        procs = launch(["--scenario", scenario], env=env)
        waiting_log = procs[0].communicate(timeout=DEFAULT_TIMEOUT.total_seconds() + 120)[0]
        rank0_exit = time.time()
        open(release, "w").close()
        failed_log = procs[1].communicate(timeout=120)[0]
        both_exit = time.time()
    if procs[0].returncode == 0 or procs[1].returncode == 0 or "RankFailedError" not in waiting_log:
        raise RuntimeError(f"unexpected outcome of {scenario}:\n{waiting_log[-2000:]}\n{failed_log[-2000:]}")
    failed_at = next(r["t"] for r in results(failed_log) if r.get("event") == "failed")
    raised_at = next(r["t"] for r in results(waiting_log) if r.get("event") == "raised")
    return raised_at - failed_at, rank0_exit - failed_at, both_exit - failed_at


def measure_agreement_cost(blocks=7, calls=300):
    """Run on each of 2 ranks: seconds per agreement and per statistics all-reduce (rank 0 prints)."""
    import torch.distributed as dist

    from probkit.distributed import _FailureAgreement, init_distributed

    torch.set_num_threads(1)
    rank, _ = init_distributed(backend="gloo")
    agreement = _FailureAgreement(None)
    stats = torch.zeros(STATS_SIZE, dtype=torch.float64)
    timings = {"agreement": [], "statistics all-reduce": []}
    for _ in range(blocks):  # alternate the two, so that load changes hit both alike
        for name, call in (("agreement", agreement.agree),
                           ("statistics all-reduce", lambda: dist.all_reduce(stats))):
            call()
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            timings[name].append((time.perf_counter() - t0) / calls)
    if rank == 0:
        print("RESULT " + json.dumps({name: statistics.median(v) for name, v in timings.items()}), flush=True)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the run that waits for the default timeout")
    args = parser.parse_args()
    default = DEFAULT_TIMEOUT.total_seconds()
    cases = [("fail_inside", None, args.repeats), ("fail_inside", SHORT_TIMEOUT, args.repeats),
             ("fail_outside", SHORT_TIMEOUT, args.repeats)]
    if not args.quick:
        cases.append(("fail_outside", None, 1))
    print(f"torch {torch.__version__}, 2 gloo processes on one machine, OMP/MKL/OpenBLAS threads = 1, "
          f"{os.cpu_count()} CPUs, load average at the start {os.getloadavg()[0]:.1f}")
    print("| rank 1 fails | timeout | rank 0 raises after (s) | rank 0 exited after (s) | both exited after (s) "
          "| runs |")
    print("|---|---|---|---|---|---|")
    for scenario, timeout, repeats in cases:
        runs = [one_run(scenario, timeout) for _ in range(repeats)]
        shown = f"{timeout:g} s" if timeout is not None else f"default ({default / 60:g} min)"
        where = "inside `distributed_em()`" if scenario == "fail_inside" else "before `distributed_em()`"
        medians = " | ".join(f"{statistics.median(r[i] for r in runs):.2f}" for i in range(3))
        print(f"| {where} | {shown} | {medians} | {repeats} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    procs = launch([], module="benchmarks.bench_distributed_failure")
    logs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(logs[0][-2000:] + logs[1][-2000:])
    cost = results(logs[0])[0]
    print(f"\nHealthy fit, per collective: agreement {cost['agreement'] * 1e6:.0f} us, all-reduce of "
          f"{STATS_SIZE} float64 statistics {cost['statistics all-reduce'] * 1e6:.0f} us (medians of 7 "
          "alternating blocks of 300 calls)")


if __name__ == "__main__":
    if "RANK" in os.environ:
        measure_agreement_cost()
    else:
        sys.exit(main())
