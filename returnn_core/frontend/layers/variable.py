"""The ``variable`` layer: a parameter as a layer output (e.g. a trained initial state or a learned query)."""

from __future__ import annotations

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput


class VariableLayer(Layer):
    """A parameter of ``shape`` (init ``init``, default 0) named like the layer, repeated over the batch
    (``add_batch_axis``, which this port needs) and with a time axis of length 1 if ``add_time_axis``."""

    options = frozenset({"shape", "dtype", "add_batch_axis", "add_time_axis", "init"})

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
        if not self.opts.get("add_batch_axis", True):
            raise self.error("add_batch_axis=False is not supported: every layer output has a batch axis here")
        shape = tuple(int(d) for d in shape)
        var = self.param(self.name.rpartition("/")[2], shape, self.opts.get("init", 0.0))
        out = ops.expand_dims(var * 1.0, 0)
        seq_lens = None
        if self.opts.get("add_time_axis", False):
            out = ops.expand_dims(out, 1)
            seq_lens = ops.ones([ctx.batch_size], "int32")
        out = ops.tile(out, [ctx.batch_size] + [1] * (ops.ndim(out) - 1))
        return LayerOutput(out, seq_lens, shape[-1] if shape else None)
