"""Theano-era layers that look at neighbouring frames of each seq: window_context (the last frames, concatenated
or averaged) and gaussian_filter_1d (Gaussian smoothing over time or features, edges repeated)."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.time import _int, _shift_time, _time_source


def _clamped_frame(ops: Ops, x: Any, lens: Any, offset: int) -> Any:
    """``x`` (B, T, D) with frame t replaced by frame clip(t + offset, 0, length - 1) of its seq."""
    batch, time = ops.dynamic_dim(x, 0), ops.dynamic_dim(x, 1)
    last = ops.expand_dims(ops.maximum(ops.cast(lens, "int32") - 1, 0), 1)  # (B, 1)
    idx = ops.cast(ops.zeros([batch, 1]), "int32") + ops.expand_dims(ops.arange(time), 0) + offset
    idx = ops.minimum(ops.maximum(idx, 0), last)
    full = ops.expand_dims(idx, 2) + ops.cast(ops.zeros_like(x), "int32")
    return ops.take_along_axis(x, full, axis=1)


class WindowContextLayer(Layer):
    """``window_context``: each frame with the ``window`` - 1 frames before it (``direction`` -1, default) or
    after it (1) in its seq, zeros beyond the seq: ``average`` "concat" concatenates them (oldest first for -1,
    farthest first for 1; dim ``window`` · n), "uniform" averages them, "exponential" weights frame k steps away by
    1 / (k + 1). With ``n_out`` the input is first projected to ``n_out``, ``tanh(x W + b)`` (so "concat" gives
    ``window`` · n_out, as RETURNN; RETURNN created W and b and never
    registered them, so they stayed random; here they are trained). RETURNN's ``scan=False`` concatenated whatever
    ``average`` said; here ``average`` decides, and ``scan`` (how RETURNN computed it) is accepted."""

    options = frozenset({"window", "average", "direction", "scan"})
    AVERAGES = ("concat", "uniform", "exponential")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the projection's size: RETURNN's n_out option; with "concat" the output is window times that
        self.units = self.n_out
        window = self.opts.get("window")
        if self.n_out is not None and self.opts.get("average", "concat") == "concat" and isinstance(window, int):
            self.n_out = self.n_out * window

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Gather the context frames."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if src.sparse or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        window = _int(self, "window", None, 1)
        average = self.opts.get("average", "concat")
        if average not in self.AVERAGES:
            raise self.error(f"average {average!r}: use {', '.join(self.AVERAGES)}")
        direction = self.opts.get("direction", -1)
        if direction not in (-1, 1):
            raise self.error(f"direction must be -1 (past frames) or 1 (future frames), got {direction!r}")
        mask = ops.expand_dims(src.mask(), -1)
        x, dim = src.tensor * mask, self.feature_dim(src)
        if self.units is not None:
            units = self.units
            w = self.param("W", (dim, units), self.opts.get("forward_weights_init", "glorot_uniform"))
            b = self.param("b", (units,), self.opts.get("bias_init", "zeros"))
            x, dim = ops.tanh(ops.dot(x, w) + b) * mask, units
        if direction == 1:
            x = ops.reverse_sequence(x, src.seq_lens)
        # frames k = window - 1 .. 0 steps back, in the order RETURNN's context_batched concatenates them
        frames = [_shift_time(ops, x, k) for k in range(window - 1, -1, -1)]
        if average == "concat":
            out, out_dim = ops.concat(frames, axis=-1), dim * window
        else:
            weights = [1.0 / window] * window if average == "uniform" else [1.0 / (window - i) for i in range(window)]
            out = frames[0] * np.float32(weights[0])
            for frame, weight in zip(frames[1:], weights[1:]):
                out = out + frame * np.float32(weight)
            out_dim = dim
        if direction == 1:
            out = ops.reverse_sequence(out, src.seq_lens)
        return src.with_tensor(out * mask, dim=out_dim)


class GaussianFilter1DLayer(Layer):
    """``gaussian_filter_1d``: the (concatenated) sources smoothed by a normalised Gaussian of ``sigma`` over
    2 · ``window_radius`` + 1 taps (default radius 40) along ``axis`` 0 (time, within each seq) or 2 (features),
    the edge values repeated beyond the ends (mode "nearest"; RETURNN's time edge was the padded batch's last
    frame, here each seq's own)."""

    options = frozenset({"sigma", "axis", "window_radius"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Smooth."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if src.sparse or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        sigma = self.float_opt("sigma", 0.0)
        if sigma <= 0:
            raise self.error(f"needs sigma > 0, got {self.opts.get('sigma')!r}")
        radius = _int(self, "window_radius", 40, 0)
        axis = self.opts.get("axis")
        taps = np.exp(-0.5 * np.arange(-radius, radius + 1) ** 2 / sigma**2)
        taps = (taps / taps.sum()).astype("float32")
        mask = ops.expand_dims(src.mask(), -1)
        x = src.tensor * mask
        if axis in (0, "T", "t"):
            out = None
            for k, tap in zip(range(-radius, radius + 1), taps):
                part = _clamped_frame(ops, x, src.seq_lens, k) * tap
                out = part if out is None else out + part
        elif axis in (2, "F", "f"):
            dim = self.feature_dim(src)
            idx = np.clip(np.arange(dim)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, dim - 1)
            matrix = np.zeros((dim, dim), "float32")  # input feature -> output feature
            for j in range(dim):
                np.add.at(matrix[:, j], idx[j], taps)
            out = ops.dot(x, ops.constant(matrix))
        else:
            raise self.error(f"axis {axis!r}: use 0 (time) or 2 (features)")
        return src.with_tensor(out * mask, dim=src.dim)
