"""Install hints name the project's own distribution.

The import name is ``probkit``, but the name ``probkit`` on the public package index
belongs to an unrelated project: a hint such as ``pip install probkit[plot]`` would
install that project. Every hint in the repository must name the distribution of
pyproject.toml or install from the checkout (``pip install -e .``).
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The unrelated project on the index that owns the name.
TAKEN = "probkit"
# An installer command naming the taken distribution: `pip install probkit`, `pip install -U "probkit[plot]"`,
# `uv add probkit`, `python -m pip install probkit==0.1` (but not probkit-ml, nor a path such as ./probkit).
HINT = re.compile(r"(?:pip3?\s+install|uv\s+(?:add|pip\s+install)|poetry\s+add|conda\s+install)"
                  r"(?:\s+-{1,2}[\w-]+(?:[= ]\S+)?)*\s+[\"']?" + TAKEN + r"(?![\w.\-/])", re.IGNORECASE)


def project_name():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["name"]


def repository_text_files():
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        out = [os.path.relpath(os.path.join(d, f), ROOT) for d, dirs, files in os.walk(ROOT)
               if not any(part.startswith(".") or part in ("build", "_build") for part in
                          os.path.relpath(d, ROOT).split(os.sep)) for f in files]
    return [p for p in out if p.endswith((".py", ".md", ".rst", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml"))
            or os.path.basename(p) in ("Makefile",)]


def test_the_pattern_finds_hints_for_the_taken_name():
    for text in ["pip install probkit", "pip install probkit[plot]", 'pip install -U "probkit[plot]"',
                 "python -m pip install probkit==0.1", "uv add probkit", "pip3 install --upgrade probkit"]:
        assert HINT.search(text), text
    for text in ["pip install probkit-ml", "pip install 'probkit-ml[plot]'", "pip install -e .",
                 'pip install -e ".[plot]"', "pip install matplotlib", "pip install ./probkit-src"]:
        assert not HINT.search(text), text


def test_the_distribution_name_is_not_the_taken_one():
    assert project_name().lower().replace("_", "-") != TAKEN


def test_no_install_hint_names_the_taken_distribution():
    files = repository_text_files()
    assert "README.md" in files and "probkit/plotting.py" in files
    offenders = []
    for rel in files:
        if rel == os.path.relpath(__file__, ROOT):
            continue
        path = os.path.join(ROOT, rel)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                if HINT.search(line):
                    offenders.append(f"{rel}:{line_no}: {line.strip()}")
    assert not offenders, "install hints naming the unrelated 'probkit' distribution:\n" + "\n".join(offenders)


def test_the_plotting_import_error_names_an_installable_package(monkeypatch):
    from probkit import plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError) as info:
        plotting._plt()
    assert "pip install" in str(info.value) and not HINT.search(str(info.value))
