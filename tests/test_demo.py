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
    proc = subprocess.run([sys.executable, "-m", "probkit.demo", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 10_000, name
    # the Poisson HMM reproduces the published maximum likelihood of the 2-state model
    assert "2 states: log-likelihood -341.88 (published: -341.88)" in proc.stdout
