"""The image layers of RETURNN's Theano era (the manual's NetworkTwoDLayer): ``1Dto2D``, ``1Dto2D_fixed_size``,
``2Dto1D`` and ``conv2``.

RETURNN held an image batch as (height, width, batch, channels) with a (batch, 2) matrix of each image's height and
width. Here it is (batch, width, height, channels): the width is the time axis (``seq_lens`` are the widths, as
RETURNN's index was), the heights ride along in ``LayerOutput.extra["heights"]``. Everything outside an image's
own size is 0.
"""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput

HEIGHTS = "heights"


def image(src: LayerOutput, ops: Ops, layer: Layer) -> tuple[Any, Any, Any]:
    """``src`` as an image batch: the (B, W, H, C) tensor, the widths and the heights (B,) int32."""
    if not src.has_time or src.sparse or ops.ndim(src.tensor) != 4:
        raise layer.error("needs an image input (batch, width, height, channels), e.g. from a 1Dto2D layer")
    heights = src.extra.get(HEIGHTS)
    if heights is None:
        heights = ops.cast(ops.zeros_like(src.tensor[:, 0, 0, 0]), "int32") + ops.cast(
            ops.dynamic_dim(src.tensor, 2), "int32")
    return src.tensor, ops.cast(src.seq_lens, "int32"), heights


def image_output(ops: Ops, x: Any, widths: Any, heights: Any, dim: int) -> LayerOutput:
    """(B, W, H, C) ``x`` zeroed outside each image's size, as a layer output."""
    mask_w = ops.sequence_mask(widths, ops.dynamic_dim(x, 1))
    mask_h = ops.sequence_mask(heights, ops.dynamic_dim(x, 2))
    mask = ops.expand_dims(ops.expand_dims(mask_w, 2) * ops.expand_dims(mask_h, 1), 3)
    out = LayerOutput(x * mask, widths, dim)
    out.extra[HEIGHTS] = heights
    return out


def _pair(layer: Layer, key: str, default: Any) -> tuple[int, int]:
    value = layer.opts.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise layer.error(f"{key} must be two positive integers (height, width), got {value!r}")
    return int(value[0]), int(value[1])


class OneDToTwoDLayer(Layer):
    """``1Dto2D``: the frames of each seq as an image, from two sources: the features and a source of two values
    per seq, (height, width) (RETURNN's ``sizes`` data); frame ``y * width + x`` becomes pixel (y, x), the feature
    dim the channels."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Fold each seq into its image."""
        ops = ctx.ops
        if len(sources) != 2:
            raise self.error("needs two sources: the features and the image sizes (height, width) of each seq")
        src, sizes_src = sources
        if not src.has_time or src.sparse or src.feature_ndim != 1:
            raise self.error("its first source must be (batch, time, feature) features")
        sizes = sizes_src.tensor
        if ops.ndim(sizes) == 3:
            sizes = sizes[:, :, 0]
        if ops.ndim(sizes) != 2:
            raise self.error("its second source must hold two values (height, width) per seq")
        sizes = ops.cast(sizes, "int32")
        heights, widths = sizes[:, 0], sizes[:, 1]
        x = src.tensor
        dim = self.feature_dim(src)
        batch = ops.dynamic_dim(x, 0)
        max_w, max_h = ops.reduce(widths, "max"), ops.reduce(heights, "max")
        col = ops.expand_dims(ops.expand_dims(ops.arange(max_w), 0), 2)  # (1, W, 1)
        row = ops.expand_dims(ops.expand_dims(ops.arange(max_h), 0), 1)  # (1, 1, H)
        w_b = ops.expand_dims(ops.expand_dims(widths, 1), 2)
        h_b = ops.expand_dims(ops.expand_dims(heights, 1), 2)
        inside = ops.cast(ops.less(col, w_b), "int32") * ops.cast(ops.less(row, h_b), "int32")
        frames = ops.dynamic_dim(x, 1)
        idx = ops.minimum((row * w_b + col) * inside, ops.cast(frames, "int32") - 1)  # (B, W, H)
        flat = ops.reshape(idx, (batch, -1))
        flat = ops.expand_dims(flat, 2) + ops.cast(ops.zeros([batch, ops.dynamic_dim(flat, 1), dim]), "int32")
        pixels = ops.reshape(ops.take_along_axis(x, flat, axis=1), (batch, max_w, max_h, dim))
        return image_output(ops, pixels, widths, heights, dim)


