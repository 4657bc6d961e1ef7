"""
Streaming EM and streaming decoding on Shakespeare
==================================================

A :class:`probkit.CategoricalHMM` with 32 states learns the 65 characters of
Shakespeare from a stream: the first 90% of the text arrives in chunks of 10,000
characters and each chunk is one call of ``partial_fit`` (stepwise EM, see
:doc:`/user_guide/online`). The model keeps a running average of the expected counts
(start, transitions, emissions) per character and never the statistics of more than the
current chunk; after every chunk it moves its parameters with the step size
``rho_t = (learning_offset + t) ** -learning_decay``. The stream is read three times, as
a longer stream of the same text would be.

The last 10% of the text is held out. Its log-likelihood per character, in bits, is
compared with that of batch Baum-Welch (``fit``) on the same training characters, cut
into the same sequences and started from the same random parameters, as a function of
the characters processed (batch EM reads the whole training text at every iteration)
and of the training CPU time, both on one thread. In the full run below, one pass of
the stream reaches the held-out likelihood that batch EM reaches after 14 iterations,
three passes what it reaches after 19; batch EM, left to run 40 iterations, ends lower.
A second panel runs the stream with ``learning_decay`` 0.5, 0.7 and 1.0: the fastest
forgetting (0.5) is best after every pass and 1.0 far behind, because it keeps the
statistics of the first chunks, computed under poor parameters, at full weight.

Last, ``model.filter_stream()`` decodes the held-out text one character at a time,
keeping only the current filtered distribution: its running log-likelihood equals
``score`` on the same characters to rounding, and the figure shows its filtered state
probabilities over one line of the play.
"""

import os
import time
import warnings

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from probkit import CategoricalHMM, set_num_threads  # noqa: E402
from probkit.datasets import load_tinyshakespeare  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore

text = load_tinyshakespeare()
if FAST:
    text = text[:100_000]
alphabet = sorted(set(text))
codes = np.searchsorted(np.array(alphabet), np.array(list(text))).reshape(-1, 1)
n_train = int(0.9 * len(codes))
train, test = codes[:n_train], codes[n_train:]
chunk_size = 5_000 if FAST else 10_000
n_chunks = n_train // chunk_size
train = train[:n_chunks * chunk_size]  # whole chunks only, the same characters for both fits
n_states = 8 if FAST else 32
print(f"{len(codes)} characters, {len(alphabet)} symbols; training on {len(train)} characters "
      f"({n_chunks} chunks of {chunk_size}), held out: the last {len(test)}")


def bits_per_char(model):
    return -model.score(test) / (len(test) * np.log(2))


def new_model():
    # every symbol gets a pseudo-count of 0.1 per state: a first chunk without 'Z' must not
    # give 'Z' probability zero for ever
    return CategoricalHMM(n_states, n_features=len(alphabet), emissionprob_prior=1.1, random_state=0)


