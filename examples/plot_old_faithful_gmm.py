"""
Choosing a Gaussian mixture for Old Faithful by BIC
===================================================

Old Faithful's eruptions form two clusters in (duration, waiting time). We fit
:class:`probkit.GaussianMixture` for every number of components and covariance type,
keep the model with the lowest Bayesian information criterion
``BIC = -2 log L + p log n``, and draw its components as covariance ellipses.
"""

import os

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import GaussianMixture  # noqa: E402
from probkit.datasets import load_old_faithful  # noqa: E402
from probkit.plotting import plot_criterion, plot_mixture_2d  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

X, names = load_old_faithful()
max_k = 3 if FAST else 6
types = ["full", "diag"] if FAST else ["full", "tied", "diag", "spherical"]

# %%
# Fit every candidate and record its BIC.
curves, best = {}, None
for covariance_type in types:
    ks, bics = [], []
    for k in range(1, max_k + 1):
        gm = GaussianMixture(k, covariance_type=covariance_type, n_init=1 if FAST else 3, random_state=0).fit(X)
        ks.append(k)
        bics.append(gm.bic(X))
        if best is None or bics[-1] < best[0]:
            best = (bics[-1], k, covariance_type, gm)
    curves[covariance_type] = (ks, bics)
bic, k, covariance_type, gm = best
print(f"best model: K={k}, covariance_type={covariance_type!r}, BIC={bic:.1f}")
for j in np.argsort(gm.means_[:, 0]):
    print(f"  weight {gm.weights_[j]:.3f}  mean {names[0]}={gm.means_[j, 0]:.2f} min, "
          f"{names[1]}={gm.means_[j, 1]:.1f} min")

# %%
# The BIC curves and the chosen mixture.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
plot_criterion(curves, ax=axes[0], chosen=(k, bic))
axes[0].set_title("BIC by number of components")
plot_mixture_2d(gm, X, ax=axes[1], feature_names=names)
axes[1].set_title(f"{k} components ({covariance_type})")
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "old_faithful_gmm.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_old_faithful_gmm`` makes them again):
#
# .. literalinclude:: /gallery_outputs/old_faithful_gmm.txt
#    :language: text
#
# .. image:: /gallery_outputs/old_faithful_gmm.png
#    :alt: figure of plot_old_faithful_gmm.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/old_faithful_gmm.png'
