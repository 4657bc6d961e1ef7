"""
A variational autoencoder on handwritten digits
===============================================

scikit-learn's 1,797 digits are 8 x 8 images with 17 grey levels. Thresholded at half
intensity they become 64 binary pixels, and a :class:`probkit.neural.VAE` with a
Bernoulli likelihood explains them by an 8-dimensional latent vector: an encoder MLP
gives the approximate posterior ``q(z | x)``, a decoder MLP the pixel probabilities
``p(x | z)``. It is fitted by maximising Pyro's ELBO on 1,500 images and evaluated on
the other 297:

* the held-out ELBO and importance-weighted bound (IWAE, 256 draws per image): both
  lower-bound the log-likelihood, and IWAE >= ELBO;
* against the exact log-likelihood of independent pixels (each pixel its own Bernoulli,
  fitted by maximum likelihood): what the latent vector buys.

The figure shows test images and their reconstructions (decoded posterior means),
images decoded from draws of the prior, and the posterior means of the test images
projected on their two principal axes, coloured by the digit they show.
"""

import os

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from probkit.neural import VAE  # noqa: E402

torch.set_num_threads(1)   # small MLPs: one thread is fastest and avoids OpenMP stalls
# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

digits = load_digits()
X = (digits.data >= 8).astype(float)
order = np.random.RandomState(0).permutation(len(X))
train, test = order[:1500], order[1500:]
X_train, X_test, y_test = X[train], X[test], digits.target[test]

vae = VAE(8, "bernoulli", encoder_layers=(128,), decoder_layers=(128,), lr=3e-3, batch_size=64,
          max_epochs=5 if FAST else 300, patience=20, random_state=0).fit(X_train)
bounds = vae.bounds(X_test, n_particles=32 if FAST else 256)

p = X_train.mean(0).clip(1e-3, 1 - 1e-3)
independent = (X_test * np.log(p) + (1 - X_test) * np.log1p(-p)).sum(1)
print(f"trained {vae.n_iter_} epochs (best {vae.best_epoch_})")
print(f"held-out nats per image: VAE ELBO {bounds['elbo'].mean():.2f}, IWAE bound {bounds['iwae'].mean():.2f}; "
      f"independent pixels (exact) {independent.mean():.2f}")

# %%
recon = vae.inverse_transform(vae.transform(X_test[:10]))
samples, _ = vae.sample(10, random_state=1)
prior_means = vae.inverse_transform(np.random.RandomState(2).randn(10, 8))
rows = [("test images", X_test[:10]), ("reconstructions", recon),
        ("prior draws: p(x | z)", prior_means), ("prior draws: sampled x", samples)]
fig = plt.figure(figsize=(11, 9), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=[1.2, 1])
grid = top.subplots(len(rows), 10)
for r, (title, images) in enumerate(rows):
    for c in range(10):
        ax = grid[r, c]
        ax.imshow(images[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    grid[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
ax, ax2 = bottom.subplots(1, 2)
z2 = PCA(2).fit_transform(vae.transform(X_test))
sc = ax.scatter(z2[:, 0], z2[:, 1], c=y_test, cmap="tab10", s=10)
fig.colorbar(sc, ax=ax, label="digit")
ax.set_title("posterior means of the test images (2 principal axes)")
ax2.plot(vae.elbo_history_, label="training")
if vae.history_["val_loss"]:
    ax2.plot(-np.asarray(vae.history_["val_loss"]), label="validation")
ax2.axhline(independent.mean(), color="grey", ls="--", label="independent pixels (test, exact)")
ax2.set_xlabel("epoch")
ax2.set_ylabel("ELBO per image (nats)")
ax2.legend()
fig.savefig(os.path.join(OUT, "vae_digits.png"), dpi=100)


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_vae_digits`` makes them again):
#
# .. literalinclude:: /gallery_outputs/vae_digits.txt
#    :language: text
#
# .. image:: /gallery_outputs/vae_digits.png
#    :alt: figure of plot_vae_digits.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/vae_digits.png'
