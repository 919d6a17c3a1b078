import math

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


class BatchRecordingField(LinearField):
    r"""A linear field that keeps the batch size of every call."""

    def __init__(self, A):
        super().__init__(A)
        self.batch_sizes = []

    def forward(self, t, x):
        self.batch_sizes.append(x.size(0))
        return super().forward(t, x)


def rk4_growth(start, end, steps):
    r"""The factor by which ``steps`` steps of torchdiffeq's RK4 (the 3/8 rule) integrate
    dx/dt = t x across ``[start, end]``: a polynomial in t and h per step."""
    h, growth = (end - start) / steps, 1.0
    for i in range(steps):
        t = start + i * h
        k1 = t
        k2 = (t + h / 3) * (1 + h * k1 / 3)
        k3 = (t + 2 * h / 3) * (1 + h * (k2 - k1 / 3))
        k4 = (t + h) * (1 + h * (k1 - k2 + k3))
        growth *= 1 + h * (k1 + 3 * k2 + 3 * k3 + k4) / 8
    return growth


class TimeScaledField(nn.Module):
    r"""dx/dt = t x: :math:`x(t_1) = x(t_0) e^{(t_1^2 - t_0^2) / 2}`, log-determinant :math:`D (t_1^2 - t_0^2) / 2`."""

    def forward(self, t, x):
        return t * x


