"""
Character-level language models on Shakespeare: seven backbones, one budget
===========================================================================

:class:`probkit.neural.SequenceDensity` with a categorical head over the 65 characters
of tiny-shakespeare, for every backbone of :func:`probkit.neural.build_backbone` at a
matched parameter count (:func:`probkit.neural.d_model_for_budget`), each trained for
the same budget: one pass over the first 90 % of the play in windows of 128
characters (about 245 steps of 32 windows). Reported: bits per character on held-out
text (from the last 10 %), generation speed, and
the cost of one generation step as the context grows. Recurrent models (Mamba, RWKV,
S4D, GRU, LSTM) and the gated CNN carry a fixed-size state, so a step costs the same
at any position; the transformer attends over a key/value cache that grows with the
context.
"""

import math
import os
import time

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from probkit.datasets import load_tinyshakespeare  # noqa: E402
from probkit.neural import SequenceDensity, count_parameters, d_model_for_budget  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore
torch.set_num_threads(1)   # small models: one thread avoids OpenMP stalls on shared cores

text = load_tinyshakespeare()
alphabet = sorted(set(text))
codes = np.array([alphabet.index(c) for c in text], dtype=np.int64)
split = int(0.9 * len(codes))
WINDOW = 64 if FAST else 128
train = codes[: 64 * WINDOW] if FAST else codes[:split]   # training budget: one pass, batches of 32 windows
test = codes[split: split + (4 if FAST else 100) * WINDOW]
BUDGET = 6_000 if FAST else 60_000                   # backbone parameters
KINDS = ["mamba", "rwkv", "mambaout", "transformer", "s4d", "gru", "lstm"]
EXTRA = {"transformer": {"n_heads": 4}}
print(f"{len(alphabet)} symbols; training on {len(train)} characters (one pass, windows of {WINDOW}), "
      f"testing on {len(test)}")


def step_times(lm, n_context, every):
    """Seconds per generation step at growing context lengths (one sequence)."""
    net = lm.module_
    times = []
    with torch.no_grad():
        state = net.init_state(1)
        out, state = net.step(None, state, batch_size=1)
        x = torch.zeros(1, dtype=torch.long)
        for t in range(n_context):
            t0 = time.perf_counter()
            out, state = net.step(x, state)
            x = net.head.sample(out)
            if t % every == 0:
                times.append((t + 1, time.perf_counter() - t0))
    return times


results = {}
for kind in KINDS:
    kw = EXTRA.get(kind, {})
    d = d_model_for_budget(kind, 2, BUDGET, **kw)
    lm = SequenceDensity(backbone=kind, d_model=d, n_layers=2, vocab_size=len(alphabet), window=WINDOW,
                         backbone_kwargs=kw or None, batch_size=32, max_epochs=1, lr=3e-3, warmup=0.1,
                         early_stopping=False, random_state=0)
    t0 = time.perf_counter()
    lm.fit(train)
    fit_secs = time.perf_counter() - t0
    bpc = -lm.score(test) / math.log(2)
    t0 = time.perf_counter()
    sample = lm.generate(codes[split: split + 20], n_steps=100 if FAST else 300, temperature=0.8, random_state=0)
    gen_rate = len(sample) / (time.perf_counter() - t0)
    curve = step_times(lm, 128 if FAST else 2048, every=16)
    results[kind] = dict(d=d, params=count_parameters(lm.module_.backbone), total=count_parameters(lm.module_),
                         bpc=bpc, fit=fit_secs, rate=gen_rate, curve=curve,
                         text="".join(alphabet[i] for i in sample))
    print(f"{kind:11s} d_model={d:3d} backbone {results[kind]['params']:6d} params: {bpc:.3f} bits/char, "
          f"fit {fit_secs:5.1f} s, generation {gen_rate:6.0f} chars/s", flush=True)

print(f"\n{'backbone':11s} {'ms/step @ early':>15s} {'@ late':>8s} {'ratio':>6s}")
for kind, r in results.items():
    ts = np.array([s for _, s in r["curve"]])
    k = max(1, len(ts) // 8)
    early, late = np.median(ts[:k]) * 1e3, np.median(ts[-k:]) * 1e3
    r["early"], r["late"] = early, late
    print(f"{kind:11s} {early:15.2f} {late:8.2f} {late / early:6.2f}")
best = min(results, key=lambda k: results[k]["bpc"])
print(f"\nbest: {best}; sample from it (temperature 0.8):\n{results[best]['text']}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
names = list(results)
axes[0].bar(names, [results[k]["bpc"] for k in names], color="tab:blue")
for i, k in enumerate(names):
    axes[0].text(i, results[k]["bpc"] + 0.02, f"{results[k]['bpc']:.2f}", ha="center")
axes[0].set_ylabel("bits per character (held out)")
axes[0].tick_params(axis="x", rotation=30)
axes[0].set_ylim(0, max(results[k]["bpc"] for k in names) * 1.15)
axes[0].set_title(f"~{BUDGET // 1000}k-parameter backbones, one pass over {len(train) // 1000}k characters")
for k in names:
    ctx, secs = zip(*results[k]["curve"])
    width = max(1, len(secs) // 10)
    smooth = np.convolve(np.array(secs) * 1e3, np.ones(width) / width, mode="valid")
    axes[1].plot(ctx[width - 1:], smooth, label=k, lw=2 if k == "transformer" else 1)
axes[1].set_xlabel("context length (characters)")
axes[1].set_ylabel("ms per generated character")
axes[1].set_title("generation cost per step")
axes[1].legend(ncol=2, fontsize=8)
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "neural_char_lm.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# The documentation does not run this script (its full settings take minutes to hours on
# a CPU). These are the numbers of its recorded full run:
#
# .. include:: /gallery_outputs/neural_char_lm.results.md
#    :parser: myst_parser.sphinx_
#
# The figure below comes from **fast mode** (``PROBKIT_FAST=1``: tiny settings, numbers near
# chance). It shows what the script draws, not the results above.
#
# .. image:: /gallery_outputs/neural_char_lm.png
#    :alt: figure of plot_neural_char_lm.py in fast mode
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/neural_char_lm.png'
