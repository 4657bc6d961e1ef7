"""Variational inference benchmarks: CAVI mixture vs scikit-learn, VB-EM HMM vs hmmlearn, Pyro HMM SVI.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_vi.py [--repeats 3] [--parts cavi vem svi] [--threads 1]

Both libraries run with the same thread count (``--threads``, default 1; see ``_threads.py``),
printed in the header.

Prints markdown tables (times are medians of alternating repeats):

* ``cavi``: BayesianGaussianMixture (CAVI) vs ``sklearn.mixture.BayesianGaussianMixture`` on
  N=100,000, D=4, K=10, full covariances, the same random initial responsibilities and the
  same 20 iterations (``tol=0``).
* ``vem``: VariationalHMM (VB-EM) vs ``hmmlearn.vhmm.VariationalGaussianHMM`` on 100
  sequences of 500 steps, K=5, D=2, full covariances, the same initial posteriors and the
  same 20 iterations.
* ``svi``: VariationalHMM (SVI) on the same data: steps per second of each Pyro formulation
  of the path sum (``discrete_hmm``, ``probkit``, ``markov``), and the wall time until the
  ELBO estimate (mean of the last 20 steps) is within 1% of the VB-EM bound.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _threads  # noqa: E402  (first: fixes the thread pools before numpy loads)

import argparse  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from _common import alternate  # noqa: E402

N_ITER = 20


def cavi_case():
    rng = np.random.RandomState(0)
    k, d, n = 10, 4, 100_000
    centres = rng.normal(0, 4, (k, d))
    X = centres[rng.randint(k, size=n)] + rng.normal(size=(n, d))
    kw = dict(n_components=k, covariance_type="full", max_iter=N_ITER, tol=0.0, init_params="random",
              random_state=0)
    return X, kw


def bench_cavi(repeats):
    from sklearn.mixture import BayesianGaussianMixture as SkBGM

    from probkit import BayesianGaussianMixture

    X, kw = cavi_case()
    print("\n### CAVI BayesianGaussianMixture vs scikit-learn (N=100,000, D=4, K=10, full, 20 iterations)\n")
    print("| sklearn s | probkit s | ratio probkit/sklearn | max abs diff means_ | same predictions |")
    print("|---|---|---|---|---|")
    fns = {"sklearn": lambda: SkBGM(**kw).fit(X), "probkit": lambda: BayesianGaussianMixture(**kw).fit(X)}
    med, _ = alternate(fns, repeats)
    a, b = fns["sklearn"](), fns["probkit"]()
    same = bool(np.array_equal(a.predict(X), b.predict(X)))
    print(f"| {med['sklearn']:.3f} | {med['probkit']:.3f} | {med['probkit'] / med['sklearn']:.3f} | "
          f"{np.abs(a.means_ - b.means_).max():.1e} | {same} |", flush=True)


def hmm_case(n_seq=100, length=500, k=5, d=2, seed=0):
    from probkit import GaussianHMM

    rng = np.random.RandomState(seed)
    gen = GaussianHMM(k, covariance_type="full")
    gen.startprob_ = np.full(k, 1.0 / k)
    trans = rng.dirichlet(np.ones(k), k) + 5 * np.eye(k)
    gen.transmat_ = trans / trans.sum(1, keepdims=True)
    gen.means_ = rng.normal(0, 3, (k, d))
    gen.covars_ = np.stack([np.eye(d) * 0.6] * k)
    X = np.concatenate([gen.sample(length, random_state=seed + i)[0] for i in range(n_seq)])
    return X, [length] * n_seq


def hmmlearn_init(X, lengths, k):
    from hmmlearn.vhmm import VariationalGaussianHMM

    init = VariationalGaussianHMM(k, covariance_type="full", random_state=0)
    init._init(X, lengths)
    names = ["startprob_posterior_", "transmat_posterior_", "means_posterior_", "beta_posterior_", "dof_posterior_",
             "scale_posterior_"]
    priors = ["startprob_prior_", "transmat_prior_", "means_prior_", "beta_prior_", "dof_prior_", "scale_prior_"]
    return init, names, priors


def bench_vem(repeats):
    from hmmlearn.vhmm import VariationalGaussianHMM

    from probkit import VariationalHMM

    X, lengths = hmm_case()
    k = 5
    init, names, priors = hmmlearn_init(X, lengths, k)

    rows = []
    for impl in ("log", "scaling"):
        def theirs():
            m = VariationalGaussianHMM(k, covariance_type="full", n_iter=N_ITER, tol=-np.inf, init_params="",
                                       implementation=impl)
            for name in names + priors:
                setattr(m, name, np.copy(getattr(init, name)))
            m._covars_ = init._covars_.copy()
            return m.fit(X, lengths)

        def ours():
            m = VariationalHMM(k, n_iter=N_ITER, tol=-np.inf, init_params="", implementation=impl)
            for name in names:
                setattr(m, name, np.copy(getattr(init, name)))
            return m.fit(X, lengths=lengths)

        med, _ = alternate({"hmmlearn": theirs, "probkit": ours}, repeats)
        a, b = theirs(), ours()
        diff = np.abs(a.means_posterior_ - b.means_posterior_).max()
        rows.append((impl, med, diff))
    print("\n### VB-EM VariationalHMM vs hmmlearn VariationalGaussianHMM (100 x 500, K=5, D=2, full, 20 iterations)\n")
    print("| implementation | hmmlearn s | probkit s | ratio probkit/hmmlearn | max abs diff means_posterior_ |")
    print("|---|---|---|---|---|")
    for impl, med, diff in rows:
        print(f"| {impl} | {med['hmmlearn']:.3f} | {med['probkit']:.3f} | {med['probkit'] / med['hmmlearn']:.3f} | "
              f"{diff:.1e} |", flush=True)


def bench_svi():
    from probkit import VariationalHMM

    X, lengths = hmm_case()
    k = 5
    vem = VariationalHMM(k, n_iter=200, tol=1e-4, random_state=0).fit(X, lengths=lengths)
    target = vem.lower_bound_
    print("\n### SVI VariationalHMM (100 x 500, K=5, D=2, full)\n")
    print(f"VB-EM: {vem.n_iter_} iterations, bound {target:.1f}\n")
    print("| formulation | batch (sequences) | steps/s | steps to within 1% of VB-EM | seconds to within 1% | final ELBO |")
    print("|---|---|---|---|---|---|")
    # probkit and markov runs are short: they only measure the step rate
    for formulation, batch, steps in [("discrete_hmm", None, 800), ("discrete_hmm", 20, 3000),
                                      ("probkit", None, 30), ("markov", 20, 4)]:
        model = VariationalHMM(k, inference="svi", hmm_formulation=formulation, batch_size=batch, num_steps=steps,
                               learning_rate=0.05, svi_tol=0.0, random_state=0)
        model.fit(X, lengths=lengths)
        res = model.svi_result_
        h = res.elbo_history
        smooth = np.convolve(h, np.ones(20) / 20, mode="valid") if len(h) >= 20 else h
        hit = np.nonzero(smooth >= target - 0.01 * abs(target))[0]
        steps_to = int(hit[0] + 20) if len(hit) else None
        sec_to = steps_to / res.steps_per_second if steps_to else None
        print(f"| {formulation} | {batch or 'all'} | {res.steps_per_second:.1f} | {steps_to if steps_to else '-'} | "
              f"{f'{sec_to:.1f}' if sec_to else '-'} | {res.elbo:.1f} |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="*", default=["cavi", "vem", "svi"])
    _threads.add_argument(parser)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    _threads.apply()
    import torch

    print(_threads.header())
    print(f"torch {torch.__version__}, repeats {args.repeats}")
    if "cavi" in args.parts:
        bench_cavi(args.repeats)
    if "vem" in args.parts:
        bench_vem(args.repeats)
    if "svi" in args.parts:
        bench_svi()


if __name__ == "__main__":
    main()
