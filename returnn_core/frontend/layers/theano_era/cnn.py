"""The Theano era's frame-wise convolution ``conv`` (the manual's NetworkCNNLayer ``CNN``/``NewConv``).

Each frame is one small image: its features as (rows = ``d_row``, cols = n_in / ``d_row``) pixels of one channel,
row by row; or, from a ``conv`` source, that layer's (rows, cols, ``n_features``) maps. Every frame of every seq is
convolved, pooled and activated on its own (the time axis only carries the frames); the output frame is the maps
flattened as (row, col, feature), so ``n_out`` = ``n_features * out_rows * out_cols``. Padded frames are 0.

The TF era's ``conv`` (``filter_size``, ...) is another class of the same name: :class:`~returnn_core.frontend.
layers.conv.ConvLayer` builds this one where the options are this class's (:data:`THEANO_ONLY`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput

#: ``LayerOutput.extra`` key: (rows, cols, n_features) of a ``conv`` output's maps, read by a following ``conv``
IMAGE = "cnn_image"
OPTIONS = frozenset({"n_features", "filter", "d_row", "border_mode", "conv_stride", "pool_size", "filter_dilation",
                     "ignore_border", "pool_stride", "pool_padding", "mode", "factor", "base", "transpose",
                     "force_sample"})
#: the options that make a ``conv`` layer this class rather than the TF era's (which has none of them)
THEANO_ONLY = OPTIONS
MODES = ("max", "sum", "avg")
# stands in for -inf where max pooling's partial windows (ignore_border False) reach past the image
_LOWEST = -3.0e38


def _ints(layer: Layer, key: str, default: Any, *, minimum: int) -> tuple[int, int]:
    value = layer.opts.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)):
        raise layer.error(f"{key} must be an integer or two integers (rows, cols) >= {minimum}, got {value!r}")
    return int(value[0]), int(value[1])


def _inside_share(n: int, size: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Per pooling window on one axis: the share of its ``size`` pixels that lie inside the image of ``n``."""
    starts = np.arange(out) * stride
    return (np.minimum(starts + size, pad + n) - np.maximum(starts, pad)) / size


