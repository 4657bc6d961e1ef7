"""Sphinx configuration of the probkit documentation (built by ``make docs``).

Environment variables:

``PROBKIT_DOCS_GALLERY``
    ``run`` (default) executes the examples (with their figures); ``skip`` renders them
    without running (the test suite runs them separately, in fast mode).
``PROBKIT_FAST``
    ``1`` runs the examples on small settings.
"""

import glob
import importlib
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import probkit  # noqa: E402

project = "probkit"
author = "the probkit developers"
copyright = "probkit developers, BSD-3-Clause"
version = release = probkit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]

# ---------------------------------------------------------------------------- API reference
# One page per public subpackage; subpackages other teams add (probkit.vi, probkit.neural)
# appear as soon as they are importable.
API_MODULES = [
    ("probkit", "Estimators (top level)"),
    ("probkit.mixture", "Mixtures"),
    ("probkit.hmm", "Hidden Markov models"),
    ("probkit.glm", "Generalised linear models"),
    ("probkit.naive_bayes", "Naive Bayes"),
    ("probkit.ssm", "State-space models"),
    ("probkit.vi", "Variational inference"),
    ("probkit.topics", "Topic models"),
    ("probkit.neural", "Neural sequence models"),
    ("probkit.neural.layers", "Neural sequence layers"),
    ("probkit.neural.ops", "Neural sequence operators"),
    ("probkit.distributions", "Distributions"),
    ("probkit.em.engine", "The EM engine"),
    ("probkit.inference", "HMM inference kernels"),
    ("probkit.inference.kalman", "Kalman filter and smoother kernels"),
    ("probkit.io", "Saving and loading"),
    ("probkit.distributed", "Distributed fitting"),
    ("probkit.plotting", "Plotting"),
    ("probkit.datasets", "Data sets"),
    ("probkit.compat.hmmlearn.hmm", "hmmlearn compatibility: hmm"),
    ("probkit.compat.hmmlearn.vhmm", "hmmlearn compatibility: vhmm"),
    ("probkit.compat.hmmlearn.base", "hmmlearn compatibility: base"),
    ("probkit.cli", "Command line"),
]


def _available(name):
    try:
        return importlib.util.find_spec(name) is not None and importlib.import_module(name) is not None
    except ImportError:
        return False


def write_api_pages():
    out = os.path.join(HERE, "api")
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "probkit*.rst")):
        os.remove(old)
    toc = []
    available = [(name, title) for name, title in API_MODULES if _available(name)]
    # Objects re-exported at the top level (``from probkit import GaussianHMM``) are
    # documented once, as ``probkit.<name>``; their subpackage page links to them.
    top = {id(getattr(probkit, m)): m for m in probkit.__all__ if m != "__version__"}
    for name, title in available:
        module = importlib.import_module(name)
        members = [m for m in getattr(module, "__all__", []) if not m.startswith("_") and m != "__version__"]
        lines = [f".. _api-{name}:", "", title, "=" * len(title), "", f".. automodule:: {name}", "   :no-members:",
                 "   :no-index:", ""]
        if name != "probkit":
            also = [top[id(getattr(module, m))] for m in members if id(getattr(module, m)) in top]
            members = [m for m in members if id(getattr(module, m)) not in top]
            if also:
                lines += ["Also in this module (documented with the top-level names): "
                          + ", ".join(f":obj:`probkit.{m}`" for m in also) + ".", ""]
        functions = [m for m in members if callable(getattr(module, m, None))]
        data = [m for m in members if m not in functions]
        if functions:
            lines += [f".. currentmodule:: {name}", "", ".. autosummary::", "   :toctree: generated/",
                      "   :nosignatures:", ""] + [f"   {m}" for m in functions] + [""]
        if data:
            lines += ["Constants", "---------", ""]
            lines += [f".. autodata:: {name}.{m}\n   :no-value:\n" for m in data]
        with open(os.path.join(out, f"{name}.rst"), "w") as f:
            f.write("\n".join(lines))
        toc.append(name)
    with open(os.path.join(out, "index.rst"), "w") as f:
        f.write("API reference\n=============\n\nGenerated from the docstrings. Every public function and class has "
                "a runnable example, and the test suite runs them all.\n\n.. toctree::\n   :maxdepth: 1\n\n"
                + "".join(f"   {name}\n" for name in toc))


def write_benchmarks_page():
    bench = os.path.join(ROOT, "benchmarks")
    main = os.path.join(bench, "RESULTS.md")
    files = [main] if os.path.exists(main) else sorted(glob.glob(os.path.join(bench, "results*.md")))
    lines = ["# Benchmarks", "",
             "Measured results kept in the repository's `benchmarks/` folder (each section says how it was "
             "run; the scripts are beside the results).", ""]
    for path in files:
        rel = os.path.relpath(path, HERE)
        lines += [f"```{{include}} {rel}", ":heading-offset: 1", "```", ""]
    if not files:
        lines.append("No benchmark results are recorded in this checkout.")
    with open(os.path.join(HERE, "benchmarks.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


write_api_pages()
write_benchmarks_page()

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"
numpydoc_show_class_members = True
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# ---------------------------------------------------------------------------- doctest
# The doctest builder runs the examples of the hand-written pages; the docstring examples
# of the API pages are run by ``pytest --doctest-modules probkit`` (with their module's
# names in scope), so the API pages and the gallery are left out of that build.
if os.environ.get("PROBKIT_DOCS_BUILDER") == "doctest":
    exclude_patterns += ["api/**", "auto_examples/**"]
    suppress_warnings_doctest = ["toc.excluded", "toc.not_readable", "ref.doc"]
else:
    suppress_warnings_doctest = []
doctest_global_setup = """
import os, tempfile, warnings
import numpy as np
import probkit
warnings.simplefilter("ignore")
HAS_VI = __import__("importlib").util.find_spec("probkit.vi") is not None
HAS_NEURAL_ESTIMATORS = hasattr(__import__("importlib").import_module("probkit"), "NeuralHMM")
os.chdir(tempfile.mkdtemp())
"""

# ---------------------------------------------------------------------------- gallery
_run_gallery = (os.environ.get("PROBKIT_DOCS_GALLERY", "run") != "skip"
                and os.environ.get("PROBKIT_DOCS_BUILDER") != "doctest")
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": "True" if _run_gallery else "False",
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "only_warn_on_example_error": False,
    "abort_on_example_error": True,
    "show_memory": False,
    "write_computation_times": False,
}

# ---------------------------------------------------------------------------- output
html_theme = "pydata_sphinx_theme"
html_title = f"probkit {release}"
html_static_path = []
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2, "secondary_sidebar_items": ["page-toc"]}
html_show_sourcelink = False
myst_heading_anchors = 3
# Cross-references inside the benchmark results point at files of the repository, which
# are not documentation pages.
suppress_warnings = ["myst.xref_missing", "myst.header"] + suppress_warnings_doctest
intersphinx_mapping = {}
nitpicky = False
