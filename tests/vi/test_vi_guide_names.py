"""fit_svi and make_guide take Pyro's autoguide class names and classes as well as probkit's short names.

Truth: the exact posterior of a conjugate normal model, and the short-name guide run from
the same seed (the same autoguide, so the same trajectory).
"""

import numpy as np
import pytest
import torch
from pyro.infer import autoguide

from probkit.vi import fit_svi
from probkit.vi.svi import make_guide
from tests.vi.test_vi_runner import POST_MEAN, POST_SD, X
from tests.vi.test_vi_runner import normal_model as model


COMMON = dict(num_steps=400, optim={"lr": 0.08, "lrd": 0.05 ** (1 / 400)}, random_state=1)


@pytest.mark.parametrize("short, pyro_name", [("normal", "AutoNormal"), ("delta", "AutoDelta"),
                                              ("diag_normal", "AutoDiagonalNormal")])
def test_pyro_names_and_classes_give_the_short_names_fit(short, pyro_name):
    by_short = fit_svi(model, short, X, **COMMON)
    by_name = fit_svi(model, pyro_name, X, **COMMON)
    by_class = fit_svi(model, getattr(autoguide, pyro_name), X, **COMMON)
    assert type(by_name.guide).__name__ == type(by_class.guide).__name__ == pyro_name
    for key, value in by_short.params.items():
        np.testing.assert_array_equal(by_name.params[key], value)
        np.testing.assert_array_equal(by_class.params[key], value)
    loc = next(v for k, v in by_name.params.items() if "loc" in k or k.endswith(".mu"))
    assert abs(float(np.ravel(loc)[0]) - POST_MEAN) < 0.2 * POST_SD


def test_names_are_case_insensitive_and_take_constructor_arguments():
    guide = make_guide("autolowrankmultivariatenormal", model, rank=1)
    assert isinstance(guide, autoguide.AutoLowRankMultivariateNormal) and guide.rank == 1
    assert isinstance(make_guide("AutoLaplaceApproximation", model), autoguide.AutoLaplaceApproximation)


def test_unknown_names_suggest_the_closest_and_other_classes_are_refused():
    with pytest.raises(ValueError, match="did you mean 'AutoNormal'"):
        make_guide("AutoNormall", model)
    with pytest.raises(TypeError, match="Pyro autoguides"):
        make_guide(torch.nn.Linear, model)
    with pytest.raises(TypeError, match="callable guide"):
        make_guide(lambda x: None, model, rank=2)
