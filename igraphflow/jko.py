r"""Block-wise training: each ODE block is one step of the JKO scheme.

Block ``k`` solves

.. math:: \min_{\theta_k} \mathbb{E}_{(x, y) \sim p_{k-1}} \Big[ U_y(x(t_k))
          - \int_{t_{k-1}}^{t_k} \nabla \cdot f_k(x(s), s)\, ds
          + \frac{\|x(t_k) - x(t_{k-1})\|^2}{2 h_k} \Big],

with :math:`U_y = -\log p(\cdot | y)` the latent potential and :math:`p_{k-1}` the data pushed
through the blocks already trained. Only block ``k`` carries gradients, so memory does not grow
with depth.
"""

from __future__ import annotations

__all__ = ["BlockRecord", "any_rank_past", "auto_batch_size", "data_parallel_rank", "jko_objective", "train_block"]

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._chunks import EVAL_SCALARS, TRAIN_SCALARS, chunk_size, in_chunks
from ._random import draw
from .divergence import EXACT_CHUNK, rademacher
from .latent import GaussianMixtureLatent
from .ode import Divergence, ODEBlock


@dataclass
class BlockRecord:
    r"""What happened while training one block."""

    block: int
    step_size: float
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1  # -1: no epoch beat the starting state, which was kept
    w2: float = math.nan
    map_steps: int | None = None  # RK4 steps of the block's fitted map (None: recorded before they were)
    val_nll_per_dim: float = math.nan
    seconds: float = 0.0
    stopped_by_time: bool = False


