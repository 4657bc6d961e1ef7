"""Every public class and function of the variational-inference part has a runnable example.

(The examples themselves run with the suite's ``--doctest-modules``.)
"""


def test_every_public_class_and_function_has_an_example():
    import probkit
    import probkit.vi as vi
    import probkit.vi.models as models

    names = [(vi, n) for n in vi.__all__] + [(models, n) for n in models.__all__]
    names += [(probkit, n) for n in ("BayesianGaussianMixture", "BayesianMixture", "VariationalHMM")]
    missing = [n for mod, n in names
               if callable(getattr(mod, n)) and ">>>" not in (getattr(mod, n).__doc__ or "")]
    assert not missing, f"no >>> example in the docstrings of {missing}"
