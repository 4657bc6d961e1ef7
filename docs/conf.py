"""Sphinx configuration of the probkit documentation (built by ``make docs``).

The example gallery is not executed by the build: each example page ends with the
committed output of a full run (``docs/gallery_outputs/``, made by
``docs/update_gallery_outputs.py``, with the command and the date), because the long
neural examples take hours on a CPU and fast mode (``PROBKIT_FAST=1``, what the test
suite runs) only checks that the code runs.
"""

import glob
import importlib
import importlib.util
import inspect
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)  # _gallery_order

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
exclude_patterns = ["_build", "gallery_outputs/**", "**.ipynb_checkpoints", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]

# ---------------------------------------------------------------------------- API reference
# One page per public subpackage; subpackages other teams add (probkit.vi, probkit.neural)
# appear as soon as they are importable.
API_MODULES = [
    ("probkit", "Estimators (top level)"),
    ("probkit.mixture", "Mixtures"),
    ("probkit.hmm", "Hidden Markov models"),
    ("probkit.hsmm", "Hidden semi-Markov models"),
    ("probkit.glm", "Generalised linear models"),
    ("probkit.naive_bayes", "Naive Bayes"),
    ("probkit.ssm", "State-space models"),
    ("probkit.vi", "Variational inference"),
    ("probkit.topics", "Topic models"),
    ("probkit.neural", "Neural sequence models"),
    ("probkit.neural.estimators", "Neural estimators"),
    ("probkit.neural.layers", "Neural layers"),
    ("probkit.neural.ops", "Neural ops (selective scan, WKV, causal convolution)"),
    ("probkit.distributions", "Distributions"),
    ("probkit.components", "Mixture and HMM components"),
    ("probkit.base", "Estimator base class"),
    ("probkit.em", "The EM engine"),
    ("probkit.em.engine", "The EM engine's hooks"),
    ("probkit.em.online", "Stepwise (online) EM"),
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
    ("probkit.utils", "Utilities"),
]

# Members every scikit-learn estimator inherits for metadata routing: documented by
# scikit-learn, noise on every probkit class page.
ROUTING_NOISE = re.compile(r"^(set_\w+_request|get_metadata_routing)$")


def _available(name):
    try:
        return importlib.util.find_spec(name) is not None and importlib.import_module(name) is not None
    except ImportError:
        return False


def _foreign(obj):
    """A class or function another library defines and a probkit module re-exports (scikit-learn's
    ``Interval`` in :mod:`probkit.base`): that library documents it."""
    module = getattr(obj, "__module__", None) if callable(obj) else None
    return module is not None and module.split(".")[0] != "probkit"


def public_members(cls):
    """Public methods and properties of ``cls`` to document: its own and inherited ones, without
    metadata-routing noise and without what torch.nn.Module itself defines (hundreds of names)."""
    methods, properties = [], []
    for name in sorted(dir(cls)):
        if name.startswith("_") or ROUTING_NOISE.match(name):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or owner is object or owner.__module__.split(".")[0] == "torch":
            continue
        static = vars(owner)[name]
        if isinstance(static, property) or type(static).__name__ == "cached_property":
            properties.append(name)
        elif isinstance(static, (staticmethod, classmethod)) or inspect.isfunction(static):
            methods.append(name)
    return methods, properties


