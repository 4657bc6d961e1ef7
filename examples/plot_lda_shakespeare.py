"""
Topics of Shakespeare's speeches with latent Dirichlet allocation
=================================================================

The tiny-shakespeare corpus shipped with probkit, cut into its speeches (three per
document, English stop words removed), is a bag-of-words corpus of a few thousand short
documents. Latent Dirichlet allocation explains every document as a mixture of topics,
each topic a distribution over words. We fit it by batch coordinate-ascent variational
inference and by online stochastic variational inference (mini-batches of 256 documents),
compare their held-out perplexity over the number of topics, and show the most probable
words of each topic of the chosen model.
"""

import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import LatentDirichletAllocation  # noqa: E402
from probkit.topics import shakespeare_speeches  # noqa: E402

FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)

X, vocab = shakespeare_speeches(speeches_per_document=3, min_df=5, max_df=0.05)
vocab = np.array(vocab)
rng = np.random.RandomState(0)
held_out = rng.rand(X.shape[0]) < 0.2
X_train, X_test = X[~held_out], X[held_out]
print(f"{X.shape[0]} documents ({X_train.shape[0]} to fit, {X_test.shape[0]} held out), {X.shape[1]} words")

# %%
# Held-out perplexity for several numbers of topics, batch and online.
topic_counts = [4, 8] if FAST else [4, 8, 12, 16, 24]
passes = 3 if FAST else 20
results = {"batch": [], "online": []}
models = {}
for k in topic_counts:
    for method in results:
        t0 = time.perf_counter()
        lda = LatentDirichletAllocation(n_components=k, learning_method=method, batch_size=256, max_iter=passes,
                                        random_state=0).fit(X_train)
        seconds = time.perf_counter() - t0
        results[method].append(lda.perplexity(X_test))
        models[(k, method)] = lda
        print(f"K={k:2d} {method:6s}: held-out perplexity {results[method][-1]:8.1f}, fit {seconds:5.2f} s")
best = topic_counts[int(np.argmin(results["batch"]))]
model = models[(best, "batch")]
print(f"lowest held-out perplexity (batch): K={best}")

# %%
# The most probable words of each topic, and how much of the corpus each topic explains.
topics = model.components_ / model.components_.sum(1, keepdims=True)
share = model.transform(X).mean(0)
for j in np.argsort(-share):
    top = vocab[np.argsort(-topics[j])[:8]]
    print(f"topic {j:2d} ({share[j]:5.1%}): {' '.join(top)}")

fig = plt.figure(figsize=(12, 7))
ax = fig.add_subplot(2, 3, 1)
for method, marker in (("batch", "o"), ("online", "s")):
    ax.plot(topic_counts, results[method], marker=marker, label=method)
ax.set_xlabel("topics")
ax.set_ylabel("held-out perplexity")
ax.legend()
shown = np.argsort(-share)[:5]
for i, j in enumerate(shown):
    ax = fig.add_subplot(2, 3, i + 2)
    words = np.argsort(-topics[j])[:10]
    ax.barh(range(10)[::-1], topics[j, words], color=f"C{i}")
    ax.set_yticks(range(10)[::-1])
    ax.set_yticklabels(vocab[words])
    ax.set_title(f"topic {j} ({share[j]:.0%} of words)")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "lda_shakespeare.png"), dpi=100)
