"""The ``gated_linear`` layer: ``a * sigmoid(g)`` where ``[a, g] = x W + b``."""

from __future__ import annotations

import tensorflow as tf
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer


class GatedLinearLayer(Layer):
    """Gated linear unit over the feature axis of its (concatenated) sources."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Project to ``2 * n_out`` and gate one half with the other."""
        src = self.single_source(sources)
        n_out = self.require_n_out()
        w = self.param("W", (self.feature_dim(src), 2 * n_out), "glorot_uniform")
        b = self.param("b", (2 * n_out,), "zeros")
        x = tf.tensordot(src.tensor, w, axes=[[src.tensor.shape.rank - 1], [0]]) + b
        a, g = tf.split(x, 2, axis=-1)
        return src.with_tensor(a * tf.sigmoid(g), dim=n_out)
