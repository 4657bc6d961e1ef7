"""
Vowels and consonants from raw text with a categorical HMM
==========================================================

A two-state :class:`probkit.CategoricalHMM` fitted to the letters of Shakespeare, with
no labels, splits the alphabet into two classes that alternate: one state emits the
vowels (and the space), the other the consonants. Each state ``k`` has a distribution
``B_k`` over the symbols; Baum-Welch re-estimates ``B`` from expected counts.
"""

import os

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import CategoricalHMM  # noqa: E402
from probkit.datasets import load_tinyshakespeare  # noqa: E402
from probkit.plotting import plot_transition_matrix  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

text = load_tinyshakespeare()
letters = "".join(c if c.isalpha() else " " for c in text.lower())
letters = " ".join(letters.split())[: 3000 if FAST else 30000]
alphabet = sorted(set(letters))
X = np.array([alphabet.index(c) for c in letters]).reshape(-1, 1)
print(f"{len(X)} characters, {len(alphabet)} symbols")

model = CategoricalHMM(2, n_iter=30 if FAST else 200, tol=1e-3, n_init=2 if FAST else 3, random_state=1).fit(X)
B = model.emissionprob_
vowel_state = int(np.argmax(B[:, alphabet.index("e")]))
for k in (vowel_state, 1 - vowel_state):
    top = np.argsort(B[k])[::-1][:8]
    print(f"state {k}: " + " ".join(f"{alphabet[j]!r}:{B[k, j]:.2f}" for j in top))
print(f"log-likelihood per character {model.score(X) / len(X):.3f} nats")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
x = np.arange(len(alphabet))
axes[0].bar(x - 0.2, B[vowel_state], 0.4, label="state of 'e'")
axes[0].bar(x + 0.2, B[1 - vowel_state], 0.4, label="other state")
axes[0].set_xticks(x, [repr(c)[1:-1] if c != " " else "␣" for c in alphabet])
axes[0].set_ylabel("emission probability")
axes[0].legend()
plot_transition_matrix(model.transmat_, ax=axes[1])
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "shakespeare_categorical_hmm.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_shakespeare_categorical_hmm`` makes them again):
#
# .. literalinclude:: /gallery_outputs/shakespeare_categorical_hmm.txt
#    :language: text
#
# .. image:: /gallery_outputs/shakespeare_categorical_hmm.png
#    :alt: figure of plot_shakespeare_categorical_hmm.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/shakespeare_categorical_hmm.png'
