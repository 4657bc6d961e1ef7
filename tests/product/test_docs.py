"""The documentation builds with warnings as errors, and its examples run.

Two Sphinx builds, as ``make docs`` runs them but without executing the gallery (the
examples run in fast mode in test_examples.py): the doctest builder runs every ``>>>``
snippet of the hand-written pages (docstring examples run under
``pytest --doctest-modules probkit``), and the HTML builder renders every page,
including the API reference generated from the docstrings.
"""

import glob
import os
import subprocess
import sys

import pytest

sphinx = pytest.importorskip("sphinx", reason="the docs extra (pip install -e .[docs]) is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")


def build(builder, out, **env):
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, DOCS, str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT, PROBKIT_DOCS_GALLERY="skip", PROBKIT_FAST="1", MPLBACKEND="Agg", **env),
    )
    assert proc.returncode == 0, f"sphinx -b {builder} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_user_guide_snippets_run(tmp_path):
    build("doctest", tmp_path, PROBKIT_DOCS_BUILDER="doctest")
    with open(tmp_path / "output.txt") as f:
        report = f.read()
    assert "0 failures in tests" in report
    n_tests = int(report.split("Doctest summary")[1].split("tests")[0].split()[-1])
    assert n_tests >= 60


def test_html_site_builds_with_every_page(tmp_path):
    build("html", tmp_path)
    pages = {os.path.relpath(p, tmp_path) for p in glob.glob(str(tmp_path / "**" / "*.html"), recursive=True)}
    for page in ["index.html", "getting_started.html", "coming_from.html", "benchmarks.html",
                 "auto_examples/index.html", "api/index.html", "api/probkit.io.html", "api/probkit.distributed.html",
                 "api/probkit.plotting.html", "api/generated/probkit.GaussianHMM.html",
                 "api/generated/probkit.load.html", "api/generated/probkit.io.register_type.html"]:
        assert page in pages, page
    for name in ["distributions", "em", "mixtures", "hmms", "vi", "neural", "persistence", "cli", "distributed",
                 "plotting"]:
        assert f"user_guide/{name}.html" in pages
    for example in glob.glob(os.path.join(ROOT, "examples", "plot_*.py")):
        assert f"auto_examples/{os.path.basename(example)[:-3]}.html" in pages
    with open(tmp_path / "benchmarks.html") as f:
        bench = f.read()
    assert "benchmark" in bench.lower() and "<table" in bench
    with open(tmp_path / "api" / "generated" / "probkit.GaussianHMM.html") as f:
        assert "Examples" in f.read()
