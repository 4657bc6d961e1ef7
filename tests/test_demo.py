"""The main job (``make demo``) runs end to end and writes its figures."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIGURES = [
    "old_faithful_gmm.png",
    "earthquakes_poisson_mixture.png",
    "old_faithful_hmm_states.png",
    "earthquakes_poisson_hmm.png",
    "old_faithful_dirichlet_process.png",
    "earthquakes_hmm_vi_vs_nuts.png",
]


def test_demo_runs_and_writes_every_figure(tmp_path):
    env = dict(os.environ, PROBKIT_FAST="1", PYTHONPATH=ROOT, MPLBACKEND="Agg")
    # Pyro hides its NUTS progress bar when it sees CI or a pytest-xdist worker in the
    # environment; the demo is checked as a user runs it.
    for name in ("CI", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "probkit.demo", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 10_000, name
    # the Poisson HMM reproduces the published maximum likelihoods (Zucchini & MacDonald) of 2 and 3 states
    assert "2 states: log-likelihood -341.88 (published: -341.88)" in proc.stdout
    assert "3 states: log-likelihood -328.53 (published: -328.53)" in proc.stdout
    # the report says what ran, and even the short NUTS chain moves (a stuck chain has spread 0.00)
    assert "NUTS 40 draws (+40 warm-up)" in proc.stdout
    spreads = [float(line.rsplit("+-", 1)[1]) for line in proc.stdout.splitlines() if "NUTS" in line and "+-" in line]
    assert len(spreads) == 2 and min(spreads) > 0.1, spreads
    # NUTS shows its progress (Pyro's bar) on standard error
    assert "Sample" in proc.stderr or "Warmup" in proc.stderr
