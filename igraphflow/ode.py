r"""ODE blocks: invertible maps :math:`T(x) = x(t_1)` with :math:`dx/dt = f(x, t)` on :math:`[t_0, t_1]`."""

from __future__ import annotations

__all__ = ["ODEBlock", "DIVERGENCES"]

from typing import Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from ._checks import as_choice, as_count, as_real
from .divergence import EXACT_CHUNK, exact_divergence, finite_difference_divergence, hutchinson_divergence

DIVERGENCES = ("exact", "hutchinson", "finite_difference")
Divergence = Literal["exact", "hutchinson", "finite_difference"]


class _AugmentedDynamics(nn.Module):
    r"""The joint dynamics of :math:`x` and of :math:`\log|\det \partial x(t) / \partial x(t_0)|`."""

    def __init__(self, field: nn.Module, divergence: Divergence, noise: Tensor | None, chunk_size: int):
        super().__init__()
        self.field, self.divergence, self.noise, self.chunk_size = field, divergence, noise, chunk_size

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]

        def f(z: Tensor) -> Tensor:
            return self.field(t, z)

        # Differentiate through the divergence only when a gradient is being taken.
        training = torch.is_grad_enabled()
        if self.divergence == "exact":
            fx, div = exact_divergence(f, x, create_graph=training, chunk_size=self.chunk_size)
        elif self.divergence == "hutchinson":
            fx, div = hutchinson_divergence(f, x, self.noise, create_graph=training)
        else:
            fx, div = finite_difference_divergence(f, x, self.noise)
        return fx, div


class _Dynamics(nn.Module):
    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.field(t, x)


def _largest_rms(difference: Tensor) -> float:
    return difference.flatten(1).square().mean(1).sqrt().max().item()


