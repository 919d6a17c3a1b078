r"""Graph layers whose normalised operator is computed once, from the graph they are bound to."""

from __future__ import annotations


class CachedOperator:
    r"""A mixin for ``nn.Module`` graph layers that keep a normalised operator ``(index, weight)``.

    The operator is computed from the graph in float64 on the CPU (``_operator()``) and put
    in two buffers, in the dtype and on the device of the layer's weights, again whenever the
    layer is moved or cast: ``.double()`` gets the exact operator rather than a float32 one
    cast up, and a GPU gets its own copy. Derived from the graph, they are not part of the
    state (register them with ``persistent=False``); states that hold them load.

    A layer names the two buffers in ``_operator_buffers`` and defines ``_operator()``, which
    returns ``(index [2, E'], weight [E'])`` in float64 on the CPU.
    """

    _operator_buffers: tuple[str, str]

    def _set_operator(self):
        like = next(self.parameters())
        index, weight = self._operator()
        index_name, weight_name = self._operator_buffers
        setattr(self, index_name, index.to(like.device))
        setattr(self, weight_name, weight.to(like.device, like.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._operator_buffers:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._set_operator()
        return self
