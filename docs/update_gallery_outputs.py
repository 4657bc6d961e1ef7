"""Run gallery examples at their full settings and commit what they print and draw.

The documentation's gallery does not execute the examples (the long neural ones take
hours on a CPU); each example page shows the committed output of a full run instead:
``docs/gallery_outputs/<name>.txt`` (the command, the date, the wall time and everything
the script printed) and ``docs/gallery_outputs/<name>.png`` (its figure). This script
makes them::

    python docs/update_gallery_outputs.py plot_old_faithful_hmm plot_old_faithful_gmm
    python docs/update_gallery_outputs.py --all-classical     # every example but the long neural ones

``--fast`` runs with ``PROBKIT_FAST=1`` and says so in the header (used only for figures of
examples whose full run is out of reach; their page labels the figure as fast-mode).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUTPUTS = os.path.join(HERE, "gallery_outputs")
# Examples whose full run takes hours on a CPU: their committed numbers come from the
# recorded benchmark runs (benchmarks/results_neural_evidence.md, benchmarks/RESULTS.md).
LONG = {"plot_neural_char_lm", "plot_neural_induction_heads", "plot_neural_mambaout_digits",
        "plot_neural_selective_copying", "plot_neural_vit_causal_digits"}


def run(stem, fast=False, timeout=3600):
    script = os.path.join(ROOT, "examples", f"{stem}.py")
    work = tempfile.mkdtemp()
    env = dict(os.environ, PROBKIT_EXAMPLES_OUTPUT=work, MPLBACKEND="Agg",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PROBKIT_FAST", None)
    if fast:
        env["PROBKIT_FAST"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{stem} failed:\n{proc.stderr[-3000:]}")
    figures = sorted(glob.glob(os.path.join(work, "*.png")))
    os.makedirs(OUTPUTS, exist_ok=True)
    name = stem[len("plot_"):]
    for figure in figures:
        shutil.copy(figure, os.path.join(OUTPUTS, os.path.basename(figure)))
    mode = "PROBKIT_FAST=1 (fast mode: small settings)" if fast else "full settings"
    header = [f"$ {'PROBKIT_FAST=1 ' if fast else ''}python examples/{stem}.py",
              f"# {mode}; run {datetime.date.today().isoformat()}, {seconds:.0f} s wall time on a 2-core "
              "machine shared with other jobs", ""]
    with open(os.path.join(OUTPUTS, f"{name}{'.fast' if fast else ''}.txt"), "w") as f:
        f.write("\n".join(header) + proc.stdout.rstrip() + "\n")
    print(f"{stem}: {seconds:.0f} s, figures {[os.path.basename(p) for p in figures]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", nargs="*", help="example file stems (plot_...)")
    parser.add_argument("--all-classical", action="store_true", help="every example but the long neural ones")
    parser.add_argument("--fast", action="store_true", help="PROBKIT_FAST=1 (labelled as such)")
    args = parser.parse_args(argv)
    stems = list(args.examples)
    if args.all_classical:
        stems += [os.path.basename(p)[:-3] for p in sorted(glob.glob(os.path.join(ROOT, "examples", "plot_*.py")))
                  if os.path.basename(p)[:-3] not in LONG]
    for stem in stems:
        run(stem, fast=args.fast)


if __name__ == "__main__":
    main()
