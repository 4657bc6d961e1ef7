"""NeuralHMM at default settings on a hidden two-regime switching autoregression.

The data: 40 training and 40 held-out sequences of 200 steps of an AR(1) process whose
coefficient and noise switch with a sticky two-state Markov chain (stay probability
0.97; regime 0: ``x_t = 0.9 x_{t-1} + 0.3 e_t``, regime 1: ``x_t = -0.6 x_{t-1} + e_t``,
``x_0 = 0``). The generator's own held-out log-likelihood is exact (forward algorithm
over the regimes with the true parameters); a classical ``GaussianHMM(2)`` is the
baseline. Each row is one ``NeuralHMM(2, backbone="gru", d_model=16, n_layers=1,
random_state=seed)`` fit at default settings: its wall and CPU time, optimiser steps
per CPU second, held-out nats per step above the GaussianHMM, and the share of the
generator's gap it reaches (CPU time is the one-core figure on a shared machine).

A second table times one training step (loss and back-propagation, a batch of 32
sequences of 200 steps, the same network) with the gradient taken by autograd through
the forward recursion (:func:`probkit.inference.hmm_log_likelihood`) and from the
posteriors (:func:`probkit.neural.networks.hmm_log_likelihood_sum`): medians of
alternating repeats of CPU time, in the same process.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_neural_hmm.py [--seeds 0 1 2] [--threads 1] [--label after]

``--max-epochs`` / ``--patience`` override those settings (the defaults are the
estimator's). To measure another checkout's code path, copy this file and
``_threads.py`` into an empty ``benchmarks/`` folder and run it with that checkout
importable (e.g. ``PYTHONPATH=/path/to/checkout``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _threads  # noqa: E402  (first: sets the thread count before numpy loads)
import numpy as np  # noqa: E402

COEF = (0.9, -0.6)
NOISE = (0.3, 1.0)
STAY = 0.97


def switching_ar(n_sequences, n_steps, seed):
    """Concatenated rows ``(n_sequences * n_steps, 1)`` and their lengths."""
    rng = np.random.RandomState(seed)
    out = np.empty((n_sequences, n_steps))
    for i in range(n_sequences):
        z, prev = rng.randint(2), 0.0
        for t in range(n_steps):
            if t and rng.rand() >= STAY:
                z = 1 - z
            prev = COEF[z] * prev + NOISE[z] * rng.randn()
            out[i, t] = prev
    return out.reshape(-1, 1), [n_steps] * n_sequences


def generator_log_likelihood(X, lengths):
    """Exact ``sum log p(x)`` under the generator (forward algorithm over the regimes)."""
    from probkit.inference import hmm_log_likelihood

    log_trans = np.log(np.array([[STAY, 1 - STAY], [1 - STAY, STAY]]))
    total, start = 0.0, 0
    for n in lengths:
        x = X[start:start + n, 0]
        prev = np.concatenate([[0.0], x[:-1]])
        start += n
        log_emission = np.stack([-0.5 * np.log(2 * np.pi * NOISE[k] ** 2)
                                 - 0.5 * ((x - COEF[k] * prev) / NOISE[k]) ** 2 for k in range(2)], -1)
        total += float(hmm_log_likelihood(np.log([0.5, 0.5]), log_trans, log_emission[None], [n])[0])
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _threads.add_argument(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--step-repeats", type=int, default=7)
    args = parser.parse_args()
    _threads.apply()

    import probkit
    from probkit import GaussianHMM
    from probkit.neural import NeuralHMM

    X, lengths = switching_ar(40, 200, seed=100)
    X_test, lengths_test = switching_ar(40, 200, seed=101)
    n_test = X_test.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hmm = GaussianHMM(2, n_iter=100, random_state=0).fit(X, lengths=lengths)
    baseline = hmm.score(X_test, lengths=lengths_test) / n_test
    gap = generator_log_likelihood(X_test, lengths_test) / n_test - baseline

    overrides = {k: v for k, v in (("max_epochs", args.max_epochs), ("patience", args.patience)) if v is not None}
    print(_threads.header())
    print(f"probkit from {os.path.dirname(probkit.__file__)}; data: 40 x 200 train, 40 x 200 held out; "
          f"GaussianHMM(2) held out {baseline:.4f} nats/step; generator gap {gap:.4f} nats/step; "
          f"settings: defaults{' + ' + str(overrides) if overrides else ''}")
    print("| code | seed | wall s | CPU s | epochs | steps | steps per CPU s | gain nats/step | share of gap |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for seed in args.seeds:
        model = NeuralHMM(2, backbone="gru", d_model=16, n_layers=1, random_state=seed, **overrides)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(X, lengths=lengths)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        gain = model.score(X_test, lengths=lengths_test) / n_test - baseline
        steps = model.history_["n_steps"]
        rows.append((wall, cpu, gain))
        print(f"| {args.label} | {seed} | {wall:.1f} | {cpu:.1f} | {model.n_iter_} | {steps} | {steps / cpu:.1f} "
              f"| {gain:.3f} | {gain / gap:.0%} |", flush=True)
    wall, cpu, gain = np.median(np.array(rows), axis=0)
    print(f"| {args.label} | median | {wall:.1f} | {cpu:.1f} | | | | {gain:.3f} | {gain / gap:.0%} |")
    step_times(X, args.step_repeats)


def step_times(X, repeats):
    """CPU ms of one loss + backward step by each gradient, medians of alternating repeats."""
    import torch

    from probkit.inference import hmm_log_likelihood
    from probkit.neural.networks import NeuralHMMNet

    try:
        from probkit.neural.networks import hmm_log_likelihood_sum
    except ImportError:   # a checkout without it: the autograd row only
        hmm_log_likelihood_sum = None
    torch.manual_seed(0)
    net = NeuralHMMNet("gaussian", 2, 1, backbone="gru", d_model=16, n_layers=1)
    x = torch.as_tensor((X[: 32 * 200] - X.mean()) / X.std(), dtype=torch.float32).reshape(32, 200, 1)
    lengths = torch.full((32,), 200)
    objectives = {"autograd through the recursion": lambda *t: hmm_log_likelihood(*t, lengths).sum()}
    if hmm_log_likelihood_sum is not None:
        objectives["gradient from the posteriors"] = lambda *t: hmm_log_likelihood_sum(*t, lengths)
    times = {name: [] for name in objectives}
    for _ in range(repeats + 1):                     # the first round warms up
        for name, objective in objectives.items():
            net.zero_grad()
            start = time.process_time()
            objective(*net(x, x, lengths)).backward()
            times[name].append(time.process_time() - start)
    print()
    print("| gradient | CPU ms per step (B=32, T=200, K=2, gru d_model=16) |")
    print("| --- | --- |")
    for name, values in times.items():
        print(f"| {name} | {1e3 * np.median(values[1:]):.1f} |")


if __name__ == "__main__":
    main()
