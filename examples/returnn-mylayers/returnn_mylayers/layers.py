"""The ``gated_linear`` layer: ``a * sigmoid(g)`` where ``[a, g] = x W + b``.

Written once against the backend-neutral ops of ``returnn_core.frontend``: it imports no deep-learning
framework and runs on every backend it is registered for.
"""

from __future__ import annotations

from returnn_core.frontend import Context, Layer, LayerOutput


class GatedLinearLayer(Layer):
    """Gated linear unit over the feature axis of its (concatenated) sources."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Project to ``2 * n_out`` and gate one half with the other."""
        ops = ctx.ops
        src = self.single_source(sources)
        n_out = self.require_n_out()
        w = self.param("W", (self.feature_dim(src), 2 * n_out), "glorot_uniform")
        b = self.param("b", (2 * n_out,), "zeros")
        x = ops.dot(src.dense(), w) + b
        a, g = ops.split(x, (n_out, n_out), axis=-1)
        return src.with_tensor(a * ops.sigmoid(g), dim=n_out)
