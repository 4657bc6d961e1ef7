"""
Saving models and using the command line
========================================

A fitted model is saved with ``model.save(path)`` and read back with
``probkit.load(path)``: a zip of numpy arrays and JSON metadata, versioned, loaded
without pickle, and exact (the loaded model predicts bit-for-bit the same). The
``probkit`` command runs the same models on CSV files; here we run it from Python
(``probkit.cli.main`` takes the same arguments as the shell command) and check that
it decodes the same states as the Python API.
"""

import os
import tempfile

# sphinx_gallery_start_ignore
import matplotlib

matplotlib.use("Agg")
# sphinx_gallery_end_ignore
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import probkit  # noqa: E402
from probkit.cli import main  # noqa: E402
from probkit.datasets import load_earthquakes  # noqa: E402
from probkit.plotting import plot_states  # noqa: E402

# sphinx_gallery_start_ignore
FAST = os.environ.get("PROBKIT_FAST") == "1"
OUT = os.environ.get("PROBKIT_EXAMPLES_OUTPUT", ".")
os.makedirs(OUT, exist_ok=True)
# sphinx_gallery_end_ignore
work = tempfile.mkdtemp()

years, counts = load_earthquakes()
X = counts.reshape(-1, 1)

# %%
# Python API: fit, save, load.
model = probkit.PoissonHMM(3, n_iter=20 if FAST else 200, tol=1e-4, random_state=0).fit(X)
path = model.save(os.path.join(work, "quakes.pk"))
loaded = probkit.load(path)
print(f"saved {os.path.getsize(path)} bytes; loaded a {type(loaded).__name__}")
print("identical states:", np.array_equal(loaded.predict(X), model.predict(X)))
print("identical log-likelihood:", loaded.score(X) == model.score(X))

# %%
# The same with the command line: ``probkit fit`` then ``probkit decode`` on a CSV file.
csv_path = os.path.join(work, "quakes.csv")
with open(csv_path, "w") as f:
    f.write("year,count\n" + "".join(f"{y},{c}\n" for y, c in zip(years, counts)))
main(["fit", "poisson-hmm", csv_path, "--columns", "count", "-k", "3", "--max-iter", "20" if FAST else "200",
      "--tol", "1e-4", "-o", os.path.join(work, "cli.pk")])
main(["decode", os.path.join(work, "cli.pk"), csv_path, "-o", os.path.join(work, "states.csv")])
cli_states = np.loadtxt(os.path.join(work, "states.csv"), skiprows=1, dtype=int)
print("CLI states == API states:", np.array_equal(cli_states, model.predict(X)))

# %%
fig, ax = plt.subplots(figsize=(10, 3.5))
plot_states(counts, cli_states, ax=ax, time=years, ylabel="major earthquakes")
ax.set_title("states decoded by `probkit decode`")
fig.tight_layout()
# sphinx_gallery_start_ignore
fig.savefig(os.path.join(OUT, "save_load_and_cli.png"), dpi=100)
# sphinx_gallery_end_ignore


# %%
# Results of the full run
# -----------------------
# What this script printed and drew at its full settings (committed with the
# documentation; ``python docs/update_gallery_outputs.py plot_save_load_and_cli`` makes them again):
#
# .. literalinclude:: /gallery_outputs/save_load_and_cli.txt
#    :language: text
#
# .. image:: /gallery_outputs/save_load_and_cli.png
#    :alt: figure of plot_save_load_and_cli.py
#
# sphinx_gallery_thumbnail_path = 'gallery_outputs/save_load_and_cli.png'
