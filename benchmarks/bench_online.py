"""Stepwise EM: partial_fit throughput against batch EM, and memory while streaming.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_online.py [--repeats 3] [--threads 1] [--stream-rows 10000000]

Throughput: rows per second of one pass of ``partial_fit`` over the data in mini-batches,
against rows per second of batch EM (``fit`` with a fixed number of iterations, tol=0,
from the same initial parameters; one iteration is one pass over the rows), medians of
alternating repeats. Memory: the resident-set size while ``partial_fit`` streams
``--stream-rows`` rows (default 10^6; pass 10^7 for the long run) generated batch by
batch, sampled at every tenth of the stream, and the rise of the high-water mark over
the resident size after the first batch (a flat profile: nothing grows with the stream).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _threads  # noqa: E402  (first: sets the thread count before numpy and torch load)
import numpy as np  # noqa: E402

from _common import _status_mib, alternate  # noqa: E402

GMM = dict(n=200_000, d=8, k=8)
HMM = dict(n=200_000, d=2, k=4, seq=1000)
EM_ITERS = 5


def _gmm_data(n, d, k, seed):
    rng = np.random.RandomState(seed)
    centres = np.random.RandomState(0).normal(0, 4, (k, d))
    return centres[rng.randint(k, size=n)] + rng.normal(size=(n, d))


def _gmm_init(X, k):
    rng = np.random.RandomState(1)
    d = X.shape[1]
    return dict(weights_init=np.full(k, 1.0 / k), means_init=X[rng.choice(len(X), k, replace=False)],
                precisions_init=np.stack([np.eye(d)] * k))


def _hmm_truth(d, k):
    from probkit import GaussianHMM

    rng = np.random.RandomState(0)
    truth = GaussianHMM(k, covariance_type="diag")
    truth.startprob_ = np.full(k, 1.0 / k)
    truth.transmat_ = np.full((k, k), 0.05 / (k - 1)) + np.eye(k) * (0.95 - 0.05 / (k - 1))
    truth.means_ = rng.normal(0, 3, (k, d))
    truth.covars_ = np.ones((k, d))
    return truth


def _hmm_start(model, d, k):
    rng = np.random.RandomState(2)
    model.startprob_ = np.full(k, 1.0 / k)
    model.transmat_ = np.full((k, k), 1.0 / k)
    model.means_ = rng.normal(0, 3, (k, d))
    model.covars_ = np.full((k, d), 2.0)
    return model


def _hmm_data(truth, n, seq, seed):
    return np.vstack([truth.sample(seq, random_state=seed * 100_000 + i)[0] for i in range(n // seq)])


def throughput(repeats):
    from probkit import GaussianHMM, GaussianMixture

    rows = []
    X = _gmm_data(GMM["n"], GMM["d"], GMM["k"], seed=3)
    init = _gmm_init(X, GMM["k"])

    def gmm_batch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GaussianMixture(GMM["k"], max_iter=EM_ITERS, tol=0.0, **init).fit(X)

    def gmm_stream(batch):
        def run():
            model = GaussianMixture(GMM["k"], **init)
            for start in range(0, len(X), batch):
                model.partial_fit(X[start:start + batch])
        return run

    funcs = {"batch EM": gmm_batch, "partial_fit 1000": gmm_stream(1000), "partial_fit 10000": gmm_stream(10_000)}
    rows += _rates(f"GaussianMixture full K={GMM['k']} d={GMM['d']}", GMM["n"], funcs, repeats)

    truth = _hmm_truth(HMM["d"], HMM["k"])
    Xh = _hmm_data(truth, HMM["n"], HMM["seq"], seed=4)
    seq = HMM["seq"]

    def hmm_batch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _hmm_start(GaussianHMM(HMM["k"], init_params="", n_iter=EM_ITERS, tol=-np.inf), HMM["d"], HMM["k"]).fit(
                Xh, lengths=[seq] * (len(Xh) // seq))

    def hmm_stream(batch):
        def run():
            model = _hmm_start(GaussianHMM(HMM["k"], init_params=""), HMM["d"], HMM["k"])
            for start in range(0, len(Xh), batch):
                block = Xh[start:start + batch]
                model.partial_fit(block, lengths=[seq] * (len(block) // seq))
        return run

    funcs = {"batch EM": hmm_batch, "partial_fit 1000": hmm_stream(1000), "partial_fit 10000": hmm_stream(10_000)}
    rows += _rates(f"GaussianHMM diag K={HMM['k']} d={HMM['d']} (sequences of {seq})", HMM["n"], funcs, repeats)
    return rows


def _rates(label, n_rows, funcs, repeats):
    """Rows per second of each function (batch EM makes EM_ITERS passes, partial_fit one) and the ratio to batch EM."""
    med, _ = alternate(funcs, repeats)
    rates = {name: n_rows * (EM_ITERS if name == "batch EM" else 1) / med[name] for name in funcs}
    return [(label, name, rate, rate / rates["batch EM"]) for name, rate in rates.items()]


def memory(stream_rows, batch=10_000):
    """Resident memory while partial_fit streams ``stream_rows`` rows generated batch by batch."""
    from probkit import GaussianHMM, GaussianMixture

    results = {}
    n_batches = stream_rows // batch
    checkpoints = {max(1, round(n_batches * f / 10)) for f in range(1, 11)}

    init = _gmm_init(_gmm_data(1000, GMM["d"], GMM["k"], seed=5), GMM["k"])
    model = GaussianMixture(GMM["k"], **init)
    trace = []
    for i in range(1, n_batches + 1):
        model.partial_fit(_gmm_data(batch, GMM["d"], GMM["k"], seed=10 + i))
        if i == 1:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the high-water mark: the rise is measured from here on
            base = _status_mib("VmRSS")
        if i in checkpoints:
            trace.append(_status_mib("VmRSS"))
    results["GaussianMixture"] = (base, trace, _status_mib("VmHWM") - base)

    truth = _hmm_truth(HMM["d"], HMM["k"])
    pool = [_hmm_data(truth, batch, HMM["seq"], seed=20 + j) for j in range(4)]  # cycled: sampling is not measured
    hmm = _hmm_start(GaussianHMM(HMM["k"], init_params=""), HMM["d"], HMM["k"])
    lengths = [HMM["seq"]] * (batch // HMM["seq"])
    trace = []
    for i in range(1, n_batches + 1):
        hmm.partial_fit(pool[i % len(pool)], lengths=lengths)
        if i == 1:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _status_mib("VmRSS")
        if i in checkpoints:
            trace.append(_status_mib("VmRSS"))
    results["GaussianHMM"] = (base, trace, _status_mib("VmHWM") - base)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _threads.add_argument(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-rows", type=int, default=1_000_000,
                        help="rows streamed in the memory run (10000000 for the long run)")
    args = parser.parse_args()
    _threads.apply()
    print(_threads.header())
    print(f"\nThroughput ({GMM['n']:,} rows; batch EM: {EM_ITERS} iterations from the same start, "
          f"medians of {args.repeats} alternating repeats)\n")
    print("| model | method | rows/s | vs batch EM pass |")
    print("| --- | --- | ---: | ---: |")
    for model, name, rate, ratio in throughput(args.repeats):
        print(f"| {model} | {name} | {rate:,.0f} | {ratio:.2f}x |")
    print(f"\nMemory while streaming {args.stream_rows:,} rows in batches of 10,000 "
          "(resident MiB at every tenth of the stream; rise of the high-water mark after the first batch)\n")
    print("| model | RSS after batch 1 | RSS at 10%, 20%, ..., 100% | peak rise |")
    print("| --- | ---: | --- | ---: |")
    for model, (base, trace, rise) in memory(args.stream_rows).items():
        print(f"| {model} | {base:.0f} | {', '.join(f'{v:.0f}' for v in trace)} | {rise:.1f} |")


if __name__ == "__main__":
    main()
