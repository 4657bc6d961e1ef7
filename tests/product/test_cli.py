"""The probkit command line: round trips against the Python API and one-line errors on bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest

import probkit
from probkit import GaussianHMM, GaussianMixture, PoissonHMM
from probkit.cli import MODELS, main, read_csv
from probkit.datasets import load_earthquakes, load_old_faithful

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def faithful_csv(tmp_path):
    X, names = load_old_faithful()
    path = tmp_path / "faithful.csv"
    np.savetxt(path, X, delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    return path, X


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_states(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)[:, 0].astype(int)


def test_fit_then_decode_gives_the_python_api_states(faithful_csv, tmp_path, capsys):
    path, X = faithful_csv
    model_path, states_path = tmp_path / "m.pk", tmp_path / "states.csv"
    code, out, err = run(["fit", "gaussian-hmm", path, "-k", 3, "--covariance-type", "full", "--max-iter", 30,
                          "-o", model_path], capsys)
    assert code == 0, err
    assert "fitted gaussian-hmm" in out and "saved" in out
    code, out, err = run(["decode", model_path, path, "-o", states_path], capsys)
    assert code == 0, err
    api = GaussianHMM(3, covariance_type="full", n_iter=30, random_state=0).fit(X)
    np.testing.assert_array_equal(read_states(states_path), api.predict(X))
    # the saved model is the Python model
    np.testing.assert_array_equal(probkit.load(model_path).means_, api.means_)


def test_sequences_and_score_match_the_api(tmp_path, capsys):
    years, counts = load_earthquakes()
    seq = (years >= 1950).astype(int)  # two sequences
    path = tmp_path / "quakes.csv"
    with open(path, "w") as f:
        f.write("era\tcount\n" + "".join(f"{s}\t{c}\n" for s, c in zip(seq, counts)))
    model_path = tmp_path / "q.pk"
    assert run(["fit", "poisson-hmm", path, "-k", 2, "--sequence-column", "era", "--max-iter", 50,
                "-o", model_path], capsys)[0] == 0
    lengths = np.bincount(seq)
    api = PoissonHMM(2, n_iter=50, random_state=0).fit(counts[:, None], lengths=lengths)
    code, out, _ = run(["score", model_path, path, "--sequence-column", "era", "-o", tmp_path / "ll.csv"], capsys)
    assert code == 0
    total = api.score(counts[:, None], lengths=lengths)
    assert f"log-likelihood {total:.6f}" in out
    per_row = np.loadtxt(tmp_path / "ll.csv", skiprows=1)
    np.testing.assert_allclose(per_row.sum(), total)
    code, out, _ = run(["decode", model_path, path, "--sequence-column", "era", "--proba"], capsys)
    rows = np.loadtxt(out.splitlines()[1:], delimiter=",", ndmin=2)
    np.testing.assert_array_equal(rows[:, 0].astype(int), api.predict(counts[:, None], lengths=lengths))
    np.testing.assert_allclose(rows[:, 1:], api.predict_proba(counts[:, None], lengths=lengths))


def test_mixture_fit_sample_and_info(faithful_csv, tmp_path, capsys):
    path, X = faithful_csv
    model_path = tmp_path / "g.pk"
    assert run(["fit", "gaussian-mixture", path, "--columns", "waiting", "-k", 2, "-o", model_path], capsys)[0] == 0
    api = GaussianMixture(2, random_state=0).fit(X[:, 1:])
    code, out, _ = run(["decode", model_path, path], capsys)  # picks the 'waiting' column by name
    assert code == 0
    np.testing.assert_array_equal(np.array(out.split()[1:], dtype=int), api.predict(X[:, 1:]))
    code, out, _ = run(["sample", model_path, "-n", 5, "--random-state", 3], capsys)
    assert code == 0 and out.splitlines()[0] == "waiting,state"
    sampled = np.loadtxt(out.splitlines()[1:], delimiter=",")
    np.testing.assert_array_equal(sampled[:, 0], api.sample(5, random_state=3)[0][:, 0])
    code, out, _ = run(["info", model_path], capsys)
    assert code == 0 and "GaussianMixture" in out and "columns: waiting" in out


def test_plots_are_written(faithful_csv, tmp_path, capsys):
    path, _ = faithful_csv
    m = tmp_path / "m.pk"
    assert run(["fit", "gaussian-hmm", path, "-o", m, "--plot", tmp_path / "fit.png"], capsys)[0] == 0
    assert run(["decode", m, path, "-o", tmp_path / "s.csv", "--plot", tmp_path / "dec.png"], capsys)[0] == 0
    assert run(["fit", "poisson-mixture", path, "--columns", "waiting", "-o", tmp_path / "p.pk",
                "--plot", tmp_path / "pm.png"], capsys)[0] == 0
    for name in ("fit.png", "dec.png", "pm.png"):
        assert (tmp_path / name).stat().st_size > 1000


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_DATA = {
    "missing": (None, "cannot read .*no such file"),
    "empty": ("", "is empty"),
    "header-only": ("a,b\n", "has a header \\(a,b\\) but no data rows"),
    "wrong-delimiter": ("a;b\n1;2\n3;4\n", "'1;2' is not a number \\(is the delimiter ';'\\? pass --delimiter\\)"),
    "non-numeric": ("a,b\n1,2\n3,x\n", "line 3, column 'b': 'x' is not a number"),
    "nan": ("a,b\n1,2\n,3\n4,5\n", "empty or NaN cells .*line 3, column 'a'.*--dropna"),
    "ragged": ("a,b\n1,2\n3\n", "line 3: 1 fields where the header has 2"),
    "infinite": ("a\n1\ninf\n", "'inf' is not a finite number"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_gives_one_line_and_exit_1(case, tmp_path, capsys):
    text, pattern = BAD_DATA[case]
    path = tmp_path / "data.csv" if text is None else _write(tmp_path, "data.csv", text)
    code, out, err = run(["fit", "gaussian-mixture", path, "--delimiter", ","] if case == "wrong-delimiter"
                         else ["fit", "gaussian-mixture", path], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("probkit fit: error: ")
    import re
    assert re.search(pattern, err), err


def test_dropna_and_delimiter_detection(tmp_path, capsys):
    path = _write(tmp_path, "d.csv", "x;y\n1;2\n;3\n4;5\n7;1\n")
    X, names, _ = read_csv(str(path), dropna=True)
    assert names == ["x", "y"] and X.tolist() == [[1, 2], [4, 5], [7, 1]]
    code, out, err = run(["fit", "gaussian-mixture", path, "-k", 1, "--dropna", "-o", tmp_path / "m.pk"], capsys)
    assert code == 0 and "on 3 rows" in out
    headerless = _write(tmp_path, "h.csv", "1\t2\n3\t4\n")
    X, names, _ = read_csv(str(headerless))
    assert names == ["column0", "column1"] and X.shape == (2, 2)


def test_wrong_feature_count_and_wrong_model_kind(faithful_csv, tmp_path, capsys):
    path, X = faithful_csv
    m = tmp_path / "m.pk"
    assert run(["fit", "gaussian-hmm", path, "-o", m], capsys)[0] == 0
    one = _write(tmp_path, "one.csv", "a\n1\n2\n3\n")
    code, _, err = run(["decode", m, one], capsys)
    assert code == 1 and "expects 2 feature column(s) (eruptions, waiting) but" in err and "--columns" in err
    three = _write(tmp_path, "three.csv", "p,q,r\n1,2,3\n4,5,6\n")
    code, _, err = run(["score", m, three, "--columns", "p,q,r"], capsys)
    assert code == 1 and "expects 2 feature column(s)" in err
    code, _, err = run(["score", m, three, "--columns", "zz"], capsys)
    assert code == 1 and "has no column 'zz'; its columns are p, q, r" in err
    # a CSV where a model is expected, and a model where a CSV is expected
    code, _, err = run(["decode", path, path], capsys)
    assert code == 1 and "not a probkit model file" in err
    code, _, err = run(["fit", "gaussian-mixture", m], capsys)
    assert code == 1 and "zip archive (a probkit model file?)" in err
    # a mixture has no sequences
    g = tmp_path / "g.pk"
    assert run(["fit", "gaussian-mixture", path, "-o", g], capsys)[0] == 0
    code, _, err = run(["decode", g, path, "--sequence-column", "waiting", "--columns", "eruptions"], capsys)
    assert code == 1 and "hidden Markov models only" in err
    code, _, err = run(["fit", "poisson-hmm", path, "--covariance-type", "full"], capsys)
    assert code == 1 and "--covariance-type does not apply to poisson-hmm" in err


def test_model_errors_are_one_line(tmp_path, capsys):
    path = _write(tmp_path, "neg.csv", "c\n1\n-2\n3\n")
    code, _, err = run(["fit", "poisson-hmm", path, "-o", tmp_path / "m.pk"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run(["fit", "gaussian-mixture", _write(tmp_path, "two.csv", "a\n1\n2\n"), "-k", 5,
                        "-o", tmp_path / "m.pk"], capsys)
    assert code == 1 and "n_components" in err


def test_unavailable_model_is_reported(tmp_path, capsys, monkeypatch):
    path = _write(tmp_path, "d.csv", "a\n1\n2\n3\n")

    # As if the variational subpackage were absent: the command names the missing class.
    spec = MODELS["bayesian-gaussian-mixture"]
    monkeypatch.setitem(MODELS, "bayesian-gaussian-mixture",
                        type(spec)("probkit.mixture:NoSuchEstimator", spec.summary))
    code, _, err = run(["fit", "bayesian-gaussian-mixture", path, "-o", tmp_path / "m.pk"], capsys)
    assert code == 1 and "not available in this installation" in err


def test_variational_model_fits_and_reports_its_bound(tmp_path, capsys):
    path = _write(tmp_path, "d.csv", "a\n1\n2\n3\n10\n11\n12\n")
    code, out, _ = run(["fit", "bayesian-gaussian-mixture", path, "-o", tmp_path / "m.pk"], capsys)
    assert code == 0 and "evidence lower bound" in out


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["fit", "no-such-model", "d.csv"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_explains_the_workflow(capsys):
    proc = subprocess.run([sys.executable, "-m", "probkit", "--help"], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0
    for text in ["probkit fit gaussian-hmm", "probkit decode", "--sequence-column", "--dropna", *MODELS]:
        assert text in proc.stdout
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--n-components" in out and "--columns" in out and "gaussian-mixture" in out


def test_unfitted_model_file_and_directory_paths(tmp_path, capsys):
    unfitted = GaussianHMM(2).save(tmp_path / "unfitted.pk")
    data = _write(tmp_path, "d.csv", "a\n1\n2\n3\n")
    code, _, err = run(["decode", unfitted, data], capsys)
    assert code == 1 and "holds an unfitted GaussianHMM; fit it first" in err
    code, _, err = run(["score", tmp_path, data], capsys)
    assert code == 1 and "cannot read model file" in err
    code, _, err = run(["fit", "gaussian-mixture", tmp_path], capsys)
    assert code == 1 and "it is a directory" in err


def test_fit_reports_convergence_only_when_the_tolerance_was_met(faithful_csv, tmp_path, capsys):
    path, X = faithful_csv
    code, out, err = run(["fit", "gaussian-hmm", path, "-k", 3, "--n-iter", 3, "-o", tmp_path / "a.pk"], capsys)
    assert code == 0, err
    assert "NOT converged" in out and "did not converge in 3 iterations" in err
    assert "rerun with a larger --n-iter" in out  # an HMM's limit under hmmlearn's name
    code, out, err = run(["fit", "gaussian-mixture", path, "-k", 3, "--max-iter", 1, "--tol", 0,
                          "-o", tmp_path / "c.pk"], capsys)
    assert code == 0 and "rerun with a larger --max-iter" in out
    # the default limit is high enough for this data set to converge
    code, out, err = run(["fit", "gaussian-hmm", path, "-k", 3, "-o", tmp_path / "b.pk"], capsys)
    assert code == 0 and "iterations" in out and ", converged" in out and "NOT" not in out
    assert probkit.load(tmp_path / "b.pk").converged_


def test_a_state_space_model_file_loads_in_a_fresh_process(faithful_csv, tmp_path, capsys):
    """`probkit info` runs in a new interpreter, where only probkit's top level is imported:
    the file's class must be found in the subpackage that defines it (here probkit.ssm)."""
    import json

    path, X = faithful_csv
    model_path = tmp_path / "lds.pk"
    assert run(["fit", "linear-gaussian-ssm", path, "-k", 2, "--n-iter", 3, "-o", model_path], capsys)[0] == 0
    proc = subprocess.run([sys.executable, "-m", "probkit", "info", str(model_path), "--json"],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["class"] == "LinearGaussianSSM"
    np.testing.assert_allclose(info["fitted"]["transition_matrix_"], probkit.load(model_path).transition_matrix_)


# ---------------------------------------------------------------------------- first-hour conveniences
def test_verbose_fit_reports_reading_and_iterations_on_stderr(faithful_csv, tmp_path, capsys):
    path, X = faithful_csv
    code, out, err = run(["fit", "gaussian-hmm", path, "-k", 2, "-v", "-o", tmp_path / "m.pk"], capsys)
    assert code == 0, err
    assert f"read {path}: 272 rows x 2 columns (eruptions, waiting)" in err
    assert "fitting GaussianHMM with 2 components (at most 200 iterations)" in err
    model = probkit.load(tmp_path / "m.pk")
    # one line per EM iteration, as the estimator's own verbose output prints them
    assert len([line for line in err.splitlines() if line.strip().split(" ")[0].isdigit()]) == model.n_iter_
    assert "fitted gaussian-hmm" in out and "read " not in out  # stdout keeps only the summary
    code, out, quiet = run(["fit", "gaussian-hmm", path, "-k", 2, "-o", tmp_path / "q.pk"], capsys)
    assert code == 0 and quiet == ""


def test_json_output_of_fit_score_and_info_matches_the_api(faithful_csv, tmp_path, capsys):
    import json

    path, X = faithful_csv
    model_path = tmp_path / "m.pk"
    code, out, err = run(["fit", "gaussian-hmm", path, "-k", 2, "--covariance-type", "full", "--n-iter", 60,
                          "--json", "-o", model_path], capsys)
    assert code == 0, err
    fitted = json.loads(out)
    api = GaussianHMM(2, covariance_type="full", n_iter=60, random_state=0).fit(X)
    assert fitted["class"] == "GaussianHMM" and fitted["columns"] == ["eruptions", "waiting"]
    assert fitted["n_rows"] == 272 and fitted["n_iter"] == api.monitor_.iter
    np.testing.assert_allclose(fitted["log_likelihood"], api.score(X), rtol=1e-10)
    np.testing.assert_allclose(fitted["bic"], api.bic(X), rtol=1e-10)
    assert fitted["converged"] == bool(api.converged_) and fitted["saved"] == str(model_path)
    code, out, _ = run(["score", model_path, path, "--json"], capsys)
    scored = json.loads(out)
    np.testing.assert_allclose(scored["log_likelihood"], api.score_samples(X).sum(), rtol=1e-10)
    np.testing.assert_allclose(scored["mean_per_row"], api.score_samples(X).mean(), rtol=1e-10)
    code, out, _ = run(["info", model_path, "--json"], capsys)
    info = json.loads(out)
    np.testing.assert_allclose(info["fitted"]["transmat_"], api.transmat_, rtol=1e-10)
    assert info["params"] == {"covariance_type": "full", "n_components": 2, "n_iter": 60, "random_state": 0}


def test_n_iter_is_documented_and_limits_the_iterations(faithful_csv, tmp_path, capsys):
    import json

    assert main(["fit", "--help"]) == 0
    assert "--n-iter" in capsys.readouterr().out
    path, _ = faithful_csv
    code, out, _ = run(["fit", "gaussian-mixture", path, "-k", 3, "--n-iter", 2, "--json", "-o",
                        tmp_path / "m.pk"], capsys)
    assert code == 0 and json.loads(out)["n_iter"] == 2


@pytest.mark.parametrize("typo, suggestion", [("gausian-hmm", "gaussian-hmm"), ("poisson_mixture", "poisson-mixture"),
                                              ("gmmhmm", "gmm-hmm")])
def test_a_mistyped_model_name_suggests_the_closest(typo, suggestion, capsys):
    assert main(["fit", typo, "d.csv"]) == 2
    err = capsys.readouterr().err
    assert f"did you mean '{suggestion}'?" in err and "invalid choice" in err


def test_info_lists_only_the_parameters_that_differ_from_the_defaults(faithful_csv, tmp_path, capsys):
    path, X = faithful_csv
    model_path = tmp_path / "m.pk"
    assert run(["fit", "gaussian-hmm", path, "-k", 3, "-o", model_path], capsys)[0] == 0
    code, out, _ = run(["info", model_path], capsys)
    assert code == 0
    listed = out.split("parameters (other than the defaults): ")[1].splitlines()[0]
    assert listed == "n_components=3, n_iter=200, random_state=0"
    # a parameter at its default value (GaussianHMM's own, read from its signature) is not listed
    assert "algorithm" not in out and "covars_prior" not in out
    model = probkit.load(model_path)
    assert f"n_iter_={model.n_iter_}" in out and "converged_=" in out and "transmat_ =" in out


def test_column_names_with_control_characters_are_printed_escaped(tmp_path, capsys):
    path = _write(tmp_path, "evil.csv", "\x1b[31mred\x1b[0m,b\x07\n1,2\n3,4\n5,7\n")
    code, out, err = run(["fit", "gaussian-mixture", path, "-k", 1, "-o", tmp_path / "m.pk"], capsys)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "(\\x1b[31mred\\x1b[0m, b\\x07)" in out
    code, out, _ = run(["info", tmp_path / "m.pk"], capsys)
    assert "\x1b" not in out and "columns: \\x1b[31mred" in out
    code, _, err = run(["fit", "gaussian-mixture", path, "--columns", "\x1b[2Jz", "-o", tmp_path / "n.pk"], capsys)
    assert code == 1 and "\x1b" not in err and "'\\x1b[2Jz'" in err


@pytest.mark.parametrize("text, line", [
    (",,\n,,\n", 1),                      # only empty cells: no header, first data row is line 1
    ("a,b\n1,2\n,\n3,4\n", 3),            # one row of empty cells
    ("a,b\n1,2\n\n\n , \n3,4\n", 5),      # blank lines before it count in the line number
])
def test_rows_of_empty_cells_give_a_line_numbered_error(text, line, tmp_path, capsys):
    path = _write(tmp_path, "d.csv", text)
    code, _, err = run(["fit", "gaussian-mixture", path, "-k", 1, "-o", tmp_path / "m.pk"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"(first: line {line}, column" in err and "--dropna" in err


def test_decode_plot_draws_every_column_with_the_legend_outside(tmp_path, capsys, monkeypatch):
    import probkit.cli as cli

    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(0, 1, (60, 3)), rng.normal(5, 1, (60, 3))]
    path = tmp_path / "d.csv"
    np.savetxt(path, X, delimiter=",", header="u,v,w", comments="")
    assert run(["fit", "gaussian-hmm", path, "-k", 2, "-o", tmp_path / "m.pk"], capsys)[0] == 0
    saved = []
    real_save = cli._save

    def capture(fig, out, plt):
        fig.canvas.draw()
        saved.append((fig, [ax.get_ylabel() for ax in fig.axes], fig.legends[:],
                      [ax.get_window_extent() for ax in fig.axes]))
        real_save(fig, out, plt)

    monkeypatch.setattr(cli, "_save", capture)
    assert run(["decode", tmp_path / "m.pk", path, "-o", tmp_path / "s.csv", "--plot", tmp_path / "s.png"],
               capsys)[0] == 0
    fig, ylabels, legends, boxes = saved[0]
    assert ylabels == ["u", "v", "w"]
    assert len(legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    legend_box = legends[0].get_window_extent()
    assert all(legend_box.x0 >= box.x1 for box in boxes)  # right of every panel: no data hidden
    assert (tmp_path / "s.png").stat().st_size > 5000


def test_bundled_data_sets_are_listed_and_written(tmp_path, capsys):
    code, out, _ = run(["datasets"], capsys)
    assert code == 0 and "old_faithful" in out and "272 rows" in out
    target = tmp_path / "faithful.csv"
    assert run(["datasets", "old_faithful", "-o", target], capsys)[0] == 0
    X, names, _ = read_csv(str(target))
    X_ref, names_ref = load_old_faithful()
    np.testing.assert_array_equal(X, X_ref)
    assert names == list(names_ref)
    code, _, err = run(["datasets", "old_faithfull"], capsys)
    assert code == 1 and "did you mean 'old_faithful'?" in err


# ---------------------------------------------------------------------------- the CSV reader's two paths
CSV_CASES = [
    "x,y\n1,2\n3,4.5\n-6e2,7\n",
    "x;y;id\n1;2;a\n3;4;a\n5;6;b\n",          # non-numeric sequence column: careful path only
    "1\t2\n3\t4\n",                             # no header, tab
    "x,y\r\n1,2\r\n3,4\r\n",                    # Windows line ends
    '\ufeff"x","y"\n"1","2"\n3,4\n',            # BOM and quoted cells
    "x,y\n\n1,2\n\n3,4\n\n",                    # blank lines
    " x , y \n 1 , 2 \n3,4\n",                  # spaces around cells
]


@pytest.mark.parametrize("text", CSV_CASES)
def test_fast_and_careful_readers_agree(text, tmp_path, monkeypatch):
    import probkit._csv as csvmod

    path = tmp_path / "d.csv"
    path.write_bytes(text.encode("utf-8"))
    seq = "id" if ";id" in text else None
    X, names, lengths = csvmod.read_numeric_csv(str(path), sequence_column=seq)
    monkeypatch.setattr(csvmod, "_fast_body", lambda text, head: None)
    X2, names2, lengths2 = csvmod.read_numeric_csv(str(path), sequence_column=seq)
    np.testing.assert_array_equal(X, X2)
    assert names == names2
    assert (lengths is None and lengths2 is None) or lengths.tolist() == lengths2.tolist()
    # the independent truth: Python's csv module and float() on the same text
    import csv as pycsv
    import io as pyio

    rows = [r for r in pycsv.reader(pyio.StringIO(text.lstrip("\ufeff")), delimiter=";" if ";" in text else
                                    "\t" if "\t" in text else ",") if any(c.strip() for c in r)]
    body = rows[1:] if not rows[0][0].strip().lstrip("-").replace(".", "").isdigit() else rows
    expected = np.array([[float(c) for c in r[:2]] for r in body])
    np.testing.assert_array_equal(X, expected)


def test_clean_files_take_the_fast_path(tmp_path, monkeypatch):
    import probkit._csv as csvmod

    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 3))
    path = tmp_path / "d.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c", comments="", fmt="%.17g")

    def refuse(*args):
        raise AssertionError("the careful reader ran on a clean file")

    monkeypatch.setattr(csvmod, "_careful_body", refuse)
    Y, names, _ = csvmod.read_numeric_csv(str(path))
    np.testing.assert_array_equal(Y, X)
    assert names == ["a", "b", "c"]


