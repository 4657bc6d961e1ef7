"""
Regimes of earthquake activity with a Poisson HMM
=================================================

Annual counts of major earthquakes (1900-2006) are over-dispersed for a single Poisson
distribution (mean 19.4, variance 51.6). A Poisson hidden Markov model explains them
as a few persistent regimes, each with its own rate: the state follows a Markov chain
``P(z_t = j | z_{t-1} = i) = A_ij`` and the count of year ``t`` is
``Poisson(lambda_{z_t})``. We pick the number of states by BIC, then decode the regime
of each year (Viterbi) and its posterior probability (forward-backward).
"""

import os
import warnings

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import PoissonHMM  # noqa: E402
from probkit.datasets import load_earthquakes  # noqa: E402
from probkit.plotting import plot_convergence, plot_posteriors, plot_states, plot_transition_matrix  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

years, counts = load_earthquakes()
X = counts.reshape(-1, 1)
print(f"{len(X)} years, mean {counts.mean():.2f}, variance {counts.var(ddof=1):.2f}")

# %%
# Fit 1 to 4 states (several restarts each) and compare BIC.
models = {}
for k in range(1, 3 if FAST else 5):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models[k] = PoissonHMM(k, n_iter=100 if not FAST else 20, tol=1e-4, n_init=1 if FAST else 10,
                               random_state=0).fit(X)
bics = {k: m.bic(X) for k, m in models.items()}
print("BIC: " + ", ".join(f"K={k}: {b:.1f}" for k, b in bics.items()))
k = min(bics, key=bics.get)
model = models[k]
order = np.argsort(model.lambdas_[:, 0])
print(f"chosen K={k}; rates {np.round(model.lambdas_[order, 0], 2).tolist()}")
print("transition matrix (states by rate):")
print(np.round(model.transmat_[np.ix_(order, order)], 3))

# %%
# Decoded regimes, posterior probabilities, transitions and the EM trace.
states = np.argsort(order)[model.predict(X)]  # relabel states by increasing rate
proba = model.predict_proba(X)[:, order]
fig = plt.figure(figsize=(11, 7))
ax1 = fig.add_subplot(3, 1, 1)
plot_states(counts, states, ax=ax1, time=years, ylabel="major earthquakes")
for j in range(k):
    ax1.hlines(model.lambdas_[order[j], 0], years[states == j].min(), years[states == j].max(),
               color="k", lw=1, ls=":")
ax2 = fig.add_subplot(3, 1, 2, sharex=ax1)
plot_posteriors(proba, ax=ax2, time=years)
plot_transition_matrix(model.transmat_[np.ix_(order, order)], ax=fig.add_subplot(3, 2, 5))
plot_convergence(model, ax=fig.add_subplot(3, 2, 6))
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "earthquakes_poisson_hmm.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_earthquakes_poisson_hmm`` makes them again):
#
# .. literalinclude:: /gallery_outputs/earthquakes_poisson_hmm.txt
#    :language: text
#
# .. image:: /gallery_outputs/earthquakes_poisson_hmm.png
#    :alt: figure of plot_earthquakes_poisson_hmm.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/earthquakes_poisson_hmm.png'