class OneDToTwoDFixedSizeLayer(Layer):
    """``1Dto2D_fixed_size``: each frame a column of the image: height = the feature dim and 1 channel, or with
    ``d_row`` > 0 height ``d_row`` and feature dim / ``d_row`` channels; the width is the seq length."""

    options = frozenset({"pad_x", "pad_y", "d_row"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Stand the frames up as columns."""
        ops = ctx.ops
        for key in ("pad_x", "pad_y"):
            if self.opts.get(key, 0):
                # RETURNN shifts the frames by pad_x but keeps the count, so its conv2 crop cuts the last ones off
                raise self.error(f"{key} is not supported (RETURNN's padded index is not a per-seq prefix); pad the "
                                 "input with frame_concat_zero instead")
        src = self.single_source(sources)
        if not src.has_time or src.sparse or src.feature_ndim != 1:
            raise self.error("needs a (batch, time, feature) input")
        dim = self.feature_dim(src)
        d_row = self.opts.get("d_row", -1)
        if isinstance(d_row, bool) or not isinstance(d_row, int):
            raise self.error(f"d_row must be an integer, got {d_row!r}")
        rows, channels = (d_row, dim // d_row) if d_row > 0 else (dim, 1)
        if rows * channels != dim:
            raise self.error(f"the feature dim {dim} is not a multiple of d_row {d_row}")
        x = src.tensor
        pixels = ops.reshape(x, (*ops.shape(x)[:2], rows, channels))
        heights = ops.cast(ops.zeros_like(x[:, 0, 0]), "int32") + rows
        return image_output(ops, pixels, ops.cast(src.seq_lens, "int32"), heights, channels)


class TwoDToOneDLayer(Layer):
    """``2Dto1D``: an image back to frames (one per column): ``collapse`` "mean" (default; over the image's own
    rows, RETURNN divided by the batch's largest height) or "sum"/True over the rows, "flatten" (all pixels row by
    row as frames, of the padded batch image as in RETURNN) or "pad_N" (N rows, cut or zero-padded, as features
    channel-major: feature c * N + y); ``maxout`` first takes the maximum over the channels."""

    options = frozenset({"collapse", "maxout", "transpose"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Collapse the rows."""
        ops = ctx.ops
        if self.opts.get("transpose"):
            raise self.error("transpose is not supported (RETURNN then kept the widths as index of the swapped axes)")
        src = self.single_source(sources)
        x, widths, heights = image(src, ops, self)
        dim = self.feature_dim(src)
        if self.opts.get("maxout"):
            x, dim = ops.reduce(x, "max", 3, keepdims=True), 1
        collapse = self.opts.get("collapse", "mean")
        if collapse in ("sum", True, "mean"):
            out = ops.reduce(x, "sum", 2)
            if collapse == "mean":
                out = out / ops.expand_dims(ops.expand_dims(ops.maximum(ops.cast(heights, "float32"), 1.0), 1), 2)
            return self._frames(ops, out, widths, dim)
        if collapse == "flatten":
            batch = ops.dynamic_dim(x, 0)
            rows = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, -1, dim))
            lens = ops.cast(ops.zeros([batch]), "int32") + ops.cast(ops.dynamic_dim(rows, 1), "int32")
            return LayerOutput(rows, lens, dim)
        if isinstance(collapse, str) and collapse.startswith("pad_") and collapse[4:].isdigit():
            n = int(collapse[4:])
            extra = ops.maximum(n - ops.cast(ops.dynamic_dim(x, 2), "int32"), 0)
            zeros = ops.zeros([ops.dynamic_dim(x, 0), ops.dynamic_dim(x, 1), extra, dim])
            x = ops.concat([x, zeros], axis=2)[:, :, :n]
            out = ops.reshape(ops.transpose(x, (0, 1, 3, 2)), (ops.dynamic_dim(x, 0), -1, dim * n))
            return self._frames(ops, out, widths, dim * n)
        raise self.error(f"collapse {collapse!r}: use 'mean', 'sum', 'flatten' or 'pad_N'")

    @staticmethod
    def _frames(ops: Ops, out: Any, widths: Any, dim: int) -> LayerOutput:
        mask = ops.expand_dims(ops.sequence_mask(widths, ops.dynamic_dim(out, 1)), 2)
        return LayerOutput(out * mask, widths, dim)