def test_regression_models_report_in_json_and_escape_column_names(tmp_path, capsys):
    import json

    from probkit.glm import GeneralizedLinearModel

    years, counts = load_earthquakes()
    x = (years - 1950.0) / 50.0
    path = tmp_path / "quakes.csv"
    with open(path, "w") as f:
        f.write("count,ye\x1b[31mar\n" + "".join(f"{c},{float(v)!r}\n" for v, c in zip(x, counts)))
    model_path = tmp_path / "glm.pk"
    code, out, err = run(["fit", "glm-poisson", path, "--target", "count", "--json", "-v", "-o", model_path], capsys)
    assert code == 0, err
    fitted = json.loads(out)
    api = GeneralizedLinearModel("poisson").fit(x[:, None], counts)
    assert fitted["target"] == "count" and fitted["columns"] == ["ye\x1b[31mar"] and fitted["n_rows"] == len(x)
    np.testing.assert_allclose(fitted["aic"], api.aic_, rtol=1e-10)
    np.testing.assert_allclose(fitted["deviance_explained"], api.score(x[:, None], counts), rtol=1e-10)
    assert "read " in err and "\x1b" not in err and "ye\\x1b[31mar" in err  # progress on stderr, escaped
    code, out, _ = run(["fit", "glm-poisson", path, "--target", "count", "-o", model_path], capsys)
    assert code == 0 and "\x1b" not in out and "ye\\x1b[31mar" in out
    code, out, _ = run(["score", model_path, path, "--json"], capsys)
    scored = json.loads(out)
    np.testing.assert_allclose(scored["deviance"], api.deviance(x[:, None], counts), rtol=1e-10)
    code, out, _ = run(["info", model_path, "--json"], capsys)
    info = json.loads(out)
    assert info["target"] == "count"
    np.testing.assert_allclose(info["fitted"]["coef_"], api.coef_, rtol=1e-10)


