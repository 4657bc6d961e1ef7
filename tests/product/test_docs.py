"""The documentation builds with warnings as errors, and its examples run.

Two Sphinx builds, as ``make docs`` runs them but without executing the gallery (the
examples run in fast mode in test_examples.py): the doctest builder runs every ``>>>``
snippet of the hand-written pages (docstring examples run under
``pytest --doctest-modules probkit``), and the HTML builder renders every page,
including the API reference generated from the docstrings.
"""

import glob
import html
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys

import pytest

sphinx = pytest.importorskip("sphinx", reason="the docs extra (pip install -e .[docs]) is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")


def build(builder, out, **env):
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, DOCS, str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
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


@pytest.fixture(scope="module")
def html_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    build("html", out)
    return out


def test_html_site_builds_with_every_page(html_site):
    tmp_path = html_site
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


# ---------------------------------------------------------------------------- API reference completeness
ROUTING = re.compile(r"^(set_\w+_request|get_metadata_routing)$")


def public_modules():
    """probkit, each of its public subpackages, and its public top-level modules that declare __all__."""
    import probkit

    names = ["probkit"]
    for info in pkgutil.walk_packages(probkit.__path__, "probkit."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name == "probkit.demo":
            continue
        if info.ispkg or (len(parts) == 2 and getattr(importlib.import_module(info.name), "__all__", None)):
            names.append(info.name)
    return names


def exported(module_name):
    module = importlib.import_module(module_name)
    names = module._EXPORTS if module_name == "probkit" else getattr(module, "__all__", [])
    # re-exports of another library's classes (scikit-learn's Interval in probkit.base) are
    # documented by that library
    return {n: getattr(module, n) for n in names if not n.startswith("_")
            and not (callable(getattr(module, n)) and not getattr(getattr(module, n), "__module__", "probkit")
                     .startswith("probkit"))}


def expected_members(cls):
    """Public methods and properties a class page must show: inherited ones too, but not
    scikit-learn's metadata-routing setters nor what torch.nn.Module / object define."""
    out = []
    for name in dir(cls):
        if name.startswith("_") or ROUTING.match(name):
            continue
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if owner is object or owner.__module__.split(".")[0] == "torch":
            continue
        value = vars(owner)[name]
        if isinstance(value, (property, staticmethod, classmethod)) or inspect.isfunction(value):
            out.append(name)
    return out


def test_every_public_method_has_a_rendered_entry(html_site):
    generated = html_site / "api" / "generated"
    pages = {p.name[:-len(".html")]: p for p in generated.glob("*.html")}
    anchors = {}
    missing = []
    modules = public_modules()
    for required in ["probkit.neural.ops", "probkit.neural.layers", "probkit.hmm", "probkit.inference"]:
        assert required in modules
    n_checked = 0
    for module_name in modules:
        for name, obj in exported(module_name).items():
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj)):
                continue  # constants are listed on the module page
            # the page of the object: under any name it is exported as
            candidates = [f"{m}.{name}" for m in modules if exported(m).get(name) is obj]
            page = next((c for c in candidates if c in pages), None)
            if page is None:
                missing.append(f"{module_name}.{name}: no page")
                continue
            if not inspect.isclass(obj):
                continue
            if page not in anchors:
                anchors[page] = set(html.unescape(a) for a in re.findall(r'id="([^"]+)"', pages[page].read_text()))
            for member in expected_members(obj):
                n_checked += 1
                if f"{page}.{member}" not in anchors[page]:
                    missing.append(f"{page}.{member}")
    assert not missing, f"{len(missing)} public members without an entry:\n" + "\n".join(sorted(missing))
    assert n_checked > 300


def test_class_pages_write_out_inherited_parameters(html_site):
    text = (html_site / "api" / "generated" / "probkit.GaussianHMM.html").read_text()
    assert "See :class:" not in text and "See probkit.hmm.BaseHMM" not in text
    for parameter in ["algorithm", "n_iter", "tol", "implementation", "init_params"]:
        # an entry of its own, or one shared with related names ("params, init_params : str")
        assert re.search(rf"<strong>(\w+, )*{parameter}(, \w+)*</strong>", text), parameter
    for method in ["decode", "sample", "score_samples", "predict_proba", "get_params"]:
        assert f'id="probkit.GaussianHMM.{method}"' in text, method
    assert "set_fit_request" not in text and "set_score_request" not in text
    text = (html_site / "api" / "generated" / "probkit.GaussianMixture.html").read_text()
    for method in ["fit", "predict", "score", "bic", "aic", "sample"]:
        assert f'id="probkit.GaussianMixture.{method}"' in text, method


# ---------------------------------------------------------------------------- a browser's view
def test_pages_render_in_a_headless_browser(html_site, tmp_path):
    """docs/render_check.py in Chromium: the index shows its figure, a gallery page its committed
    full-run output. CI machines without Chromium skip this (the script is documented for people)."""
    import shutil

    if not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chromium on PATH (apt-get install -y chromium)")
    proc = subprocess.run([sys.executable, os.path.join(DOCS, "render_check.py"), "--html", str(html_site),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "index.png" in shots and any(s.startswith("auto_examples__") for s in shots)