class ConvPoolLayer2(Layer):
    """``conv2``: valid convolution of each image with ``n_features`` filters of ``filter`` (height, width) and
    ``filter_dilation``, bias, max pooling over ``pool_size`` (height, width) blocks, then ``activation`` (tanh);
    an image of (h, w) gives ((h - fh + 1) // ph, (w - fw + 1) // pw). Where an output would be empty (or with
    ``padding``) the images are zero-padded to at least (ph + fh - 1, pw + fw - 1) first, as in RETURNN.
    ``W`` is (n_features, n_in, fh, fw) as in RETURNN."""

    options = frozenset({"n_features", "filter", "pool_size", "filter_dilation", "padding", "base"})
    default_activation = "tanh"
    handles_activation = True

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Convolve, pool and activate each image."""
        ops = ctx.ops
        if self.opts.get("base"):
            raise self.error("base (sharing another layer's filters) is not supported; use reuse_params")
        n_features = self.opts.get("n_features")
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise self.error(f"needs n_features, a positive integer, got {n_features!r}")
        fh, fw = _pair(self, "filter", None)
        ph, pw = _pair(self, "pool_size", None)
        dh, dw = _pair(self, "filter_dilation", (1, 1))
        src = self.single_source(sources)
        x, widths, heights = image(src, ops, self)
        n_in = self.feature_dim(src)
        w = self.param("W", (n_features, n_in, fh, fw), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (n_features,), self.opts.get("bias_init", "zeros"))
        eh, ew = (fh - 1) * dh + 1, (fw - 1) * dw + 1  # the dilated filter's extent
        min_h, min_w = ph + eh - 1, pw + ew - 1
        small = ops.cast(ops.less(ops.minimum(ops.reduce(heights, "min") - min_h, ops.reduce(widths, "min") - min_w),
                                  0), "int32")
        grow = 1 if self.opts.get("padding") else small
        heights = heights + grow * ops.maximum(min_h - heights, 0)
        widths = widths + grow * ops.maximum(min_w - widths, 0)
        x = _pad_axis(ops, _pad_axis(ops, x, 1, ops.reduce(widths, "max")), 2, ops.reduce(heights, "max"))
        filters = ops.transpose(w, (3, 2, 1, 0))  # (fw, fh, n_in, n_features): our axes are (B, W, H, C)
        z = ops.conv(x, filters, strides=(1, 1), dilation=(dw, dh), padding="VALID") + b
        if (ph, pw) != (1, 1):
            z = ops.pool(z, mode="max", size=(pw, ph), strides=(pw, ph), dilation=(1, 1), padding="VALID")
        if self.activation is not None:
            z = self.activation(ops, z)
        out_w = ops.maximum(ops.floordiv(widths - (ew - 1), pw), 0)
        out_h = ops.maximum(ops.floordiv(heights - (eh - 1), ph), 0)
        return image_output(ops, z, out_w, out_h, n_features)


def _pad_axis(ops: Ops, x: Any, axis: int, size: Any) -> Any:
    """``x`` zero-padded on ``axis`` to at least ``size``."""
    shape = ops.shape(x)
    shape[axis] = ops.maximum(ops.cast(size, "int32") - ops.cast(ops.dynamic_dim(x, axis), "int32"), 0)
    return ops.concat([x, ops.zeros(shape)], axis=axis)

