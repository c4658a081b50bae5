"""Normalisation layers: ``batch_norm`` (masked batch statistics, moving averages) and ``layer_norm``."""

from __future__ import annotations

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput


class BatchNormLayer(Layer):
    """Batch normalisation over all axes but the feature (padding left out unless ``masked_time=False``)."""

    options = frozenset({"momentum", "epsilon", "use_shift", "use_std", "update_sample_only_in_training",
                         "masked_time"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Batch statistics in training (moving ``mean``/``variance`` by ``momentum``), else the moving averages."""
        src = self.single_source(sources)
        ops = ctx.ops
        dim = self.feature_dim(src)
        x = src.dense()
        gamma = self.param("gamma", (dim,), "ones")
        beta = self.param("beta", (dim,), "zeros")
        mean_var = self.param("mean", (dim,), "zeros", trainable=False)
        var_var = self.param("variance", (dim,), "ones", trainable=False)
        eps = np.float32(self.float_opt("epsilon", 1e-5))
        if ctx.train:
            rank = ops.ndim(x)
            mask = None
            if src.has_time and self.opts.get("masked_time", True):
                mask = src.mask()
                for _ in range(rank - 2):
                    mask = ops.expand_dims(mask, -1)
            mean, var = ops.moments(x, list(range(rank - 1)), mask)
            m = self.float_opt("momentum", 0.1)
            keep, take = np.float32(1.0 - m), np.float32(m)
            ops.assign(mean_var, mean_var * keep + ops.stop_gradient(mean) * take)
            ops.assign(var_var, var_var * keep + ops.stop_gradient(var) * take)
        else:
            mean, var = mean_var, var_var
        out = (x - mean) * ops.rsqrt(var + eps)
        if self.opts.get("use_std", True):
            out = out * gamma
        if self.opts.get("use_shift", True):
            out = out + beta
        return LayerOutput(out, src.seq_lens, dim)


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
