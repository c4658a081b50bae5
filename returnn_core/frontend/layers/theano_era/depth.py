"""``adaptive_depth`` (NetworkHiddenLayer.AdaptiveDepthLayer): Adaptive Computation Time over a stack of layers.

The sources are the stack's layers, shallow to deep (of one dim). Each frame halts at the first layer whose summed
halting probabilities reach ``1 - eps``; its output is that layer's (the last one's if it never halts). The
ponder cost, scaled by ``tau``, enters the objective as the layer's cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._loss import Loss, LossContext
from returnn_core.frontend._network import LossTerm
from returnn_core.frontend._output import LayerOutput

#: ``LayerOutput.extra`` key: the ponder cost per frame (B, T)
PONDER = "adaptive_depth_ponder"


class PonderCost(Loss):
    """The ``adaptive_depth`` ponder cost summed over the present frames (no target)."""

    needs_target = False

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """``(ponder cost sum, None, frames)``."""
        ops = ctx.ops
        mask = output.mask()
        return ops.reduce(output.extra[PONDER] * mask, "sum"), None, ops.reduce(mask, "sum")


class AdaptiveDepthLayer(Layer):
    """``adaptive_depth``: layer k's halting probability is ``sigmoid(x_k W_k + b + bias)`` (``W_k`` (dim_k, 1)
    per source, ``b`` (1,)), or uniform noise with ``damping="random"`` (no ``W_k`` then). ``damping`` "graves"
    costs ``(k + 2 - P)`` at the halting layer k (P: the probabilities summed before it; ``n + 1 - P`` if it never
    halts), "expected" ``k + 1`` times the halting probability (``n`` times P if it never halts); ``tau`` scales
    the cost (0: none). Every source's output feeds its halting unit (RETURNN's ``rec`` sources gave their cell
    states)."""

    options = frozenset({"eps", "tau", "bias", "damping"})
    DAMPINGS = ("graves", "expected", "random")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.damping = self.opts.get("damping", "graves")
        if self.damping not in self.DAMPINGS:
            raise self.error(f"damping {self.damping!r}: use {', '.join(self.DAMPINGS)}")
        self.tau = self.float_opt("tau", 0.01)

    @property
    def inner_loss_terms(self) -> list[LossTerm]:
        """The ponder cost times ``tau`` as a term of the objective."""
        if not self.tau or self.damping == "random":
            return []
        return [LossTerm(self.name, PonderCost(), PONDER, None, self.tau)]

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Halt each frame at its layer."""
        ops = ctx.ops
        if not sources or any(s.sparse or not s.has_time or s.feature_ndim != 1 for s in sources):
            raise self.error("needs dense (batch, time, feature) sources, the stack's layers")
        if len({s.dim for s in sources}) != 1:
            raise self.error(f"needs sources of one dim, got dims {[s.dim for s in sources]}")
        threshold = np.float32(1.0 - self.float_opt("eps", 0.01))
        bias = np.float32(self.float_opt("bias", -1.0))
        b = self.param("b", (1,), self.opts.get("bias_init", "zeros"))
        mask = sources[0].mask()
        total = ops.zeros_like(mask)  # P
        halted = ops.zeros_like(mask)  # M
        out = ops.zeros_like(sources[0].tensor)  # H
        cost = ops.zeros_like(mask)
        n = len(sources)
        for k, src in enumerate(sources):
            if self.damping == "random":
                p = ops.random_uniform(ops.shape(mask))
            else:
                w = self.param(f"W_{k}", (self.feature_dim(src), 1),
                               self.opts.get("forward_weights_init", "glorot_uniform"))
                p = ops.sigmoid(ops.dot(src.tensor, w) + b + bias)[..., 0]
            # halts here: the sum reaches the threshold with this layer, not before
            reached = np.float32(1.0) - ops.cast(ops.less(total + p, threshold), "float32")
            now = reached * ops.cast(ops.less(total, threshold), "float32")
            halted = halted + now
            out = out + ops.expand_dims(now, -1) * (src.tensor - out)
            if self.damping == "graves":
                cost = cost + (np.float32(k + 2) - total) * now
            elif self.damping == "expected":
                cost = cost + now * p * np.float32(k + 1)
            total = total + p
        never = np.float32(1.0) - halted
        out = out + ops.expand_dims(never, -1) * sources[-1].tensor
        if self.damping == "graves":
            cost = cost + (np.float32(n + 1) - total) * never
        elif self.damping == "expected":
            cost = cost + never * total * np.float32(n)
        result = sources[0].with_tensor(out * ops.expand_dims(mask, -1), dim=sources[0].dim)
        result.extra = {**result.extra, PONDER: cost}
        return result
