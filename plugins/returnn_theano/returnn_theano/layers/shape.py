"""Layers that reshape: ``merge_dims``, ``split_dims``, ``slice``, ``reduce``, ``window``, ``pad``.

Axes are ``"B"`` (batch), ``"T"`` (time), ``"F"`` (feature, the last axis) or an int counting batch as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.network import axis_index as core_axis_index
from returnn_theano._pt import floatX, pt
from returnn_theano.layers.base import Layer, LayerOutput


def _last_dim(value: Any, fallback: int | None) -> int | None:
    dim = value.type.shape[-1] if value.ndim else None
    return int(dim) if dim is not None else fallback


class _ShapeLayer(Layer):
    """Axis parsing shared by the shape layers."""

    def single(self, sources: list[LayerOutput]) -> LayerOutput:
        """The one source (several are concatenated on the feature axis)."""
        if len(sources) == 1:
            return sources[0]
        return self.concat_sources(sources)

    def axis_index(self, src: LayerOutput, axis: Any) -> int:
        """Absolute index of ``axis`` in the batch-major value of ``src``."""
        return core_axis_index(axis, rank=src.value.ndim, has_time=src.has_time, sparse=src.sparse, layer=self.name)

    def axes(self, src: LayerOutput, axes: Any) -> list[int]:
        """Sorted absolute indices of one axis or a list of axes."""
        return sorted({self.axis_index(src, a) for a in (axes if isinstance(axes, (list, tuple)) else [axes])})


class MergeDimsLayer(_ShapeLayer):
    """Merge ``axes`` (a list, or ``"static"``: all but batch and time) into one axis at the first one's place."""

    options = frozenset({"axes", "keep_order"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Reshape the merged axes into one."""
        src = self.single(sources)
        x = src.value
        axes = self.opt("axes", "static")
        if axes in ("static", "except_time", "except_batch"):
            idx = list(range(2 if src.has_time else 1, x.ndim))
        else:
            idx = self.axes(src, axes)
        if any(i == 0 or (src.has_time and i == 1) for i in idx):
            raise self.error("merge_dims cannot merge the batch or time axis")
        if len(idx) < 2:
            return src
        perm = [i for i in range(x.ndim) if i not in idx]
        pos = idx[0]
        perm = perm[:pos] + idx + perm[pos:]
        if perm != list(range(x.ndim)):
            x = x.dimshuffle(*perm)
        static = x.type.shape
        if any(static[i] is None for i in range(pos, pos + len(idx))):
            raise self.error("merge_dims needs the merged axes to have static sizes")
        merged = int(np.prod([static[i] for i in range(pos, pos + len(idx))]))
        shape = [x.shape[i] for i in range(pos)] + [merged] + [x.shape[i] for i in range(pos + len(idx), x.ndim)]
        out = x.reshape(shape, ndim=len(shape))
        out = pt.specify_shape(out, [None] * pos + [merged] + [static[i] for i in range(pos + len(idx), x.ndim)])
        return LayerOutput(out, src.seq_lens, _last_dim(out, None))


class SplitDimsLayer(_ShapeLayer):
    """Split ``axis`` (default ``"F"``) into ``dims`` (one entry may be -1)."""

    options = frozenset({"axis", "dims"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Reshape one axis into several."""
        src = self.single(sources)
        dims = self.opt("dims")
        if not isinstance(dims, (list, tuple)) or not dims:
            raise self.error("(class 'split_dims') needs 'dims', a tuple of sizes")
        ax = self.axis_index(src, self.opt("axis", "F"))
        if ax == 0 or (src.has_time and ax == 1):
            raise self.error("split_dims cannot split the batch or time axis")
        x = src.value
        size = x.type.shape[ax]
        known = int(np.prod([d for d in dims if d != -1]))
        if size is None and ax == x.ndim - 1:
            size = src.dim
        if size is None or size % known or (-1 not in dims and known != size):
            raise self.error(f"cannot split axis of size {size} into {tuple(dims)}")
        dims = [int(d) if d != -1 else size // known for d in dims]
        shape = [x.shape[i] for i in range(ax)] + dims + [x.shape[i] for i in range(ax + 1, x.ndim)]
        out = x.reshape(shape, ndim=len(shape))
        static = [None] * ax + dims + list(x.type.shape[ax + 1 :])
        out = pt.specify_shape(out, static)
        return LayerOutput(out, src.seq_lens, _last_dim(out, src.dim))


class SliceLayer(_ShapeLayer):
    """``x[start:end:step]`` along ``axis``; slicing time adjusts the seq lengths."""

    options = frozenset({"axis", "slice_start", "slice_end", "slice_step"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Slice one axis."""
        src = self.single(sources)
        ax = self.axis_index(src, self.opt("axis", "F"))
        start, end, step = self.opt("slice_start"), self.opt("slice_end"), self.opt("slice_step")
        index: list[Any] = [slice(None)] * src.value.ndim
        index[ax] = slice(start, end, step)
        out = src.value[tuple(index)]
        seq_lens = src.seq_lens
        if src.has_time and ax == 1:
            if (start or 0) < 0 or (end is not None and end < 0) or (step or 1) < 1:
                raise self.error("time slices need start >= 0, end >= 0, step >= 1")
            step_ = step or 1
            stop = seq_lens if end is None else pt.minimum(seq_lens, end)
            seq_lens = pt.maximum((stop - (start or 0) + step_ - 1) // step_, 0).astype("int32")
        if src.sparse:
            return LayerOutput(out, seq_lens, src.dim, sparse=True)
        dim = src.dim
        if ax == src.value.ndim - 1 and src.dim is not None:
            dim = len(range(src.dim)[slice(start, end, step)])
        return LayerOutput(out, seq_lens, dim)


class ReduceLayer(_ShapeLayer):
    """Reduce ``axes`` (``"T"``, ``"F"``, ints) with ``mode`` (sum, mean, max, min, prod, logsumexp); time masked."""

    options = frozenset({"mode", "axes", "axis", "keep_dims"})
    MODES = ("sum", "mean", "avg", "max", "min", "prod", "logsumexp")

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Reduce; padded frames take no part."""
        src = self.single(sources)
        mode = self.opt("mode", "sum")
        if mode not in self.MODES:
            raise self.error(f"unknown reduce mode {mode!r}; known: {', '.join(self.MODES)}")
        axes = self.opt("axes", self.opt("axis"))
        if axes is None:
            raise self.error("(class 'reduce') needs 'axes'")
        idx = self.axes(src, axes)
        if 0 in idx:
            raise self.error("cannot reduce the batch axis")
        x = src.dense()
        keep = bool(self.opt("keep_dims", False))
        over_time = src.has_time and 1 in idx
        if over_time:
            mask = src.mask() > 0
            for _ in range(x.ndim - 2):
                mask = mask[..., None]
            fill = {"max": -np.inf, "logsumexp": -np.inf, "min": np.inf, "prod": 1.0}.get(mode, 0.0)
            x = pt.switch(mask, x, np.float32(fill))
        if mode in ("sum", "mean", "avg"):
            out = x.sum(axis=idx, keepdims=keep)
        elif mode == "max":
            out = x.max(axis=idx, keepdims=keep)
        elif mode == "min":
            out = x.min(axis=idx, keepdims=keep)
        elif mode == "prod":
            out = x.prod(axis=idx, keepdims=keep)
        else:
            top = x.max(axis=idx, keepdims=True)
            out = pt.log(pt.exp(x - top).sum(axis=idx, keepdims=True)) + top
            if not keep:
                out = out.squeeze(axis=idx)
        if mode in ("mean", "avg"):
            count = pt.constant(np.float32(1.0))
            for i in idx:
                if not (over_time and i == 1):
                    count = count * x.shape[i].astype(floatX)
            if over_time:
                lens = pt.maximum(src.seq_lens, 1).astype(floatX)
                count = count * lens.reshape([-1] + [1] * (out.ndim - 1), ndim=out.ndim)
            out = out / count
        dim = _last_dim(out, None) if out.ndim > 1 + int(src.has_time and not over_time) else None
        if (src.value.ndim - 1) not in idx:
            dim = src.dim
        if over_time and keep:
            return LayerOutput(out, pt.ones_like(src.seq_lens), dim)
        return LayerOutput(out, src.seq_lens if src.has_time and not over_time else None, dim)


class WindowLayer(_ShapeLayer):
    """A window of ``window_size`` frames around each frame (``window_left``/``window_right``): (B, T, W, D)."""

    options = frozenset({"window_size", "window_left", "window_right"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Shifted copies of the (masked) input stacked on a new window axis."""
        src = self.single(sources)
        if not src.has_time or src.value.ndim != 3 and not src.sparse:
            raise self.error("(class 'window') needs a (batch, time, feature) input")
        size = int(self.opt("window_size", 0))
        if size < 1:
            raise self.error("(class 'window') needs window_size >= 1")
        left, right = self.opt("window_left"), self.opt("window_right")
        if left is None:
            left = size - 1 - right if right is not None else (size - 1) // 2
        left = int(left)
        right = size - 1 - left
        if left < 0 or right < 0:
            raise self.error(f"window_left/window_right do not fit window_size {size}")
        x = src.dense() * src.mask()[:, :, None]
        time = x.shape[1]
        padded = pt.zeros((x.shape[0], time + size - 1, x.shape[2]), dtype=floatX)
        padded = pt.set_subtensor(padded[:, left : left + time], x)
        out = pt.stack([padded[:, i : i + time] for i in range(size)], axis=2)
        dim = int(src.dim or 0)
        out = pt.specify_shape(out, (None, None, size, dim))
        return LayerOutput(out, src.seq_lens, dim)


class PadLayer(_ShapeLayer):
    """Pad ``axes`` by ``padding`` (int or (left, right)) with ``value``; time padding is per seq."""

    options = frozenset({"axes", "padding", "value", "mode"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Constant padding."""
        src = self.single(sources)
        if self.opt("mode", "constant") != "constant":
            raise self.error("only pad mode 'constant' is supported")
        axes = self.opt("axes", "T")
        axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
        pad = self.opt("padding", 0)
        single_pair = isinstance(pad, (list, tuple)) and len(pad) == 2 and isinstance(pad[0], int)
        pads = [pad] * len(axes) if isinstance(pad, int) or (single_pair and len(axes) == 1) else list(pad)
        if len(pads) != len(axes):
            raise self.error(f"padding {pad!r} does not match axes {axes!r}")
        value = np.float32(self.opt("value", 0.0))
        x, seq_lens = src.dense(), src.seq_lens
        for ax_name, p in zip(axes, pads, strict=True):
            left, right = (p, p) if isinstance(p, int) else (int(p[0]), int(p[1]))
            ax = self.axis_index(src, ax_name)
            if ax == 0:
                raise self.error("cannot pad the batch axis")
            shape = [x.shape[i] if i != ax else x.shape[i] + left + right for i in range(x.ndim)]
            index = [slice(None)] * x.ndim
            index[ax] = slice(left, left + x.shape[ax])
            x = pt.set_subtensor(pt.alloc(value, *shape)[tuple(index)], x)
            if src.has_time and ax == 1:
                # frames after each seq's end (within its new length and beyond) get ``value``
                keep = pt.lt(pt.arange(x.shape[1])[None, :], seq_lens[:, None] + left)
                for _ in range(x.ndim - 2):
                    keep = keep[..., None]
                x = pt.switch(keep, x, value)
                seq_lens = (seq_lens + left + right).astype("int32")
        dim = int(src.dim or 0)
        if (src.value.ndim - 1) in [self.axis_index(src, a) for a in axes]:
            p = pads[[self.axis_index(src, a) for a in axes].index(src.value.ndim - 1)]
            dim += 2 * p if isinstance(p, int) else int(p[0]) + int(p[1])
        return LayerOutput(x, seq_lens, dim)
