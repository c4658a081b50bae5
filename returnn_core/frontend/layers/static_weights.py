"""Layers with one trained weight per position of some fixed-size axes: ``elemwise_prod`` and ``weighted_sum``."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.shape import axis_list, feature_dim_of, static_dims


def describe_axes(layer: Layer, src: LayerOutput, axes: Any) -> list[int]:
    """Sorted absolute axes of ``axes``: ``"spatial"`` (all but batch and feature), ``"spatial_except_time"``,
    or what :func:`axis_list` takes (``"T"``, ``"F"``, ints, lists of them)."""
    if isinstance(axes, str) and axes.lower() in ("spatial", "spatial_except_time"):
        last = src.ndim if src.sparse else src.ndim - 1
        first = 2 if axes.lower() == "spatial_except_time" and src.has_time else 1
        out = list(range(first, last))
    else:
        out = sorted(axis_list(src, axes, layer=layer.name))
    if not out:
        raise layer.error(f"axes {axes!r} select no axis of its input")
    if 0 in out:
        raise layer.error("cannot use the batch axis")
    return out


def fixed_sizes(layer: Layer, src: LayerOutput, axes: list[int]) -> list[int]:
    """The static sizes of ``axes``; an error naming the axis if one is dynamic (e.g. time)."""
    dims = static_dims(src)
    for a in axes:
        if dims[a] is None or (src.has_time and a == 1):
            raise layer.error(f"axis {a} has no fixed size (all its axes must be of fixed dimension)")
    return [int(dims[a]) for a in axes]


def dense_source_and_axes(layer: Layer, sources: list[LayerOutput]) -> tuple[LayerOutput, list[int]]:
    """The (concatenated) dense input and its option ``axes`` (see :func:`describe_axes`)."""
    src = layer.single_source(sources)
    if src.sparse:
        raise layer.error("needs a dense input")
    if "axes" not in layer.opts:
        raise layer.error("needs 'axes'")
    return src, describe_axes(layer, src, layer.opts["axes"])


class ElemwiseProdLayer(Layer):
    """The input times a parameter ``W`` of the shape of ``axes`` (fixed-size axes, e.g. ``"spatial"``), init 1
    ("static attention" in LACE); ``size`` double-checks that shape."""

    options = frozenset({"axes", "size"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Scale each position of the axes by its weight."""
        ops = ctx.ops
        src, axes = dense_source_and_axes(self, sources)
        sizes = fixed_sizes(self, src, axes)
        size = self.opts.get("size")
        if size is not None and tuple(size) != tuple(sizes):
            raise self.error(f"size {tuple(size)} does not match the input's axes {axes} of sizes {tuple(sizes)}")
        w = self.param("W", tuple(sizes), 1.0)
        full = [sizes[axes.index(a)] if a in axes else 1 for a in range(src.ndim)]
        return LayerOutput(src.tensor * ops.reshape(w, full), src.seq_lens, src.dim)


class WeightedSumLayer(Layer):
    """A trained weighted sum over ``axes`` (one to three): over the whole (fixed-size) axes, which are removed, or,
    with ``size``, over a sliding window of that size (``padding`` "same"/"valid", the axes kept). ``W`` has the
    shape ``size`` and starts as the mean (1 / its element count)."""

    options = frozenset({"axes", "padding", "size", "keep_dims"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Correlate the axes with ``W`` (like RETURNN: one N-D convolution with a single channel)."""
        ops = ctx.ops
        src, axes = dense_source_and_axes(self, sources)
        if len(axes) > 3:
            raise self.error(f"sums over 1 to 3 axes, got {len(axes)}")
        size, padding, keep = self.opts.get("size"), self.opts.get("padding"), self.opts.get("keep_dims")
        if size is None:
            size = fixed_sizes(self, src, axes)
            keep = False if keep is None else bool(keep)
            padding = "valid" if padding is None else padding
        else:
            if not isinstance(size, (list, tuple)) or len(size) != len(axes):
                raise self.error(f"size must give one kernel size per axis ({len(axes)}), got {size!r}")
            if padding is None:
                raise self.error("with 'size', 'padding' ('same' or 'valid') must be given too")
            keep = True if keep is None else bool(keep)
        padding = str(padding).lower()
        if padding not in ("same", "valid"):
            raise self.error(f"padding must be 'same' or 'valid', got {padding!r}")
        over_time = src.has_time and 1 in axes
        if over_time and padding == "valid" and keep:
            raise self.error("padding 'valid' over the time axis is not supported (the seq lengths would change)")
        size = [int(s) for s in size]
        x = src.tensor
        dims = static_dims(src)
        rank = src.ndim
        others = [a for a in range(rank) if a not in axes]
        perm = others + axes
        xt = ops.transpose(x, perm)
        shape = ops.shape(xt)
        flat = ops.reshape(xt, [-1, *shape[len(others):], 1])
        w = self.param("W", tuple(size), float(1.0 / np.prod(size)))
        y = ops.conv(flat, ops.reshape(w, [*size, 1, 1]), strides=[1] * len(axes), dilation=[1] * len(axes),
                     padding=padding.upper())
        out_sizes = [d if d is None or padding == "same" else d - k + 1 for d, k in zip((dims[a] for a in axes), size)]
        if keep:
            y_shape = ops.shape(y)
            y = ops.reshape(y, [*shape[:len(others)], *y_shape[1:1 + len(axes)]])
            y = ops.transpose(y, list(np.argsort(perm)))
            out_dims = list(dims)
            for a, d in zip(axes, out_sizes):
                out_dims[a] = d
            return LayerOutput(y, src.seq_lens, feature_dim_of(out_dims, src.has_time))
        if any(d != 1 for d in out_sizes):
            raise self.error(f"without keep_dims the summed axes must reduce to size 1, got {out_sizes} "
                             f"(set size to the axes' sizes or keep_dims=True)")
        y = ops.reshape(y, shape[:len(others)])
        out_dims = [dims[a] for a in others]
        has_time = src.has_time and not over_time
        return LayerOutput(y, src.seq_lens if has_time else None, feature_dim_of(out_dims, has_time))
