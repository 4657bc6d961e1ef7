"""
Sunspot cycles: a neural HMM against a Gaussian HMM
===================================================

Yearly sunspot numbers (1700-2008) rise and fall in cycles of about eleven years. A
:class:`probkit.GaussianHMM` with four states sees every year as an independent draw
from its current state's Gaussian, so it can only describe *levels*. A
:class:`probkit.neural.NeuralHMM` with the same four states computes each state's mean
and variance from the previous years through a small GRU backbone: the states now
can describe where in the cycle a year lies, and the next value is
predicted from where the cycle is (the decoded states below split the years by phase as
well as by level).

Both models are fitted to 1700-1919 and scored on 1920-2008 by the held-out
log-likelihood per year, ``(log p(x_all) - log p(x_train)) / n_test`` (the test years
predicted with the training years as context). The neural model starts from the fitted
Gaussian HMM (``init="hmm"``) and trains for a fixed 60 epochs; the test years are never
seen while fitting. (On 220 training points the smallest backbones generalise best:
``benchmarks/results_neural_lvm.md`` compares sizes, kinds and seeds.) The data are
``sqrt(sunspots)``, a common variance-stabilising transform, for both models.
"""

import os
import warnings

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from probkit import GaussianHMM  # noqa: E402
from probkit.datasets import load_sunspots  # noqa: E402
from probkit.neural import NeuralHMM  # noqa: E402
from probkit.plotting import plot_states  # noqa: E402

torch.set_num_threads(1)   # small sequential models: one thread is fastest and avoids OpenMP stalls
# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

years, sunspots = load_sunspots()
x = np.sqrt(sunspots)[:, None]
n_train = int(np.searchsorted(years, 1920))
X_train = x[:n_train]
K = 4

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    hmm = GaussianHMM(K, n_iter=30 if FAST else 200, n_init=1 if FAST else 5, random_state=0).fit(X_train)
nh = NeuralHMM(K, backbone="gru", d_model=8, n_layers=1, lr=1e-2, max_epochs=20 if FAST else 60,
               early_stopping=False, random_state=0).fit(X_train)


def held_out_per_year(model):
    """log p(test | train) per test year."""
    return (model.score(x) - model.score(X_train)) / (len(x) - n_train)


print(f"training years {years[0]}-{years[n_train - 1]}, test years {years[n_train]}-{years[-1]}")
print(f"GaussianHMM (K={K}) held-out log-likelihood per year: {held_out_per_year(hmm):.3f}")
print(f"NeuralHMM   (K={K}) held-out log-likelihood per year: {held_out_per_year(nh):.3f} "
      f"({nh.n_iter_} epochs)")
print(f"NeuralHMM starting point (its init_hmm_): {held_out_per_year(nh.init_hmm_):.3f}")

# %%
# Decoded states, and the one-step predictive log-density of every test year.
fig, axes = plt.subplots(3, 1, figsize=(11, 9))
plot_states(x[:, 0], hmm.predict(x), ax=axes[0], time=years, ylabel="sqrt(sunspots)")
axes[0].set_title("GaussianHMM: states are levels")
plot_states(x[:, 0], nh.predict(x), ax=axes[1], time=years, ylabel="sqrt(sunspots)")
axes[1].set_title("NeuralHMM: states read the recent years as well as the level")
for ax in axes[:2]:
    ax.axvline(years[n_train], color="k", ls="--", lw=1)
test = slice(n_train, None)
axes[2].plot(years[test], hmm.score_samples(x)[test], label=f"GaussianHMM ({held_out_per_year(hmm):.2f}/year)")
axes[2].plot(years[test], nh.score_samples(x)[test], label=f"NeuralHMM ({held_out_per_year(nh):.2f}/year)")
axes[2].set_ylabel("log p(x_t | x_<t)")
axes[2].set_title("test years: one-step predictive log-density")
axes[2].legend()
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "neural_hmm_sunspots.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_neural_hmm_sunspots`` makes them again):
#
# .. literalinclude:: /gallery_outputs/neural_hmm_sunspots.txt
#    :language: text
#
# .. image:: /gallery_outputs/neural_hmm_sunspots.png
#    :alt: figure of plot_neural_hmm_sunspots.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/neural_hmm_sunspots.png'
