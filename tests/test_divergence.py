import pytest
import torch

from igraphflow._random import draw
from igraphflow.divergence import exact_divergence, finite_difference_divergence, hutchinson_divergence, rademacher
from igraphflow.nn import GraphVelocityField

pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture
def field(float64):
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    f = GraphVelocityField(edge_index, 4, 2, hidden=8)
    for p in f.parameters():  # a field far from the identity, so the trace is not trivial
        p.data.normal_(0, 0.5)
    return lambda x: f(torch.tensor(0.3), x)


def brute_force_trace(f, x):
    traces = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0)).flatten(), xi)
        traces.append(J.reshape(xi.numel(), xi.numel()).trace())
    return torch.stack(traces)


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_exact_divergence_matches_jacobian_trace(field, chunk_size):
    x = torch.randn(5, 4, 2)
    fx, div = exact_divergence(field, x, chunk_size=chunk_size)
    assert torch.allclose(fx, field(x))
    assert torch.allclose(div, brute_force_trace(field, x), atol=1e-10)


def test_exact_divergence_is_differentiable(field):
    x = torch.randn(3, 4, 2, requires_grad=True)
    _, div = exact_divergence(field, x, create_graph=True)
    (grad,) = torch.autograd.grad(div.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_without_create_graph_the_results_carry_no_graph(field):
    # The estimators take gradients inside even under no_grad: a pass without gradients (a
    # validation, a score) must not keep the graphs of what went through the field.
    x, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    with torch.no_grad():
        results = [*exact_divergence(field, x), *hutchinson_divergence(field, x, noise, create_graph=False)]
    assert not any(r.requires_grad for r in results)


def test_hutchinson_is_unbiased(field):
    x = torch.randn(1, 4, 2).expand(20000, 4, 2)
    noise = rademacher(x.shape, like=x, generator=torch.Generator().manual_seed(0))
    _, div = hutchinson_divergence(field, x, noise, create_graph=False)
    exact = brute_force_trace(field, x[:1])
    assert abs(div.mean() - exact) < 4 * div.std() / 20000**0.5 + 1e-9


def test_finite_difference_matches_vector_jacobian_product(field):
    x = torch.randn(6, 4, 2)
    noise = torch.randn(6, 4, 2)
    _, vjp = hutchinson_divergence(field, x, noise, create_graph=False)
    _, fd = finite_difference_divergence(field, x, noise, step=1e-6)
    assert torch.allclose(vjp, fd, atol=1e-4)


def test_stochastic_estimators_return_the_field_at_x(field):
    x, noise = torch.randn(6, 4, 2), torch.randn(6, 4, 2)
    for estimate in (hutchinson_divergence, finite_difference_divergence):
        fx, _ = estimate(field, x, noise)
        # Not the field at the shifted point, which differs by about 1e-3; equal only up to
        # rounding, since the finite difference evaluates the field on twice the batch.
        torch.testing.assert_close(fx, field(x), rtol=1e-6, atol=1e-6, msg=estimate.__name__)


def test_hutchinson_trains_through_the_trace():
    # For f(x) = A x the estimate is e^T A e, whose gradient in A is e e^T: training with
    # divergence="hutchinson" needs the graph of the vector-Jacobian product kept.
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, requires_grad=True)
    x, noise = torch.randn(4, 3, 2, generator=g), rademacher(torch.Size([4, 3, 2]), like=A, generator=g)
    _, div = hutchinson_divergence(lambda z: (z.flatten(1) @ A.T).view_as(z), x, noise)
    div.sum().backward()
    e = noise.flatten(1)
    torch.testing.assert_close(A.grad, e.T @ e)


def test_finite_difference_step_is_relative_to_the_signal():
    # In float32 an absolute step of 1e-3 vanishes next to x ~ 1e5 (the spacing there is 8e-3);
    # the relative step keeps the estimate exact for a linear field.
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 8, generator=g, dtype=torch.float32)
    x = 1e5 + torch.randn(5, 4, 2, generator=g, dtype=torch.float32)
    noise = rademacher(x.shape, like=x, generator=g)
    _, div = finite_difference_divergence(lambda z: (z.flatten(1) @ A.T).view_as(z), x, noise)
    expected = ((noise.flatten(1) @ A.T) * noise.flatten(1)).sum(1)
    torch.testing.assert_close(div, expected, rtol=1e-2, atol=1e-2 * A.abs().sum().item())


def test_finite_difference_bias_is_that_of_the_relative_step():
    # A linear field hides the step: any step gives its trace. For f(x) = x * x and a Rademacher
    # probe the estimate is 2 sum(x) + s sum(eps), with s = step * max(1, rms(x)) per signal.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 2, generator=g, dtype=torch.float64) * torch.tensor([0.1, 1.0, 3.0, 10.0, 30.0, 0.5]).view(6, 1, 1)
    noise = rademacher(x.shape, like=x, generator=g)
    _, div = finite_difference_divergence(lambda z: z * z, x, noise, step=1e-2)
    s = 1e-2 * x.flatten(1).square().mean(1).sqrt().clamp_min(1.0)
    torch.testing.assert_close(div, 2 * x.flatten(1).sum(1) + s * noise.flatten(1).sum(1))


def test_the_finite_difference_step_is_a_constant_of_the_gradient():
    # The step only says where the difference is taken: for f(x) = x * x the estimate
    # 2 sum(x) + s sum(eps) has the trace's gradient, 2, also where s grows with rms(x).
    g = torch.Generator().manual_seed(0)
    x = (10 * torch.randn(4, 4, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    noise = rademacher(x.shape, like=x, generator=g)
    _, div = finite_difference_divergence(lambda z: z * z, x, noise, step=1e-2)
    (grad,) = torch.autograd.grad(div.sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 2.0))


def test_draws_follow_the_generator_whatever_the_target_device():
    # A CPU generator's stream is the same whether the draws are used on a CPU or a GPU.
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        like = torch.zeros(3, 4, 2, dtype=torch.float64, device=device)
        probe = rademacher(like.shape, like=like, generator=torch.Generator().manual_seed(0))
        signs = 2 * torch.randint(0, 2, like.shape, generator=torch.Generator().manual_seed(0)) - 1
        assert probe.device == like.device and probe.dtype == like.dtype and torch.equal(probe.cpu(), signs.double())
        noise = draw(torch.randn, 5, device=device, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        assert noise.device == like.device
        assert torch.equal(noise.cpu(), torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
        assert draw(torch.randn, 5, device=device).device == like.device  # no generator: drawn in place