class ODEBlock(nn.Module):
    r"""One invertible block of the flow: the time-``[t_0, t_1]`` map of a neural ODE.

    Integration is fixed-step (``steps`` RK4 steps of torchdiffeq); the inverse integrates the
    same field backwards in time. With a divergence estimator, the log-determinant of the
    Jacobian, :math:`\int_{t_0}^{t_1} \nabla \cdot f(x(s), s)\, ds`, is integrated alongside.

    Arguments:
        field: The velocity field, called as ``field(t, x)`` on ``[N, V, C]``.
        start: :math:`t_0`.
        end: :math:`t_1 > t_0`.
        steps: RK4 steps across the interval.
        adjoint: Backpropagate with the adjoint method (memory flat in ``steps``).

    Example:
        >>> from igraphflow.nn import GraphVelocityField
        >>> edge_index = torch.tensor([[0, 1], [1, 0]])
        >>> block = ODEBlock(GraphVelocityField(edge_index, 2, 2, hidden=8), 0.0, 0.5)
        >>> x = torch.randn(3, 2, 2)
        >>> y, logdet = block.transform(x, divergence="exact")
        >>> torch.allclose(block.inverse(y), x, atol=1e-5), logdet.shape
        (True, torch.Size([3]))
    """

    def __init__(self, field: nn.Module, start: float, end: float, steps: int = 4, adjoint: bool = False):
        super().__init__()
        if not end > start:
            raise ValueError(f"an ODE block needs end > start, got [{start}, {end}]")
        self.field, self.adjoint = field, adjoint
        self.register_buffer("interval", torch.tensor([float(start), float(end)]))
        # A buffer, so that steps set after construction (settle_steps) are saved with the weights.
        self.register_buffer("solver_steps", torch.tensor(as_count(steps, "steps")))

    @property
    def steps(self) -> int:
        r"""RK4 steps across the interval."""
        return int(self.solver_steps)

    @steps.setter
    def steps(self, steps: int):
        self.solver_steps.fill_(as_count(steps, "steps"))

    @property
    def step_size(self) -> float:
        r"""The length :math:`h = t_1 - t_0` of the block's time interval."""
        return float(self.interval[1] - self.interval[0])

    def set_interval(self, start: float, end: float):
        r"""Moves the block to the time interval ``[start, end]``."""
        if not end > start:
            raise ValueError(f"an ODE block needs end > start, got [{start}, {end}]")
        self.interval.copy_(torch.tensor([float(start), float(end)]))

    def grid(self, backward: bool = False, steps: int | None = None) -> Tensor:
        r"""The solver's time points, ``[steps + 1]``, from :math:`t_0` to :math:`t_1` (reversed if ``backward``).

        Arguments:
            backward: From :math:`t_1` to :math:`t_0`.
            steps: RK4 steps across the interval; by default the block's own.
        """
        steps = self.steps if steps is None else as_count(steps, "steps")
        grid = torch.linspace(float(self.interval[0]), float(self.interval[1]), steps + 1)
        return (grid.flip(0) if backward else grid).to(self.interval)

    def _solve(self, dynamics: nn.Module, state, backward: bool = False, steps: int | None = None):
        grid = self.grid(backward, steps)
        if self.adjoint and torch.is_grad_enabled():
            return odeint_adjoint(dynamics, state, grid, method="rk4", adjoint_params=tuple(self.field.parameters()))
        return odeint(dynamics, state, grid, method="rk4")

    @torch.no_grad()
    def settle_steps(self, x: Tensor, tolerance: float, max_steps: int) -> float:
        r"""Doubles :attr:`steps` until twice as many would move no signal of ``x`` by more than ``tolerance``.

        The change between the maps on :math:`s` and :math:`2s` RK4 steps (step doubling)
        estimates the error of the map on :math:`s`, which falls as :math:`s^{-4}`. A trained
        field can be rough near its training signals (a bound many of them sit on) and smooth
        elsewhere: one count of steps for every block would be too coarse for some blocks or
        wasted on others. The steps never fall below their count when called, nor rise above
        ``max_steps``.

        Arguments:
            x: Signals at the start of the interval, ``[N, V, C]``.
            tolerance: The largest change allowed: root mean square over a signal's values.
            max_steps: The most steps to take.

        Returns:
            The largest change from the steps kept to twice as many: above ``tolerance`` only
            where doubling again would pass ``max_steps``.

        Example:
            >>> block = ODEBlock(lambda t, x: -5 * x, 0.0, 1.0, steps=1)
            >>> change = block.settle_steps(torch.ones(1, 1, 1), 1e-4, max_steps=64)
            >>> block.steps, change < 1e-4
            (8, True)
        """
        tolerance, max_steps = as_real(tolerance, "tolerance", "(0, inf)"), as_count(max_steps, "max_steps")
        if x.size(0) == 0:
            return 0.0
        dynamics = _Dynamics(self.field)
        steps = self.steps
        coarse = self._solve(dynamics, x, steps=steps)[-1]
        while True:
            fine = self._solve(dynamics, x, steps=2 * steps)[-1]
            change = _largest_rms(fine - coarse)
            if change <= tolerance or 2 * steps > max_steps:
                break
            steps, coarse = 2 * steps, fine
        self.steps = steps
        return change

    def forward(self, x: Tensor) -> Tensor:
        r"""Maps ``x`` to :math:`x(t_1)`."""
        return self.trajectory(x)[-1]

    def trajectory(self, x: Tensor) -> Tensor:
        r"""The states at the solver's time points :meth:`grid`, ``[steps + 1, N, V, C]``."""
        return self._solve(_Dynamics(self.field), x)

    def inverse(self, y: Tensor, corrections: int = 1) -> Tensor:
        r"""Maps :math:`x(t_1)` back to :math:`x(t_0)`: the inverse of :meth:`forward`, up to a corrected solver error.

        Integrating backwards, :math:`B`, inverts the ODE only up to the solver's error
        :math:`e(x) = B(T(x)) - x`, where :math:`T` is :meth:`forward`. Each correction
        :math:`x \leftarrow x + B(y) - B(T(x))` solves :math:`T(x) = y` by a fixed-point
        iteration that contracts by the (tiny) Lipschitz constant of :math:`e`.

        Arguments:
            y: The output, ``[N, V, C]``.
            corrections: Fixed-point corrections after the backward integration.
        """
        dynamics = _Dynamics(self.field)
        backward = self._solve(dynamics, y, backward=True)[-1]
        x = backward
        for _ in range(corrections):
            x = x + backward - self._solve(dynamics, self._solve(dynamics, x)[-1], backward=True)[-1]
        return x

    def transform(
        self,
        x: Tensor,
        *,
        divergence: Divergence = "exact",
        noise: Tensor | None = None,
        chunk_size: int = EXACT_CHUNK,
        steps: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Maps ``x`` forward and returns ``(y, log|det dy/dx|)``.

        Arguments:
            x: The input, ``[N, V, C]``.
            divergence: ``"exact"`` (trace from ``D`` vector-Jacobian products),
                ``"hutchinson"`` (unbiased) or ``"finite_difference"`` (bias ``O(step)``), one
                probe per sample.
            noise: The probe of the stochastic estimators, shaped like ``x``; Rademacher
                probes are drawn when omitted. One probe serves the whole interval.
            chunk_size: Dimensions per backward pass of the exact trace.
            steps: RK4 steps across the interval; by default the block's own. Training may
                take fewer (a cheaper step) than the map the block stands for.
        """
        divergence = as_choice(divergence, DIVERGENCES, "divergence")
        if divergence != "exact" and noise is None:
            noise = 2 * torch.randint_like(x, 2) - 1
        dynamics = _AugmentedDynamics(self.field, divergence, noise, chunk_size)
        ys, logdets = self._solve(dynamics, (x, x.new_zeros(x.size(0))), steps=steps)
        return ys[-1], logdets[-1]
