import pytest
import torch
from scipy.linalg import expm
from torch import nn

from igraphflow.nn import GraphVelocityField
from igraphflow.ode import ODEBlock

pytestmark = pytest.mark.usefixtures("float64")


class LinearField(nn.Module):
    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A)

    def forward(self, t, x):
        return (x.flatten(1) @ self.A.T).view_as(x)


def test_linear_block_matches_matrix_exponential():
    torch.manual_seed(0)
    A = 0.5 * torch.randn(6, 6)
    block = ODEBlock(LinearField(A), 0.2, 0.7, steps=20)
    x = torch.randn(4, 3, 2)
    y, logdet = block.transform(x, divergence="exact")
    M = torch.from_numpy(expm(0.5 * A.numpy()))
    assert torch.allclose(y.flatten(1), x.flatten(1) @ M.T, atol=1e-6)
    assert torch.allclose(logdet, torch.logdet(M).expand(4), atol=1e-8)  # = h tr(A)


def test_log_determinant_of_a_nonlinear_block_matches_the_jacobian_of_its_map():
    # The divergence must be taken along the trajectory x(t): a field whose Jacobian varies
    # with x tells that apart from one taken at the block's input, which a linear field cannot.
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    field = GraphVelocityField(edge_index, 3, 2, hidden=8)
    for p in field.parameters():
        p.data.normal_(0, 0.6)
    block = ODEBlock(field, 0.2, 1.2, steps=32)
    x = torch.randn(4, 3, 2)
    y, logdet = block.transform(x, divergence="exact")
    jacobians = [torch.autograd.functional.jacobian(lambda z: block(z.view(1, 3, 2)).flatten(), xi.flatten()) for xi in x]
    expected = torch.stack([torch.linalg.slogdet(j).logabsdet for j in jacobians])
    assert torch.allclose(y, block(x), atol=1e-10)
    assert torch.allclose(logdet, expected, atol=1e-5)
    # The field is far from linear here: a constant Jacobian would miss by more than that.
    assert (expected - expected.mean()).abs().max() > 0.1


@pytest.mark.parametrize("divergence", ["hutchinson", "finite_difference"])
def test_default_probes_estimate_the_log_determinant_without_bias(divergence):
    # Without a given probe the block draws its own; the log-determinant of a linear block is
    # h tr(A) whatever x, so the mean over many samples must land on it.
    torch.manual_seed(0)
    A = 0.5 * torch.randn(6, 6)
    block = ODEBlock(LinearField(A), 0.2, 0.7, steps=20)
    _, logdet = block.transform(torch.randn(20000, 3, 2), divergence=divergence)
    assert abs(logdet.mean() - 0.5 * A.trace()) < 4 * logdet.std() / 20000**0.5


@pytest.mark.parametrize("adjoint", [False, True])
def test_inverse_of_forward_is_identity(adjoint):
    torch.manual_seed(1)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    field = GraphVelocityField(edge_index, 3, 2, hidden=8)
    for p in field.parameters():
        p.data.normal_(0, 0.3)
    block = ODEBlock(field, 0.0, 0.5, steps=8, adjoint=adjoint)
    x = torch.randn(5, 3, 2, requires_grad=True)
    y = block(x)
    assert torch.allclose(block.inverse(y), x, atol=1e-6)
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in field.parameters())


def test_adjoint_gradients_match_direct_backpropagation():
    torch.manual_seed(2)
    A = 0.3 * torch.randn(4, 4)
    x = torch.randn(3, 2, 2)
    grads = []
    for adjoint in (False, True):
        block = ODEBlock(LinearField(A.clone()), 0.0, 1.0, steps=6, adjoint=adjoint)
        y, logdet = block.transform(x, divergence="exact")
        (y.square().sum() - logdet.sum()).backward()
        grads.append(block.field.A.grad)
    assert torch.allclose(*grads, atol=1e-6)


def test_block_rejects_bad_intervals():
    with pytest.raises(ValueError, match="end > start"):
        ODEBlock(LinearField(torch.eye(2)), 1.0, 1.0)
    with pytest.raises(ValueError, match="divergence must be one of"):
        ODEBlock(LinearField(torch.eye(2)), 0.0, 1.0).transform(torch.randn(1, 1, 2), divergence="trace")


def test_corrected_inverse_inverts_the_discrete_forward_map():
    torch.manual_seed(3)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    field = GraphVelocityField(edge_index, 3, 2, hidden=8)
    for p in field.parameters():
        p.data.normal_(0, 0.3)  # a strong field, so that two RK4 steps leave a visible error
    block = ODEBlock(field, 0.0, 1.0, steps=2)
    x = torch.randn(16, 3, 2)
    y = block(x)
    plain = (block.inverse(y, corrections=0) - x).abs().max()
    corrected = (block.inverse(y, corrections=2) - x).abs().max()
    assert plain > 1e-6 and corrected < 1e-12
    assert (block.inverse(y) - x).abs().max() < plain / 100  # one correction by default
