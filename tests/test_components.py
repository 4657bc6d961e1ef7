"""The component protocol's state-wise sampling against the members it draws from."""

import numpy as np
import torch

from probkit.components import BatchedComponents, ComponentList, sample_by_state
from probkit.distributions import Gamma, MultivariateNormal, Normal


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_rows_follow_their_state_and_match_direct_member_draws():
    comps = BatchedComponents(Normal(loc=[-50.0, 0.0, 50.0], scale=[1.0, 1.0, 1.0]))
    states = np.array([2, 0, 2, 1, 0, 2, 2])
    rows = sample_by_state(comps, states, _gen())
    assert rows.shape == (7, 1) and rows.dtype == np.float64
    # the same generator stream, member by member in state order: the rows of state k in order of appearance
    gen = _gen()
    for k in range(3):
        idx = np.flatnonzero(states == k)
        expected = comps.sample_member(k, len(idx), gen).numpy().reshape(len(idx), -1)
        np.testing.assert_array_equal(rows[idx], expected)
    assert np.all(np.abs(rows[:, 0] - 50.0 * (states - 1)) < 10.0)


def test_multivariate_draws_are_flattened_rows():
    comps = BatchedComponents(MultivariateNormal(loc=[[0.0, 0.0], [10.0, -10.0]],
                                                 covariance_matrix=np.stack([np.eye(2)] * 2)))
    rows = sample_by_state(comps, np.array([1, 1, 0]), _gen(3))
    assert rows.shape == (3, 2)
    assert rows[0, 0] > 5 and rows[0, 1] < -5 and abs(rows[2, 0]) < 5


def test_components_of_different_families():
    comps = ComponentList([Normal(loc=-5.0, scale=0.1), Gamma(concentration=50.0, rate=10.0)])
    rows = sample_by_state(comps, np.array([0, 1, 1, 0]), _gen(1))
    assert rows.shape == (4, 1)
    assert np.all(rows[[0, 3], 0] < -4) and np.all(rows[[1, 2], 0] > 0)


def test_no_rows_gives_none():
    comps = BatchedComponents(Normal(loc=[0.0, 1.0], scale=[1.0, 1.0]))
    assert sample_by_state(comps, np.array([], dtype=np.int64), _gen()) is None
