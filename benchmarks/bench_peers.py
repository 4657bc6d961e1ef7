"""probkit vs pomegranate 1.1 and dynamax 1.0 (jax on CPU): Gaussian HMM and Gaussian mixture EM.

Same data, same initial parameters, same number of EM iterations with the convergence test
disabled; times are medians of alternating repeats after one warm-up call each (numba, torch
and jax compile on first use). Every library runs in float64 on one thread: BLAS/OpenMP/numba
pools through the environment, jax through ``XLA_FLAGS`` (single-threaded Eigen, one intra-op
thread) with ``jax_enable_x64``, pomegranate through torch's thread count.

The final log-likelihood column is each fitted model's log-likelihood of the whole data at its
final parameters, computed by the library itself after the timed fits.

Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_peers.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _threads  # noqa: E402  (first: sets the thread count of every library before numpy loads)

os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if _threads.THREADS > 1 else 'false'} "
                           f"intra_op_parallelism_threads={_threads.THREADS}")

import numpy as np  # noqa: E402

from _common import alternate  # noqa: E402

HMM_K, HMM_D, HMM_SEQ, HMM_T, HMM_ITER = 4, 2, 20, 500, 20
GMM_K, GMM_D, GMM_N, GMM_ITER = 8, 4, 50_000, 20


def hmm_case(seed=0):
    """Sequences from a sticky diagonal Gaussian HMM; the start is the truth's means perturbed."""
    rng = np.random.RandomState(seed)
    A = 0.8 * np.eye(HMM_K) + 0.2 * rng.dirichlet(np.ones(HMM_K), size=HMM_K)
    A /= A.sum(1, keepdims=True)
    means = rng.normal(0, 3, (HMM_K, HMM_D))
    sds = np.sqrt(rng.uniform(0.5, 2.0, (HMM_K, HMM_D)))
    X = np.empty((HMM_SEQ, HMM_T, HMM_D))
    for s in range(HMM_SEQ):
        z = rng.randint(HMM_K)
        for t in range(HMM_T):
            if t:
                z = rng.choice(HMM_K, p=A[z])
            X[s, t] = means[z] + sds[z] * rng.normal(size=HMM_D)
    init = dict(startprob=np.full(HMM_K, 1.0 / HMM_K), transmat=np.full((HMM_K, HMM_K), 1.0 / HMM_K),
                means=means + rng.normal(0, 0.5, (HMM_K, HMM_D)), covars=np.ones((HMM_K, HMM_D)))
    return X, init


def gmm_case(seed=0):
    """Draws from a full-covariance mixture; the start is K data points, equal weights, identity covariances."""
    rng = np.random.RandomState(seed)
    means = rng.normal(0, 4, (GMM_K, GMM_D))
    factors = rng.normal(0, 0.6, (GMM_K, GMM_D, GMM_D)) + np.eye(GMM_D)
    z = rng.choice(GMM_K, size=GMM_N, p=rng.dirichlet(np.full(GMM_K, 5.0)))
    X = means[z] + np.einsum("nij,nj->ni", factors[z], rng.normal(size=(GMM_N, GMM_D)))
    init = dict(weights=np.full(GMM_K, 1.0 / GMM_K), means=X[rng.choice(GMM_N, GMM_K, replace=False)].copy(),
                covs=np.tile(np.eye(GMM_D), (GMM_K, 1, 1)))
    return X, init


# ---------------------------------------------------------------------------------------------
# Gaussian HMM
# ---------------------------------------------------------------------------------------------

def probkit_hmm(init, n_iter):
    import probkit

    m = probkit.GaussianHMM(HMM_K, covariance_type="diag", init_params="", n_iter=n_iter, tol=-np.inf)
    m.startprob_, m.transmat_ = init["startprob"].copy(), init["transmat"].copy()
    m.means_, m.covars_ = init["means"].copy(), init["covars"].copy()
    return m


def pomegranate_hmm(init, n_iter):
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.hmm import DenseHMM

    dists = [Normal(means=torch.tensor(init["means"][k]), covs=torch.tensor(init["covars"][k]),
                    covariance_type="diag") for k in range(HMM_K)]
    m = DenseHMM(dists, edges=torch.tensor(init["transmat"]), starts=torch.tensor(init["startprob"]),
                 ends=torch.ones(HMM_K, dtype=torch.float64), max_iter=n_iter)
    m.tol = -float("inf")  # the constructor accepts tol >= 0 only; -inf never stops early
    return m.double()  # float64 parameters alone leave its emission matrices float32


def dynamax_hmm(init):
    import jax.numpy as jnp
    import jax.random as jr
    from dynamax.hidden_markov_model import DiagonalGaussianHMM

    # Flat Dirichlet priors make the start and transition M-steps maximum likelihood; the emission
    # M-step keeps dynamax's weak normal-inverse-gamma prior (it has no prior-free option).
    hmm = DiagonalGaussianHMM(HMM_K, HMM_D, initial_probs_concentration=1.0, transition_matrix_concentration=1.0)
    params, props = hmm.initialize(jr.PRNGKey(0), initial_probs=jnp.asarray(init["startprob"]),
                                   transition_matrix=jnp.asarray(init["transmat"]),
                                   emission_means=jnp.asarray(init["means"]),
                                   emission_scale_diags=jnp.asarray(np.sqrt(init["covars"])))
    return hmm, params, props


