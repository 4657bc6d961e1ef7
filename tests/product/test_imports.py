"""What importing probkit costs: nothing heavy until it is used, and no Pyro outside variational inference."""

import subprocess
import sys
import textwrap

import pytest

BLOCK_PYRO = textwrap.dedent("""
    import sys

    class _BlockPyro:
        def find_spec(self, name, path=None, target=None):
            if name == "pyro" or name.startswith("pyro."):
                raise ImportError("pyro is blocked in this test")

    sys.meta_path.insert(0, _BlockPyro())
""")


def _run(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_classical_and_neural_estimators_work_without_pyro():
    out = _run(BLOCK_PYRO + textwrap.dedent("""
        import numpy as np
        from probkit import (GMMHMM, HMM, BayesianGaussianMixture, BayesianMixture, CategoricalHMM, GaussianHMM,
                             GaussianMixture, MixtureModel, PoissonHMM, VariationalHMM)
        from probkit.neural import NeuralHMM, SequenceClassifier, build_backbone
        from probkit.neural.ops import selective_scan
        X = np.random.RandomState(0).normal(size=(60, 2))
        GaussianMixture(2, random_state=0).fit(X)
        GaussianHMM(2, random_state=0).fit(X)
        BayesianGaussianMixture(n_components=2, random_state=0).fit(X)
        VariationalHMM(2, random_state=0).fit(X)
        NeuralHMM(2, backbone="gru", d_model=4, n_layers=1, max_epochs=1, random_state=0).fit(X)
        print("pyro" in sys.modules)
    """))
    assert out.strip() == "False"


def test_variational_inference_needs_pyro_only_when_used():
    out = _run(BLOCK_PYRO + textwrap.dedent("""
        import probkit.vi
        try:
            probkit.vi.fit_svi
        except ImportError as exc:
            print("ImportError", exc)
    """))
    assert out.startswith("ImportError")


@pytest.mark.parametrize("code", [
    "import probkit",
    "import probkit.cli; probkit.cli.build_parser().format_help()",
])
def test_import_and_cli_help_do_not_load_torch(code):
    out = _run(code + "\nimport sys; print(sorted(m for m in ('torch', 'pyro', 'numba', 'sklearn') if m in sys.modules))")
    assert out.strip() == "[]"


def test_fitting_loads_neither_pyro_nor_numba_before_needed():
    out = _run(textwrap.dedent("""
        import sys
        import numpy as np
        from probkit import GaussianMixture
        GaussianMixture(2, random_state=0).fit(np.random.RandomState(0).normal(size=(50, 2)))
        print(sorted(m for m in ("pyro", "numba", "matplotlib") if m in sys.modules))
    """))
    assert out.strip() == "[]"