def _pool_len(n: int, size: int, stride: int, ignore_border: bool) -> int:
    """Theano's pooled length of ``n`` (after pool_padding)."""
    if ignore_border:
        return (n - size) // stride + 1 if n >= size else 0
    if stride >= size:
        return (n - 1) // stride + 1
    return max(0, (n - 1 - size + stride) // stride) + 1


class CnnLayer(Layer):
    """``conv`` (Theano era): ``n_features`` maps of ``filter`` (rows, cols) over each frame's image, with
    ``border_mode`` valid/full/same, ``conv_stride`` and ``filter_dilation``; then ``mode`` max/sum/avg pooling
    over ``pool_size`` with ``pool_stride`` (0: the pool size), ``ignore_border`` and ``pool_padding``; then the
    bias and ``activation`` (tanh). ``W`` is (n_features, channels, rows, cols) as in RETURNN, applied as Theano's
    true convolution (the filter flipped)."""

    options = OPTIONS
    default_activation = "tanh"
    handles_activation = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, why in (("base", "sharing another layer's filters; use reuse_params"),
                         ("transpose", "the transposed convolution"),
                         ("force_sample", "dropout at evaluation")):
            if self.opts.get(key):
                raise self.error(f"{key} ({why}) is not supported")
        n_features = self.opts.get("n_features", 1)
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise self.error(f"n_features must be a positive integer, got {n_features!r}")
        self.n_features = n_features
        self.filter = _ints(self, "filter", 1, minimum=1)
        self.conv_stride = _ints(self, "conv_stride", (1, 1), minimum=1)
        self.dilation = _ints(self, "filter_dilation", (1, 1), minimum=1)
        # the manual's signature says pool_size=(1, 1) (no pooling); its text and the 2017 code said (2, 2)
        self.pool_size = _ints(self, "pool_size", (1, 1), minimum=1)
        stride = _ints(self, "pool_stride", 0, minimum=0)
        self.pool_stride = tuple(s or p for s, p in zip(stride, self.pool_size))
        self.pool_padding = _ints(self, "pool_padding", (0, 0), minimum=0)
        self.ignore_border = bool(self.opts.get("ignore_border", 1))
        if any(self.pool_padding) and not self.ignore_border:
            raise self.error("pool_padding needs ignore_border=True (as Theano's pooling)")
        self.border_mode = self.opts.get("border_mode", "valid")
        if self.border_mode not in ("valid", "full", "same"):
            raise self.error(f"border_mode must be 'valid', 'full' or 'same', got {self.border_mode!r}")
        self.mode = self.opts.get("mode", "max")
        if self.mode not in MODES:
            extra = " (fractional max pooling needs RETURNN's CUDA op)" if self.mode == "fmp" else ""
            raise self.error(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}{extra}")
        self.factor = self.float_opt("factor", 1.0)

    # -- shapes ---------------------------------------------------------------------------------------------
    def _image(self, sources: list[LayerOutput]) -> tuple[list[LayerOutput], int, int, int]:
        """The sources and their per-frame image (rows, cols, channels)."""
        if not sources:
            raise self.error("needs a source")
        if any(s.sparse or not s.has_time for s in sources):
            raise self.error("needs dense (batch, time, feature) inputs")
        shapes = [s.extra.get(IMAGE) for s in sources]
        if all(shape is not None for shape in shapes):  # maps of conv layers, stacked on the channel axis
            if len({shape[:2] for shape in shapes}) != 1:
                raise self.error(f"the conv sources' maps must have the same (rows, cols), got {shapes}")
            rows, cols, _ = shapes[0]
            return sources, rows, cols, sum(shape[2] for shape in shapes)
        if len(sources) != 1:
            raise self.error("takes one source, or only conv layers (whose maps it stacks)")
        dim = self.feature_dim(sources[0])
        d_row = self.opts.get("d_row", -1)
        if isinstance(d_row, bool) or not isinstance(d_row, int) or d_row == 0 or d_row < -1:
            raise self.error(f"d_row must be a positive integer or -1, got {d_row!r}")
        if d_row == -1:  # as RETURNN's code: a square image, rows = int(sqrt(n_in))
            d_row = int(math.sqrt(dim))
        if dim % d_row:
            raise self.error(f"the input dim {dim} is not a multiple of d_row {d_row}; set d_row to the image's rows")
        return sources, d_row, dim // d_row, 1

    def _conv_pads(self, n: int, axis: int) -> tuple[int, int, int]:
        """(pad before, pad after, output length) of the convolution on one image axis."""
        extent = (self.filter[axis] - 1) * self.dilation[axis] + 1
        if self.border_mode == "valid":
            before = after = 0
        elif self.border_mode == "full":
            before = after = extent - 1
        else:  # "same" keeps the size, as the manual says (RETURNN's crop of the full conv did so for odd filters)
            before = (extent - 1) // 2
            after = extent - 1 - before
        out = (n + before + after - extent) // self.conv_stride[axis] + 1
        if out < 1:
            raise self.error(f"the filter {self.filter} does not fit the image of {n} on axis "
                             f"{'rows' if axis == 0 else 'cols'}; use smaller filters or border_mode 'same'/'full'")
        return before, after, out

    # -- computation ----------------------------------------------------------------------------------------
    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Convolve, pool, add the bias and activate every frame's image."""
        ops = ctx.ops
        sources, rows, cols, channels = self._image(sources)
        x = ops.concat([ops.reshape(s.tensor, (-1, rows, cols, s.extra.get(IMAGE, (0, 0, 1))[2]))
                        for s in sources], axis=3) if len(sources) > 1 else \
            ops.reshape(sources[0].tensor, (-1, rows, cols, channels))  # (B*T, rows, cols, channels)
        first = sources[0]
        (rb, ra, conv_rows), (cb, ca, conv_cols) = self._conv_pads(rows, 0), self._conv_pads(cols, 1)
        fr, fc = self.filter
        pool_r, pool_c = self.pool_size
        fan_out = self.n_features * fr * fc / (pool_r * pool_c)
        bound = self.factor * math.sqrt(6.0 / (channels * fr * fc + fan_out))
        w = self.param("W", (self.n_features, channels, fr, fc),
                       self.opts.get("forward_weights_init", f"uniform:{bound!r}"))
        b = self.param("b", (self.n_features,), self.opts.get("bias_init", "zeros"))
        filters = ops.transpose(w[:, :, ::-1, ::-1], (2, 3, 1, 0))  # (rows, cols, channels, n_features)
        if rb or ra or cb or ca:
            x = ops.pad(x, [(0, 0), (rb, ra), (cb, ca), (0, 0)])
        z = ops.conv(x, filters, strides=self.conv_stride, dilation=self.dilation, padding="VALID")
        z, out_rows, out_cols = self._pool(ops, z, conv_rows, conv_cols)
        z = z + b
        if self.activation is not None:
            z = self.activation(ops, z)
        n_out = self.n_features * out_rows * out_cols
        batch, time = ops.dynamic_dim(first.tensor, 0), ops.dynamic_dim(first.tensor, 1)
        y = ops.reshape(z, (batch, time, n_out)) * ops.expand_dims(first.mask(), 2)
        out = LayerOutput(y, first.seq_lens, n_out)
        out.extra[IMAGE] = (out_rows, out_cols, self.n_features)
        return out

    def _pool(self, ops: Ops, z: Any, rows: int, cols: int) -> tuple[Any, int, int]:
        """Theano's pooling of the (N, rows, cols, maps) ``z`` and the pooled (rows, cols)."""
        if self.pool_size == (1, 1) and self.pool_stride == (1, 1) and not any(self.pool_padding):
            return z, rows, cols
        pads, sizes = [], []
        for n, size, stride, pad in zip((rows, cols), self.pool_size, self.pool_stride, self.pool_padding):
            out = _pool_len(n + 2 * pad, size, stride, self.ignore_border)
            if out < 1:
                raise self.error(f"pool_size {self.pool_size} is larger than the conv output ({rows}, {cols}); "
                                 "set ignore_border=False or a smaller pool_size")
            # the partial windows at the end (ignore_border False) as windows over padding
            pads.append((pad, max(0, (out - 1) * stride + size - n - 2 * pad) + pad))
            sizes.append(out)
        paddings = [(0, 0), *pads, (0, 0)]
        window = {"size": self.pool_size, "strides": self.pool_stride, "dilation": (1, 1), "padding": "VALID"}
        if self.mode == "max":
            # Theano's pool_padding is zeros, its partial windows take only the image's own pixels
            z = ops.pad(z, [(0, 0), *[(p, p) for p, _ in pads], (0, 0)])
            z = ops.pad(z, [(0, 0), *[(0, a - p) for p, a in pads], (0, 0)], value=_LOWEST)
            return ops.pool(z, mode="max", **window), sizes[0], sizes[1]
        mean = ops.pool(ops.pad(z, paddings), mode="avg", **window)
        if self.mode == "sum":
            return mean * float(self.pool_size[0] * self.pool_size[1]), sizes[0], sizes[1]
        # "avg" is Theano's average_exc_pad: divided by the share of the window's pixels inside the image
        share = [_inside_share(n, size, stride, pad, out)
                 for n, size, stride, pad, out in zip((rows, cols), self.pool_size, self.pool_stride, self.pool_padding,
                                                      sizes)]
        return mean / ops.constant(np.outer(share[0], share[1])[:, :, None].astype("float32")), sizes[0], sizes[1]


class ResNetLayer(Layer):
    """``resnet`` (NetworkCNNTLayer.ResNet): the shortcut connection of two ``conv`` layers with maps of one shape,
    ``relu(x + f(x))`` per pixel; its maps are those of the second source. As in RETURNN it has no parameters, and
    the conv options it accepts (border_mode, pool_size, ...) change nothing."""

    options = OPTIONS

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Add the two sources' maps, then relu."""
        ops = ctx.ops
        shapes = [s.extra.get(IMAGE) for s in sources]
        if len(sources) != 2 or any(shape is None for shape in shapes):
            raise self.error("needs exactly two conv layers as sources (x and f(x))")
        if shapes[0] != shapes[1]:
            raise self.error(f"the two sources' maps (rows, cols, features) differ: {shapes[0]} and {shapes[1]}")
        first = sources[0]
        out = LayerOutput(ops.relu(first.tensor + sources[1].tensor), first.seq_lens, first.dim)
        out.extra[IMAGE] = shapes[1]
        return out
