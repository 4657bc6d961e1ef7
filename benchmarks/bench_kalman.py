"""Kalman filter + RTS smoother: probkit vs statsmodels' compiled smoother on the same input.

Same parameters and observations for both; both produce the log-likelihood, the predicted
and filtered state moments, the smoothed state means and covariances and the lag-one
smoothed cross-covariances (statsmodels is asked for exactly those smoother outputs:
``SMOOTHER_STATE | SMOOTHER_STATE_COV | SMOOTHER_STATE_AUTOCOV``). Times are medians of
alternating repeats after one warm-up call each (numba compiles on first use); every run
checks that the two log-likelihoods and smoothed means agree.

Rows:
* ``default``: both libraries' defaults. Both filters stop recomputing the covariances once
  they reach the steady state (statsmodels: absolute change of the innovation determinant
  below 1e-19; probkit: relative change of the predicted covariance below 1e-13); probkit's
  smoother also reuses the steady-state gain and detects its own fixed point.
* ``every step``: the steady-state shortcut off on both sides (``tolerance = 0`` /
  ``steady_state_tol=0``): every covariance is computed.
* ``missing 5%``: 5% of the entries missing at random, defaults (no steady state possible).
* ``EM iteration``: one EM iteration of ``LinearGaussianSSM`` against pykalman's ``em``
  (pure numpy) on the same start (T=10,000).

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_kalman.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys

THREADS = "1"
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import alternate  # noqa: E402


def make_model(n, p, seed=0):
    rng = np.random.RandomState(seed)
    A = rng.normal(size=(n, n))
    A *= 0.95 / max(abs(np.linalg.eigvals(A)))
    G = rng.normal(size=(n, n))
    H = rng.normal(size=(p, p))
    return dict(transition_matrix=A, observation_matrix=rng.normal(size=(p, n)),
                transition_covariance=G @ G.T / n + 0.1 * np.eye(n), observation_covariance=H @ H.T / p + 0.5 * np.eye(p),
                initial_state_mean=np.zeros(n), initial_state_covariance=np.eye(n))


def statsmodels_runner(model, y, tolerance=None):
    from statsmodels.tsa.statespace.kalman_smoother import (SMOOTHER_STATE, SMOOTHER_STATE_AUTOCOV,
                                                            SMOOTHER_STATE_COV, KalmanSmoother)

    n, p = model["transition_matrix"].shape[0], model["observation_matrix"].shape[0]
    ks = KalmanSmoother(k_endog=p, k_states=n, k_posdef=n)
    ks.bind(np.array(y))
    ks["design"] = model["observation_matrix"]
    ks["obs_cov"] = model["observation_covariance"]
    ks["transition"] = model["transition_matrix"]
    ks["selection"] = np.eye(n)
    ks["state_cov"] = model["transition_covariance"]
    ks.initialize_known(model["initial_state_mean"], model["initial_state_covariance"])
    ks.smoother_output = SMOOTHER_STATE | SMOOTHER_STATE_COV | SMOOTHER_STATE_AUTOCOV
    if tolerance is not None:
        ks.tolerance = tolerance
    return ks.smooth


def probkit_runner(model, y, steady_state_tol=None):
    from probkit.inference.kalman import LinearGaussianParams, kalman_smoother

    params = LinearGaussianParams(**model)
    kwargs = {} if steady_state_tol is None else {"steady_state_tol": steady_state_tol}
    return lambda: kalman_smoother(y, params, **kwargs)


def smoother_case(label, T, n, p, missing, every_step, repeats):
    model = make_model(n, p)
    rng = np.random.RandomState(1)
    y = rng.normal(size=(T, p)) * 2
    if missing:
        y[rng.rand(T, p) < missing] = np.nan
    sm = statsmodels_runner(model, y, tolerance=0.0 if every_step else None)
    pk = probkit_runner(model, y, steady_state_tol=0.0 if every_step else None)
    ref, ours = sm(), pk()
    ll_diff = abs(ref.llf - float(ours.log_likelihood.sum()))
    mean_diff = float(np.abs(ref.smoothed_state.T - ours.smoothed_means.numpy()).max())
    cov_diff = float(np.abs(ref.smoothed_state_cov.transpose(2, 0, 1) - ours.smoothed_covariances.numpy()).max())
    del ref, ours
    medians, _ = alternate({"statsmodels": sm, "probkit": pk}, repeats)
    return dict(label=label, T=T, n=n, p=p, sm=medians["statsmodels"], pk=medians["probkit"],
                check=f"{ll_diff:.1e} / {max(mean_diff, cov_diff):.1e}")


def em_case(T, n, p, repeats):
    import warnings

    from pykalman import KalmanFilter

    from probkit import LinearGaussianSSM

    truth = make_model(n, p, seed=3)
    gen = LinearGaussianSSM(n, observation_covariance_type="full")
    for key, value in truth.items():
        setattr(gen, key + "_", value)
    y = gen.sample(T, random_state=0)[0]
    start = make_model(n, p, seed=4)

    def ours():
        est = LinearGaussianSSM(n, observation_covariance_type="full", init_params="", reg_covar=0.0, n_iter=1, tol=0)
        for key, value in start.items():
            setattr(est, key + "_", value.copy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.fit(y)

    def theirs():
        kf = KalmanFilter(transition_matrices=start["transition_matrix"], observation_matrices=start["observation_matrix"],
                          transition_covariance=start["transition_covariance"],
                          observation_covariance=start["observation_covariance"],
                          initial_state_mean=start["initial_state_mean"],
                          initial_state_covariance=start["initial_state_covariance"])
        return kf.em(y, n_iter=1, em_vars=["transition_matrices", "observation_matrices", "transition_covariance",
                                           "observation_covariance", "initial_state_mean", "initial_state_covariance"])

    a, b = ours(), theirs()
    diff = float(np.abs(a.transition_matrix_ - b.transition_matrices).max())
    medians, _ = alternate({"pykalman": theirs, "probkit": ours}, repeats)
    return dict(label="EM iteration (vs pykalman)", T=T, n=n, p=p, sm=medians["pykalman"], pk=medians["probkit"],
                check=f"A diff {diff:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import numba
    import statsmodels
    import torch

    torch.set_num_threads(int(THREADS))
    from probkit.utils.threads import set_num_threads

    set_num_threads(intra_op=1, workers=1)
    print(f"threads: {THREADS} (OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS, torch, probkit workers); "
          f"statsmodels {statsmodels.__version__}, numba {numba.__version__}, repeats {args.repeats}")
    rows = [
        smoother_case("default", 100_000, 8, 4, 0.0, False, args.repeats),
        smoother_case("every step", 100_000, 8, 4, 0.0, True, args.repeats),
        smoother_case("missing 5%", 100_000, 8, 4, 0.05, False, args.repeats),
        smoother_case("default", 1_000, 8, 4, 0.0, False, max(args.repeats, 21)),
        smoother_case("every step", 100_000, 2, 1, 0.0, True, args.repeats),
        em_case(10_000, 8, 4, max(3, args.repeats // 2)),
    ]
    print()
    print("| case | T | n | p | peer s | probkit s | ratio probkit/peer | check (log-lik / max moment diff) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['T']:,} | {r['n']} | {r['p']} | {r['sm']:.4f} | {r['pk']:.4f} | "
              f"**{r['pk'] / r['sm']:.3f}** | {r['check']} |")


if __name__ == "__main__":
    main()
