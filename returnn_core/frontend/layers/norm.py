"""Normalisation layers: ``batch_norm`` (masked batch statistics, moving averages) and ``layer_norm``."""

from __future__ import annotations

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.batch_norm import BATCH_NORM_OPTIONS, batch_norm


class BatchNormLayer(Layer):
    """Batch normalisation over all axes but the feature (padding left out unless ``masked_time=False``)."""

    options = BATCH_NORM_OPTIONS

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Batch statistics in training (moving ``mean``/``variance`` by ``momentum``), else the moving averages."""
        return batch_norm(self, self.single_source(sources), ctx, {k: self.opts[k] for k in self.options
                                                                    if k in self.opts})


class LayerNormLayer(Layer):
    """Normalise each frame over the feature axis; params ``scale``, ``bias``."""

    options = frozenset({"epsilon"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Layer normalisation."""
        src = self.single_source(sources)
        ops = ctx.ops
        dim = self.feature_dim(src)
        scale = self.param("scale", (dim,), "ones")
        bias = self.param("bias", (dim,), "zeros")
        x = src.dense()
        mean, var = ops.moments(x, -1, keepdims=True)
        out = (x - mean) * ops.rsqrt(var + np.float32(self.float_opt("epsilon", 1e-6))) * scale + bias
        return LayerOutput(out, src.seq_lens, dim)
