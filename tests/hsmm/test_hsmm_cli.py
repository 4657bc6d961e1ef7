"""``probkit fit gaussian-hsmm``: the command line gives the Python API's model and states."""

import os
import subprocess
import sys

import numpy as np

import probkit
from probkit import HSMM
from probkit.cli import main
from probkit.datasets import load_old_faithful

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fit_then_decode_in_a_fresh_process_gives_the_python_api_states(tmp_path, capsys):
    X, names = load_old_faithful()
    data = tmp_path / "faithful.csv"
    np.savetxt(data, X, delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    model_path = tmp_path / "m.pk"
    code = main(["fit", "gaussian-hsmm", str(data), "-k", "2", "--columns", "eruptions", "--max-iter", "40",
                 "-o", str(model_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "fitted gaussian-hsmm (HSMM, 2 components)" in out
    api = HSMM(emission="normal", n_components=2, n_iter=40, random_state=0).fit(X[:, :1])
    np.testing.assert_array_equal(probkit.load(model_path).durationprob_, api.durationprob_)
    # a fresh interpreter has not imported probkit.hsmm: loading must still find the class
    proc = subprocess.run([sys.executable, "-m", "probkit", "decode", str(model_path), str(data)],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    states = np.loadtxt(proc.stdout.splitlines()[1:], delimiter=",", ndmin=2)[:, -1].astype(int)
    np.testing.assert_array_equal(states, api.predict(X[:, :1]))

