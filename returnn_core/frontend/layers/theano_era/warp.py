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


class TimeWarpGlobalLayer(Layer):
    """``time_warp_global``: a cumulative warp of each seq's time axis: frame s gets the position ``sum_{s' <= s}
    1 / (1 + c_s') - 1`` with the compression ``c = min(relu(x W_warp + b_warp), 10)``, scaled so the seq's last
    frame sits at length - 1 (``renorm_time``); output frame t is the Gaussian-weighted mean (variance ``sigma2``)
    of the ``window_size`` frames from ``floor(t * (length - window_size + 1) / (length - 1))`` on, by their
    positions' distance to t, normalised by at most ``window_size``. RETURNN did this over the padded batch (one
    scale for all seqs, windows over the padded length); here each seq over its own frames. ``renorm_time=False``
    (where RETURNN's output length changed without its index) gives a clear error."""

    options = frozenset({"renorm_time", "window_size", "sigma2"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Warp positions, then windowed Gaussian means."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if src.sparse or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        if not self.opts.get("renorm_time", True):
            raise self.error("renorm_time=False (an output of another length, whose index RETURNN never set) is not "
                             "supported")
        window = _int(self, "window_size", 30, 1)
        sigma2 = self.float_opt("sigma2", 0.5)
        n_in = self.feature_dim(src)
        mask = src.mask()
        x = src.tensor * ops.expand_dims(mask, -1)
        w = self.param("W_warp", (n_in, 1), self.opts.get("forward_weights_init", f"uniform:{(1.0 / n_in) ** 0.5!r}"))
        b = self.param("b_warp", (1,), "zeros")
        compress = ops.minimum(ops.relu(ops.dot(x, w) + b)[..., 0], np.float32(10.0))  # (B, T)
        time = ops.dynamic_dim(x, 1)
        steps = ops.arange(time)
        upper = ops.cast(ops.less(ops.expand_dims(steps, 1), ops.expand_dims(steps, 0) + 1), "float32")  # s' <= s
        position = ops.batch_matmul(ops.expand_dims(mask / (compress + 1.0), 1),
                                    ops.expand_dims(upper, 0))[:, 0] - 1.0  # (B, T): cumulative sum - 1
        lens = ops.cast(src.seq_lens, "int32")
        last = ops.maximum(lens - 1, 0)
        end_pos = ops.take_along_axis(position, ops.expand_dims(last, 1), axis=1)  # (B, 1)
        length = ops.cast(ops.expand_dims(lens, 1), "float32")
        position = position * (length - 1.0) / ops.maximum(end_pos, 1.0)
        target = ops.cast(ops.expand_dims(steps, 0), "float32")  # (1, T)
        start = ops.floor(target * (length - np.float32(window - 1)) / ops.maximum(length - 1.0, 1.0))
        start = ops.cast(ops.maximum(start, 0.0), "int32")  # (B, T)
        total, weight_sum = ops.zeros_like(x), ops.zeros_like(mask)
        for k in range(window):
            frame = start + k
            valid = ops.cast(ops.less(frame, ops.expand_dims(lens, 1)), "float32")
            frame = ops.minimum(frame, ops.cast(time, "int32") - 1)
            weight = ops.exp(-ops.square(target - ops.take_along_axis(position, frame, axis=1))
                             / np.float32(2.0 * sigma2)) * valid
            frames = ops.take_along_axis(x, ops.expand_dims(frame, 2) + ops.cast(ops.zeros_like(x), "int32"), axis=1)
            total = total + frames * ops.expand_dims(weight, -1)
            weight_sum = weight_sum + weight
        scale = ops.minimum(1.0 / ops.maximum(weight_sum, np.float32(1e-5)), np.float32(window))
        return src.with_tensor(total * ops.expand_dims(scale * mask, -1), dim=n_in)
