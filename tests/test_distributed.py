import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from igraphflow import ConditionalGraphFlow

EDGES = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
SETTINGS = dict(num_blocks=2, hidden=8, max_epochs=3, batch_size=64, seed=0)


def toy():
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (256, 4), generator=g)
    return torch.randn(256, 4, 2, generator=g) + 2.0 * Y.unsqueeze(-1), Y


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        X, Y = toy()
        model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SETTINGS).fit(X, Y, progress=False)
        if rank == 0:
            torch.save(model.log_prob(X[:16], Y[:16]), out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "log_prob.pt")
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
    X, Y = toy()
    single = ConditionalGraphFlow(EDGES, 4, 2, 2, **SETTINGS).fit(X, Y, progress=False).log_prob(X[:16], Y[:16])
    parallel = torch.load(out, weights_only=True)
    # Same batches, probes and averaged gradients: equal up to floating-point rounding.
    assert torch.allclose(parallel, single, rtol=1e-3, atol=1e-2)
