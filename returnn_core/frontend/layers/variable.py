"""The ``variable`` layer: a parameter as a layer output (e.g. a trained initial state or a learned query)."""

from __future__ import annotations

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput


class VariableLayer(Layer):
    """A parameter of ``shape`` (init ``init``, default 0) named ``param_name`` (default: the layer's name), with a
    time axis of length 1 if ``add_time_axis``.

    Every layer output here has a batch axis, so the value is always repeated over the batch; ``add_batch_axis``
    (RETURNN's default then was True, later False) changes nothing, as the same value for every seq is what a
    batch-less variable broadcasts to.
    """

    options = frozenset({"shape", "dtype", "add_batch_axis", "add_time_axis", "init", "param_name"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The parameter, broadcast over the batch."""
        ops = ctx.ops
        if sources:
            raise self.error("takes no sources (set 'from': [])")
        shape = self.opts.get("shape")
        if not isinstance(shape, (list, tuple)) or any(
                isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
            raise self.error(f"needs 'shape', a tuple of positive ints, got {shape!r}")
        if str(self.opts.get("dtype", "float32")) != "float32":
            raise self.error("only dtype 'float32' is supported (parameters are float32)")
        shape = tuple(int(d) for d in shape)
        name = self.opts.get("param_name") or self.name.rpartition("/")[2]
        if not isinstance(name, str):
            raise self.error(f"param_name must be a string, got {name!r}")
        var = self.param(name, shape, self.opts.get("init", 0.0))
        out = ops.expand_dims(var * 1.0, 0)
        seq_lens = None
        if self.opts.get("add_time_axis", False):
            out = ops.expand_dims(out, 1)
            seq_lens = ops.ones([ctx.batch_size], "int32")
        out = ops.tile(out, [ctx.batch_size] + [1] * (ops.ndim(out) - 1))
        return LayerOutput(out, seq_lens, shape[-1] if shape else None)
