"""GaussianMixture: probkit vs scikit-learn, same data, same initial parameters, same iterations.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_gmm.py [--repeats 3] [--threads 1]

Prints a markdown table (times are medians of alternating repeats; memory is the rise of
the resident high-water mark during one fit, measured in a fresh process per library).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _threads  # noqa: E402  (first: sets the thread count of both libraries before numpy loads)
import numpy as np  # noqa: E402

from _common import alternate, peak_increase_in_subprocess, peak_rss_during  # noqa: E402

CASES = {
    "full K=16": dict(n=200_000, d=8, k=16, cov="full"),
    "diag K=16": dict(n=200_000, d=8, k=16, cov="diag"),
    "full K=64": dict(n=200_000, d=8, k=64, cov="full"),
    "diag K=64": dict(n=200_000, d=8, k=64, cov="diag"),
}
N_ITER = 20


def _case_file(name):
    return os.path.join(tempfile.gettempdir(), f"probkit_bench_gmm_{name.replace(' ', '_').replace('=', '')}.npz")


def make_case(name, from_file=False):
    c = CASES[name]
    kw = dict(n_components=c["k"], covariance_type=c["cov"], max_iter=N_ITER, tol=0.0)
    if from_file:
        data = np.load(_case_file(name))
        return data["X"], dict(kw, weights_init=data["w"], means_init=data["m"], precisions_init=data["p"])
    rng = np.random.RandomState(0)
    centres = rng.normal(0, 5, (c["k"], c["d"]))
    X = centres[rng.randint(c["k"], size=c["n"])] + rng.normal(size=(c["n"], c["d"]))
    init = dict(
        weights_init=np.full(c["k"], 1.0 / c["k"]),
        means_init=X[rng.choice(c["n"], c["k"], replace=False)],
        precisions_init=np.stack([np.eye(c["d"])] * c["k"]) if c["cov"] == "full" else np.ones((c["k"], c["d"])),
    )
    np.savez(_case_file(name), X=X, w=init["weights_init"], m=init["means_init"], p=init["precisions_init"])
    return X, dict(kw, **init)


def fitters(name, from_file=False):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    from probkit import GaussianMixture

    X, kw = make_case(name, from_file)
    return X, {"sklearn": lambda: SkGaussianMixture(**kw).fit(X), "probkit": lambda: GaussianMixture(**kw).fit(X)}


def measure_memory(name, which):
    warnings.simplefilter("ignore")
    X, fns = fitters(name, from_file=True)
    return peak_rss_during(fns[which])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    _threads.add_argument(parser)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    _threads.apply()
    print(f"{_threads.header()}; {N_ITER} EM iterations, tol=0, same initial parameters\n")
    print("| case | sklearn s | probkit s | ratio probkit/sklearn | sklearn peak MiB | probkit peak MiB | max abs diff lower_bound_ |")
    print("|---|---|---|---|---|---|---|")
    for name in args.cases:
        X, fns = fitters(name)
        med, _ = alternate(fns, args.repeats)
        a, b = fns["sklearn"](), fns["probkit"]()
        mem = {w: peak_increase_in_subprocess("bench_gmm", name, w) for w in ("sklearn", "probkit")}
        print(f"| {name} (N={len(X):,}, D={X.shape[1]}) | {med['sklearn']:.2f} | {med['probkit']:.2f} | "
              f"{med['probkit'] / med['sklearn']:.3f} | {mem['sklearn']:.0f} | {mem['probkit']:.0f} | "
              f"{abs(a.lower_bound_ - b.lower_bound_):.1e} |", flush=True)


if __name__ == "__main__":
    main()