def auto_batch_size(num_samples: int) -> int:
    r"""The batch size ``"auto"``: a sixteenth of the training samples, between 32 and 256.

    Under a time budget, more (smaller) steps per block beat fewer large ones on the real
    series (``experiments/RESULTS.md``); 256 caps the cost of a step on large datasets.
    """
    return min(256, max(32, num_samples // 16))


def jko_objective(
    block: ODEBlock,
    latent: GaussianMixtureLatent,
    x: Tensor,
    y: Tensor,
    *,
    divergence: Divergence,
    noise: Tensor | None = None,
    classification_weight: float = 0.0,
    steps: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The JKO objective of ``block`` per sample, divided by the dimension ``D = V * C``.

    With ``classification_weight`` :math:`\lambda > 0`, the cross-entropy of the mixture's
    Bayes rule on the block's output, :math:`-\lambda \sum_v \log P(Y_v = y_v | H_v)`, is
    added (the classification loss of the iGNN objective): it pushes each :math:`H_v` away
    from the other classes' means as well as towards its own.

    ``x`` may hold no signals (a process's empty share of a batch); ``steps``: RK4 steps
    across the block (by default its own).

    Returns:
        ``(objective [N], output [N, V, C], log-determinant [N])``.
    """
    out, logdet = block.transform(x, divergence=divergence, noise=noise, steps=steps)
    transport = (out - x).square().flatten(1).sum(1) / (2 * block.step_size)
    objective = transport - latent.log_prob(out, y) - logdet
    if classification_weight:
        log_posterior = latent.log_posterior(out).gather(-1, y.unsqueeze(-1))
        objective = objective - classification_weight * log_posterior.flatten(1).sum(1)
    return objective / math.prod(x.shape[1:]), out, logdet


def data_parallel_rank() -> tuple[int, int]:
    r"""``(rank, world size)`` of this process when ``torch.distributed`` is initialised (e.g. by ``torchrun``), else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sum_over_ranks(value: float, device: torch.device | str) -> float:
    total = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.item()


def any_rank_past(deadline: float, device: torch.device | str) -> bool:
    r"""Whether ``time.monotonic()`` is past ``deadline`` in any process of :func:`data_parallel_rank`.

    Clocks and start times differ between processes; a decision to stop taken by all of them
    together keeps their collectives in step. ``device`` holds the flag (a GPU under NCCL).
    """
    late = float(time.monotonic() > deadline)
    return (_sum_over_ranks(late, device) if data_parallel_rank()[1] > 1 else late) > 0


def _sum_gradients(parameters: list[nn.Parameter]):
    # What DistributedDataParallel does after backward; done by hand because a block is trained
    # through ``transform``, not its ``forward``, which DDP's hooks watch. Summed, since each
    # share's loss is already divided by the size of the whole batch. Every process reduces
    # every parameter, with a zero gradient where its share gave none, so the collectives pair up.
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad)


def _chunk_scalars(dims: int, divergence: Divergence) -> tuple[int, int]:
    r"""The scalars per pass of a training step and of a pass without gradients. The exact trace
    sends ``D`` copies of every signal through the field: a training step keeps the graphs of
    all of them, a pass without gradients those of :data:`~igraphflow.divergence.EXACT_CHUNK` at a time
    (:func:`~igraphflow.divergence.exact_divergence`)."""
    if divergence != "exact":
        return TRAIN_SCALARS, EVAL_SCALARS
    return max(1, TRAIN_SCALARS // dims), max(1, EVAL_SCALARS // min(EXACT_CHUNK, dims))


def _snapshot(modules: list[nn.Module]) -> list[dict]:
    return [copy.deepcopy(m.state_dict()) for m in modules]


def train_block(
    index: int,
    block: ODEBlock,
    latent: GaussianMixtureLatent,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    *,
    divergence: Divergence = "finite_difference",
    batch_size: int = 256,
    lr: float = 2e-3,
    max_epochs: int = 40,
    patience: int = 5,
    barrier_weight: float = 1e-2,
    classification_weight: float = 0.0,
    clip: float = 10.0,
    steps: int | None = None,
    deadline: float = math.inf,
    generator: torch.Generator | None = None,
    on_epoch: Callable[[BlockRecord], None] | None = None,
) -> BlockRecord:
    r"""Trains one block (and the latent means, where they require gradients) on samples pushed through
    the blocks before it.

    Early stopping watches the objective on the validation samples, evaluated with one fixed
    probe per sample; the best state of the block and the means is restored. Under
    ``torch.distributed`` (one process per device, e.g. launched by ``torchrun``), every
    process holds the data and takes its share of each batch (possibly none), and the
    gradients of the shares are summed into those of the batch's mean; the processes stop
    together (at the deadline of the first to reach it, or early together), so the result
    matches one process up to floating-point rounding.

    Arguments:
        index: The block's position, for the record.
        block: The block to train.
        latent: The latent; its means are trained jointly where they require gradients.
        train: ``(X, Y)`` pushed through the blocks before this one.
        val: Validation ``(X, Y)``, pushed likewise.
        divergence: The estimator used in training.
        classification_weight: The weight of the classification loss, see :func:`jko_objective`.
        steps: RK4 steps across the block in training and in its validation objective; by
            default the block's own.
        deadline: A ``time.monotonic()`` instant after which training stops.
        generator: Random source of batches and probes.
        on_epoch: Called as ``on_epoch(record)`` after each epoch.
    """
    record = BlockRecord(block=index, step_size=block.step_size)
    modules = [block, latent]
    parameters = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    x_train, y_train = train
    x_val, y_val = val
    val_noise = rademacher(x_val.shape, like=x_val, generator=generator)
    started = time.monotonic()
    rank, world = data_parallel_rank()
    device = x_train.device
    train_scalars, eval_scalars = _chunk_scalars(x_train[0].numel(), divergence)

    def validation_objective() -> float:
        block.eval()
        with torch.no_grad():
            objective = in_chunks(
                lambda x, y, noise: jko_objective(block, latent, x, y, divergence=divergence, noise=noise,
                                        classification_weight=classification_weight, steps=steps)[0],
                x_val, y_val, val_noise, scalars=eval_scalars,
            ).mean().item()
        # Every process evaluates all the validation samples. Their mean is one value for all
        # of them even where rounding differs between devices, so they agree on the best epoch
        # and on when to stop; where their values are equal, it is that value exactly.
        return _sum_over_ranks(objective, device) / world if world > 1 else objective

    # The starting state competes too: a warm-started block (refine, reparameterize) is
    # never replaced by an epoch that made it worse.
    best, best_state, stale = validation_objective(), _snapshot(modules), 0
    chunk = chunk_size(x_train, train_scalars)
    for epoch in range(max_epochs):
        block.train()
        order = draw(torch.randperm, x_train.size(0), device=device, generator=generator)
        losses = []
        for batch in order.split(batch_size):
            # Every process draws the same batch and probes, so their random streams stay in
            # step; each then takes its own share of the batch (empty when the batch is smaller
            # than the number of processes) and divides by the size of the whole batch, so the
            # summed gradients are those of the batch's mean.
            batch_total = len(batch)
            noise = rademacher((batch_total, *x_train.shape[1:]), like=x_train, generator=generator)
            batch, noise = batch[rank::world], noise[rank::world]
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            if rank == 0:  # the barrier is a term of the batch's loss, counted once
                barrier = barrier_weight * latent.barrier() / x_train[0].numel()
                if barrier.requires_grad:
                    barrier.backward()
                loss = barrier.item()
            # Gradients accumulate over chunks of the batch: the same step as one pass over the
            # batch, with memory bounded on large graphs.
            for part, part_noise in zip(batch.split(chunk), noise.split(chunk)):
                objective = jko_objective(block, latent, x_train[part], y_train[part], divergence=divergence, noise=part_noise,
                                          classification_weight=classification_weight, steps=steps)[0]
                part_loss = objective.sum() / batch_total
                part_loss.backward()
                loss += part_loss.item()
            if world > 1:
                _sum_gradients(parameters)
                loss = _sum_over_ranks(loss, device)
            nn.utils.clip_grad_norm_(parameters, clip)
            optimizer.step()
            latent.project_()
            losses.append(loss)
            if any_rank_past(deadline, device):
                break
        val_loss = validation_objective()
        record.train_loss.append(sum(losses) / len(losses))
        record.val_loss.append(val_loss)
        if val_loss < best:
            best, best_state, stale, record.best_epoch = val_loss, _snapshot(modules), 0, epoch
        else:
            stale += 1
        if on_epoch is not None:
            on_epoch(record)
        if any_rank_past(deadline, device):
            record.stopped_by_time = True
            break
        if stale >= patience:
            break
    for module, state in zip(modules, best_state):
        module.load_state_dict(state)
    record.seconds = time.monotonic() - started
    return record