def hmm_workload(repeats):
    import jax
    import jax.numpy as jnp
    import torch

    X, init = hmm_case()
    flat, lengths = X.reshape(-1, HMM_D), [HMM_T] * HMM_SEQ
    Xt, Xj = torch.tensor(X), jnp.asarray(X)
    hmm, params0, props = dynamax_hmm(init)
    fitted = {}

    def run_probkit(n_iter=HMM_ITER):
        fitted["probkit"] = probkit_hmm(init, n_iter).fit(flat, lengths=lengths)

    def run_pomegranate(n_iter=HMM_ITER):
        fitted["pomegranate"] = pomegranate_hmm(init, n_iter).fit(Xt)

    # fit_em builds a new jitted closure on every call, so each direct call traces and compiles
    # again; wrapped in one jit, the warm-up compiles it once and the timed calls run compiled code.
    fit_em_jitted = jax.jit(lambda params, x: hmm.fit_em(params, props, x, num_iters=HMM_ITER, verbose=False)[0])

    def run_dynamax():
        fitted["dynamax"] = jax.block_until_ready(fit_em_jitted(params0, Xj))

    def run_dynamax_direct():
        params, _ = hmm.fit_em(params0, props, Xj, num_iters=HMM_ITER, verbose=False)
        jax.block_until_ready(params)

    run_probkit(2), run_pomegranate(2), run_dynamax(), run_dynamax_direct()  # warm-up: compilation
    med, _ = alternate({"probkit": run_probkit, "pomegranate": run_pomegranate, "dynamax": run_dynamax,
                        "dynamax, fit_em called directly": run_dynamax_direct}, repeats)
    loglik = {
        "probkit": fitted["probkit"].score(flat, lengths=lengths),
        "pomegranate": float(fitted["pomegranate"].log_probability(Xt).sum()),
        "dynamax": float(jax.vmap(lambda x: hmm.marginal_log_prob(fitted["dynamax"], x))(Xj).sum()),
    }
    loglik["dynamax, fit_em called directly"] = loglik["dynamax"]
    return med, loglik


# ---------------------------------------------------------------------------------------------
# Gaussian mixture
# ---------------------------------------------------------------------------------------------

def gmm_workload(repeats):
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    import probkit

    X, init = gmm_case()
    Xt = torch.tensor(X)
    fitted = {}

    def run_probkit(n_iter=GMM_ITER):
        m = probkit.GaussianMixture(GMM_K, covariance_type="full", max_iter=n_iter, tol=0.0, reg_covar=0.0,
                                    weights_init=init["weights"], means_init=init["means"],
                                    precisions_init=np.linalg.inv(init["covs"]))
        fitted["probkit"] = m.fit(X)

    def run_pomegranate(n_iter=GMM_ITER):
        dists = [Normal(means=torch.tensor(init["means"][k]), covs=torch.tensor(init["covs"][k]),
                        covariance_type="full") for k in range(GMM_K)]
        m = GeneralMixtureModel(dists, priors=torch.tensor(init["weights"]), max_iter=n_iter)
        m.tol = -float("inf")  # the constructor accepts tol >= 0 only; -inf never stops early
        fitted["pomegranate"] = m.double().fit(Xt)

    run_probkit(2), run_pomegranate(2)  # warm-up
    med, _ = alternate({"probkit": run_probkit, "pomegranate": run_pomegranate}, repeats)
    loglik = {"probkit": fitted["probkit"].score(X) * GMM_N,
              "pomegranate": float(fitted["pomegranate"].log_probability(Xt).sum())}
    return med, loglik


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    _threads.add_argument(parser)
    args = parser.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    _threads.apply()
    warnings.simplefilter("ignore")
    import dynamax
    import pomegranate

    print(_threads.header())
    print(f"jax {jax.__version__} (XLA_FLAGS={os.environ['XLA_FLAGS']!r}, x64), dynamax {dynamax.__version__}, "
          f"pomegranate {getattr(pomegranate, '__version__', '1.x')}; float64 everywhere\n")
    print(f"## EM fits, same start, convergence test off; medians of {args.repeats} alternating repeats\n")
    print("| workload | library | s | ratio probkit / peer | final log-likelihood |")
    print("|---|---|---|---|---|")
    med, ll = hmm_workload(args.repeats)
    name = (f"GaussianHMM diag, K={HMM_K}, D={HMM_D}, {HMM_SEQ}x{HMM_T} steps, {HMM_ITER} it.")
    for lib in ("probkit", "pomegranate", "dynamax", "dynamax, fit_em called directly"):
        ratio = "" if lib == "probkit" else f"{med['probkit'] / med[lib]:.3f}"
        print(f"| {name} | {lib} | {med[lib]:.3f} | {ratio} | {ll[lib]:.3f} |", flush=True)
    med, ll = gmm_workload(args.repeats)
    name = f"GaussianMixture full, K={GMM_K}, D={GMM_D}, N={GMM_N:,}, {GMM_ITER} it."
    for lib in ("probkit", "pomegranate"):
        ratio = "" if lib == "probkit" else f"{med['probkit'] / med[lib]:.3f}"
        print(f"| {name} | {lib} | {med[lib]:.3f} | {ratio} | {ll[lib]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
