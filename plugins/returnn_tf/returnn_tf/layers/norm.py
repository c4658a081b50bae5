"""Normalisation layers: ``batch_norm`` (masked batch statistics, moving averages) and ``layer_norm``."""

from __future__ import annotations

import tensorflow as tf

from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer


def _masked_moments(src: LayerOutput) -> tuple[tf.Tensor, tf.Tensor]:
    x = src.tensor
    axes = list(range(x.shape.rank - 1))
    if not src.has_time:
        return tf.nn.moments(x, axes=axes)
    mask = src.mask()
    for _ in range(x.shape.rank - 3):
        mask = mask[..., None]
    mask = mask[..., None]
    count = tf.maximum(tf.reduce_sum(mask * tf.ones_like(x), axis=axes), 1.0)
    mean = tf.reduce_sum(x * mask, axis=axes) / count
    var = tf.reduce_sum(tf.square(x - mean) * mask, axis=axes) / count
    return mean, var


class BatchNormLayer(Layer):
    """Batch normalisation over all axes but the feature; params ``gamma``, ``beta``, ``mean``, ``variance``."""

    options = frozenset({"momentum", "epsilon", "use_shift", "use_std", "update_sample_only_in_training",
                         "masked_time"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Normalise with batch statistics in training (updating the moving averages), else the averages."""
        src = self.single_source(sources)
        dim = self.feature_dim(src)
        gamma = self.param("gamma", (dim,), "ones")
        beta = self.param("beta", (dim,), "zeros")
        mean_var = self.param("mean", (dim,), "zeros", trainable=False)
        var_var = self.param("variance", (dim,), "ones", trainable=False)
        eps = float(self.opts.get("epsilon", 1e-5))
        if ctx.train:
            mean, var = _masked_moments(src)
            m = float(self.opts.get("momentum", 0.1))
            mean_var.assign(mean_var * (1.0 - m) + tf.stop_gradient(mean) * m)
            var_var.assign(var_var * (1.0 - m) + tf.stop_gradient(var) * m)
        else:
            mean, var = mean_var, var_var
        out = (src.tensor - mean) * tf.math.rsqrt(var + eps)
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
        dim = self.feature_dim(src)
        scale = self.param("scale", (dim,), "ones")
        bias = self.param("bias", (dim,), "zeros")
        mean, var = tf.nn.moments(src.tensor, axes=[-1], keepdims=True)
        out = (src.tensor - mean) * tf.math.rsqrt(var + float(self.opts.get("epsilon", 1e-6))) * scale + bias
        return LayerOutput(out, src.seq_lens, dim)
