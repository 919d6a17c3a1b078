r"""Passes over many graph signals in chunks, so that memory is bounded whatever the graph size."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# Scalars (signals x nodes x features) per pass. A training step keeps the graph of every RK4
# stage for the double backward of the divergence (tens of kB per scalar with the default
# field); a pass without gradients holds one stage at a time.
TRAIN_SCALARS = 2**16
EVAL_SCALARS = 2**18


def chunk_size(x: Tensor, scalars: int = EVAL_SCALARS) -> int:
    r"""How many of the signals ``x [N, ...]`` fit in a pass of ``scalars`` scalars (at least one; ``N`` may be 0)."""
    return max(1, scalars // max(1, math.prod(x.shape[1:])))


def in_chunks(function: Callable[..., Tensor | tuple[Tensor, ...]], *tensors: Tensor, scalars: int = EVAL_SCALARS):
    r"""``function(*tensors)`` evaluated on chunks of the first dimension and concatenated.

    Example:
        >>> import torch
        >>> x = torch.randn(10, 3, 2)
        >>> torch.equal(in_chunks(lambda a: 2 * a, x, scalars=6), 2 * x)
        True
    """
    size = chunk_size(tensors[0], scalars)
    outputs = [function(*parts) for parts in zip(*(t.split(size) for t in tensors))]
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(list(column)) for column in zip(*outputs))
    return torch.cat(outputs)

