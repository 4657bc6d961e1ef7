"""
Variational Bayes, Gibbs sampling and NUTS on the earthquake HMM
================================================================

Three ways to the posterior of a two-state Poisson hidden Markov model of the annual
counts of major earthquakes (1900-2006), with the same priors (Dirichlet rows for the
start and transition probabilities, a Gamma prior on each rate):

* **variational Bayes** (``VariationalHMM(inference="vem")``): a factorised
  approximation ``q(start) q(transitions) q(rates) q(states)`` by closed-form coordinate
  ascent -- fast, deterministic, but narrower than the posterior;
* **Gibbs sampling** (:func:`probkit.vi.gibbs_hmm`): exact conditional draws -- Dirichlet
  rows and Gamma rates given the state path, the whole path by forward filtering,
  backward sampling;
* **NUTS** (``VariationalHMM(inference="nuts")``, Pyro): Hamiltonian Monte Carlo on the
  parameters with the state paths summed out.

For the samplers, the price of an effective sample -- wall time divided by the smallest
bulk effective sample size over the parameters -- is the fair comparison; the labels of
every draw are ordered by rate (the posterior is symmetric under swapping the states).
"""

import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import VariationalHMM  # noqa: E402
from probkit.datasets import load_earthquakes  # noqa: E402
from probkit.distributions import Gamma  # noqa: E402
from probkit.vi import ess, gibbs_hmm, rhat  # noqa: E402

FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)

years, counts = load_earthquakes()
X = counts.reshape(-1, 1).astype(float)
print(f"{len(X)} years of counts, mean {counts.mean():.2f}")


def ordered(rate, trans):
    """Relabel every draw so that state 0 has the lower rate: (..., 2) rates and stay probabilities."""
    flip = rate[..., 0, 0] > rate[..., 1, 0]
    rate = np.where(flip[..., None, None], rate[..., ::-1, :], rate)
    trans = np.where(flip[..., None, None], trans[..., ::-1, ::-1], trans)
    return np.concatenate([rate[..., 0], np.stack([trans[..., 0, 0], trans[..., 1, 1]], -1)], -1)


NAMES = ["rate (calm)", "rate (active)", "P(stay calm)", "P(stay active)"]

# %%
# Variational Bayes: the fit, then independent draws from q.
t0 = time.perf_counter()
vb = VariationalHMM(2, emission="poisson", random_state=0).fit(X)
vb_time = time.perf_counter() - t0
rng = np.random.RandomState(0)
n_q = 2000
rate_q = rng.gamma(vb.lambdas_posterior_[0], 1.0 / vb.lambdas_posterior_[1], size=(n_q, 2, 1))
rows = np.stack([rng.dirichlet(a, size=n_q) for a in vb.transmat_posterior_], axis=1)
vb_draws = ordered(rate_q, rows)[None]

# %%
# Gibbs sampling with the priors of the variational model.
n_chains, n_draws, warmup = (2, 300, 100) if FAST else (4, 2000, 500)
t0 = time.perf_counter()
gibbs = gibbs_hmm(X, "poisson", 2, startprob_prior=vb.startprob_prior_, transmat_prior=vb.transmat_prior_,
                  emission_prior=Gamma(concentration=vb.lambdas_prior_, rate=vb.lambdas_weight_),
                  n_samples=n_draws, warmup=warmup, n_chains=n_chains, random_state=0)
gibbs_time = time.perf_counter() - t0
gibbs_draws = ordered(gibbs.samples["rate"], gibbs.samples["transmat"])

# %%
# NUTS: one chain per fit (started at the variational posterior mean), several seeds.
nuts_chains, nuts_draws, nuts_warmup = (1, 40, 40) if FAST else (2, 500, 300)
chains = []
t0 = time.perf_counter()
for seed in range(nuts_chains):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = VariationalHMM(2, emission="poisson", inference="nuts", num_samples=nuts_draws,
                             warmup_steps=nuts_warmup, random_state=seed).fit(X)
    chains.append(ordered(fit.posterior_samples_["rate"], fit.posterior_samples_["transmat"]))
nuts_time = time.perf_counter() - t0
nuts_draws_arr = np.stack(chains)

# %%
# Posterior summaries and the cost of an effective sample.
print(f"{'':16s}" + "".join(f"{n:>18s}" for n in NAMES))
for label, draws in (("VB (q)", vb_draws), ("Gibbs", gibbs_draws), ("NUTS", nuts_draws_arr)):
    mean, sd = draws.mean(axis=(0, 1)), draws.std(axis=(0, 1))
    print(f"{label:16s}" + "".join(f"{m:11.3f} ± {s:5.3f}" for m, s in zip(mean, sd)))
rows_out = []
for label, draws, seconds in (("Gibbs", gibbs_draws, gibbs_time), ("NUTS", nuts_draws_arr, nuts_time)):
    bulk = ess(draws)
    r = rhat(draws) if draws.shape[0] > 1 else np.full(4, np.nan)
    rows_out.append((label, seconds, draws.shape[0] * draws.shape[1], bulk.min(), seconds / bulk.min(), r.max()))
print(f"VB fit: {vb_time:.2f} s (draws from q are independent)")
print("sampler  seconds  draws  min bulk ESS  seconds per effective sample  max R-hat")
for label, seconds, n, e, cost, r in rows_out:
    print(f"{label:7s} {seconds:8.2f} {n:6d} {e:13.0f} {cost:29.5f} {r:10.3f}")
ratio = rows_out[1][4] / rows_out[0][4]
print(f"an effective sample costs {ratio:.0f} times more with NUTS than with Gibbs")

# %%
# The marginal posteriors: variational q is narrower than the two samplers' agreement.
fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
for j, ax in enumerate(axes[:4]):
    for label, draws, color in (("VB", vb_draws, "C0"), ("Gibbs", gibbs_draws, "C1"), ("NUTS", nuts_draws_arr, "C2")):
        ax.hist(draws[..., j].ravel(), bins=40, density=True, histtype="step", color=color, label=label, lw=1.5)
    ax.set_title(NAMES[j])
axes[0].legend()
axes[4].bar(["Gibbs", "NUTS"], [rows_out[0][4], rows_out[1][4]], color=["C1", "C2"])
axes[4].set_yscale("log")
axes[4].set_title("seconds per effective sample")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "vb_gibbs_nuts_earthquakes.png"), dpi=100)
