"""
MambaOut's hypothesis on handwritten digits: is the SSM needed for image classification?
=========================================================================================

MambaOut (Yu & Wang, 2024) argues that Mamba's selective state space model is not
needed for image classification: a *Gated CNN* block -- Mamba's block with the SSM
removed -- classifies ImageNet as well as or better than Mamba-based vision models.

Here, at a very small scale, each 8x8 image of scikit-learn's ``load_digits`` becomes a
sequence of 16 ViT-style patch tokens (2x2 pixels each, raster order), classified by
:class:`probkit.neural.SequenceClassifier` with mean pooling over the tokens, for two
token mixers with about the same number of parameters: the Gated CNN (``"mambaout"``)
and Mamba. Two small 2-D CNNs, a VGG-style and a ResNet-style one trained with the same
loop (:func:`probkit.neural.train_module`), are the reference. Test accuracy is
averaged over seeds (the same split each time). MambaOut's second observation, that a
ViT loses accuracy when its attention is made causal, has its own example
(``plot_neural_vit_causal_digits.py``): transformers need a longer, augmented training
on this small data set to reach their plateau.
"""

import os
import time

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

from probkit.neural import SequenceClassifier, count_parameters, train_module  # noqa: E402
from probkit.neural.estimators import seeded  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore
torch.set_num_threads(1)   # small models: one thread avoids OpenMP stalls on shared cores

digits = load_digits()
images, labels = digits.images / 16.0, digits.target
if FAST:
    images, labels = images[:200], labels[:200]
idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=0)
# 16 tokens of 2x2 pixels: (N, 8, 8) -> (N, 4, 2, 4, 2) -> (N, 4, 4, 2, 2) -> (N, 16, 4)
patches = images.reshape(-1, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(-1, 16, 4)
print(f"{len(idx_train)} training and {len(idx_test)} test images, as sequences of {patches.shape[1]} "
      f"tokens of {patches.shape[2]} pixels")

SEEDS = [0] if FAST else [0, 1, 2]
EPOCHS = 1 if FAST else 40
common = dict(d_model=32, n_layers=2, pooling="mean", batch_size=64, max_epochs=EPOCHS, lr=3e-3,
              early_stopping=not FAST, patience=8)
MIXERS = {
    "Gated CNN (MambaOut)": dict(backbone="mambaout"),
    "Mamba": dict(backbone="mamba"),
}


# %%
# Two 2-D CNN baselines on the 8x8 images, trained by the same loop
class VGGish(nn.Module):
    """conv3x3-conv3x3-pool twice, then a linear classifier."""

    def __init__(self, width=16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2))
        self.fc = nn.Linear(2 * w * 4, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class ResBlock(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(w, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1)
        self.n1, self.n2 = nn.BatchNorm2d(w), nn.BatchNorm2d(w)

    def forward(self, x):
        return F.relu(x + self.n2(self.c2(F.relu(self.n1(self.c1(x))))))


class ResNetish(nn.Module):
    """A stem convolution, two residual blocks, global average pooling."""

    def __init__(self, width=24):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(ResBlock(width), ResBlock(width))
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def fit_cnn(make, seed):
    with seeded(seed):
        net = make()
    X = torch.tensor(images[idx_train, None], dtype=torch.float32)
    y = torch.tensor(labels[idx_train])
    train_module(net, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (X, y), batch_size=64, max_epochs=EPOCHS,
                 lr=3e-3, validation_fraction=0.1 if not FAST else 0.0, patience=8, random_state=seed)
    with torch.no_grad():
        pred = net(torch.tensor(images[idx_test, None], dtype=torch.float32)).argmax(1).numpy()
    return float(np.mean(pred == labels[idx_test])), count_parameters(net)


# %%
# Train every model with every seed
results = {}
for name, kw in MIXERS.items():
    accs, t0 = [], time.perf_counter()
    for seed in SEEDS:
        clf = SequenceClassifier(**common, **kw, random_state=seed).fit(patches[idx_train], labels[idx_train])
        accs.append(clf.score(patches[idx_test], labels[idx_test]))
    results[name] = (accs, count_parameters(clf.module_), time.perf_counter() - t0)
for name, make in {"VGG-style CNN": VGGish, "ResNet-style CNN": ResNetish}.items():
    accs, t0 = [], time.perf_counter()
    for seed in SEEDS:
        acc, n_params = fit_cnn(make, seed)
        accs.append(acc)
    results[name] = (accs, n_params, time.perf_counter() - t0)

print(f"{'model':28s} {'params':>7s} {'test accuracy':>22s} {'fit time':>9s}")
for name, (accs, n_params, secs) in results.items():
    print(f"{name:28s} {n_params:7d} {100 * np.mean(accs):8.2f} % +- {100 * np.std(accs):4.2f} "
          f"{secs / len(SEEDS):8.1f}s")
diff = 100 * (np.mean(results["Gated CNN (MambaOut)"][0]) - np.mean(results["Mamba"][0]))
print(f"Gated CNN minus Mamba: {diff:+.2f} points")

# %%
fig, ax = plt.subplots(figsize=(8, 3.0))
names = list(results)
means = [100 * np.mean(results[n][0]) for n in names]
errs = [100 * np.std(results[n][0]) for n in names]
colors = ["tab:green", "tab:blue", "tab:gray", "tab:gray"]
ax.barh(range(len(names)), means, xerr=errs, color=colors)
ax.set_yticks(range(len(names)), [f"{n} ({results[n][1] / 1000:.0f}k)" for n in names])
ax.invert_yaxis()
lo = min(means) - 3
ax.set_xlim(max(0, lo), 101)
for i, (m, e) in enumerate(zip(means, errs, strict=True)):
    ax.text(m + e + 0.15, i, f"{m:.1f}", va="center")
ax.set_xlabel(f"test accuracy (%), mean over {len(SEEDS)} seed(s)")
ax.set_title("load_digits as 16 patch tokens: token mixers and CNN references")
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "neural_mambaout_digits.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# The documentation does not run this script (its full settings take minutes to hours on
# a CPU). These are the numbers of its recorded full run:
#
# .. include:: /gallery_outputs/neural_mambaout_digits.results.md
#    :parser: myst_parser.sphinx_
#
# The figure below comes from **fast mode** (``PROBKIT_FAST=1``: tiny settings, numbers near
# chance). It shows what the script draws, not the results above.
#
# .. image:: /gallery_outputs/neural_mambaout_digits.png
#    :alt: figure of plot_neural_mambaout_digits.py in fast mode
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/neural_mambaout_digits.png'
