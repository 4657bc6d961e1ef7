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


OUTPUTS = os.path.join(ROOT, "docs", "gallery_outputs")


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_page_shows_committed_full_run_outputs(path):
    """The gallery does not run the examples: each page includes the committed outputs of a full run."""
    stem = os.path.basename(path)[:-len(".py")]
    name = stem[len("plot_"):]
    with open(path) as f:
        source = f.read()
    assert "Results of the full run" in source
    figure = os.path.join(OUTPUTS, f"{name}.png")
    assert os.path.exists(figure) and 5_000 < os.path.getsize(figure) < 400_000
    results_md = os.path.join(OUTPUTS, f"{name}.results.md")
    if f"/gallery_outputs/{name}.results.md" in source:
        # a long example: recorded numbers of its full run, and a figure labelled as fast mode
        with open(results_md) as f:
            recorded = f.read()
        assert f"python examples/{stem}.py" in recorded and re.search(r"\d{4}-\d{2}-\d{2}", recorded)
        assert "|---" in recorded  # the results table
        assert "fast mode" in source.split("Results of the full run")[1]
    else:
        with open(os.path.join(OUTPUTS, f"{name}.txt")) as f:
            command, header = f.readline(), f.readline()
            printed = f.read()
        assert command.strip() == f"$ python examples/{stem}.py"
        assert "full settings" in header and re.search(r"run \d{4}-\d{2}-\d{2}", header)
        assert re.search(r"\d", printed)


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_rendered_code_hides_the_boilerplate(path):
    with open(path) as f:
        source = f.read()
    hidden = "".join(re.findall(r"# sphinx_gallery_start_ignore\n(.*?)# sphinx_gallery_end_ignore", source, re.S))
    shown = re.sub(r"# sphinx_gallery_start_ignore\n.*?# sphinx_gallery_end_ignore\n", "", source, flags=re.S)
    for boilerplate in ['matplotlib.use("Agg")', "PROBKIT_EXAMPLES_OUTPUT", "os.makedirs(OUT"]:
        if boilerplate in source:
            assert boilerplate in hidden and boilerplate not in shown, boilerplate
