"""Layers that reshape: merge_dims, split_dims, slice, reduce, window, pad, expand_dims, squeeze, time (un)chunking.

Axes are given as ``"B"`` (batch), ``"T"`` (time), ``"F"`` (feature, the last axis) or an int counting the
batch axis as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_core.network import axis_index as core_axis_index
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer


def axis_index(src: LayerOutput, axis: Any, *, layer: str) -> int:
    """Absolute axis index of ``axis`` in the batch-major tensor of ``src``."""
    return core_axis_index(axis, rank=src.tensor.shape.rank, has_time=src.has_time, sparse=src.sparse, layer=layer)


def _out(src: LayerOutput, tensor: tf.Tensor, seq_lens: tf.Tensor | None = None, *, keep_time: bool = True) -> LayerOutput:
    dim = tensor.shape[-1] if tensor.shape.rank else None
    return LayerOutput(tensor, (seq_lens if seq_lens is not None else src.seq_lens) if keep_time else None,
                       int(dim) if dim is not None else None)


class MergeDimsLayer(Layer):
    """Merge ``axes`` (a list, or ``"static"``: all but batch and time) into one axis at the first one's place."""

    options = frozenset({"axes", "keep_order"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reshape the merged axes into one."""
        src = self.single_source(sources)
        x = src.tensor
        rank = x.shape.rank
        axes = self.opts.get("axes", "static")
        if axes in ("static", "except_time", "except_batch"):
            first = 2 if src.has_time else 1
            idx = list(range(first, rank))
        else:
            idx = sorted({axis_index(src, a, layer=self.name) for a in (axes if isinstance(axes, (list, tuple)) else [axes])})
        if any(i == 0 or (src.has_time and i == 1) for i in idx):
            raise NetworkError(f"layer {self.name!r}: merge_dims cannot merge the batch or time axis")
        if len(idx) < 2:
            return src
        perm = [i for i in range(rank) if i not in idx]
        pos = idx[0]
        perm = perm[:pos] + idx + perm[pos:]
        x = tf.transpose(x, perm) if perm != list(range(rank)) else x
        shape = tf.shape(x)
        static = x.shape
        merged = int(np.prod([static[i] for i in range(pos, pos + len(idx))]))
        new_shape = [shape[i] if static[i] is None else static[i] for i in range(pos)] + [merged] + [
            shape[i] if static[i] is None else static[i] for i in range(pos + len(idx), rank)
        ]
        return _out(src, tf.reshape(x, new_shape))


class SplitDimsLayer(Layer):
    """Split ``axis`` (default ``"F"``) into ``dims`` (one entry may be -1)."""

    options = frozenset({"axis", "dims"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reshape one axis into several."""
        src = self.single_source(sources)
        dims = self.opts.get("dims")
        if not isinstance(dims, (list, tuple)) or not dims:
            raise NetworkError(f"layer {self.name!r} (class 'split_dims') needs 'dims', a tuple of sizes")
        ax = axis_index(src, self.opts.get("axis", "F"), layer=self.name)
        x = src.tensor
        size = x.shape[ax]
        known = int(np.prod([d for d in dims if d != -1]))
        if size is not None and (size % known or (-1 not in dims and known != size)):
            raise NetworkError(f"layer {self.name!r}: cannot split axis of size {size} into {tuple(dims)}")
        shape = tf.shape(x)
        new = [shape[i] for i in range(ax)] + [int(d) for d in dims] + [shape[i] for i in range(ax + 1, x.shape.rank)]
        out = tf.reshape(x, new)
        return _out(src, out)


class SliceLayer(Layer):
    """``x[start:end:step]`` along ``axis``; slicing time adjusts the seq lengths."""

    options = frozenset({"axis", "slice_start", "slice_end", "slice_step"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Slice one axis."""
        src = self.single_source(sources)
        ax = axis_index(src, self.opts.get("axis", "F"), layer=self.name)
        start, end, step = self.opts.get("slice_start"), self.opts.get("slice_end"), self.opts.get("slice_step")
        index = [slice(None)] * src.tensor.shape.rank
        index[ax] = slice(start, end, step)
        out = src.tensor[tuple(index)]
        seq_lens = src.seq_lens
        if src.has_time and ax == 1:
            if (start or 0) < 0 or (end is not None and end < 0) or (step or 1) < 1:
                raise NetworkError(f"layer {self.name!r}: time slices need start >= 0, end >= 0, step >= 1")
            step_ = step or 1
            stop = seq_lens if end is None else tf.minimum(seq_lens, end)
            seq_lens = tf.maximum((stop - (start or 0) + step_ - 1) // step_, 0)
        if src.sparse:
            return LayerOutput(out, seq_lens, src.dim, True)
        return _out(src, out, seq_lens)


class ReduceLayer(Layer):
    """Reduce ``axes`` (``"T"``, ``"F"``, ints) with ``mode`` (sum, mean, max, min, prod, logsumexp); time masked."""

    options = frozenset({"mode", "axes", "axis", "keep_dims"})
    MODES = ("sum", "mean", "avg", "max", "min", "prod", "logsumexp")

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reduce."""
        src = self.single_source(sources)
        mode = self.opts.get("mode", "sum")
        if mode not in self.MODES:
            raise NetworkError(f"layer {self.name!r}: unknown reduce mode {mode!r}; known: {', '.join(self.MODES)}")
        axes = self.opts.get("axes", self.opts.get("axis"))
        if axes is None:
            raise NetworkError(f"layer {self.name!r} (class 'reduce') needs 'axes'")
        idx = sorted({axis_index(src, a, layer=self.name) for a in (axes if isinstance(axes, (list, tuple)) else [axes])})
        if 0 in idx:
            raise NetworkError(f"layer {self.name!r}: cannot reduce the batch axis")
        x = src.dense()
        keep = bool(self.opts.get("keep_dims", False))
        over_time = src.has_time and 1 in idx
        if over_time:
            mask = src.mask(tf.bool)
            for _ in range(x.shape.rank - 2):
                mask = mask[..., None]
            if mode in ("max", "logsumexp"):
                x = tf.where(mask, x, tf.cast(-np.inf, x.dtype))
            elif mode == "min":
                x = tf.where(mask, x, tf.cast(np.inf, x.dtype))
            elif mode == "prod":
                x = tf.where(mask, x, tf.ones_like(x))
            else:
                x = tf.where(mask, x, tf.zeros_like(x))
        fn = {"sum": tf.reduce_sum, "max": tf.reduce_max, "min": tf.reduce_min, "prod": tf.reduce_prod,
              "logsumexp": tf.reduce_logsumexp}.get(mode)
        if fn is not None:
            out = fn(x, axis=idx, keepdims=keep)
        else:
            out = tf.reduce_sum(x, axis=idx, keepdims=keep)
            count = 1.0
            for i in idx:
                count = count * tf.cast(tf.shape(x)[i], tf.float32) if not (over_time and i == 1) else count
            if over_time:
                lens = tf.cast(tf.maximum(src.seq_lens, 1), tf.float32)
                lens = tf.reshape(lens, [-1] + [1] * (out.shape.rank - 1))
                count = count * lens
            out = out / count
        if over_time and keep:
            return _out(src, out, tf.ones_like(src.seq_lens))
        return _out(src, out, keep_time=src.has_time and not over_time)


class WindowLayer(Layer):
    """A window of ``window_size`` frames around each frame (``window_left``/``window_right``): (B, T, W, D)."""

    options = frozenset({"window_size", "window_left", "window_right", "axis"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Stack shifted copies of the (masked) input along a new window axis."""
        src = self.single_source(sources)
        if not src.has_time:
            raise NetworkError(f"layer {self.name!r} (class 'window') needs an input with a time axis")
        size = int(self.opts.get("window_size", 0))
        if size < 1:
            raise NetworkError(f"layer {self.name!r} (class 'window') needs window_size >= 1")
        left = self.opts.get("window_left")
        right = self.opts.get("window_right")
        if left is None:
            left = size - 1 - right if right is not None else (size - 1) // 2
        right = size - 1 - int(left)
        x = src.dense() * src.mask()[:, :, None]
        time = tf.shape(x)[1]
        padded = tf.pad(x, [[0, 0], [int(left), right], [0, 0]])
        out = tf.stack([padded[:, i : i + time] for i in range(size)], axis=2)
        return LayerOutput(out, src.seq_lens, src.dim if not src.sparse else int(src.dim or 0))


class PadLayer(Layer):
    """Pad ``axes`` by ``padding`` (int or (left, right)) with ``value``; time padding is per seq."""

    options = frozenset({"axes", "padding", "value", "mode"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pad."""
        src = self.single_source(sources)
        if self.opts.get("mode", "constant") != "constant":
            raise NetworkError(f"layer {self.name!r}: only pad mode 'constant' is supported")
        axes = self.opts.get("axes", "T")
        axes = axes if isinstance(axes, (list, tuple)) else [axes]
        pad = self.opts.get("padding", 0)
        pads = [pad] * len(axes) if isinstance(pad, int) or (isinstance(pad, (list, tuple)) and len(pad) == 2
                                                              and isinstance(pad[0], int) and len(axes) == 1) else pad
        value = float(self.opts.get("value", 0.0))
        x = src.tensor
        seq_lens = src.seq_lens
        for ax_name, p in zip(axes, pads):
            left, right = (p, p) if isinstance(p, int) else (int(p[0]), int(p[1]))
            ax = axis_index(src, ax_name, layer=self.name)
            if src.has_time and ax == 1:
                x, seq_lens = _pad_time(x, seq_lens, left, right, value)
            else:
                paddings = [[0, 0]] * x.shape.rank
                paddings[ax] = [left, right]
                x = tf.pad(x, paddings, constant_values=value)
        return _out(src, x, seq_lens)


def _pad_time(x: tf.Tensor, seq_lens: tf.Tensor, left: int, right: int, value: float) -> tuple[tf.Tensor, tf.Tensor]:
    paddings = [[0, 0], [left, right]] + [[0, 0]] * (x.shape.rank - 2)
    padded = tf.pad(x, paddings, constant_values=value)
    # frames after each seq's end (within its new length and beyond) get ``value``
    pos = tf.range(tf.shape(padded)[1])[None, :]
    keep = pos < seq_lens[:, None] + left
    for _ in range(x.shape.rank - 2):
        keep = keep[..., None]
    out = tf.where(keep, padded, tf.cast(value, padded.dtype))
    return out, seq_lens + left + right


class ExpandDimsLayer(Layer):
    """Add an axis of size 1: ``axis`` ``"F"`` (after the feature), ``"spatial"`` (before it) or an int."""

    options = frozenset({"axis", "dim"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Insert an axis."""
        src = self.single_source(sources)
        x = src.dense()
        axis = self.opts.get("axis", "F")
        if axis in ("F", "f", "feature"):
            idx = x.shape.rank
        elif axis == "spatial":
            idx = x.shape.rank - 1
        else:
            idx = int(axis) % (x.shape.rank + 1)
        if idx == 0 or (src.has_time and idx == 1):
            raise NetworkError(f"layer {self.name!r}: cannot add an axis before batch or time")
        out = tf.expand_dims(x, idx)
        dim = int(self.opts.get("dim", 1))
        if dim != 1:
            mult = [1] * out.shape.rank
            mult[idx] = dim
            out = tf.tile(out, mult)
        return _out(src, out)


class SqueezeLayer(Layer):
    """Remove ``axis`` (int or ``"F"``), which must have size 1."""

    options = frozenset({"axis", "enforce_batch_dim_axis", "allow_no_op"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Drop a size-1 axis."""
        src = self.single_source(sources)
        ax = axis_index(src, self.opts.get("axis", "F"), layer=self.name)
        if ax == 0 or (src.has_time and ax == 1):
            raise NetworkError(f"layer {self.name!r}: cannot squeeze the batch or time axis")
        size = src.tensor.shape[ax]
        if size != 1:
            if self.opts.get("allow_no_op"):
                return src
            raise NetworkError(f"layer {self.name!r}: squeeze axis {ax} has size {size}, not 1")
        return _out(src, tf.squeeze(src.tensor, axis=ax))


class TimeChunkingLayer(Layer):
    """Cut each seq into windows of ``chunk_size`` frames every ``chunk_step``: (B*C, chunk_size, D)."""

    options = frozenset({"chunk_size", "chunk_step"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Frame the time axis into chunks that become batch entries."""
        src = self.single_source(sources)
        if not src.has_time:
            raise NetworkError(f"layer {self.name!r} (class 'time_chunking') needs an input with a time axis")
        size = int(self.opts.get("chunk_size", 0))
        step = int(self.opts.get("chunk_step", size))
        if size < 1 or step < 1:
            raise NetworkError(f"layer {self.name!r}: chunk_size and chunk_step must be >= 1")
        x = src.tensor
        time = tf.shape(x)[1]
        batch = tf.shape(x)[0]
        num = tf.maximum((time - size + step - 1) // step, 0) + 1
        total = (num - 1) * step + size
        pad = [[0, 0], [0, total - time]] + [[0, 0]] * (x.shape.rank - 2)
        frames = tf.signal.frame(tf.pad(x, pad), size, step, axis=1)
        rest = tf.shape(frames)[3:]
        out = tf.reshape(frames, tf.concat([[batch * num, size], rest], axis=0))
        starts = tf.range(num) * step
        lens = tf.clip_by_value(src.seq_lens[:, None] - starts[None, :], 0, size)
        res = LayerOutput(out, tf.reshape(lens, [-1]), src.dim, src.sparse)
        res.extra["chunking"] = {"size": size, "step": step, "num": num, "time": time, "batch": batch,
                                 "seq_lens": src.seq_lens}
        return res


class TimeUnChunkingLayer(Layer):
    """Undo ``time_chunking`` (``chunking_layer``): overlapping frames are averaged."""

    options = frozenset({"chunking_layer"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Overlap-add the chunks back into seqs."""
        src = self.single_source(sources)
        ref = self.opts.get("chunking_layer")
        if not isinstance(ref, str):
            raise NetworkError(f"layer {self.name!r} (class 'time_unchunking') needs 'chunking_layer'")
        info = ctx.get(ref, layer=self.name).extra.get("chunking")
        if info is None:
            raise NetworkError(f"layer {self.name!r}: chunking_layer {ref!r} is not a time_chunking layer")
        x = src.dense()
        if x.shape.rank != 3:
            raise NetworkError(f"layer {self.name!r}: time_unchunking needs (batch, time, feature) input")
        size, step, num, batch = info["size"], info["step"], info["num"], info["batch"]
        dim = x.shape[-1]
        chunks = tf.reshape(x, [batch, num, size, dim])
        signal = tf.transpose(chunks, (0, 3, 1, 2))  # (B, D, C, size)
        summed = tf.signal.overlap_and_add(signal, step)
        counts = tf.signal.overlap_and_add(tf.ones([1, num, size]), step)
        out = tf.transpose(summed / counts[:, None, :], (0, 2, 1))[:, : info["time"]]
        return LayerOutput(out, info["seq_lens"], int(dim))
