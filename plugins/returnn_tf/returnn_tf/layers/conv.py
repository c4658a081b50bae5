"""Convolution and pooling over time (1D) or time plus further spatial axes (2D): ``conv``, ``pool``."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer


def _tuple(value: Any, n: int, *, what: str, layer: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise NetworkError(f"layer {layer!r}: {what} needs {n} entries, got {value}")
    return value


def out_seq_lens(seq_lens: tf.Tensor, size: int, stride: int, dilation: int, padding: str) -> tf.Tensor:
    """Output frames per seq of a conv/pool window along time."""
    if padding == "SAME":
        return (seq_lens + stride - 1) // stride
    eff = (size - 1) * dilation + 1
    return tf.maximum((seq_lens - eff) // stride + 1, 0)


class _SpatialLayer(Layer):
    """Shared option handling: ``filter_size``/``pool_size``, ``strides``, ``dilation_rate``, ``padding``."""

    size_option = "filter_size"

    def _spatial(self, src: LayerOutput) -> tuple[tf.Tensor, int, tuple[int, ...], tuple[int, ...], tuple[int, ...], str]:
        if not src.has_time:
            raise NetworkError(f"layer {self.name!r} (class {self.layer_class!r}) needs an input with a time axis")
        size = self.opts.get(self.size_option)
        if size is None:
            raise NetworkError(f"layer {self.name!r} (class {self.layer_class!r}) needs {self.size_option!r}")
        n = len(size) if isinstance(size, (list, tuple)) else 1
        x = src.dense()
        if x.shape.rank != n + 2:
            raise NetworkError(
                f"layer {self.name!r}: {self.size_option} {size!r} has {n} spatial axes, but the input has rank "
                f"{x.shape.rank} (expected batch, time, {n - 1} more spatial axes, feature)"
            )
        sizes = _tuple(size, n, what=self.size_option, layer=self.name)
        strides = _tuple(self.opts.get("strides", 1), n, what="strides", layer=self.name)
        dilation = _tuple(self.opts.get("dilation_rate", 1), n, what="dilation_rate", layer=self.name)
        padding = str(self.opts.get("padding", "same")).upper()
        if padding not in ("SAME", "VALID"):
            raise NetworkError(f"layer {self.name!r}: padding must be 'same' or 'valid', got {padding.lower()!r}")
        return x, n, sizes, strides, dilation, padding


class ConvLayer(_SpatialLayer):
    """Convolution; ``W`` (*filter_size, n_in, n_out), ``b`` (n_out,)."""

    options = frozenset({"filter_size", "strides", "dilation_rate", "padding", "input_split_feature_dim",
                         "auto_use_channel_first"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Convolve over time (and the further spatial axes)."""
        src = self.single_source(sources)
        x, n, sizes, strides, dilation, padding = self._spatial(src)
        n_out = self.require_n_out()
        n_in = self.feature_dim(src)
        w = self.param("W", (*sizes, n_in, n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
        # TF has no CPU kernel for strided dilated conv; both > 1 is rare and rejected clearly
        if any(s > 1 for s in strides) and any(d > 1 for d in dilation):
            raise NetworkError(f"layer {self.name!r}: strides and dilation_rate cannot both be > 1")
        x = tf.nn.convolution(x, w, strides=strides, padding=padding, dilations=dilation)
        if self.opts.get("with_bias", True):
            x = x + self.param("b", (n_out,), self.opts.get("bias_init", "zeros"))
        lens = out_seq_lens(src.seq_lens, sizes[0], strides[0], dilation[0], padding)
        return LayerOutput(x, lens, n_out)


class PoolLayer(_SpatialLayer):
    """Max or average pooling (``mode``) with ``pool_size`` over time (and further spatial axes)."""

    options = frozenset({"mode", "pool_size", "strides", "dilation_rate", "padding"})
    size_option = "pool_size"

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pool."""
        src = self.single_source(sources)
        x, n, sizes, strides, dilation, padding = self._spatial(src)
        if "strides" not in self.opts:
            strides = sizes
        mode = self.opts.get("mode", "max")
        if mode not in ("max", "avg", "average", "mean"):
            raise NetworkError(f"layer {self.name!r}: pool mode must be 'max' or 'avg', got {mode!r}")
        x = tf.nn.pool(x, window_shape=sizes, pooling_type="MAX" if mode == "max" else "AVG",
                       strides=strides, padding=padding, dilations=dilation)
        lens = out_seq_lens(src.seq_lens, sizes[0], strides[0], dilation[0], padding)
        return LayerOutput(x, lens, src.dim)
