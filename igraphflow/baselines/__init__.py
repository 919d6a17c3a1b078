r"""Conditional generative baselines for graph signals ``X | Y``.

All share one interface (scikit-learn style: ``__init__`` stores settings, ``fit`` returns
``self``)::

    model = Baseline(edge_index, num_nodes, num_features, num_classes, seed=0, **settings)
    model.fit(X, Y, max_time=None, max_epochs=..., validation=..., progress=True)
    model.sample(Y)          # [N, V, C], one signal per label-pattern row
    model.log_prob(X, Y)     # [N], natural log-density (likelihood models only)
    model.save(path); Baseline.load(path, device=None)   # atomic checkpoint, same class only

- :class:`NSFBaseline`: a zuko neural spline flow on the flattened signal.
- :class:`CINNBaseline`: a FrEIA conditional INN of GLOW affine couplings.
- :class:`CGANBaseline`: a conditional GAN with ChebConv graph networks (no ``log_prob``).
- :class:`IGNNBaseline`: the discrete-time iGNN, contractive residual graph blocks with the
  Gaussian-mixture latent (also ``predict``).

NSF needs zuko and the cINN FrEIA (the ``baselines`` extra); each class is imported when first
asked for, so the others work without them.

Example:
    >>> import torch
    >>> from igraphflow.baselines import NSFBaseline
    >>> X, Y = torch.randn(32, 2, 1), torch.randint(2, (32, 2))
    >>> model = NSFBaseline(torch.tensor([[0, 1], [1, 0]]), 2, 1, 2, seed=0)
    >>> model.fit(X, Y, max_epochs=1, progress=False).sample(Y).shape
    torch.Size([32, 2, 1])
"""

import importlib

__all__ = ["NSFBaseline", "CINNBaseline", "CGANBaseline", "IGNNBaseline"]

_MODULES = {"NSFBaseline": "nsf", "CINNBaseline": "cinn", "CGANBaseline": "cgan", "IGNNBaseline": "ignn"}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