class ElementwiseField(nn.Module):
    r"""dx/dt = tanh(w x + t), coordinate by coordinate: a diagonal Jacobian that varies with x and t."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, t, x):
        return torch.tanh(self.w * x + t)


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
    with pytest.raises(ValueError, match="end > start"):
        ODEBlock(LinearField(torch.eye(2)), 0.0, 1.0).set_interval(1.0, 0.5)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        ODEBlock(LinearField(torch.eye(2)), 0.0, 1.0, steps=0)
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


def test_transform_integrates_on_the_steps_it_is_given():
    # Two steps across [0.5, 1.5] miss the exact growth by about 1e-3.
    block = ODEBlock(TimeScaledField(), 0.5, 1.5, steps=32)
    x = torch.randn(4, 3, 2)
    coarse, _ = block.transform(x, divergence="exact", steps=2)
    assert torch.allclose(coarse, x * rk4_growth(0.5, 1.5, 2), rtol=1e-12, atol=0)
    assert not torch.allclose(coarse, block(x), rtol=1e-5, atol=0)  # the block's own 32 steps
    assert block.steps == 32
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        block.transform(x, steps=0)


@pytest.mark.parametrize("start_steps", [1, 3])
@pytest.mark.parametrize("tolerance", [1e-2, 1e-5, 1e-9])
def test_settle_steps_keeps_the_fewest_doublings_within_the_tolerance(start_steps, tolerance):
    # On dx/dt = t x the change of a signal from s steps to 2s is |g(s) - g(2s)| times its
    # root mean square, g the growth of rk4_growth: the reference for the steps kept.
    start, end, max_steps = 0.0, 1.0, 48  # kept: 2, 8, 32 from 1 step; 3, 12, 48 (the cap) from 3
    x = torch.randn(5, 3, 2) * torch.tensor([0.1, 1.0, 3.0, 0.5, 2.0]).view(5, 1, 1)
    largest = x.flatten(1).square().mean(1).sqrt().max().item()

    def change(steps):
        return abs(rk4_growth(start, end, steps) - rk4_growth(start, end, 2 * steps)) * largest

    expected = start_steps
    while change(expected) > tolerance and 2 * expected <= max_steps:
        expected *= 2
    block = ODEBlock(TimeScaledField(), start, end, steps=start_steps)
    found = block.settle_steps(x, tolerance, max_steps=max_steps)
    assert block.steps == expected
    assert found == pytest.approx(change(expected), rel=1e-6)
    assert (found <= tolerance) == (change(expected) <= tolerance)
    assert block.state_dict()["solver_steps"] == expected  # saved with the weights


def test_settle_steps_stops_at_max_steps_and_never_lowers_the_steps():
    x = torch.randn(4, 3, 2)
    block = ODEBlock(TimeScaledField(), 0.0, 3.0, steps=2)
    found = block.settle_steps(x, 1e-12, max_steps=8)
    assert block.steps == 8 and found > 1e-12  # 16 would pass max_steps
    smooth = ODEBlock(TimeScaledField(), 0.0, 0.01, steps=16)
    assert smooth.settle_steps(x, 1e-3, max_steps=64) < 1e-3 and smooth.steps == 16
    assert smooth.settle_steps(x[:0], 1e-3, max_steps=64) == 0.0 and smooth.steps == 16
    with pytest.raises(ValueError, match="tolerance must be"):
        smooth.settle_steps(x, float("nan"), max_steps=64)


def test_steps_are_loaded_with_the_weights():
    block = ODEBlock(TimeScaledField(), 0.0, 1.0, steps=4)
    block.steps = 32
    copy = ODEBlock(TimeScaledField(), 0.0, 1.0, steps=4)
    copy.load_state_dict(block.state_dict())
    assert copy.steps == 32 and len(copy.grid()) == 33
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 2.5"):
        copy.steps = 2.5


def test_a_time_dependent_field_is_integrated_over_the_blocks_interval():
    # The field must see the times of [t0, t1], not those of [0, t1 - t0]; after set_interval, the new ones.
    block = ODEBlock(TimeScaledField(), 0.5, 1.5, steps=32)
    x = torch.randn(4, 3, 2)
    for start, end in [(0.5, 1.5), (1.0, 2.5)]:
        block.set_interval(start, end)
        growth = (end**2 - start**2) / 2
        y, logdet = block.transform(x, divergence="exact")
        assert torch.allclose(y, x * math.exp(growth), rtol=1e-5, atol=0)  # RK4 misses by about 1e-6
        assert torch.allclose(block(x), y, rtol=1e-12, atol=0)
        assert torch.allclose(logdet, torch.full((4,), 6 * growth), rtol=1e-12)


def test_hutchinson_reads_the_trace_of_a_diagonal_jacobian_exactly_with_its_default_probes():
    # With probes of entries +-1, e^T J e = sum_i J_ii e_i^2 = tr J for a diagonal J: the estimate is
    # exact. Gaussian probes, or a finite difference (bias O(step)), would miss by far more.
    torch.manual_seed(0)
    block = ODEBlock(ElementwiseField(torch.randn(3, 2)), 0.0, 1.0, steps=4)
    x = torch.randn(50, 3, 2)
    _, exact = block.transform(x, divergence="exact")
    _, estimate = block.transform(x, divergence="hutchinson")
    assert torch.allclose(estimate, exact, atol=1e-12)


@pytest.mark.parametrize("divergence", ["hutchinson", "finite_difference"])
def test_the_estimated_log_determinant_is_differentiable_in_the_fields_parameters(divergence):
    # For dx/dt = A x and a probe e, both estimators integrate to h e^T A e, whose gradient in A
    # is h e e^T, summed over the samples.
    torch.manual_seed(0)
    block = ODEBlock(LinearField(0.5 * torch.randn(6, 6)), 0.2, 0.7, steps=4)
    x, noise = torch.randn(5, 3, 2), torch.randn(5, 3, 2)
    _, logdet = block.transform(x, divergence=divergence, noise=noise)
    logdet.sum().backward()
    probes = noise.flatten(1)
    assert torch.allclose(block.field.A.grad, 0.5 * probes.T @ probes, atol=1e-8)


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_the_exact_trace_sends_chunk_size_copies_of_the_batch_through_the_field(chunk_size):
    # chunk_size bounds the memory of the exact trace: at most that many copies of the batch at once.
    field = BatchRecordingField(torch.eye(6))
    ODEBlock(field, 0.0, 1.0, steps=1).transform(torch.randn(5, 3, 2), divergence="exact", chunk_size=chunk_size)
    assert max(field.batch_sizes) == 5 * chunk_size
