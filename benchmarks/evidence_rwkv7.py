"""RWKV-7 against RWKV-6, and a hybrid stack against the pure ones, on small CPU tasks.

Three experiments, each at a scale a 2-core CPU trains in minutes; the numbers go to
``benchmarks/results_neural_evidence.md``.

1. Induction heads (the protocol of ``examples/plot_neural_induction_heads.py``: vocabulary
   16, one trigger-answer pair, the trigger again at the end, recall the answer), 2-layer
   RWKV-6 and RWKV-7 backbones of ``d_model=32`` (2 heads of 16) trained with a length
   curriculum 64 -> 256 on fresh sequences, then tested from 256 to 2048.
2. Character language modelling on the bundled tiny-shakespeare (``probkit.datasets``):
   :class:`~probkit.neural.SequenceDensity` with RWKV-6 and RWKV-7 backbones at a matched
   parameter count (:func:`~probkit.neural.d_model_for_budget`, 60k backbone parameters,
   2 layers), the same optimiser steps (one pass over the first 90 % of the play in windows
   of 128), bits per character on held-out text.
3. Induction heads with 4-layer stacks trained at length 64 only and tested up to 8x that:
   Mamba-2, a rotary transformer, and a hybrid of three Mamba-2 layers and one attention
   layer (``build_backbone("hybrid", pattern="MMMA")``).

``PROBKIT_FAST=1`` runs tiny settings in seconds; ``PROBKIT_EVIDENCE=small`` a reduced run
for a busy shared machine (shorter curricula and test lengths, a 200k-character slice of the
play, 20k parameters); the header says which.  Usage::

    PYTHONPATH=. python benchmarks/evidence_rwkv7.py [induction] [charlm] [hybrid]
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probkit.datasets import load_tinyshakespeare
from probkit.neural import (SequenceDensity, build_backbone, count_parameters, d_model_for_budget,
                            train_module)
from probkit.neural.estimators import seeded

FAST = os.environ.get("PROBKIT_FAST") == "1"
SMALL = not FAST and os.environ.get("PROBKIT_EVIDENCE") == "small"
torch.set_num_threads(1)  # small models: one thread avoids OpenMP stalls on shared cores

VOCAB, TRIGGER, BATCH, N_TEST, WIDTH = 16, 16, 32, (32 if FAST else 64 if SMALL else 128), 32


def induction_data(n, length, seed):
    """Random tokens with one trigger followed by the answer, the trigger again last; answers."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (n, length), generator=g)
    pos = torch.randint(0, length - 2, (n,), generator=g)
    answer = torch.randint(0, VOCAB, (n,), generator=g)
    x[torch.arange(n), pos] = TRIGGER
    x[torch.arange(n), pos + 1] = answer
    x[:, -1] = TRIGGER
    return x, answer


class LastTokenReadout(nn.Module):
    """Embedding, a backbone, a linear read-out of the last position."""

    def __init__(self, kind, n_layers, **kw):
        super().__init__()
        self.embed = nn.Embedding(VOCAB + 1, WIDTH)
        self.backbone = build_backbone(kind, WIDTH, n_layers, **kw)
        self.out = nn.Linear(WIDTH, VOCAB)

    def forward(self, x):
        return self.out(self.backbone(self.embed(x))[:, -1])


class FreshBatches:
    """Pre-drawn training sequences, one block per epoch of ``train_module``."""

    def __init__(self, x, y, per_epoch):
        self.x, self.y, self.per_epoch, self.offset = x, y, per_epoch, 0

    def __len__(self):
        return self.per_epoch

    def batch(self, index):
        return self.x[index + self.offset], self.y[index + self.offset]


def recall_accuracy(net, length, seed=1):
    x, y = induction_data(N_TEST, length, seed)
    net.eval()
    with torch.no_grad():
        hits = sum(int((net(x[i:i + 16]).argmax(-1) == y[i:i + 16]).sum()) for i in range(0, N_TEST, 16))
    net.train()
    return hits / N_TEST


