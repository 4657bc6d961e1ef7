"""
Alternating eruptions: a Gaussian HMM on Old Faithful
=====================================================

The eruptions of Old Faithful are recorded in time order, and short eruptions tend to
be followed by long ones. A mixture ignores that order; a two-state
:class:`probkit.GaussianHMM` captures it in its transition matrix. We compare the
log-likelihood of both (the HMM's extra transition parameters pay for themselves), and
show the decoded states and the transition heatmap.
"""

import os

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import GaussianHMM, GaussianMixture  # noqa: E402
from probkit.datasets import load_old_faithful  # noqa: E402
from probkit.plotting import plot_mixture_2d, plot_states, plot_transition_matrix  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

X, names = load_old_faithful()
n_iter = 20 if FAST else 200

hmm = GaussianHMM(2, covariance_type="full", n_iter=n_iter, tol=1e-4, n_init=1 if FAST else 5,
                  random_state=0).fit(X)
gmm = GaussianMixture(2, covariance_type="full", random_state=0).fit(X)
order = np.argsort(hmm.means_[:, 0])
A = hmm.transmat_[np.ix_(order, order)]
print(f"HMM log-likelihood {hmm.score(X):.1f}, BIC {hmm.bic(X):.1f}")
print(f"GMM log-likelihood {gmm.score(X) * len(X):.1f}, BIC {gmm.bic(X):.1f}")
print(f"P(long after short) = {A[0, 1]:.2f}, P(long after long) = {A[1, 1]:.2f}")

# %%
# One display order (short, then long) for every panel, so that a state keeps its
# colour: ``order`` is passed to each plotting helper.
states = hmm.predict(X)
fig = plt.figure(figsize=(11, 6.5))
ax = fig.add_subplot(2, 1, 1)
plot_states(X[:100, 0], states[:100], ax=ax, ylabel="eruption (min)", state_names=["short", "long"], order=order,
            legend="outside")
ax.set_title("first 100 eruptions, coloured by decoded state")
ax = plot_mixture_2d(hmm, X, ax=fig.add_subplot(2, 2, 3), feature_names=names, order=order)
ax.set_title("states' emission covariances")
plot_transition_matrix(hmm.transmat_, ax=fig.add_subplot(2, 2, 4), state_names=["short", "long"], order=order)
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "old_faithful_hmm.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_old_faithful_hmm`` makes them again):
#
# .. literalinclude:: /gallery_outputs/old_faithful_hmm.txt
#    :language: text
#
# .. image:: /gallery_outputs/old_faithful_hmm.png
#    :alt: figure of plot_old_faithful_hmm.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/old_faithful_hmm.png'
