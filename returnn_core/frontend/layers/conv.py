"""Convolution and pooling over time (1D) or time plus further spatial axes (2D, 3D): ``conv``, ``pool``.

Channels last; ``padding`` is ``"same"`` or ``"valid"`` with TensorFlow's definition of both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era import cnn as theano_cnn


def out_seq_lens(ops: Ops, seq_lens: Any, size: int, stride: int, dilation: int, padding: str) -> Any:
    """Output frames per seq of a conv/pool window along time."""
    if padding == "SAME":
        return ops.floordiv(seq_lens + (stride - 1), stride)
    eff = (size - 1) * dilation + 1
    return ops.maximum(ops.floordiv(seq_lens - eff, stride) + 1, 0)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class _SpatialLayer(Layer):
    """Shared option handling: ``filter_size``/``pool_size``, ``strides``, ``dilation_rate``, ``padding``."""

    size_option = "filter_size"

    def _tuple(self, value: Any, n: int, what: str) -> tuple[int, ...]:
        if not (_is_int(value) or (isinstance(value, (list, tuple)) and all(_is_int(v) for v in value))):
            raise self.error(f"{what} must be an int or a tuple of ints, got {value!r}")
        values = (int(value),) * n if _is_int(value) else tuple(int(v) for v in value)
        if len(values) != n:
            raise self.error(f"{what} needs {n} entries, got {values}")
        if any(v < 1 for v in values):
            raise self.error(f"{what} entries must be >= 1, got {values}")
        return values

    def _spatial(self, src: LayerOutput, x: Any, ops: Ops, *, default_strides: Any = 1
                 ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str]:
        """Window sizes, strides, dilation and padding (``SAME``/``VALID``) for the dense input ``x`` of ``src``."""
        if not src.has_time:
            raise self.error("needs an input with a time axis")
        size = self.opts.get(self.size_option)
        if size is None:
            raise self.error(f"needs {self.size_option!r}")
        n = len(size) if isinstance(size, (list, tuple)) else 1
        rank = ops.ndim(x)
        if rank != n + 2:
            raise self.error(
                f"{self.size_option} {size!r} has {n} spatial axes, but the input has rank {rank} "
                f"(expected batch, time, {n - 1} more spatial axes, feature)"
            )
        sizes = self._tuple(size, n, self.size_option)
        strides_opt = self.opts.get("strides")
        strides = self._tuple(default_strides if strides_opt is None else strides_opt, n, "strides")
        dilation_opt = self.opts.get("dilation_rate")
        dilation = self._tuple(1 if dilation_opt is None else dilation_opt, n, "dilation_rate")
        padding = str(self.opts.get("padding", "same")).upper()
        if padding not in ("SAME", "VALID"):
            raise self.error(f"padding must be 'same' or 'valid', got {padding.lower()!r}")
        # TF has no CPU kernel for strided dilated windows; both > 1 is rare and rejected clearly on every backend
        if any(s > 1 for s in strides) and any(d > 1 for d in dilation):
            raise self.error("strides and dilation_rate cannot both be > 1")
        return sizes, strides, dilation, padding


class ConvLayer(_SpatialLayer):
    """Convolution; ``W`` (*filter_size, n_in, n_out), ``b`` (n_out,); ``input_split_feature_dim`` k: F as (F/k, k);
    ``input_add_feature_dim``: F as a spatial axis of one channel."""

    options = frozenset({"filter_size", "strides", "dilation_rate", "padding", "input_split_feature_dim",
                         "input_add_feature_dim", "auto_use_channel_first"})

    def __new__(cls, name: str, layer_class: str, opts: Any, net: Any) -> Layer:
        """The Theano era's ``conv`` (NetworkCNNLayer) where the options are its own (``n_features``, ...)."""
        if cls is ConvLayer and theano_cnn.THEANO_ONLY & set(opts):
            return theano_cnn.CnnLayer(name, layer_class, opts, net)
        return super().__new__(cls)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Convolve over time (and the further spatial axes)."""
        src = self.single_source(sources)
        ops = ctx.ops
        x = src.dense()
        n_in = self.feature_dim(src)
        split = self.opts.get("input_split_feature_dim")
        if self.opts.get("input_add_feature_dim"):
            if split is not None:
                raise self.error("give input_add_feature_dim or input_split_feature_dim, not both")
            split = 1  # the features become a spatial axis with one channel
        if split is not None:
            if not _is_int(split) or split < 1 or n_in % split:
                raise self.error(f"input_split_feature_dim {split!r} must be a positive divisor of the "
                                 f"input feature dim {n_in}")
            x = ops.reshape(x, [*ops.shape(x)[:-1], n_in // int(split), int(split)])
            n_in = int(split)
        sizes, strides, dilation, padding = self._spatial(src, x, ops)
        n_out = self.require_n_out()
        w = self.param("W", (*sizes, n_in, n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
        y = ops.conv(x, w, strides=strides, dilation=dilation, padding=padding)
        if self.opts.get("with_bias", True):
            y = y + self.param("b", (n_out,), self.opts.get("bias_init", "zeros"))
        lens = out_seq_lens(ops, src.seq_lens, sizes[0], strides[0], dilation[0], padding)
        return LayerOutput(y, lens, n_out)


class PoolLayer(_SpatialLayer):
    """Max or average pooling (``mode``) with ``pool_size``; ``strides`` default to the pool size."""

    options = frozenset({"mode", "pool_size", "strides", "dilation_rate", "padding"})
    size_option = "pool_size"
    MODES = ("max", "avg", "average", "mean")

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Max pooling (padding ignored) or average pooling (over the non-padding part of each window)."""
        src = self.single_source(sources)
        ops = ctx.ops
        x = src.dense()
        size = self.opts.get(self.size_option)
        sizes, strides, dilation, padding = self._spatial(src, x, ops, default_strides=size)
        mode = self.opts.get("mode", "max")
        if mode not in self.MODES:
            raise self.error(f"pool mode must be 'max' or 'avg', got {mode!r}")
        y = ops.pool(x, mode="max" if mode == "max" else "avg", size=sizes, strides=strides, dilation=dilation,
                     padding=padding)
        lens = out_seq_lens(ops, src.seq_lens, sizes[0], strides[0], dilation[0], padding)
        return LayerOutput(y, lens, src.dim)