def train_recall(kind, n_layers, kw, lr, phases, n_checks=4):
    """Train on the curriculum ``phases`` [(length, steps), ...]; accuracy after each quarter."""
    with seeded(0):
        net = LastTokenReadout(kind, n_layers, **kw)
    curve, t0 = [], time.perf_counter()
    for phase, (length, steps) in enumerate(phases):
        x, y = induction_data(steps * BATCH, length, seed=10 + phase)
        data = FreshBatches(x, y, steps * BATCH // n_checks)

        def check(epoch, history, module, data=data, length=length):
            curve.append(round(100 * recall_accuracy(module, length)))
            data.offset += data.per_epoch
            return False

        train_module(net, lambda m, b: F.cross_entropy(m(b[0]), b[1]), data, batch_size=BATCH,
                     max_epochs=n_checks, lr=lr, warmup=0.05, early_stopping=False, random_state=phase,
                     callback=check)
    return net, curve, time.perf_counter() - t0


def report_recall(title, models, n_layers, test_lengths):
    print(f"\n## {title}\n")
    print("| model | parameters | curriculum (length x steps) | accuracy during training (%) | "
          + " | ".join(f"L={n}" for n in test_lengths) + " | training time |")
    print("|---|---|---|---|" + "---|" * len(test_lengths) + "---|")
    for name, (kind, kw, lr, phases) in models.items():
        net, curve, secs = train_recall(kind, n_layers, kw, lr, phases)
        accs = [recall_accuracy(net, n) for n in test_lengths]
        plan = ", ".join(f"{L} x {s}" for L, s in phases)
        print(f"| {name} | {count_parameters(net):,} | {plan} | {' / '.join(map(str, curve))} | "
              + " | ".join(f"{100 * a:.1f} %" for a in accs) + f" | {secs:.0f} s |", flush=True)


def rwkv_induction():
    rwkv = {"n_heads": 2}
    phases = [(16, 10), (32, 10)] if FAST else [(32, 200), (64, 150)] if SMALL else [(64, 600), (256, 300)]
    models = {"RWKV-6": ("rwkv", rwkv, 1e-2, phases), "RWKV-7": ("rwkv7", rwkv, 1e-2, phases)}
    lengths = [32, 64] if FAST else [64, 128, 256, 512] if SMALL else [256, 512, 1024, 2048]
    report_recall(f"Induction heads, RWKV-6 vs RWKV-7 (2 layers, d_model {WIDTH}, chance 6.25 %)",
                  models, 2, lengths)


def hybrid_induction():
    steps = [(16, 20)] if FAST else [(32, 400)] if SMALL else [(64, 900)]
    models = {
        "Mamba-2 x4": ("mamba2", {"d_state": 16, "headdim": 16}, 1e-2, steps),
        "Transformer x4 (rotary)": ("transformer", {"n_heads": 2}, 3e-3, steps),
        "Hybrid MMMA (3 Mamba-2 + 1 attention)": (
            "hybrid", {"pattern": "MMMA", "layer_kwargs": {"mamba2": {"d_state": 16, "headdim": 16},
                                                           "attention": {"n_heads": 2}}}, 3e-3, steps),
    }
    lengths = [16, 32, 64] if FAST else [32, 64, 128, 256] if SMALL else [64, 128, 256, 512]
    report_recall(f"Induction heads at up to 8x the training length (4 layers, d_model {WIDTH})",
                  models, 4, lengths)


def char_lm():
    text = load_tinyshakespeare()
    alphabet = sorted(set(text))
    codes = np.array([alphabet.index(c) for c in text], dtype=np.int64)
    split = int(0.9 * len(codes))
    window = 64 if FAST or SMALL else 128
    train = codes[: 64 * window] if FAST else codes[:200_000] if SMALL else codes[:split]
    test = codes[split: split + (4 if FAST else 100) * window]
    budget = 6_000 if FAST else 20_000 if SMALL else 60_000
    print(f"\n## Character LM on tiny-shakespeare ({len(train):,} training characters, one pass in "
          f"windows of {window}, batches of 32; {len(test):,} held-out characters)\n")
    print("| backbone | d_model | backbone parameters | held-out bits per character | training time |")
    print("|---|---|---|---|---|")
    for name, kind in (("RWKV-6", "rwkv"), ("RWKV-7", "rwkv7")):
        d = d_model_for_budget(kind, 2, budget)
        lm = SequenceDensity(backbone=kind, d_model=d, n_layers=2, vocab_size=len(alphabet), window=window,
                             batch_size=32, max_epochs=1, lr=3e-3, warmup=0.1, early_stopping=False,
                             random_state=0)
        t0 = time.perf_counter()
        lm.fit(train)
        secs = time.perf_counter() - t0
        bpc = -lm.score(test) / math.log(2)
        params = count_parameters(lm.module_.backbone)
        print(f"| {name} | {d} | {params:,} | {bpc:.3f} | {secs:.0f} s |", flush=True)


if __name__ == "__main__":
    which = sys.argv[1:] or ["induction", "charlm", "hybrid"]
    print(f"# torch {torch.__version__}, 1 thread{', FAST settings' if FAST else ', small settings' if SMALL else ''}")
    t_all = time.perf_counter()
    for part in which:
        {"induction": rwkv_induction, "charlm": char_lm, "hybrid": hybrid_induction}[part]()
    print(f"\nwhole script: {time.perf_counter() - t_all:.0f} s")
