"""``time_warp`` (NetworkHiddenLayer.TimeWarpLayer): a ``time_blur`` whose weights each frame chooses itself.

A filter ``W_warp`` over ``input_window`` frames (of the input, or of its projection ``W_warp_in_proj`` to
``input_proj`` features) gives each frame a warp position in [t_start, t_end - 1]; the frame then contributes to
the frames at the offsets ``range(t_start, t_end, t_step)`` from it with a Gaussian weight (width ``sigma``) around
that position, and each output frame is the weighted mean of what it receives (as RETURNN, per seq here).
"""

from __future__ import annotations

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.time import _int, _shift_time, _time_source


class TimeWarpLayer(Layer):
    """``time_warp``: ``t_start``, ``t_end``, ``t_step`` (the offsets), ``sigma``, ``input_window`` (frames the
    warp filter sees, centred), ``input_proj`` (optional projection before it). ``W_warp`` is (input_window,
    features) applied as Theano's true convolution (flipped), as RETURNN's ``conv2d``."""

    options = frozenset({"t_start", "t_end", "t_step", "sigma", "input_window", "input_proj"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Warp positions, Gaussian weights, weighted means."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if src.sparse or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        start, end = _int(self, "t_start", None, -10**9), _int(self, "t_end", None, -10**9)
        offsets = list(range(start, end, _int(self, "t_step", None, 1)))
        span = end - start - 1
        if span < 1 or not offsets:
            raise self.error(f"t_start {start} and t_end {end} must span at least two offsets")
        window = _int(self, "input_window", None, 1)
        sigma = self.float_opt("sigma", 1.0)
        n_in = self.feature_dim(src)
        mask = ops.expand_dims(src.mask(), -1)
        x = src.tensor * mask
        warp_in, n_warp = x, n_in
        proj = self.opts.get("input_proj")
        if proj:
            n_warp = _int(self, "input_proj", None, 1)
            warp_in = ops.dot(x, self.param("W_warp_in_proj", (n_in, n_warp), "glorot_uniform"))
        w = self.param("W_warp", (window, n_warp), self.opts.get("forward_weights_init", "glorot_normal"))
        right = window // 2
        left = window - right - 1
        # the true convolution: tap k of the window reads frame t + k - left with the flipped filter row
        flipped = w[::-1, ::-1]
        warp = None
        for k in range(window):
            tap = ops.reduce(_shift_time(ops, warp_in, left - k) * flipped[k], "sum", -1)
            warp = tap if warp is None else warp + tap
        position = ops.sigmoid(warp) * np.float32(span) + np.float32(start)  # (B, T) in [t_start, t_end - 1]
        width = np.float32(sigma * span / 2.0)
        total, weight_sum = ops.zeros_like(x), ops.zeros_like(mask)
        for offset in offsets:
            weight = ops.expand_dims(ops.exp(np.float32(-0.5) * ops.square((np.float32(offset) - position) / width)),
                                     -1) * mask
            total = total + _shift_time(ops, x * weight, offset)
            weight_sum = weight_sum + _shift_time(ops, weight, offset)
        out = total / ops.maximum(weight_sum, np.float32(1e-4)) * mask
        return src.with_tensor(out, dim=n_in)
