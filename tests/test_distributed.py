import math
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from igraphflow import ConditionalGraphFlow, jko

EDGES = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
SETTINGS = dict(num_blocks=2, hidden=8, max_epochs=3, seed=0)


def toy(num_signals: int = 256):
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (num_signals, 4), generator=g)
    return torch.randn(num_signals, 4, 2, generator=g) + 2.0 * Y.unsqueeze(-1), Y


def spawn(worker, *args, world: int = 2):
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(world, port, *args), nprocs=world, join=True)


def join_group(rank: int, world: int, port: int):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # A rank left waiting in a collective fails the test instead of hanging it.
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))


def _fit_worker(rank: int, world: int, port: int, num_signals: int, batch_size: int, out: str):
    join_group(rank, world, port)
    try:
        X, Y = toy(num_signals)
        model = ConditionalGraphFlow(EDGES, 4, 2, 2, batch_size=batch_size, **SETTINGS).fit(X, Y, progress=False)
        if rank == 0:
            torch.save(model.log_prob(X[:16], Y[:16]), out)
    finally:
        dist.destroy_process_group()


def fit_log_probs(tmp_path, num_signals: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``log_prob`` of the flow fitted by two gloo processes and by one."""
    out = str(tmp_path / "log_prob.pt")
    spawn(_fit_worker, num_signals, batch_size, out)
    X, Y = toy(num_signals)
    single = ConditionalGraphFlow(EDGES, 4, 2, 2, batch_size=batch_size, **SETTINGS).fit(X, Y, progress=False)
    return torch.load(out, weights_only=True), single.log_prob(X[:16], Y[:16])


def test_two_gloo_processes_match_one(tmp_path):
    parallel, single = fit_log_probs(tmp_path, 256, 64)  # 230 training signals: equal shares
    # Same batches, probes and gradients: equal up to floating-point rounding.
    torch.testing.assert_close(parallel, single, rtol=1e-5, atol=1e-5)


def test_unequal_shares_weigh_every_signal_alike(tmp_path):
    parallel, single = fit_log_probs(tmp_path, 40, 9)  # 36 training signals: shares of 5 and 4
    torch.testing.assert_close(parallel, single, rtol=1e-5, atol=1e-5)


def test_a_process_with_an_empty_share_takes_part(tmp_path):
    parallel, single = fit_log_probs(tmp_path, 41, 6)  # 37 training signals: a last batch of one
    torch.testing.assert_close(parallel, single, rtol=1e-5, atol=1e-5)


def train_one_block(deadline: float) -> tuple[jko.BlockRecord, torch.Tensor]:
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0)
    record = jko.train_block(0, model.blocks[0], model.latent, (X[8:], Y[8:]), (X[:8], Y[:8]), batch_size=8,
                             max_epochs=3, deadline=deadline, generator=torch.Generator().manual_seed(0))
    return record, torch.cat([p.detach().flatten() for p in model.parameters()])


def _deadline_worker(rank: int, world: int, port: int, out: str):
    join_group(rank, world, port)
    try:
        # Only the last process has run out of time: all must stop after the same batch.
        record, parameters = train_one_block(-math.inf if rank == world - 1 else math.inf)
        if rank == 0:
            torch.save((record.stopped_by_time, record.train_loss, record.val_loss, parameters), out)
    finally:
        dist.destroy_process_group()


def test_processes_stop_together_when_one_runs_out_of_time(tmp_path):
    out = str(tmp_path / "stopped.pt")
    spawn(_deadline_worker, out)
    stopped, train_loss, val_loss, parameters = torch.load(out, weights_only=True)
    record, single = train_one_block(-math.inf)  # one process stops after its first batch
    assert stopped and record.stopped_by_time and len(train_loss) == len(record.train_loss) == 1
    torch.testing.assert_close(parameters, single, rtol=1e-5, atol=1e-6)
    # The losses recorded are the whole batch's and the whole validation set's, as in one process.
    assert train_loss == pytest.approx(record.train_loss, rel=1e-6) and val_loss == pytest.approx(record.val_loss, rel=1e-6)


def _gradient_worker(rank: int, world: int, port: int, out: str):
    join_group(rank, world, port)
    try:
        reached, everywhere = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(3))
        # Only the first process's share reached ``reached``: the others hold no gradient for it.
        (everywhere.sum() + (reached.sum() if rank == 0 else 0)).backward()
        jko._sum_gradients([reached, everywhere])
        if rank == world - 1:
            torch.save((reached.grad, everywhere.grad), out)
    finally:
        dist.destroy_process_group()


def test_gradients_missing_on_a_process_are_summed_as_zeros(tmp_path):
    out = str(tmp_path / "gradients.pt")
    spawn(_gradient_worker, out)
    reached, everywhere = torch.load(out, weights_only=True)
    assert torch.equal(reached, torch.ones(2)) and torch.equal(everywhere, torch.full((3,), 2.0))