def stream(data, size):
    """The text as it would arrive: one chunk at a time."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


# One worker thread for both fits, and the training cost counted as CPU time of this
# process: other jobs on a shared machine do not inflate it as they do wall time.
set_num_threads(workers=1)
n_passes = 2 if FAST else 3  # the stream read again: a longer stream of the same kind


def stream_em(learning_decay):
    model, seconds, curve = new_model(), 0.0, []
    n_steps = n_passes * n_chunks
    checkpoints = set(np.unique(np.geomspace(1, n_steps, 12 if FAST else 40).astype(int)))
    checkpoints |= {n_chunks * p for p in range(1, n_passes + 1)}
    for t, chunk in enumerate((c for _ in range(n_passes) for c in stream(train, chunk_size)), start=1):
        t0 = time.process_time()
        model.partial_fit(chunk, learning_offset=2.0, learning_decay=learning_decay)
        seconds += time.process_time() - t0
        if t in checkpoints:
            curve.append((t * chunk_size, seconds, bits_per_char(model)))
    return model, np.array(curve)


def after_pass(curve, p):
    return curve[curve[:, 0] == p * len(train)][0]


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # one iteration to compile the kernels before any timing, not a fit
    new_model().set_params(n_iter=1).fit(train[:2 * chunk_size], lengths=[chunk_size] * 2)
online, online_curve = stream_em(0.7)

# Batch Baum-Welch, one iteration per call: init_params="" continues from the parameters.
n_iter = 8 if FAST else 40
batch, seconds, batch_curve = new_model().set_params(n_iter=1), 0.0, []
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # one iteration per call never "converges"
    for iteration in range(1, n_iter + 1):
        t0 = time.process_time()
        batch.fit(train, lengths=[chunk_size] * n_chunks)
        seconds += time.process_time() - t0
        batch.set_params(init_params="")
        batch_curve.append((iteration * len(train), seconds, bits_per_char(batch)))
batch_curve = np.array(batch_curve)

for p in range(1, n_passes + 1):
    _, sec, bits = after_pass(online_curve, p)
    print(f"stepwise EM, {p} pass(es) ({p * n_chunks:3d} partial_fit calls): {bits:.3f} bits/char held out, "
          f"{sec:5.1f} s of training CPU")
for iteration in (1, 5, 10, 20, n_iter):
    if iteration <= n_iter:
        _, sec, bits = batch_curve[iteration - 1]
        print(f"batch EM, {iteration:2d} iteration(s):                 {bits:.3f} bits/char held out, "
              f"{sec:5.1f} s of training CPU")
for p in range(1, n_passes + 1):
    caught_up = np.flatnonzero(batch_curve[:, 2] <= after_pass(online_curve, p)[2])
    print(f"batch EM matches {p} streaming pass(es) after "
          + (f"{caught_up[0] + 1} iterations" if caught_up.size else f"more than {n_iter} iterations"))

# %%
# The schedule: ``learning_decay`` sets how fast the running statistics forget. With
# 1.0 every chunk weighs about equally, the early ones too, although their statistics
# were computed under poor parameters; smaller values forget them faster, at the price of
# noisier steps.
decay_curves = {0.7: online_curve}
for decay in (0.5, 1.0):
    decay_curves[decay] = stream_em(decay)[1]
for decay in (0.5, 0.7, 1.0):
    print(f"learning_decay={decay}: " + ", ".join(
        f"{after_pass(decay_curves[decay], p)[2]:.3f}" for p in range(1, n_passes + 1))
        + " bits/char held out after each pass")

# %%
# Streaming decoding: the held-out text one character at a time, with the model learnt
# from the stream. The filter keeps only the current filtered distribution and the
# running log-likelihood.
n_decode = 2_000 if FAST else len(test)
decoded = test[:n_decode]
decoded_text = "".join(alphabet[c] for c in decoded[:, 0])
# the filtered probabilities of one line of verse (not a speaker's name) are kept for the figure
line_start = 0
for line in decoded_text.split("\n"):
    if 40 <= len(line) <= 60 and not line.endswith(":"):
        break
    line_start += len(line) + 1
strip = np.empty((len(line), n_states))

running = online.filter_stream()
for i, symbol in enumerate(decoded):
    proba = running.update(symbol)  # p(state_i | characters 0..i)
    if line_start <= i < line_start + len(line):
        strip[i - line_start] = proba
score = online.score(decoded)
print(f"filter_stream, {n_decode} held-out characters one at a time: log-likelihood {running.log_likelihood:.4f}")
print(f"score on the same characters:                           log-likelihood {score:.4f} "
      f"(difference {abs(score - running.log_likelihood):.1e}, "
      f"{-running.log_likelihood / (n_decode * np.log(2)):.3f} bits/char)")
print(f"the line drawn: {line!r}")

# %%
fig = plt.figure(figsize=(13, 7.5))
grid = fig.add_gridspec(2, 3, height_ratios=[1.2, 1])
ax = fig.add_subplot(grid[0, 0])
ax.plot(online_curve[:, 0], online_curve[:, 2], "o-", ms=3, label="stepwise EM (partial_fit)")
ax.plot(batch_curve[:, 0], batch_curve[:, 2], "s-", ms=3, label="batch EM (fit)")
ax.set_xscale("log")
ax.set_xlabel("characters processed")
ax.set_ylabel("held-out bits per character")
ax.legend(fontsize=8)
ax.set_title("per character read")
ax = fig.add_subplot(grid[0, 1], sharey=ax)
ax.plot(online_curve[:, 1], online_curve[:, 2], "o-", ms=3, label="stepwise EM")
ax.plot(batch_curve[:, 1], batch_curve[:, 2], "s-", ms=3, label="batch EM")
ax.set_xscale("log")
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.set_xlabel("training CPU time (s)")
ax.set_title("per CPU second of training")
ax = fig.add_subplot(grid[0, 2], sharey=ax)
for decay, curve in sorted(decay_curves.items()):
    ax.plot(curve[:, 0], curve[:, 2], "o-", ms=3, label=f"learning_decay={decay}")
for p in range(1, n_passes + 1):
    ax.axvline(p * len(train), color="0.8", lw=0.8, zorder=0)
ax.set_xscale("log")
ax.set_xlabel("characters streamed (grey: end of each pass)")
ax.set_title("the step-size schedule")
ax.legend(fontsize=8)
ax = fig.add_subplot(grid[1, :])
used = np.flatnonzero(strip.max(0) > 0.05)  # the states this line visits
ax.imshow(strip[:, used].T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
ax.set_xticks(range(len(line)), [c if c != " " else "␣" for c in line])
ax.set_yticks(range(len(used)), used, fontsize=7)
ax.set_ylabel("state")
ax.set_title("filter_stream: p(state | characters so far), one held-out line")
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "streaming_shakespeare.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_streaming_shakespeare`` makes them again):
#
# .. literalinclude:: /gallery_outputs/streaming_shakespeare.txt
#    :language: text
#
# .. image:: /gallery_outputs/streaming_shakespeare.png
#    :alt: figure of plot_streaming_shakespeare.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/streaming_shakespeare.png'