def _covariate_csv(tmp_path):
    """Two sequences whose state chain is driven by a covariate column ``u``; ``y`` is observed."""
    from probkit import InputDrivenHMM

    rng = np.random.RandomState(0)
    u = rng.normal(size=(300, 1))
    truth = InputDrivenHMM(2, emission_inputs=False)
    truth.startprob_ = np.array([0.5, 0.5])
    truth.transition_weights_ = np.array([[[0.0], [3.0]], [[0.0], [-3.0]]])
    truth.transition_intercepts_ = np.array([[0.0, -1.0], [0.0, 1.0]])
    truth.emission_weights_ = np.zeros((2, 1, 0))
    truth.emission_intercepts_ = np.array([[-2.0], [2.0]])
    truth.covars_ = np.array([[0.5], [0.5]])
    y, _ = truth.sample(300, random_state=1, inputs=u)
    seq = np.repeat([0, 1], 150)
    path = tmp_path / "driven.csv"
    with open(path, "w") as f:
        f.write("seq,u,y\n" + "".join(f"{s},{float(a)!r},{float(b)!r}\n" for s, a, b in zip(seq, u[:, 0], y[:, 0])))
    return path, y, u, np.array([150, 150])


def _logged_total(out):
    return float(out.split("log-likelihood ", 1)[1].split()[0])


