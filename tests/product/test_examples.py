"""Every example runs in fast mode (PROBKIT_FAST=1), prints numbers and writes its figure."""

import ast
import glob
import os
import re
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "plot_*.py")))


def test_there_are_examples():
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_runs_in_fast_mode(path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBKIT_FAST", "1")
    monkeypatch.setenv("PROBKIT_EXAMPLES_OUTPUT", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import matplotlib.pyplot as plt

    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        plt.close("all")
    out = capsys.readouterr().out
    assert re.search(r"\d", out), "an example prints its numbers"
    figure = tmp_path / (os.path.basename(path)[len("plot_"):-len(".py")] + ".png")
    assert figure.exists() and figure.stat().st_size > 5000


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_has_a_gallery_header(path):
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    lines = doc.strip().splitlines()
    assert len(lines) > 3 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0])
