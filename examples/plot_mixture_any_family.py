"""
Mixtures of any exponential family: Gamma components for durations
==================================================================

Eruption durations are positive and skewed. :class:`probkit.MixtureModel` fits a
mixture of any probkit family by EM: the E-step computes responsibilities
``r_nk ∝ w_k p_k(x_n)``, the M-step fits each component from its responsibility-weighted
sufficient statistics. Here two Gamma components are compared with two Normal ones
and with a Normal + Gamma mixture (listed components may mix families).
"""

import os
import warnings

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402

from probkit import MixtureModel  # noqa: E402
from probkit.datasets import load_old_faithful  # noqa: E402
from probkit.distributions import Gamma, Normal  # noqa: E402
from probkit.plotting import plot_mixture_density  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

X, names = load_old_faithful()
x = X[:, :1]
candidates = {
    "2 x Normal": MixtureModel("normal", 2, n_init=1 if FAST else 5, random_state=0),
    "2 x Gamma": MixtureModel(Gamma, 2, n_init=1 if FAST else 5, random_state=0),
    "Normal + Gamma": MixtureModel(components=[Normal(), Gamma()], n_init=1 if FAST else 5, random_state=0),
}
fitted = {}
for name, model in candidates.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted[name] = model.fit(x)
    print(f"{name:<15} log-likelihood {model.score(x) * len(x):8.2f}  BIC {model.bic(x):8.2f}  "
          f"weights {[round(float(w), 3) for w in model.weights_]}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, (name, model) in zip(axes, fitted.items()):
    plot_mixture_density(model, x[:, 0], ax=ax, feature_name="eruption duration (min)")
    ax.set_title(f"{name}: BIC {model.bic(x):.1f}")
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "mixture_any_family.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_mixture_any_family`` makes them again):
#
# .. literalinclude:: /gallery_outputs/mixture_any_family.txt
#    :language: text
#
# .. image:: /gallery_outputs/mixture_any_family.png
#    :alt: figure of plot_mixture_any_family.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/mixture_any_family.png'
