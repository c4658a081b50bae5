"""Convolution and pooling over time (and further spatial axes): ``conv``, ``pool``.

Built from strided slices of the padded input, one per filter offset, so any number of spatial axes,
strides and dilations work with symbolic lengths. Padding follows TensorFlow's ``same``/``valid`` rules.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from returnn_theano._pt import floatX, pt
from returnn_theano.layers.base import Layer, LayerOutput
from returnn_theano.layers.basic import dot_last, with_activation


def out_seq_lens(seq_lens: Any, size: int, stride: int, dilation: int, padding: str) -> Any:
    """Output frames per seq of a window of ``size`` along time."""
    if padding == "same":
        return (seq_lens + stride - 1) // stride
    eff = (size - 1) * dilation + 1
    return pt.maximum((seq_lens - eff) // stride + 1, 0).astype("int32")


def static_out_shape(x: Any, sizes: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...],
                     padding: str, dim: int | None) -> list[int | None]:
    """The output shape as far as it is known statically (spatial axes after time, and the feature dim)."""
    shape: list[int | None] = [None, None]
    for i in range(1, len(sizes)):
        length = x.type.shape[1 + i]
        if length is None:
            shape.append(None)
        elif padding == "same":
            shape.append((length + strides[i] - 1) // strides[i])
        else:
            shape.append(max((length - (sizes[i] - 1) * dilation[i] - 1) // strides[i] + 1, 0))
    return [*shape, dim]


class _SpatialLayer(Layer):
    """Options shared by conv and pool: window size, ``strides``, ``dilation_rate``, ``padding``."""

    size_option = "filter_size"

    def _tuple(self, value: Any, n: int, what: str) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,) * n
        value = tuple(int(v) for v in value)
        if len(value) != n:
            raise self.error(f"{what} needs {n} entries, got {value}")
        return value

    def windows(self, src: LayerOutput, *, default_strides_to_size: bool = False) -> tuple[Any, ...]:
        """The input and window geometry after checking the options."""
        if not src.has_time:
            raise self.error(f"(class {self.spec.layer_class!r}) needs an input with a time axis")
        size = self.opt(self.size_option)
        if size is None:
            raise self.error(f"(class {self.spec.layer_class!r}) needs {self.size_option!r}")
        n = len(size) if isinstance(size, (list, tuple)) else 1
        x = src.dense()
        if x.ndim != n + 2:
            raise self.error(
                f"{self.size_option} {size!r} has {n} spatial axes, but the input has rank {x.ndim}"
                f" (expected batch, time, {n - 1} more spatial axes, feature)"
            )
        sizes = self._tuple(size, n, self.size_option)
        default_strides = sizes if default_strides_to_size else 1
        strides = self._tuple(self.opt("strides", default_strides), n, "strides")
        dilation = self._tuple(self.opt("dilation_rate", 1), n, "dilation_rate")
        padding = str(self.opt("padding", "same")).lower()
        if padding not in ("same", "valid"):
            raise self.error(f"padding must be 'same' or 'valid', got {padding!r}")
        return x, sizes, strides, dilation, padding

    @staticmethod
    def pad_and_slices(x: Any, sizes: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...],
                       padding: str, pad_value: float) -> tuple[Any, list[tuple[tuple[int, ...], Any]]]:
        """Pad the spatial axes as TF does; return the padded input and one strided view per window offset."""
        n = len(sizes)
        out_lens, pads = [], []
        for i in range(n):
            length = x.shape[1 + i]
            eff = (sizes[i] - 1) * dilation[i] + 1
            if padding == "same":
                out_len = (length + strides[i] - 1) // strides[i]
                total = pt.maximum((out_len - 1) * strides[i] + eff - length, 0)
                pads.append((total // 2, total - total // 2))
            else:
                out_len = pt.maximum((length - eff) // strides[i] + 1, 0)
                pads.append((0, 0))
            out_lens.append(out_len)
        if padding == "same":
            shape = [x.shape[0]]
            for i in range(n):
                shape.append(x.shape[1 + i] + pads[i][0] + pads[i][1])
            shape.append(x.shape[-1])
            padded = pt.alloc(np.float32(pad_value), *shape)
            index = [slice(None)] + [slice(pads[i][0], pads[i][0] + x.shape[1 + i]) for i in range(n)] + [slice(None)]
            x = pt.set_subtensor(padded[tuple(index)], x)
        views = []
        for offset in itertools.product(*[range(k) for k in sizes]):
            index = [slice(None)]
            for i, k in enumerate(offset):
                start = k * dilation[i]
                index.append(slice(start, start + (out_lens[i] - 1) * strides[i] + 1, strides[i]))
            index.append(slice(None))
            views.append((offset, x[tuple(index)]))
        return x, views


class ConvLayer(_SpatialLayer):
    """Convolution; ``W`` (*filter_size, n_in, n_out), ``b`` (n_out,)."""

    options = frozenset({"filter_size", "strides", "dilation_rate", "padding"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Sum over filter offsets of the shifted input times that offset's weights."""
        src = self.concat_sources(sources)
        x, sizes, strides, dilation, padding = self.windows(src)
        n_out = self.n_out()
        n_in = int(src.dim or 0)
        w = self.param("W", (*sizes, n_in, n_out), self.opt("forward_weights_init", "glorot_uniform"))
        _, views = self.pad_and_slices(x, sizes, strides, dilation, padding, 0.0)
        out = None
        for offset, view in views:
            term = dot_last(view, w[offset])
            out = term if out is None else out + term
        if self.opt("with_bias", True):
            out = out + self.param("b", (n_out,), self.opt("bias_init", "zeros"))
        out = pt.specify_shape(out, static_out_shape(x, sizes, strides, dilation, padding, n_out))
        lens = out_seq_lens(src.seq_lens, sizes[0], strides[0], dilation[0], padding)
        return with_activation(self, out, lens, n_out)


class PoolLayer(_SpatialLayer):
    """Max or average pooling (``mode``) with ``pool_size``; ``strides`` default to the pool size."""

    options = frozenset({"mode", "pool_size", "strides", "dilation_rate", "padding"})
    size_option = "pool_size"

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Max (padding ignored) or average (over the non-padding part of each window)."""
        src = self.concat_sources(sources)
        x, sizes, strides, dilation, padding = self.windows(src, default_strides_to_size=True)
        mode = self.opt("mode", "max")
        if mode not in ("max", "avg", "average", "mean"):
            raise self.error(f"pool mode must be 'max' or 'avg', got {mode!r}")
        if mode == "max":
            _, views = self.pad_and_slices(x, sizes, strides, dilation, padding, -np.inf)
            out = views[0][1]
            for _, view in views[1:]:
                out = pt.maximum(out, view)
        else:
            _, views = self.pad_and_slices(x, sizes, strides, dilation, padding, 0.0)
            ones = pt.ones_like(x[..., 0], dtype=floatX)[..., None]
            _, count_views = self.pad_and_slices(ones, sizes, strides, dilation, padding, 0.0)
            total = sum(v for _, v in views)
            count = sum(v for _, v in count_views)
            out = total / pt.maximum(count, 1.0)
        out = pt.specify_shape(out, static_out_shape(x, sizes, strides, dilation, padding, src.dim))
        lens = out_seq_lens(src.seq_lens, sizes[0], strides[0], dilation[0], padding)
        return LayerOutput(out, lens, src.dim)
