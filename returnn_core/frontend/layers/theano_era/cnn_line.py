"""``conv_1d`` (the manual's NetworkCNNTLayer ``ConcatConv``): a convolution over each seq as one line image.

The frames of a seq, side by side, are the image's columns: its features are (rows = ``d_row``, channels =
dim / ``d_row``), row by row (``d_row`` -1: all features are rows of one channel); a ``conv_1d`` source gives its
maps. Filters (rows, cols) slide over rows and time, pooling reduces both; each output frame is the maps' column
flattened as (feature, row), so ``n_out`` = ``n_features * out_rows``.
"""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.cnn import OPTIONS, CnnLayer, _pool_len

#: ``LayerOutput.extra`` key: (rows, n_features) of a ``conv_1d`` output's columns, read by a following ``conv_1d``
LINE = "cnn_line"


class ConcatConvLayer(CnnLayer):
    """``conv_1d``: ``n_features`` maps of ``filter`` (rows, time) over each seq's line image, ``border_mode``
    valid/full/same, ``conv_stride``, ``filter_dilation``; ``mode`` max/sum/avg pooling over ``pool_size`` (rows,
    time) with ``pool_stride`` (complete windows in the padded batch, which may reach past a seq's end, as in
    RETURNN; ``padding`` adds zero frames up to a multiple of the time pool first); bias and ``activation``
    (tanh). A pooled frame is present when its window starts inside the seq (RETURNN's pooled index); a valid
    convolution keeps the frames whose filter lies inside the seq (RETURNN's index kept filter // 2 more for
    shorter seqs). ``W`` is (n_features, channels, rows, cols), applied as Theano's true convolution."""

    options = OPTIONS | {"padding"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.ignore_border or any(self.pool_padding):
            raise self.error("conv_1d pools complete windows only: ignore_border=False and pool_padding are not "
                             "supported")

    def _line(self, sources: list[LayerOutput], ctx: Context) -> tuple[LayerOutput, Any, int, int]:
        """The source, its (B, rows, T, channels) line images (zero on padding), rows and channels."""
        ops = ctx.ops
        if len(sources) != 1 or sources[0].sparse or not sources[0].has_time:
            raise self.error("takes one dense source with a time axis")
        src = sources[0]
        x = src.tensor * ops.expand_dims(src.mask(), -1)
        batch, time = ops.dynamic_dim(x, 0), ops.dynamic_dim(x, 1)
        line = src.extra.get(LINE)
        if line is not None:  # a conv_1d source: its columns are (feature, row)
            rows, channels = line
            return src, ops.transpose(ops.reshape(x, (batch, time, channels, rows)), (0, 3, 1, 2)), rows, channels
        dim = self.feature_dim(src)
        d_row = self.opts.get("d_row", -1)
        if isinstance(d_row, bool) or not isinstance(d_row, int) or d_row == 0 or d_row < -1:
            raise self.error(f"d_row must be a positive integer or -1, got {d_row!r}")
        rows = dim if d_row == -1 else d_row
        if dim % rows:
            raise self.error(f"the input dim {dim} is not a multiple of d_row {d_row}")
        channels = dim // rows
        return src, ops.transpose(ops.reshape(x, (batch, time, rows, channels)), (0, 2, 1, 3)), rows, channels

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Convolve, pool, add the bias and activate each seq's line image."""
        ops = ctx.ops
        src, x, rows, channels = self._line(sources, ctx)
        fr, ft = self.filter
        (rb, ra, conv_rows) = self._conv_pads(rows, 0)
        extent = (ft - 1) * self.dilation[1] + 1
        tb, ta = {"valid": (0, 0), "full": (extent - 1, extent - 1),
                  "same": ((extent - 1) // 2, extent - 1 - (extent - 1) // 2)}[self.border_mode]
        pool_r, pool_t = self.pool_size
        if self.opts.get("padding") and pool_t > 1:  # RETURNN's zero frames: pool_t - T mod pool_t of them
            time = ops.cast(ops.dynamic_dim(x, 2), "int32")
            extra = pool_t - (time - ops.floordiv(time, pool_t) * pool_t)
            x = ops.concat([x, ops.zeros([ops.dynamic_dim(x, 0), rows, extra, channels])], axis=2)
        fan_out = self.n_features * fr * ft / (pool_r * pool_t)
        bound = self.factor * (6.0 / (channels * fr * ft + fan_out)) ** 0.5
        w = self.param("W", (self.n_features, channels, fr, ft),
                       self.opts.get("forward_weights_init", f"uniform:{bound!r}"))
        b = self.param("b", (self.n_features,), self.opts.get("bias_init", "zeros"))
        filters = ops.transpose(w[:, :, ::-1, ::-1], (2, 3, 1, 0))  # (rows, cols, channels, n_features)
        if rb or ra or tb or ta:
            x = ops.pad(x, [(0, 0), (rb, ra), (tb, ta), (0, 0)])
        z = ops.conv(x, filters, strides=self.conv_stride, dilation=self.dilation, padding="VALID")
        lens = ops.maximum(ops.floordiv(ops.cast(src.seq_lens, "int32") + (tb + ta - extent), self.conv_stride[1])
                           + 1, 0)
        z = self._masked(z, lens, ctx)
        out_rows = conv_rows
        if self.pool_size != (1, 1) or self.pool_stride != (1, 1):
            stride_r, stride_t = self.pool_stride
            out_rows = _pool_len(conv_rows, pool_r, stride_r, True)
            if out_rows < 1:
                raise self.error(f"pool_size {self.pool_size} is larger than the conv output's {conv_rows} rows")
            mode = "max" if self.mode == "max" else "avg"
            z = ops.pool(z, mode=mode, size=self.pool_size, strides=self.pool_stride, dilation=(1, 1),
                         padding="VALID")
            if self.mode == "sum":
                z = z * float(pool_r * pool_t)
            pooled = ops.cast(ops.dynamic_dim(z, 2), "int32")
            lens = ops.minimum(ops.floordiv(lens + (stride_t - 1), stride_t), pooled)
        z = z + b
        if self.activation is not None:
            z = self.activation(ops, z)
        z = self._masked(z, lens, ctx)
        n_out = self.n_features * out_rows
        frames = ops.transpose(z, (0, 2, 3, 1))  # (B, T, n_features, rows)
        out = LayerOutput(ops.reshape(frames, (ops.dynamic_dim(z, 0), ops.dynamic_dim(z, 2), n_out)), lens, n_out)
        out.extra[LINE] = (out_rows, self.n_features)
        return out

    @staticmethod
    def _masked(z: Any, lens: Any, ctx: Context) -> Any:
        """(B, rows, T, maps) ``z`` with the frames at and after ``lens`` set to 0."""
        ops = ctx.ops
        mask = ops.sequence_mask(lens, ops.dynamic_dim(z, 2), "float32")  # (B, T)
        return z * ops.expand_dims(ops.expand_dims(mask, 1), -1)
