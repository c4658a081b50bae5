"""Normalisation layers: ``batch_norm`` (masked batch statistics, moving averages) and ``layer_norm``."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_theano._pt import pt
from returnn_theano.layers.base import Layer, LayerOutput


def masked_moments(src: LayerOutput) -> tuple[Any, Any]:
    """Mean and variance per feature over batch, time (present frames only) and further spatial axes."""
    x = src.value
    axes = list(range(x.ndim - 1))
    if not src.has_time:
        return x.mean(axis=axes), x.var(axis=axes)
    mask = src.mask()
    for _ in range(x.ndim - 2):
        mask = mask[..., None]
    count = pt.maximum((mask * pt.ones_like(x)).sum(axis=axes), 1.0)
    mean = (x * mask).sum(axis=axes) / count
    var = (pt.sqr(x - mean) * mask).sum(axis=axes) / count
    return mean, var


class BatchNormLayer(Layer):
    """Batch normalisation over all axes but the feature; params ``gamma``, ``beta``, ``mean``, ``variance``."""

    options = frozenset({"momentum", "epsilon", "use_shift", "use_std"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Batch statistics in training (moving averages updated by the train step), else the averages."""
        src = self.concat_sources(sources)
        dim = int(src.dim or 0)
        gamma = self.param("gamma", (dim,), "ones")
        beta = self.param("beta", (dim,), "zeros")
        mean_var = self.param("mean", (dim,), "zeros", trainable=False)
        var_var = self.param("variance", (dim,), "ones", trainable=False)
        eps = np.float32(self.opt("epsilon", 1e-5))
        if self.ctx.train:
            mean, var = masked_moments(src)
            m = np.float32(self.opt("momentum", 0.1))
            self.ctx.updates.append((mean_var, mean_var * (1.0 - m) + pt.as_tensor(mean) * m))
            self.ctx.updates.append((var_var, var_var * (1.0 - m) + pt.as_tensor(var) * m))
        else:
            mean, var = mean_var, var_var
        out = (src.value - mean) / pt.sqrt(var + eps)
        if self.opt("use_std", True):
            out = out * gamma
        if self.opt("use_shift", True):
            out = out + beta
        return LayerOutput(out, src.seq_lens, dim)


class LayerNormLayer(Layer):
    """Normalise each frame over the feature axis; params ``scale``, ``bias``."""

    options = frozenset({"epsilon"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Layer normalisation."""
        src = self.concat_sources(sources)
        dim = int(src.dim or 0)
        scale = self.param("scale", (dim,), "ones")
        bias = self.param("bias", (dim,), "zeros")
        x = src.value
        mean = x.mean(axis=-1, keepdims=True)
        var = pt.sqr(x - mean).mean(axis=-1, keepdims=True)
        out = (x - mean) / pt.sqrt(var + np.float32(self.opt("epsilon", 1e-6))) * scale + bias
        return LayerOutput(out, src.seq_lens, dim)
