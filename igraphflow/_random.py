r"""Random draws that do not depend on the device their result is used on."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def draw(sampler: Callable[..., Tensor], *args, device: torch.device | str, generator: torch.Generator | None = None, **kwargs) -> Tensor:
    r"""``sampler(*args, **kwargs)`` drawn on the generator's device, then moved to ``device``.

    A generator's stream belongs to its device, so a CPU generator gives the same draws whether
    they are used on a CPU or on a GPU. Without a generator the draw is made on ``device``.

    Example:
        >>> noise = draw(torch.randn, 3, device="cpu", generator=torch.Generator().manual_seed(0))
        >>> torch.equal(noise, torch.randn(3, generator=torch.Generator().manual_seed(0)))
        True
    """
    source = generator.device if generator is not None else device
    return sampler(*args, generator=generator, device=source, **kwargs).to(device)
