"""LatentDirichletAllocation: probkit vs scikit-learn, same corpus, same random state, same iterations.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_lda.py [--repeats 5] [--threads 1]

The corpus is the tiny-shakespeare speeches, two per document (3,611 documents), counted
with scikit-learn's CountVectorizer (``probkit.topics.shakespeare_speeches``). Both libraries
fit from the same ``random_state`` (probkit draws scikit-learn's initialisation), run the same
number of passes (no early stopping) on the same number of threads, set through the
environment before numpy is imported and printed in the header; times are medians of
alternating repeats after one warm-up fit each (numba compiles probkit's kernels on first use).
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv():
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


THREADS = _threads_from_argv()
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import alternate  # noqa: E402

CASES = {
    "batch K=10, 10 passes": dict(n_components=10, learning_method="batch", max_iter=10),
    "online K=10, 5 passes, batch 256": dict(n_components=10, learning_method="online", max_iter=5, batch_size=256),
    "batch K=50, 5 passes": dict(n_components=50, learning_method="batch", max_iter=5),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import sklearn
    import torch
    from sklearn.decomposition import LatentDirichletAllocation as SkLDA

    import probkit
    from probkit import LatentDirichletAllocation
    from probkit.topics import shakespeare_speeches

    torch.set_num_threads(args.threads)
    X, vocab = shakespeare_speeches(speeches_per_document=2)
    n_jobs = None if args.threads == 1 else args.threads
    print(f"corpus: {X.shape[0]} documents, {X.shape[1]} words, {int(X.sum())} tokens, {X.nnz} non-zeros")
    print(f"threads: {args.threads} (OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS={THREADS}, n_jobs={n_jobs}); "
          f"scikit-learn {sklearn.__version__}, probkit {probkit.__version__}; medians of {args.repeats} "
          "alternating repeats")
    print()
    print("| case | scikit-learn s | probkit s | ratio probkit/sklearn | max rel. diff components_ | perplexity (sk / pk) |")
    print("|---|---|---|---|---|---|")
    for name, kw in CASES.items():
        kw = dict(kw, random_state=0, n_jobs=n_jobs)
        fits = {}

        def sk():
            fits["sk"] = SkLDA(**kw).fit(X)

        def pk():
            fits["pk"] = LatentDirichletAllocation(**kw).fit(X)

        sk()
        pk()  # warm-up: numba compiles (or loads) the kernels
        medians, _ = alternate({"sk": sk, "pk": pk}, args.repeats)
        a, b = fits["sk"].components_, fits["pk"].components_
        diff = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
        print(f"| {name} | {medians['sk']:.3f} | {medians['pk']:.3f} | **{medians['pk'] / medians['sk']:.3f}** | "
              f"{diff:.1e} | {fits['sk'].bound_:.2f} / {fits['pk'].bound_:.2f} |")


if __name__ == "__main__":
    main()