def _class_page(fullname, cls):
    module, _, name = fullname.rpartition(".")
    methods, properties = public_members(cls)
    lines = [fullname, "=" * len(fullname), "", f".. currentmodule:: {module}", "",
             f".. autoclass:: {name}", "   :show-inheritance:", ""]
    if methods:
        lines += [".. rubric:: Methods", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   ~{name}.{m}" for m in methods] + [""]
    if properties:
        lines += [".. rubric:: Properties", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   ~{name}.{p}" for p in properties] + [""]
    for m in methods:
        lines += [f".. automethod:: {fullname}.{m}", ""]
    for p in properties:
        lines += [f".. autoproperty:: {fullname}.{p}", ""]
    return "\n".join(lines)


def write_api_pages():
    out = os.path.join(HERE, "api")
    generated = os.path.join(out, "generated")
    os.makedirs(generated, exist_ok=True)
    for old in glob.glob(os.path.join(out, "probkit*.rst")) + glob.glob(os.path.join(generated, "*.rst")):
        os.remove(old)
    toc = []
    available = [(name, title) for name, title in API_MODULES if _available(name)]
    # An object exported by several modules (``probkit.GaussianHMM`` is also
    # ``probkit.hmm.GaussianHMM``) is documented once, under the first name in API_MODULES
    # order; the other pages link to it.
    documented = {}
    for name, title in available:
        module = importlib.import_module(name)
        members = [m for m in getattr(module, "__all__", []) if not m.startswith("_") and m != "__version__"
                   and not _foreign(getattr(module, m, None))]
        lines = [f".. _api-{name}:", "", title, "=" * len(title), "", f".. automodule:: {name}", "   :no-members:",
                 "   :no-index:", ""]
        also = [documented[id(getattr(module, m))] for m in members
                if callable(getattr(module, m, None)) and id(getattr(module, m)) in documented]
        members = [m for m in members if not (callable(getattr(module, m, None))
                                              and id(getattr(module, m)) in documented)]
        if also:
            lines += ["Also in this module (documented under these names): "
                      + ", ".join(f":obj:`{full}`" for full in also) + ".", ""]
        for m in members:
            if callable(getattr(module, m, None)):
                documented[id(getattr(module, m))] = f"{name}.{m}"
        functions = [m for m in members if callable(getattr(module, m, None))]
        data = [m for m in members if m not in functions]
        if functions:
            lines += [f".. currentmodule:: {name}", "", ".. autosummary::", "   :toctree: generated/",
                      "   :nosignatures:", ""] + [f"   {m}" for m in functions] + [""]
        for m in functions:
            obj = getattr(module, m)
            if inspect.isclass(obj):
                with open(os.path.join(generated, f"{name}.{m}.rst"), "w") as f:
                    f.write(_class_page(f"{name}.{m}", obj))
        if data:
            lines += ["Constants", "---------", ""]
            lines += [f".. autodata:: {name}.{m}\n   :no-value:\n" for m in data]
        with open(os.path.join(out, f"{name}.rst"), "w") as f:
            f.write("\n".join(lines))
        toc.append(name)
    with open(os.path.join(out, "index.rst"), "w") as f:
        f.write("API reference\n=============\n\nGenerated from the docstrings. Every public function and class has "
                "a runnable example, and the test suite runs them all. Class pages list every public method and "
                "property, inherited ones included.\n\n.. toctree::\n   :maxdepth: 1\n\n"
                + "".join(f"   {name}\n" for name in toc))


# ``See :class:`BaseHMM``` in a parameter list is written out: the entries of the class it
# points to are copied in (recursively), so every class page states every parameter.
_SEE = re.compile(r"^See :(?:class|obj):`~?([\w.]+)`[.;]?\s*(.*)$")
_ENTRY = re.compile(r"^(\w[\w, ]*?)(\s*:\s*.*)?$")


def _resolve(target, owner):
    for candidate in (target, f"{owner.__module__}.{target}"):
        module, _, attr = candidate.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError):
            continue
    return None


def _parameter_entries(cls, seen=()):
    """name -> (type text, description lines) of the Parameters section of ``cls``, "See" entries expanded."""
    from numpydoc.docscrape import ClassDoc

    entries = {}
    doc = ClassDoc(cls, config={"show_class_members": False})
    for param in doc["Parameters"]:
        desc = list(param.desc)
        see = _SEE.match(desc[0].strip()) if desc else None
        names = [n.strip() for n in param.name.split(",") if n.strip()]
        if see and see.group(1) not in seen:
            target = _resolve(see.group(1), cls)
            if target is not None:
                inherited = _parameter_entries(target, seen + (see.group(1),))
                for n in names:
                    if n in inherited:
                        entries[n] = inherited[n]
                continue
        for n in names:
            entries[n] = (param.type, desc)
    return entries


_SECTIONS_WITH_TYPES = {"Parameters", "Returns", "Yields", "Attributes", "Other Parameters", "Raises", "Receives"}


def escape_star_in_types(app, what, name, obj, options, lines):
    """``(n_samples, *batch_shape)`` in a type is text, not the start of reST emphasis."""
    section = None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}:
            section = line.strip()
            continue
        if section in _SECTIONS_WITH_TYPES and line and not line.startswith(" ") and "*" in line:
            head, sep, type_text = line.partition(" : ")
            if sep:
                lines[i] = head + sep + re.sub(r"(?<![\\*])\*(?!\*)", r"\\*", type_text)
            elif section in ("Returns", "Yields"):
                lines[i] = re.sub(r"(?<![\\*])\*(?!\*)", r"\\*", line)


def expand_see_parameters(app, what, name, obj, options, lines):
    if what != "class" or "Parameters" not in lines:
        return
    start = lines.index("Parameters")
    if start + 1 >= len(lines) or not set(lines[start + 1]) <= {"-"}:
        return
    i = start + 2
    out = lines[:i]
    while i < len(lines) and not (i + 1 < len(lines) and lines[i + 1] and set(lines[i + 1]) <= {"-"}
                                  and lines[i].strip()):
        line = lines[i]
        entry = _ENTRY.match(line) if line and not line.startswith(" ") else None
        body = []
        j = i + 1
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            if not lines[j].strip() and (j + 1 >= len(lines) or not lines[j + 1].startswith(" ")):
                break
            body.append(lines[j])
            j += 1
        see = _SEE.match(body[0].strip()) if entry and body else None
        if see:
            names = [n.strip() for n in entry.group(1).split(",") if n.strip()]
            target = _resolve(see.group(1), obj)
            inherited = _parameter_entries(target, (see.group(1),)) if target is not None else {}
            if inherited and all(n in inherited for n in names):
                note = see.group(2).strip()
                for k, n in enumerate(names):
                    type_text, desc = inherited[n]
                    out.append(f"{n} : {type_text}" if type_text else n)
                    out += [f"    {d}" if d else "" for d in desc]
                    if note and n in ("params", "init_params"):
                        out.append(f"    ({note.rstrip('.')}.)")
                i = j
                continue
        out.append(line)
        out += body
        i = j
    out += lines[i:]
    lines[:] = out


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
# Class pages are written by write_api_pages (every public method, inherited ones included);
# autosummary writes the function pages and must not replace the class pages.
autosummary_generate_overwrite = False
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
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
# No names are provided to the pages' snippets: each page imports what it uses, so a
# reader can paste it. The setup only keeps the build from writing model files into the
# checkout and from printing the warnings a pasted snippet would show.
doctest_global_setup = """
import os as _os, tempfile as _tempfile, warnings as _warnings
_warnings.simplefilter("ignore")
_os.chdir(_tempfile.mkdtemp())
"""

# ---------------------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # The pages show committed full-run outputs (see the module docstring).
    "plot_gallery": "False",
    "download_all_examples": False,
    "within_subsection_order": "_gallery_order.ExampleOrder",
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


def setup(app):
    # before numpydoc (priority 500) turns the numpy sections into reST
    app.connect("autodoc-process-docstring", expand_see_parameters, priority=400)
    app.connect("autodoc-process-docstring", escape_star_in_types, priority=450)
