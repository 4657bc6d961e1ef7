"""The README's snippets run as pasted, and print what the README says they print.

Every fenced ``python`` block is executed on its own (a fresh namespace: the snippets
import what they use); when a ``text`` block follows it, that is the expected standard
output, compared line by line. The ``bash`` block runs with ``probkit`` on the PATH
(this checkout's command, through ``python -m probkit``) in a temporary folder.
"""

import contextlib
import io
import os
import re
import stat
import subprocess
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")


def fenced_blocks(text):
    """(language, code) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def snippet_cases():
    with open(README) as f:
        blocks = fenced_blocks(f.read())
    cases = []
    for i, (lang, code) in enumerate(blocks):
        if lang == "python":
            expected = blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else None
            cases.append((code, expected))
    return cases


CASES = snippet_cases()


def test_the_readme_has_a_quick_start_and_one_snippet_per_family():
    with open(README) as f:
        text = f.read()
    assert len(CASES) >= 5 and all(expected is not None for _, expected in CASES)
    joined = "\n".join(code for code, _ in CASES)
    for name in ["GaussianMixture", "GaussianHMM", "MixtureModel", "PoissonHMM", "BayesianGaussianMixture", "fit_svi",
                 "SequenceClassifier"]:
        assert name in joined, name
    assert any(lang == "bash" and "probkit fit" in code for lang, code in fenced_blocks(text))
    # the figure at the top exists and is small
    figure = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text).group(1)
    assert os.path.getsize(os.path.join(ROOT, figure)) < 150_000


@pytest.mark.parametrize("code, expected", CASES, ids=[f"snippet{i}" for i in range(len(CASES))])
def test_python_snippet_runs_and_prints_what_the_readme_shows(code, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, README, "exec"), {"__name__": "__readme__"})
    assert out.getvalue().strip().splitlines() == expected.strip().splitlines()


def test_shell_snippet_runs(tmp_path):
    with open(README) as f:
        shell = [code for lang, code in fenced_blocks(f.read()) if lang == "bash" and "probkit fit" in code][0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "probkit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m probkit "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(["bash", "-e", "-c", shell], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ["faithful.csv", "model.pk", "states.csv", "states.png"]:
        assert (work / name).stat().st_size > 0, name
    assert "GaussianHMM" in proc.stdout and "transmat_" in proc.stdout