def test_inputs_drive_the_model_and_are_read_again_by_score_and_decode(tmp_path, capsys):
    from probkit import InputDrivenHMM, LinearGaussianSSM

    path, y, u, lengths = _covariate_csv(tmp_path)
    model_path = tmp_path / "idhmm.pk"
    code, out, err = run(["fit", "input-driven-hmm", path, "--columns", "y", "--inputs", "u", "--sequence-column",
                          "seq", "--max-iter", 20, "-o", model_path], capsys)
    assert code == 0, err
    assert "driven by 1 input column(s) (u)" in out
    api = InputDrivenHMM(2, n_iter=20, random_state=0).fit(y, lengths=lengths, inputs=u)
    loaded = probkit.load(model_path)
    np.testing.assert_allclose(loaded.transition_weights_, api.transition_weights_, rtol=1e-10, atol=1e-12)
    code, out, err = run(["score", model_path, path, "--sequence-column", "seq"], capsys)
    assert code == 0, err
    np.testing.assert_allclose(_logged_total(out), api.score(y, lengths=lengths, inputs=u), rtol=1e-9)
    code, out, err = run(["decode", model_path, path, "--sequence-column", "seq"], capsys)
    assert code == 0, err
    decoded = np.loadtxt(out.splitlines()[1:], delimiter=",", ndmin=2)[:, 0].astype(int)
    np.testing.assert_array_equal(decoded, api.predict(y, lengths=lengths, inputs=u))
    # without --columns the inputs are taken out of all the columns, by name or 0-based index in the file
    assert run(["fit", "linear-gaussian-ssm", path, "-k", 1, "--inputs", "1", "--sequence-column", "seq",
                "--max-iter", 5, "-o", tmp_path / "lds.pk"], capsys)[0] == 0
    lds = LinearGaussianSSM(1, n_iter=5, random_state=0).fit(y, lengths=lengths, inputs=u)
    code, out, _ = run(["score", tmp_path / "lds.pk", path, "--sequence-column", "seq"], capsys)
    assert code == 0
    np.testing.assert_allclose(_logged_total(out), lds.score(y, lengths=lengths, inputs=u), rtol=1e-9)


