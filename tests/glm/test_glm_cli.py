"""The command line with --target: GLMs and naive Bayes fitted from a CSV equal the Python API."""

import numpy as np
import pytest
from sklearn.datasets import load_iris

import probkit
from probkit.cli import main
from probkit.datasets import load_earthquakes
from probkit.glm import GeneralizedLinearClassifier, GeneralizedLinearModel
from probkit.naive_bayes import NaiveBayes


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def quakes_csv(tmp_path):
    years, counts = load_earthquakes()
    path = tmp_path / "quakes.csv"
    with open(path, "w") as f:
        f.write("count;year\n" + "".join(f"{c};{y}\n" for y, c in zip(years, counts)))
    return path, (years - 1950.0) / 50.0, counts


@pytest.fixture
def iris_csv(tmp_path):
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "iris.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="sl,sw,pl,pw,species", comments="",
               fmt="%.17g")
    return path, X, y.astype(int)


def test_glm_fit_score_and_decode_equal_the_api(quakes_csv, tmp_path, capsys):
    path, _, counts = quakes_csv
    years = load_earthquakes()[0].astype(float).reshape(-1, 1)
    model_path = tmp_path / "nb.pk"
    code, out, err = run(["fit", "glm-negative-binomial", path, "--target", "count", "-o", model_path], capsys)
    assert code == 0, err
    api = GeneralizedLinearModel("negative_binomial", link="log").fit(years, counts)
    saved = probkit.load(model_path)
    np.testing.assert_array_equal(saved.coef_, api.coef_)
    assert saved.cli_target_ == "count" and list(saved.cli_columns_) == ["year"]
    assert "coefficients:" in out and f"{api.intercept_: .6g}" in out and f"AIC {api.aic_:.2f}" in out
    code, out, _ = run(["score", model_path, path], capsys)
    assert code == 0 and f"D^2 (deviance explained) {api.score(years, counts):.6f}" in out
    code, out, _ = run(["decode", model_path, path], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "predicted_count"
    np.testing.assert_allclose(np.array(lines[1:], dtype=float), api.predict(years), rtol=1e-15)


def test_penalised_classifiers_from_the_command_line(iris_csv, tmp_path, capsys):
    path, X, y = iris_csv
    for name, api in [("logistic-regression", GeneralizedLinearClassifier(alpha=0.01)), ("naive-bayes", NaiveBayes())]:
        model_path = tmp_path / f"{name}.pk"
        argv = ["fit", name, path, "--target", "species", "-o", model_path]
        code, out, err = run(argv + (["--alpha", 0.01] if name == "logistic-regression" else []), capsys)
        assert code == 0, err
        api.fit(X, y)
        assert f"accuracy {api.score(X, y):.4f}" in out
        code, out, _ = run(["decode", model_path, path, "--proba"], capsys)
        table = np.loadtxt(out.splitlines()[1:], delimiter=",")
        assert out.splitlines()[0] == "predicted_species,p_0,p_1,p_2"
        np.testing.assert_array_equal(table[:, 0], api.predict(X))
        np.testing.assert_allclose(table[:, 1:], api.predict_proba(X), rtol=1e-14)
    code, out, _ = run(["fit", "logistic-regression", path, "--target", "4", "--columns", "sl,pw", "--alpha", 0.01,
                        "-o", tmp_path / "two.pk"], capsys)
    assert code == 0 and "(sl, pw)" in out


@pytest.mark.parametrize("argv, message", [
    (["fit", "glm-poisson", "{q}"], "needs --target COLUMN"),
    (["fit", "poisson-hmm", "{q}", "--target", "count"], "--target applies to regression and classification"),
    (["fit", "glm-poisson", "{q}", "--target", "deaths"], "no column 'deaths' for --target"),
    (["fit", "naive-bayes", "{q}", "--target", "count", "--alpha", "1"], "--alpha does not apply to naive-bayes"),
    (["fit", "glm-poisson", "{q}", "--target", "count", "--n-init", "2"], "--n-init does not apply"),
    (["fit", "glm-gamma", "{q}", "--target", "year", "--columns", "year"], "is also one of the --columns"),
    (["fit", "glm-gamma", "{q}", "--target", "count", "--columns", ""], "no feature column besides the target"),
])
def test_supervised_usage_errors_are_one_line(argv, message, quakes_csv, capsys):
    path = quakes_csv[0]
    code, _, err = run([a.format(q=path) for a in argv], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_supervised_models_cannot_sample(quakes_csv, tmp_path, capsys):
    path = quakes_csv[0]
    model_path = tmp_path / "p.pk"
    assert run(["fit", "glm-poisson", path, "--target", "count", "-o", model_path], capsys)[0] == 0
    code, _, err = run(["sample", model_path], capsys)
    assert code == 1 and "has no sample method" in err
