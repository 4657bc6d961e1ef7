"""HMM estimators: probkit vs hmmlearn 0.3.3 (implementation="scaling", its faster mode).

Same data, same initial parameters, same number of EM iterations; times are medians of
alternating repeats after one warm-up call each (numba compiles on first use); peak
memory is the rise of the resident high-water mark during one fit in a fresh process
per library.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_hmm.py [--repeats 5] [--skip-scaling] [--threads 1] [--cases W3]

``--cases`` runs only the named large workloads (W1, W2, W3) and skips the other tables.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _threads  # noqa: E402  (first: sets the thread count of both libraries before numpy loads)
import numpy as np  # noqa: E402

from _common import alternate, peak_increase_in_subprocess, peak_rss_during  # noqa: E402

N_ITER = 10


def gaussian_case(n_seq, length, k, d, cov, seed=0):
    from hmmlearn import hmm as hl

    rng = np.random.RandomState(seed)
    gen = hl.GaussianHMM(k, covariance_type="diag")
    gen.startprob_ = np.full(k, 1.0 / k)
    A = 0.8 * np.eye(k) + 0.2 * rng.dirichlet(np.ones(k), size=k)
    gen.transmat_ = A / A.sum(1, keepdims=True)
    gen.means_ = rng.normal(0, 3, (k, d))
    gen.covars_ = rng.uniform(0.5, 2.0, (k, d))
    X = np.vstack([gen.sample(length, random_state=seed + 1 + i)[0] for i in range(n_seq)])
    init = dict(startprob_=np.full(k, 1.0 / k), transmat_=np.full((k, k), 1.0 / k),
                means_=gen.means_ + rng.normal(0, 0.5, (k, d)),
                covars_=np.ones((k, d)) if cov == "diag" else np.tile(np.eye(d), (k, 1, 1)))
    return X, [length] * n_seq, init, dict(covariance_type=cov)


def categorical_case(length, k, n_symbols, seed=0):
    rng = np.random.RandomState(seed)
    A = 0.8 * np.eye(k) + 0.2 * rng.dirichlet(np.ones(k), size=k)
    A /= A.sum(1, keepdims=True)
    B = rng.dirichlet(np.ones(n_symbols) * 0.3, size=k)
    states = np.zeros(length, dtype=int)
    u = rng.rand(length)
    cdf = np.cumsum(A, 1)
    for t in range(1, length):
        states[t] = np.searchsorted(cdf[states[t - 1]], u[t])
    X = (np.cumsum(B, 1)[states] > rng.rand(length)[:, None]).argmax(1).reshape(-1, 1)
    init = dict(startprob_=np.full(k, 1.0 / k), transmat_=np.full((k, k), 1.0 / k),
                emissionprob_=rng.dirichlet(np.ones(n_symbols), size=k))
    return X, [length], init, {}


WORKLOADS = {
    "W1": lambda: ("GaussianHMM", *gaussian_case(1, 100_000, 8, 4, "diag")),
    "W2": lambda: ("GaussianHMM", *gaussian_case(200, 500, 16, 8, "full")),
    "W3": lambda: ("CategoricalHMM", *categorical_case(200_000, 10, 32)),
}


# Small problems (tutorials, model selection over K, n_init): per-call overhead dominates.
SMALL = {
    "S1": lambda: gaussian_case(1, 200, 3, 1, "diag"),
    "S2": lambda: gaussian_case(1, 500, 4, 1, "full"),
    "S3": lambda: gaussian_case(1, 2000, 4, 2, "full"),
}
SMALL_ITER = 20


def make_models(kind, init, options, **extra):
    from hmmlearn import hmm as hl

    import probkit

    models = {}
    for name, module, impl in (("hmmlearn", hl, {"implementation": "scaling"}), ("probkit", probkit, {})):
        cls = getattr(module, kind)
        kwargs = dict(init_params="", n_iter=N_ITER, tol=-np.inf, **options, **impl)
        kwargs.update(extra)
        m = cls(len(init["startprob_"]), **kwargs)
        for attr, value in init.items():
            setattr(m, attr, np.array(value, copy=True))
        models[name] = m
    return models


def _file(name):
    return os.path.join(tempfile.gettempdir(), f"probkit_bench_hmm_{name}.npz")


def measure_memory(workload, which):
    warnings.simplefilter("ignore")
    data = np.load(_file(workload), allow_pickle=False)
    kind = str(data["kind"])
    init = {k[5:]: data[k] for k in data.files if k.startswith("init_")}
    options = {"covariance_type": str(data["cov"])} if kind == "GaussianHMM" else {}
    models = make_models(kind, init, options)
    X, lengths = data["X"], data["lengths"]
    models[which].fit(X[:100], lengths=[100])  # warm-up (imports, numba compilation) outside the measurement
    models = make_models(kind, init, options)
    return peak_rss_during(lambda: models[which].fit(X, lengths=lengths))


def fit_workloads(repeats, cases=None):
    print(f"## EM fits ({N_ITER} iterations, same start; medians of {repeats} alternating repeats)\n")
    print("| workload | hmmlearn s | probkit s | ratio | final log-likelihood difference |")
    print("|---|---|---|---|---|")
    for name, build in WORKLOADS.items():
        if cases is not None and name not in cases:
            continue
        kind, X, lengths, init, options = build()
        np.savez(_file(name), X=X, lengths=np.asarray(lengths), kind=kind, cov=options.get("covariance_type", ""),
                 **{f"init_{k}": v for k, v in init.items()})
        for m in make_models(kind, init, options).values():
            m.fit(X[:min(lengths[0], 1000)], lengths=[min(lengths[0], 1000)])  # warm-up
        fitted = {}

        def fitter(which):
            def run():
                m = make_models(kind, init, options)[which]
                m.fit(X, lengths=lengths)
                fitted[which] = m
            return run

        med, _ = alternate({"hmmlearn": fitter("hmmlearn"), "probkit": fitter("probkit")}, repeats)
        diff = abs(fitted["hmmlearn"].monitor_.history[-1] - fitted["probkit"].monitor_.history[-1])
        print(f"| {name} {kind} T={len(X):,} ({len(lengths)} seq) | {med['hmmlearn']:.3f} | {med['probkit']:.3f} | "
              f"{med['probkit'] / med['hmmlearn']:.3f} | {diff:.1e} |", flush=True)
    print()


# Each timed sample of a small fit is a batch of fits lasting about this long (for hmmlearn), so
# that one scheduling hiccup of a shared machine does not decide a sample.
SMALL_BATCH_SECONDS = 0.05


def small_fits(repeats):
    print(f"## Small fits: the whole fit call ({SMALL_ITER} iterations, same start; medians of {repeats} "
          f"alternating batches of fits, each about {SMALL_BATCH_SECONDS * 1e3:.0f} ms of hmmlearn; time per fit)\n")
    print("| workload | hmmlearn ms | probkit ms | ratio |")
    print("|---|---|---|---|")
    for name, build in SMALL.items():
        X, lengths, init, options = build()
        for m in make_models("GaussianHMM", init, options).values():
            m.fit(X, lengths=lengths)  # warm-up (numba compilation, imports)

        def fitter(which, n_fits):
            def run():
                for _ in range(n_fits):
                    m = make_models("GaussianHMM", init, options, n_iter=SMALL_ITER)[which]
                    m.fit(X, lengths=lengths)
            return run

        t0 = time.perf_counter()
        fitter("hmmlearn", 1)()
        n_fits = max(1, round(SMALL_BATCH_SECONDS / (time.perf_counter() - t0)))
        med, _ = alternate({"hmmlearn": fitter("hmmlearn", n_fits), "probkit": fitter("probkit", n_fits)}, repeats)
        med = {k: v / n_fits for k, v in med.items()}
        print(f"| {name} T={len(X)} K={len(init['startprob_'])} D={X.shape[1]} {options['covariance_type']} | "
              f"{1e3 * med['hmmlearn']:.2f} | {1e3 * med['probkit']:.2f} | {med['probkit'] / med['hmmlearn']:.3f} |",
              flush=True)
    print()


def score_decode(repeats):
    kind, X, lengths, init, options = WORKLOADS["W1"]()
    models = make_models(kind, init, options)
    for m in models.values():
        m.score(X[:1000])
        m.decode(X[:1000])
    print(f"## score and Viterbi decode on W1 (T={len(X):,}; medians of {repeats})\n")
    print("| call | hmmlearn s | probkit s | ratio |")
    print("|---|---|---|---|")
    for call in ("score", "decode"):
        fns = {k: (lambda m=m: getattr(m, call)(X)) for k, m in models.items()}
        med, _ = alternate(fns, repeats)
        print(f"| {call} | {med['hmmlearn']:.4f} | {med['probkit']:.4f} | {med['probkit'] / med['hmmlearn']:.3f} |",
              flush=True)
    a, b = models["hmmlearn"].decode(X), models["probkit"].decode(X)
    print(f"\nViterbi log-probabilities differ by {abs(a[0] - b[0]):.1e}; paths agree on {np.mean(a[1] == b[1]):.4%} "
          "of steps\n")


def memory():
    print("## Peak memory of one W1 fit (rise of max RSS in a fresh process, MiB)\n")
    mem = {w: peak_increase_in_subprocess("bench_hmm", "W1", w) for w in ("hmmlearn", "probkit")}
    print(f"| hmmlearn | probkit | ratio |\n|---|---|---|\n| {mem['hmmlearn']:.0f} | {mem['probkit']:.0f} | "
          f"{mem['probkit'] / max(mem['hmmlearn'], 1e-9):.2f} |\n")


def scaling():
    print("## Time per EM iteration (probkit GaussianHMM, diag, D=4; median of 3)\n")
    print("| T | K | s / iteration | hmmlearn s / iteration |")
    print("|---|---|---|---|")
    grid = [(t, 8) for t in (1_000, 10_000, 100_000, 1_000_000)] + [(10_000, k) for k in (2, 16, 32, 64, 128)]
    for T, K in grid:
        _, X, lengths, init, options = ("GaussianHMM", *gaussian_case(1, T, K, 4, "diag", seed=T + K))
        row = {}
        for which in ("probkit", "hmmlearn"):
            times = []
            for _ in range(3):
                m = make_models("GaussianHMM", init, options, )[which]
                m.n_iter = 2
                t0 = time.perf_counter()
                m.fit(X, lengths=lengths)
                times.append((time.perf_counter() - t0) / 2)
            row[which] = np.median(times)
        print(f"| {T:,} | {K} | {row['probkit']:.4f} | {row['hmmlearn']:.4f} |", flush=True)
    print()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--small-only", action="store_true", help="only the small whole-fit workloads")
    parser.add_argument("--cases", nargs="+", choices=sorted(WORKLOADS),
                        help="only these large workloads (no small fits, score/decode, memory or scaling tables)")
    _threads.add_argument(parser)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)  # its per-iteration notes on converged fits
    _threads.apply()
    print(f"{_threads.header()}\n")
    if args.cases:
        fit_workloads(args.repeats, set(args.cases))
        return
    small_fits(max(args.repeats, 15))
    if args.small_only:
        return
    fit_workloads(args.repeats)
    score_decode(args.repeats)
    memory()
    if not args.skip_scaling:
        scaling()


if __name__ == "__main__":
    main()
