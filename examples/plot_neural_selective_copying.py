"""
Selective copying: content-aware recurrence (Mamba) versus a time-invariant SSM (S4D)
=====================================================================================

The *Selective Copying* task of the Mamba paper (Gu & Dao, 2023, Table 1): a sequence
holds a few data tokens at random positions among noise tokens, followed by marker
tokens; at each marker the model must output the data tokens in order. Their
positions vary from sequence to sequence, so a linear time-invariant system (S4,
S4D) cannot select them by a fixed convolution; Mamba's input-dependent step size
``dt`` and projections ``B, C`` let it keep the data tokens and ignore the noise.

Small scale on a CPU (the paper: sequences of 4096, 16 tokens, 400k steps): 2-layer
models with ``d_model=32``, 8 data tokens from a vocabulary of 8 among 256 positions,
then 8 markers; steps of 32 fresh sequences with the shared training loop
(:func:`probkit.neural.train_module`), the same budget for both models. Both follow a
length curriculum -- 1600 steps with 64 positions, then 400 with 256 -- because a
Mamba step at length 264 costs about six times more on this CPU and Mamba needs about
1000 steps to learn the task at all. The score is the token accuracy on held-out
sequences; chance is 1/8.
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
from torch import nn  # noqa: E402

from probkit.neural import build_backbone, count_parameters, train_module  # noqa: E402
from probkit.neural.estimators import seeded  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore
torch.set_num_threads(1)   # small models: one thread avoids OpenMP stalls on shared cores

N_COPY, VOCAB = 8, 8               # data tokens to copy, drawn from 1..VOCAB
NOISE, MARK = 0, VOCAB + 1         # noise token, marker token
# (positions holding noise and the data tokens, optimiser steps): a curriculum that ends
# at the length being tested, the same for every model
PHASES = [(16, 8), (32, 8)] if FAST else [(64, 1600), (256, 400)]
L = PHASES[-1][0]
BATCH = 32
MODELS = {"Mamba": ("mamba", {"d_state": 8}), "S4D": ("s4d", {"d_state": 8})}


def selective_copying(n, length, seed):
    """``n`` sequences of ``length + N_COPY`` tokens and their ``N_COPY`` targets."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(1, VOCAB + 1, (n, N_COPY), generator=g)
    pos = torch.rand(n, length, generator=g).argsort(1)[:, :N_COPY].sort(1).values
    x = torch.full((n, length + N_COPY), NOISE, dtype=torch.long)
    x.scatter_(1, pos, data)
    x[:, length:] = MARK
    return x, data


class Copier(nn.Module):
    """Token embedding, a backbone, and a linear read-out at the marker positions."""

    def __init__(self, kind, **kw):
        super().__init__()
        self.embed = nn.Embedding(VOCAB + 2, 32)
        self.backbone = build_backbone(kind, 32, 2, **kw)
        self.out = nn.Linear(32, VOCAB + 1)

    def forward(self, x):
        return self.out(self.backbone(self.embed(x))[:, -N_COPY:])


def loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


class Stream:
    """Fresh training sequences: each epoch of ``train_module`` reads the next block."""

    def __init__(self, x, y, per_epoch):
        self.x, self.y, self.per_epoch, self.offset = x, y, per_epoch, 0

    def __len__(self):
        return self.per_epoch

    def batch(self, index):
        return self.x[index + self.offset], self.y[index + self.offset]


N_EVAL = 2 if FAST else 4                                       # evaluations per phase
N_TEST = 256 if FAST else 1000
tests = {length: selective_copying(N_TEST, length, seed=1) for length, _ in PHASES}
print(f"{N_COPY} tokens to copy from a vocabulary of {VOCAB}, batch {BATCH}; curriculum "
      + ", then ".join(f"{steps} steps at length {length} + {N_COPY}" for length, steps in PHASES))


def accuracy(module, length):
    x_test, y_test = tests[length]
    with torch.no_grad():
        return float(torch.cat([module(x_test[i:i + 250]).argmax(-1) == y_test[i:i + 250]
                                for i in range(0, N_TEST, 250)]).float().mean())


results = {}
for name, (kind, kw) in MODELS.items():
    with seeded(0):
        net = Copier(kind, **kw)
    curve = []                       # (steps so far, accuracy on held-out sequences of the current length)
    t0 = time.perf_counter()
    done = 0
    for phase, (length, steps) in enumerate(PHASES):
        x_train, y_train = selective_copying(steps * BATCH, length, seed=10 + phase)   # every one is new
        stream = Stream(x_train, y_train, steps * BATCH // N_EVAL)

        def evaluate(epoch, history, module, stream=stream, curve=curve, length=length, done=done):
            curve.append((done + history.n_steps, accuracy(module, length)))
            stream.offset += stream.per_epoch      # the next epoch reads new sequences
            return False

        hist = train_module(net, loss_fn, stream, batch_size=BATCH, max_epochs=N_EVAL, lr=1e-2, warmup=0.05,
                            early_stopping=False, random_state=phase, callback=evaluate)
        done += hist.n_steps
    secs = time.perf_counter() - t0
    results[name] = {"acc": curve[-1][1], "curve": curve, "params": count_parameters(net), "secs": secs}
    print(f"{name:6s} ({kind}, {results[name]['params']} parameters): token accuracy {100 * curve[-1][1]:.1f} % "
          f"at length {L} + {N_COPY} after {done} steps, {secs:.0f} s; along training: "
          + " ".join(f"{100 * a:.0f}" for _, a in curve), flush=True)

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for (name, res), color in zip(results.items(), ["tab:blue", "tab:gray"], strict=True):
    steps, accs = zip(*res["curve"])
    ax.plot(steps, 100 * np.array(accs), "o-", color=color, label=f"{name} ({res['params'] / 1000:.0f}k params)")
ax.axhline(100 / VOCAB, color="k", ls=":", label="chance")
ax.axhline(95, color="tab:green", ls="--", label="95 %")
ax.set_ylim(0, 102)
for steps in np.cumsum([n for _, n in PHASES])[:-1]:
    ax.axvline(steps, color="gray", ls="--", lw=1)
ax.set_xlabel(f"training steps of 32 fresh sequences\n(length {PHASES[0][0]} + {N_COPY}, "
              f"then {L} + {N_COPY} after the dashed line)")
ax.set_ylabel("token accuracy, held out,\nat the current length (%)")
ax.set_title(f"Selective copying, L={L + N_COPY}, {N_COPY} tokens, 2 layers")
ax.legend(loc="lower center")
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "neural_selective_copying.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# The documentation does not run this script (its full settings take minutes to hours on
# a CPU). These are the numbers of its recorded full run:
#
# .. include:: /gallery_outputs/neural_selective_copying.results.md
#    :parser: myst_parser.sphinx_
#
# The figure below comes from **fast mode** (``PROBKIT_FAST=1``: tiny settings, numbers near
# chance). It shows what the script draws, not the results above.
#
# .. image:: /gallery_outputs/neural_selective_copying.png
#    :alt: figure of plot_neural_selective_copying.py in fast mode
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/neural_selective_copying.png'
