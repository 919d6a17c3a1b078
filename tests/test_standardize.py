import math

import pytest
import torch

from igraphflow.standardize import Standardize


def test_fitted_signals_have_zero_mean_and_unit_spread_per_node_and_feature():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(500, 3, 2, generator=g, dtype=torch.float64) * torch.tensor([1e-8, 3.0]) + torch.tensor([5.0, -1e9])
    standardize = Standardize(3, 2).double().fit_(X)
    Z = standardize(X)
    torch.testing.assert_close(Z.mean(0), torch.zeros(3, 2, dtype=torch.float64), atol=1e-6, rtol=0)  # -1e9 in float64: 1e-7
    torch.testing.assert_close(Z.std(0, correction=0), torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(standardize.inverse(Z), X)


def test_log_abs_det_is_that_of_the_jacobian():
    standardize = Standardize(2, 2).double()
    standardize.loc.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    standardize.scale.copy_(torch.tensor([[0.1, 2.0], [7.0, 0.3]]))
    x = torch.randn(4, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: standardize(v.view(2, 2)).flatten(), x)
    torch.testing.assert_close(standardize.log_abs_det(), torch.linalg.slogdet(jacobian).logabsdet)


def test_constant_features_are_centred_and_take_the_scale_of_the_same_feature_where_it_varies():
    X = torch.randn(50, 3, 2, dtype=torch.float64) * torch.tensor([[2.0, 1.0], [4.0, 1.0], [9.0, 1.0]], dtype=torch.float64)
    X[:, 0, 0] = 7.0  # constant: the median of the varying feature-0 scales (those of nodes 1 and 2)
    # A spread of one ulp (the offsets in float64: in float32 they vanished, leaving no spread at all).
    X[:, 1, 1] = 1e6 + torch.arange(50, dtype=torch.float64) % 2 * 1e6 * torch.finfo(torch.float64).eps
    standardize = Standardize(3, 2).double().fit_(X)
    spread = X.std(0, correction=0)
    assert standardize.scale[0, 0] == spread[1:, 0].median() and standardize.scale[1, 1] == spread[[0, 2], 1].median()
    assert torch.equal(standardize(X)[:, 0, 0], torch.zeros(50, dtype=torch.float64))
    # In other units, the same standardised signals: the scale of a constant feature follows them.
    torch.testing.assert_close(Standardize(3, 2).double().fit_(X * 1e-6)(X * 1e-6), standardize(X))


def test_a_feature_constant_everywhere_takes_the_median_scale_of_the_others():
    X = torch.randn(40, 2, 3, dtype=torch.float64) * torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)
    X[:, :, 1] = -2.0
    standardize = Standardize(2, 3).double().fit_(X)
    spread = X.std(0, correction=0)
    assert torch.equal(standardize.scale[:, 1], spread[:, [0, 2]].flatten().median().expand(2))


def test_a_float32_feature_one_float32_ulp_apart_is_constant():
    # The rounding is that of the signals' dtype, though the spread is computed in float64.
    X = torch.randn(40, 2, 1, generator=torch.Generator().manual_seed(0))
    X[:, 0, 0] = 1000.0 + torch.arange(40) % 2 * 1000.0 * torch.finfo(torch.float32).eps
    assert X[:, 0, 0].unique().numel() == 2
    standardize = Standardize(2, 1).fit_(X)
    assert standardize.scale[0, 0] == standardize.scale[1, 0]


def test_one_sample_is_only_centred_and_the_identity_is_restored():
    standardize = Standardize(2, 1).fit_(torch.tensor([[[3.0], [-4.0]]]))
    assert torch.equal(standardize.scale, torch.ones(2, 1)) and torch.equal(standardize.loc, torch.tensor([[3.0], [-4.0]]))
    standardize.reset_()
    assert torch.equal(standardize.loc, torch.zeros(2, 1)) and torch.equal(standardize.scale, torch.ones(2, 1))


def test_a_state_without_it_loads_as_the_identity():
    standardize = Standardize(2, 2).fit_(torch.randn(10, 2, 2) * 5 + 1)
    standardize.load_state_dict({})
    assert torch.equal(standardize.loc, torch.zeros(2, 2)) and torch.equal(standardize.scale, torch.ones(2, 2))


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan])
def test_a_state_whose_scale_is_not_positive_is_refused(scale):
    # A fit never writes one: a zero scale would divide by zero, NaN poison every signal.
    state = Standardize(2, 2).state_dict()
    state["scale"][0, 1] = scale
    with pytest.raises(ValueError, match="scale must be positive everywhere"):
        Standardize(2, 2).load_state_dict(state)
