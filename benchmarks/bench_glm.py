"""Generalised linear models: probkit vs statsmodels and scikit-learn, same data, unpenalised fits.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_glm.py [--repeats 5]

Every library runs with one BLAS/OpenMP thread (set in the environment before numpy is
imported, printed in the header). Times are medians of alternating repeats. What each
side computes:

* probkit: ``GeneralizedLinearModel(family).fit`` / ``GeneralizedLinearClassifier().fit``,
  which also compute the standard errors, deviance, null deviance, log-likelihood and AIC;
* statsmodels: ``GLM(y, [1, X], family).fit()`` (IRLS) and then the same statistics
  (``bse``, ``deviance``, ``null_deviance``, ``llf``, ``aic``);
* scikit-learn: ``PoissonRegressor(alpha=0)`` / ``LogisticRegression(C=inf)`` with the
  ``newton-cholesky`` solver and ``tol=1e-8`` (coefficients only).

The last columns give each library's largest coefficient difference from a reference fit
(statsmodels' IRLS run to a deviance change of 1e-14), so the times compare fits of equal accuracy.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import alternate  # noqa: E402

CASES = {
    "Poisson n=100,000 p=20": dict(family="poisson", n=100_000, p=20),
    "logistic n=100,000 p=20": dict(family="bernoulli", n=100_000, p=20),
    "Poisson n=100,000 p=50": dict(family="poisson", n=100_000, p=50),
    "logistic n=100,000 p=50": dict(family="bernoulli", n=100_000, p=50),
}


def make_case(name):
    c = CASES[name]
    rng = np.random.RandomState(0)
    X = rng.normal(size=(c["n"], c["p"])) / np.sqrt(c["p"])
    beta = rng.normal(size=c["p"])
    eta = 0.5 + X @ beta
    if c["family"] == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.rand(c["n"]) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y


def fitters(name):
    import statsmodels.api as sm
    from sklearn.linear_model import LogisticRegression, PoissonRegressor

    from probkit.glm import GeneralizedLinearClassifier, GeneralizedLinearModel

    X, y = make_case(name)
    Xc = sm.add_constant(X)
    poisson = CASES[name]["family"] == "poisson"
    sm_family = sm.families.Poisson() if poisson else sm.families.Binomial()

    def fit_statsmodels():
        res = sm.GLM(y, Xc, family=sm_family).fit()
        _ = (res.bse, res.deviance, res.null_deviance, res.llf, res.aic)
        return res.params[1:]

    def fit_probkit():
        model = (GeneralizedLinearModel("poisson") if poisson else GeneralizedLinearClassifier()).fit(X, y)
        return np.ravel(model.coef_)

    def fit_sklearn():
        model = (PoissonRegressor(alpha=0.0, solver="newton-cholesky", tol=1e-8) if poisson
                 else LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-8)).fit(X, y)
        return np.ravel(model.coef_)

    reference = sm.GLM(y, Xc, family=sm_family).fit(tol=1e-14, maxiter=100).params[1:]
    return {"statsmodels": fit_statsmodels, "sklearn": fit_sklearn, "probkit": fit_probkit}, reference


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import sklearn
    import statsmodels
    from threadpoolctl import threadpool_info

    blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    print(f"threads: OMP/MKL/OPENBLAS_NUM_THREADS=1 (BLAS pools report {blas}); statsmodels "
          f"{statsmodels.__version__}, scikit-learn {sklearn.__version__}; medians of {args.repeats} alternating "
          "repeats\n")
    print("| case | statsmodels s | sklearn s | probkit s | probkit/statsmodels | probkit/sklearn "
          "| max coef error: statsmodels / sklearn / probkit |")
    print("|---|---|---|---|---|---|---|")
    for name in args.cases:
        fns, reference = fitters(name)
        errors = {k: float(np.abs(fn() - reference).max()) for k, fn in fns.items()}  # also warms up
        medians, _ = alternate(fns, args.repeats)
        print(f"| {name} | {medians['statsmodels']:.3f} | {medians['sklearn']:.3f} | {medians['probkit']:.3f} | "
              f"**{medians['probkit'] / medians['statsmodels']:.3f}** | {medians['probkit'] / medians['sklearn']:.3f} "
              f"| {errors['statsmodels']:.1e} / {errors['sklearn']:.1e} / {errors['probkit']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
