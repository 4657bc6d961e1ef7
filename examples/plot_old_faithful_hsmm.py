"""
Old Faithful's short and long eruptions: run lengths with a hidden semi-Markov model
====================================================================================

The 272 consecutive eruptions of the Old Faithful geyser (Azzalini & Bowman, 1990) are
either short (about 2 minutes) or long (about 4.3 minutes). An HMM says how a regime
ends only through a self-transition probability, so it assumes a *geometric* number of
eruptions per run. A :class:`probkit.HSMM` gives each regime its own distribution of run
lengths ("durations", counted in eruptions) and learns it by EM together with the
Gaussian eruption lengths of each regime, so the HMM's assumption can be tested.

We fit four duration families, compare them by log-likelihood and BIC, check that the
geometric HSMM is the HMM (the log-likelihood of a :class:`probkit.GaussianHMM`, up to
the truncation of runs at 15 eruptions), and plot the fitted duration distributions
against the run lengths of the decoded regimes. A short eruption is almost never followed by another short one; long eruptions
come in runs of one to about ten. A Poisson run length is clearly too narrow for the
long regime; the negative binomial and the non-parametric categorical fit a little
better than the geometric, but not by enough to pay for their extra parameters: by BIC
the HMM's geometric runs are adequate for these data.
"""

import os
import warnings

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import HSMM, GaussianHMM  # noqa: E402
from probkit.datasets import load_old_faithful  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

X, names = load_old_faithful()
eruptions = X[:, :1]  # minutes, in time order
max_duration = 15     # no run of one regime is longer in these data
n_iter = 40 if FAST else 300

models = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a fixed iteration budget in fast mode
    for family in ["geometric", "poisson", "negative_binomial", "categorical"]:
        models[family] = HSMM(emission="normal", n_components=2, duration=family, max_duration=max_duration,
                              n_iter=n_iter, tol=1e-6, random_state=0).fit(eruptions)
    hmm = GaussianHMM(2, n_iter=n_iter, tol=1e-6, random_state=0).fit(eruptions)

print(f"{'durations':<18} {'log-lik':>9} {'BIC':>8}   means (min)")
for family, model in models.items():
    order = np.argsort(model.emission_params_["loc"])
    print(f"{family:<18} {model.score(eruptions):9.2f} {model.bic(eruptions):8.2f}   "
          f"{np.round(model.emission_params_['loc'][order], 2)}")
print(f"{'GaussianHMM':<18} {hmm.score(eruptions):9.2f} {hmm.bic(eruptions):8.2f}   "
      f"{np.round(np.sort(hmm.means_[:, 0]), 2)}")
best = min(models, key=lambda f: models[f].bic(eruptions))
print(f"lowest BIC: {best} durations")

# %%
# The fitted duration distributions, with the run lengths of the Viterbi segmentation
# under the best model. The last run is cut by the end of the record, so it is left out
# of the histogram (the model treats it as right-censored).
model = models[best]
order = np.argsort(model.emission_params_["loc"])
_, states, starts = model.decode(eruptions, return_segments=True)
first = np.flatnonzero(starts)
runs = np.diff(np.r_[first, len(states)])[:-1]
run_states = states[first][:-1]
lengths = np.arange(1, max_duration + 1)

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
show = np.arange(80)
axes[0].plot(show, eruptions[show, 0], "o-", color="0.5", ms=3, lw=0.8)
for k, color in zip(order, ["C0", "C3"]):
    mask = states[show] == k
    axes[0].plot(show[mask], eruptions[show[mask], 0], "o", color=color, ms=4)
axes[0].set_xlabel("eruption number")
axes[0].set_ylabel(names[0] + " (min)")
axes[0].set_title(f"decoded regimes ({best} durations)")
for ax, k, label in zip(axes[1:], order, ["short", "long"]):
    observed = np.bincount(runs[run_states == k], minlength=max_duration + 1)[1:]
    ax.bar(lengths, observed / max(observed.sum(), 1), color="0.8", label="decoded run lengths")
    for family, style in [("geometric", "k--"), ("poisson", "C1.-"), ("negative_binomial", "C3o-")]:
        fitted = models[family]
        j = np.argsort(fitted.emission_params_["loc"])[list(order).index(k)]
        ax.plot(lengths, fitted.durationprob_[j], style, ms=4, label=family)
    ax.set_xlim(0.5, 10.5)
    ax.set_xlabel("eruptions in a run")
    ax.set_title(f"{label} eruptions: runs of one regime")
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "old_faithful_hsmm.png"), dpi=100)


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_old_faithful_hsmm`` makes them again):
#
# .. literalinclude:: /gallery_outputs/old_faithful_hsmm.txt
#    :language: text
#
# .. image:: /gallery_outputs/old_faithful_hsmm.png
#    :alt: figure of plot_old_faithful_hsmm.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/old_faithful_hsmm.png'
