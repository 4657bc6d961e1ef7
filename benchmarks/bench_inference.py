"""Kernel-level timings of probkit.inference against hmmlearn 0.3.3's C++ kernels.

Both sides get the same log-emission matrices (computed once, not timed) and do the
same work:

* E-step  = what hmmlearn's ``_do_estep`` does per sequence apart from the emission
  statistics: ``exp`` of the log-emissions, ``forward_scaling``, ``backward_scaling``,
  posteriors (``fwd * bwd`` normalised) and ``compute_scaling_xi_sum``; ours is
  ``forward_backward`` (log-likelihood, posteriors, expected transitions and starts).
* score   = ``exp`` + ``forward_scaling``; ours is ``forward_filter``.
* Viterbi = ``_hmmc.viterbi``; ours is ``viterbi``.

Every measurement is the median of ``--repeats`` runs, ours and hmmlearn's alternating.
Ours is timed single-threaded (``torch.set_num_threads(1)``, which also fixes our
block count to one) so the comparison with the single-threaded C++ kernels is fair;
the multi-sequence workload is also shown with 2 threads. Times are CPU time of the
calling thread (``time.thread_time``), which on a shared machine is far less disturbed
by other processes than wall time; the wall-time ratio is printed alongside.

Usage::

    PYTHONPATH=. python benchmarks/bench_inference.py [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from hmmlearn import _hmmc

from probkit.inference import forward_backward, forward_filter, hmm_log_likelihood, pad_sequences, viterbi
from probkit.inference.padded import forward_backward_padded


def gaussian_workload(rng, n_states, n_features, lengths):
    """Log-emissions of data sampled from a random Gaussian HMM (diagonal covariances)."""
    trans = rng.dirichlet(np.ones(n_states), size=n_states) + 4 * np.eye(n_states)
    trans /= trans.sum(axis=1, keepdims=True)
    start = np.full(n_states, 1.0 / n_states)
    means = rng.normal(scale=2.0, size=(n_states, n_features))
    states = np.empty(sum(lengths), dtype=np.int64)
    pos = 0
    for length in lengths:
        z = rng.choice(n_states, p=start)
        for t in range(length):
            states[pos + t] = z
            z = rng.choice(n_states, p=trans[z]) if t < length - 1 else z
        pos += length
    X = means[states] + rng.normal(size=(len(states), n_features))
    log_emission = -0.5 * ((X[:, None, :] - means[None]) ** 2).sum(-1) - 0.5 * n_features * np.log(2 * np.pi)
    return np.log(start), np.log(trans), np.ascontiguousarray(log_emission)


def categorical_workload(rng, n_states, n_symbols, length):
    """Log-emissions of symbols sampled from a random categorical HMM."""
    trans = rng.dirichlet(np.ones(n_states), size=n_states) + 2 * np.eye(n_states)
    trans /= trans.sum(axis=1, keepdims=True)
    start = np.full(n_states, 1.0 / n_states)
    emission = rng.dirichlet(np.full(n_symbols, 0.3), size=n_states)
    symbols = rng.integers(0, n_symbols, size=length)
    return np.log(start), np.log(trans), np.ascontiguousarray(np.log(emission[:, symbols].T))


def split(log_emission, lengths):
    return np.split(log_emission, np.cumsum(lengths)[:-1])


def hmmlearn_estep(log_start, log_trans, log_emission, lengths):
    start, trans = np.exp(log_start), np.exp(log_trans)
    xi = np.zeros_like(trans)
    for seq in split(log_emission, lengths):
        frameprob = np.exp(seq)
        _, fwd, scaling = _hmmc.forward_scaling(start, trans, frameprob)
        bwd = _hmmc.backward_scaling(start, trans, frameprob, scaling)
        post = fwd * bwd
        post /= post.sum(axis=1, keepdims=True)
        if len(seq) > 1:
            xi += _hmmc.compute_scaling_xi_sum(fwd, trans, bwd, frameprob)
    return xi


def hmmlearn_score(log_start, log_trans, log_emission, lengths):
    start, trans = np.exp(log_start), np.exp(log_trans)
    return sum(_hmmc.forward_scaling(start, trans, np.exp(seq))[0] for seq in split(log_emission, lengths))


def hmmlearn_viterbi(log_start, log_trans, log_emission, lengths):
    start, trans = np.exp(log_start), np.exp(log_trans)
    return [_hmmc.viterbi(start, trans, seq) for seq in split(log_emission, lengths)]


class Timing:
    """Median CPU time and median wall time of repeated calls, in seconds."""

    def __init__(self):
        self.cpu, self.wall = [], []

    def run(self, func):
        w0, c0 = time.perf_counter(), time.thread_time()
        func()
        self.cpu.append(time.thread_time() - c0)
        self.wall.append(time.perf_counter() - w0)

    @property
    def cpu_median(self):
        return statistics.median(self.cpu)

    @property
    def wall_median(self):
        return statistics.median(self.wall)


def time_pair(ours, theirs, repeats):
    """Timings of two callables run alternately, after one warm-up call each."""
    ours(), theirs()
    a, b = Timing(), Timing()
    for _ in range(repeats):
        a.run(ours)
        b.run(theirs)
    return a, b


def time_one(func, repeats, wall=False):
    """Median seconds of one callable (wall time when it uses several threads)."""
    func()
    t = Timing()
    for _ in range(repeats):
        t.run(func)
    return t.wall_median if wall else t.cpu_median


def ms(seconds):
    return f"{seconds * 1e3:.2f}"


def workload_rows(name, params, lengths, repeats):
    ls, lt, le = params
    rows = []
    for op, ours, theirs in [
        ("E-step", lambda: forward_backward(ls, lt, le, lengths), lambda: hmmlearn_estep(ls, lt, le, lengths)),
        ("score", lambda: forward_filter(ls, lt, le, lengths), lambda: hmmlearn_score(ls, lt, le, lengths)),
        ("Viterbi", lambda: viterbi(ls, lt, le, lengths), lambda: hmmlearn_viterbi(ls, lt, le, lengths)),
    ]:
        a, b = time_pair(ours, theirs, repeats)
        rows.append(
            (name, op, ms(a.cpu_median), ms(b.cpu_median), ratio(a.cpu_median, b.cpu_median),
             ratio(a.wall_median, b.wall_median))
        )
    return rows


def ratio(ours, theirs):
    return f"{ours / theirs:.2f}"


def print_table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smaller scaling tables (for a smoke test)")
    args = parser.parse_args()
    repeats = max(5, args.repeats)
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)

    print("# probkit.inference vs hmmlearn 0.3.3 kernels\n")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads 1, median of {repeats} alternating runs, "
        "CPU time of the calling thread unless noted.\n"
    )

    w1 = gaussian_workload(rng, 8, 4, [100_000])
    w3 = categorical_workload(rng, 10, 32, 200_000)
    w2_lengths = [500] * 200
    w2 = gaussian_workload(rng, 16, 4, w2_lengths)

    print("## Workloads (milliseconds; ratio = ours / hmmlearn)\n")
    rows = workload_rows("W1 T=100k K=8", w1, [100_000], repeats)
    rows += workload_rows("W3 T=200k K=10 (categorical)", w3, [200_000], repeats)
    rows += workload_rows("W2 200x500 K=16", w2, w2_lengths, repeats)
    print_table(["workload", "operation", "probkit ms", "hmmlearn ms", "ratio", "ratio (wall)"], rows)

    ls, lt, le = w2
    padded, _ = pad_sequences(le, w2_lengths)
    t_torch = time_one(lambda: forward_backward_padded(ls, lt, padded, w2_lengths), repeats, wall=True)
    t_numba1 = time_one(lambda: forward_backward(ls, lt, le, w2_lengths), repeats, wall=True)
    torch.set_num_threads(2)
    t_numba2 = time_one(lambda: forward_backward(ls, lt, le, w2_lengths), repeats, wall=True)
    t_torch2 = time_one(lambda: forward_backward_padded(ls, lt, padded, w2_lengths), repeats, wall=True)
    torch.set_num_threads(1)
    print("## W2 (200 x 500, K=16) E-step: batching strategies (wall time)\n")
    print_table(
        ["strategy", "threads", "ms"],
        [
            ("numba over the concatenated sequences", 1, ms(t_numba1)),
            ("numba, blocks of sequences on threads", 2, ms(t_numba2)),
            ("torch padded batch (B=200, one (B,K)x(K,K) product per step)", 1, ms(t_torch)),
            ("torch padded batch", 2, ms(t_torch2)),
        ],
    )

    print("## One long sequence through the torch path (T=100k, K=8, log-likelihood only, 1 thread)\n")
    ls, lt, le = w1
    le_batch = torch.as_tensor(le)[None]
    t_seq = time_one(lambda: hmm_log_likelihood(ls, lt, le_batch), 3)
    t_chunk = time_one(lambda: hmm_log_likelihood(ls, lt, le_batch, chunk_size=316), repeats)
    t_numba = time_one(lambda: forward_filter(ls, lt, le), repeats)
    print_table(
        ["method", "sequential steps", "ms"],
        [
            ("torch, step by step", "100,000", ms(t_seq)),
            ("torch, chunked transfer matrices (chunk_size=316)", "~632", ms(t_chunk)),
            ("numba forward_filter (for reference)", "100,000", ms(t_numba)),
        ],
    )

    print("## E-step scaling in T (K=8, one sequence)\n")
    rows = []
    sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    for n_steps in sizes:
        ls, lt, le = gaussian_workload(rng, 8, 4, [n_steps])
        reps = repeats if n_steps < 1_000_000 else 5
        a, b = time_pair(lambda: forward_backward(ls, lt, le), lambda: hmmlearn_estep(ls, lt, le, [n_steps]), reps)
        t_ours, t_theirs = a.cpu_median, b.cpu_median
        rows.append((n_steps, ms(t_ours), ms(t_theirs), ratio(t_ours, t_theirs), f"{t_ours / n_steps * 1e9:.0f}"))
    print_table(["T", "probkit ms", "hmmlearn ms", "ratio", "probkit ns/step"], rows)

    print("## E-step scaling in K (T=10,000, one sequence)\n")
    rows = []
    for n_states in [2, 4, 8, 16, 32] if args.quick else [2, 4, 8, 16, 32, 64, 128]:
        ls, lt, le = gaussian_workload(rng, n_states, 4, [10_000])
        a, b = time_pair(lambda: forward_backward(ls, lt, le), lambda: hmmlearn_estep(ls, lt, le, [10_000]), repeats)
        va, vb = time_pair(lambda: viterbi(ls, lt, le), lambda: hmmlearn_viterbi(ls, lt, le, [10_000]), repeats)
        rows.append(
            (n_states, ms(a.cpu_median), ms(b.cpu_median), ratio(a.cpu_median, b.cpu_median),
             ms(va.cpu_median), ms(vb.cpu_median), ratio(va.cpu_median, vb.cpu_median))
        )
    print_table(["K", "E-step probkit", "E-step hmmlearn", "ratio", "Viterbi probkit", "Viterbi hmmlearn", "ratio"], rows)

    print("## One sequence of 10^6 steps (K=8), emission log-probabilities near -1e4\n")
    ls, lt, le = gaussian_workload(rng, 8, 4, [1_000_000])
    le = le - 1e4
    t_scaled = time_one(lambda: forward_backward(ls, lt, le, implementation="scaling"), 5)
    t_log = time_one(lambda: forward_backward(ls, lt, le, implementation="log"), 3)
    ll_scaled = forward_backward(ls, lt, le).log_likelihood.item()
    ll_log = forward_backward(ls, lt, le, implementation="log").log_likelihood.item()
    print_table(
        ["implementation", "ms", "log-likelihood"],
        [("scaling", ms(t_scaled), f"{ll_scaled:.6f}"), ("log", ms(t_log), f"{ll_log:.6f}")],
    )
    print("(hmmlearn's scaling kernels cannot run this input: exp(-1e4) underflows to 0.)")


if __name__ == "__main__":
    main()