def test_inputs_errors_are_one_line(tmp_path, capsys):
    path, *_ = _covariate_csv(tmp_path)
    code, _, err = run(["fit", "gaussian-hmm", path, "--inputs", "u"], capsys)
    assert code == 1 and "--inputs applies to input-driven-hmm, linear-gaussian-ssm" in err
    code, _, err = run(["fit", "input-driven-hmm", path, "--inputs", "w"], capsys)
    assert code == 1 and "has no column 'w'; its columns are seq, u, y" in err
    code, _, err = run(["fit", "input-driven-hmm", path, "--columns", "u", "--inputs", "u"], capsys)
    assert code == 1 and "column 'u' is one of the --inputs columns and cannot also be modelled" in err
    code, _, err = run(["fit", "input-driven-hmm", path, "--inputs", "seq,u,y"], capsys)
    assert code == 1 and "has no feature column left to model" in err
    code, _, err = run(["fit", "input-driven-hmm", path, "--sequence-column", "seq", "--inputs", "seq"], capsys)
    assert code == 1 and "'seq' is the sequence column" in err
    code, _, err = run(["fit", "input-driven-hmm", path, "--columns", "y", "--inputs", "u,1"], capsys)
    assert code == 1 and "'u' is named twice in --inputs" in err
    model_path = tmp_path / "m.pk"
    assert run(["fit", "input-driven-hmm", path, "--columns", "y", "--inputs", "u", "--max-iter", 3,
                "-o", model_path], capsys)[0] == 0
    code, _, err = run(["sample", model_path, "-n", 5], capsys)
    assert code == 1 and "model.sample(n, inputs=U)" in err and len(err.strip().splitlines()) == 1
