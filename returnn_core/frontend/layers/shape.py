"""Layers that reshape: merge_dims, split_dims, slice, reduce, window, pad, expand_dims, squeeze, time (un)chunking.

Axes are given as ``"B"`` (batch), ``"T"`` (time), ``"F"`` (feature, the last axis) or an int counting the
batch axis as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, FrameShape, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.network import axis_index as core_axis_index


def spatial_axes(src: LayerOutput) -> list[int]:
    """RETURNN's spatial axes: all but batch and feature (time first, if any)."""
    return list(range(1, src.ndim if src.sparse else src.ndim - 1))


def axis_index(src: LayerOutput, axis: Any, *, layer: str) -> int:
    """Absolute axis index of ``axis`` in the batch-major tensor of ``src``; besides the core's names RETURNN's
    ``"spatial:i"`` (short ``"s:i"``), the i-th spatial axis."""
    if isinstance(axis, str) and axis.lower().startswith(("spatial:", "s:")):
        spatial = spatial_axes(src)
        try:
            return spatial[int(axis.split(":", 1)[1])]
        except (ValueError, IndexError):
            raise NetworkError(f"layer {layer!r}: axis {axis!r}, but the input has {len(spatial)} spatial axes "
                               f"(time and the static axes before the feature)") from None
    return core_axis_index(axis, rank=src.ndim, has_time=src.has_time, sparse=src.sparse, layer=layer)


def _axis_group(src: LayerOutput, name: str) -> list[int] | None:
    """The axes a RETURNN group name stands for (``get_axes_from_description``), None for a single-axis name."""
    key = name.lower()
    if key == "spatial":
        return spatial_axes(src)
    if key == "spatial_except_time":
        return [a for a in spatial_axes(src) if not (src.has_time and a == 1)]
    if key == "except_time":
        return [a for a in range(1, src.ndim) if not (src.has_time and a == 1)]
    if key == "except_batch":
        return list(range(1, src.ndim))
    if key in ("bt", "tb"):
        return [0, 1] if src.has_time else [0]
    return None


def axis_list(src: LayerOutput, axes: Any, *, layer: str) -> list[int]:
    """Absolute indices of one axis or a list of axes (group names expanded), in the given order, no repeats."""
    out: list[int] = []
    for axis in axes if isinstance(axes, (list, tuple)) else [axes]:
        group = _axis_group(src, axis) if isinstance(axis, str) else None
        for idx in group if group is not None else [axis_index(src, axis, layer=layer)]:
            if idx not in out:
                out.append(idx)
    return out


def static_dims(src: LayerOutput, tensor: Any = None) -> list[int | None]:
    """Static sizes of ``tensor`` (default ``src.tensor``); a feature axis unknown to the backend takes ``src.dim``."""
    tensor = src.tensor if tensor is None else tensor
    dims = list(src.ops.static_shape(tensor))
    has_features = len(dims) > 1 + int(src.has_time)
    if has_features and dims[-1] is None and src.dim is not None:
        dims[-1] = int(src.dim)
    return dims


def feature_dim_of(dims: list[int | None], has_time: bool) -> int | None:
    """The size of the last axis if it is a feature axis (not batch or time)."""
    return dims[-1] if len(dims) > 1 + int(has_time) else None


def int_opt(layer: Layer, key: str, default: int | None) -> int | None:
    """An integer option; a clear error naming the layer if it is something else."""
    value = layer.opts.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise layer.error(f"option {key!r} must be an integer, got {value!r}")
    return int(value)


class MergeDimsLayer(Layer):
    """Merge ``axes`` (a list, or ``"static"``: all but batch and time) into one axis at the first one's place."""

    options = frozenset({"axes", "keep_order"})
    #: ``axes`` values that name every axis after batch and time (RETURNN 1.0: "non_spatial", the static ones)
    ALL_STATIC = ("static", "except_time", "except_batch", "non_spatial")

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The source's shape with the merged axes' sizes multiplied at the first one's place."""
        own = super().out_shape_from_opts(opts, sources, layer_shape)
        if own is not None or len(sources) != 1 or sources[0] is None:
            return own
        shape = sources[0]
        axes = opts.get("axes", "static")
        if isinstance(axes, str) and axes in cls.ALL_STATIC:
            idx = list(range(len(shape)))
        else:
            try:
                idx = sorted({core_axis_index(a, rank=len(shape) + 1, has_time=False, sparse=False, layer="") - 1
                              for a in (axes if isinstance(axes, (list, tuple)) else [axes])})
            except (NetworkError, TypeError, ValueError):
                return None  # the layer itself names the bad axis when it runs
        if len(idx) < 2 or min(idx) < 0:
            return shape
        sizes = [shape[i] for i in idx]
        merged = int(np.prod(sizes)) if None not in sizes else None
        rest = [d for i, d in enumerate(shape) if i not in idx]
        pos = min(idx)
        return (*rest[:pos], merged, *rest[pos:])

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reshape the merged axes into one (in the given order with ``keep_order``, else sorted)."""
        src = self.single_source(sources)
        ops = ctx.ops
        x = src.tensor
        rank = ops.ndim(x)
        axes = self.opts.get("axes", "static")
        if isinstance(axes, str) and axes in self.ALL_STATIC:
            idx = list(range(2 if src.has_time else 1, rank))
        else:
            idx = axis_list(src, axes, layer=self.name)
            if not self.opts.get("keep_order", False):
                idx.sort()
        if src.has_time and idx == [0, 1]:
            # RETURNN's "BT": frames of all seqs (padding included) as one batch axis; split_batch_time undoes it
            shape = ops.shape(x)
            return LayerOutput(ops.reshape(x, [-1, *shape[2:]]), None, src.dim, src.sparse)
        if any(i == 0 or (src.has_time and i == 1) for i in idx):
            raise self.error("merge_dims cannot merge the batch or time axis with others (only both: 'BT')")
        if len(idx) < 2:
            return src
        dims = static_dims(src)
        pos = min(idx)
        rest = [i for i in range(rank) if i not in idx]
        perm = rest[:pos] + idx + rest[pos:]
        if perm != list(range(rank)):
            x = ops.transpose(x, perm)
        sizes = [dims[i] for i in idx]
        merged = int(np.prod(sizes)) if None not in sizes else None
        shape = ops.shape(x)
        out = ops.reshape(x, [*shape[:pos], -1 if merged is None else merged, *shape[pos + len(idx):]])
        out_dims = [dims[i] for i in rest[:pos]] + [merged] + [dims[i] for i in rest[pos:]]
        return LayerOutput(out, src.seq_lens, src.dim if src.sparse else out_dims[-1], src.sparse)


class SplitDimsLayer(Layer):
    """Split ``axis`` (default ``"F"``) into ``dims`` (one entry may be -1)."""

    options = frozenset({"axis", "dims"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reshape one axis into several."""
        src = self.single_source(sources)
        ops = ctx.ops
        dims = self.opts.get("dims")
        if not isinstance(dims, (list, tuple)) or not dims:
            raise self.error("needs 'dims', a tuple of sizes")
        if (any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or (d < 1 and d != -1) for d in dims)
                or list(dims).count(-1) > 1):
            raise self.error(f"dims must be positive sizes with at most one -1, got {tuple(dims)}")
        ax = axis_index(src, self.opts.get("axis", "F"), layer=self.name)
        if ax == 0 or (src.has_time and ax == 1):
            raise self.error("split_dims cannot split the batch or time axis")
        x = src.tensor
        in_dims = static_dims(src)
        size = in_dims[ax]
        known = int(np.prod([d for d in dims if d != -1]))
        if size is not None and (size % known or (-1 not in dims and known != size)):
            raise self.error(f"cannot split axis of size {size} into {tuple(dims)}")
        new = [size // known if d == -1 and size is not None else int(d) for d in dims]
        shape = ops.shape(x)
        out = ops.reshape(x, [*shape[:ax], *new, *shape[ax + 1:]])
        out_dims = in_dims[:ax] + [None if d == -1 else d for d in new] + in_dims[ax + 1:]
        return LayerOutput(out, src.seq_lens, src.dim if src.sparse else out_dims[-1], src.sparse)


class SliceLayer(Layer):
    """``x[start:end:step]`` along ``axis``; slicing time adjusts the seq lengths."""

    options = frozenset({"axis", "slice_start", "slice_end", "slice_step"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Slice one axis."""
        src = self.single_source(sources)
        ops = ctx.ops
        ax = axis_index(src, self.opts.get("axis", "F"), layer=self.name)
        if ax == 0:
            raise self.error("cannot slice the batch axis")
        start, end, step = (int_opt(self, key, None) for key in ("slice_start", "slice_end", "slice_step"))
        if step == 0:
            raise self.error("slice_step must not be 0")
        over_time = src.has_time and ax == 1
        if over_time and ((start or 0) < 0 or (step or 1) < 1):
            raise self.error("time slices need slice_start >= 0 and slice_step >= 1 (slice_end may be negative: "
                             "counted from each seq's own end)")
        index: list[Any] = [slice(None)] * src.ndim
        index[ax] = slice(start, end, step)
        out = src.tensor[tuple(index)]
        seq_lens = src.seq_lens
        if over_time:
            step_ = step or 1
            # a negative end cuts each seq at its own end: frames start..len+end of a seq all lie before T+end
            stop = seq_lens if end is None else ops.minimum(seq_lens, end) if end >= 0 else seq_lens + end
            seq_lens = ops.maximum(ops.floordiv(stop - (start or 0) + (step_ - 1), step_), 0)
        if src.sparse:
            return LayerOutput(out, seq_lens, src.dim, True)
        dims = static_dims(src)
        dim = src.dim
        if ax == len(dims) - 1 and not over_time:
            dim = len(range(dims[ax])[slice(start, end, step)]) if dims[ax] is not None else None
        return LayerOutput(out, seq_lens, dim)


class ReduceLayer(Layer):
    """Reduce ``axes`` (``"T"``, ``"F"``, ints) with ``mode`` (sum, mean, max, min, prod, logsumexp); time masked."""

    options = frozenset({"mode", "axes", "axis", "keep_dims"})
    MODES = ("sum", "mean", "avg", "max", "min", "prod", "logsumexp")
    #: what padded frames become so that they do not change the result
    _FILL = {"max": -np.inf, "logsumexp": -np.inf, "min": np.inf, "prod": 1.0}

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reduce; padded frames take no part."""
        src = self.single_source(sources)
        ops = ctx.ops
        mode = self.opts.get("mode", "sum")
        if mode not in self.MODES:
            raise self.error(f"unknown reduce mode {mode!r}; known: {', '.join(self.MODES)}")
        axes = self.opts.get("axes", self.opts.get("axis"))
        if axes is None:
            raise self.error("needs 'axes'")
        idx = sorted(axis_list(src, axes, layer=self.name))
        if 0 in idx:
            return self._reduce_batch(src, idx, mode, ctx)
        x = src.dense()
        rank = ops.ndim(x)
        keep = bool(self.opts.get("keep_dims", False))
        over_time = src.has_time and 1 in idx
        if over_time:
            mask = src.mask("bool")
            for _ in range(rank - 2):
                mask = ops.expand_dims(mask, -1)
            x = ops.where(mask, x, np.float32(self._FILL.get(mode, 0.0)))
        averaged = mode in ("mean", "avg")
        out = ops.reduce(x, "sum" if averaged else mode, idx, keepdims=keep)
        in_dims = list(ops.static_shape(x))
        if in_dims[-1] is None and src.dim is not None and rank > 1 + int(src.has_time):
            in_dims[-1] = int(src.dim)
        if averaged:
            count = 1.0
            for i in idx:
                if not (over_time and i == 1):
                    count = count * (float(in_dims[i]) if in_dims[i] is not None
                                     else ops.cast(ops.dynamic_dim(x, i), "float32"))
            if over_time:
                lens = ops.maximum(ops.cast(src.seq_lens, "float32"), 1.0)
                count = count * ops.reshape(lens, [-1] + [1] * (ops.ndim(out) - 1))
            out = out / (np.float32(count) if isinstance(count, float) else count)
        if keep:
            out_dims = [1 if i in idx else d for i, d in enumerate(in_dims)]
        else:
            out_dims = [d for i, d in enumerate(in_dims) if i not in idx]
        has_time = src.has_time and (keep or not over_time)
        seq_lens = src.seq_lens if has_time else None
        if over_time and keep:
            seq_lens = ops.ones(ops.shape(src.seq_lens), "int32")
        return LayerOutput(out, seq_lens, feature_dim_of(out_dims, has_time))

    def _reduce_batch(self, src: LayerOutput, idx: list[int], mode: str, ctx: Context) -> LayerOutput:
        """A reduction that includes the batch axis; padded frames take no part.

        RETURNN's result has no batch axis; outputs here are always batch-major, so every batch entry holds the
        one result (``keep_dims`` makes no difference on the batch axis). Without time reduction the result has
        the longest seq's length.
        """
        ops = ctx.ops
        x = src.dense()
        rank = ops.ndim(x)
        keep = bool(self.opts.get("keep_dims", False))
        mask = ops.ones(ops.shape(x)[:1] + [1] * (rank - 1))
        if src.has_time:
            mask = src.mask()
            for _ in range(rank - 2):
                mask = ops.expand_dims(mask, -1)
        mask = mask * ops.ones_like(x)
        averaged = mode in ("mean", "avg")
        out = ops.masked_reduce(x, mask, "sum" if averaged else mode, idx, keepdims=True)
        if averaged:
            out = out / ops.maximum(ops.reduce(mask, "sum", idx, keepdims=True), 1.0)
        out = ops.tile(out, [ctx.batch_size] + [1] * (rank - 1))
        in_dims = list(ops.static_shape(x))
        if in_dims[-1] is None and src.dim is not None:
            in_dims[-1] = int(src.dim)
        drop = [i for i in idx if i != 0 and not keep]
        if drop:
            out = ops.squeeze_axes(out, drop)
        has_time = src.has_time and (keep or 1 not in idx)
        seq_lens = None
        if has_time:
            lens = src.seq_lens if 1 not in idx else ops.ones(ops.shape(src.seq_lens), "int32")
            lens = ops.cast(lens, "int32")
            seq_lens = ops.reduce(lens, "max") + ops.zeros(ops.shape(lens), "int32")
        out_dims = [1 if i in idx and i != 0 else d for i, d in enumerate(in_dims)]
        out_dims = [d for i, d in enumerate(out_dims) if i not in drop]
        return LayerOutput(out, seq_lens, feature_dim_of(out_dims, has_time))


class ReduceOutLayer(Layer):
    """RETURNN's ``reduce_out``: the feature axis cut into groups of ``num_pieces`` neighbours, each group reduced
    by ``mode`` (``max``: maxout, ``sum``); the output has dim / num_pieces features."""

    options = frozenset({"mode", "num_pieces"})
    recurrent = False

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The source's shape with the feature dim divided by ``num_pieces``."""
        own = super().out_shape_from_opts(opts, sources, layer_shape)
        pieces = opts.get("num_pieces")
        if own is not None or len(sources) != 1 or not sources[0] or not isinstance(pieces, int) or pieces < 1:
            return own
        dim = sources[0][-1]
        return (*sources[0][:-1], dim // pieces if dim is not None else None)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reshape the features to (dim / num_pieces, num_pieces) and reduce the pieces."""
        ops = ctx.ops
        src = self.single_source(sources)
        mode = self.opts.get("mode")
        if mode not in ("max", "sum"):
            raise self.error(f"mode must be 'max' or 'sum', got {mode!r}")
        pieces = int_opt(self, "num_pieces", None)
        dim = self.feature_dim(src)
        if pieces is None or pieces < 1 or dim % pieces:
            raise self.error(f"num_pieces {self.opts.get('num_pieces')!r} must divide the feature dim {dim}")
        x = ops.reshape(src.dense(), [*ops.shape(src.tensor)[:-1], dim // pieces, pieces])
        return LayerOutput(ops.reduce(x, mode, -1), src.seq_lens, dim // pieces)


class WindowLayer(Layer):
    """A window of ``window_size`` frames around each frame (``window_left``/``window_right``): (B, T, W, D);
    ``padding="valid"`` keeps only the frames whose window lies inside the seq (T - window_size + 1).

    The Theano era's option ``window`` instead concatenates the frames on the feature axis, (B, T, W * D), and
    keeps a sparse source sparse as (B, T, W) labels (what ``hidden``'s ``sparse_window`` reads; so does
    ``window_size``, as RETURNN's TF layer); its ``delta`` and
    ``delta_delta`` were never implemented in RETURNN and only 0 is accepted.
    """

    options = frozenset({"window_size", "window_left", "window_right", "axis", "padding", "window", "delta",
                         "delta_delta"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Stack shifted copies of the (masked) input along a new window axis after time."""
        src = self.single_source(sources)
        ops = ctx.ops
        if not src.has_time:
            raise self.error("needs an input with a time axis")
        if axis_index(src, self.opts.get("axis", "T"), layer=self.name) != 1:
            raise self.error("window only supports the time axis ('T')")
        theano = self.opts.get("window") is not None
        if theano and ("window_size" in self.opts or self.opts.get("delta") or self.opts.get("delta_delta")):
            raise self.error("give either window_size or the Theano option window (with delta/delta_delta 0)")
        size = int_opt(self, "window" if theano else "window_size", 0) or 0
        if size < 1:
            raise self.error(f"needs {'window' if theano else 'window_size'} >= 1")
        padding = str(self.opts.get("padding", "same")).lower()
        if padding not in ("same", "valid"):
            raise self.error(f"padding must be 'same' or 'valid', got {self.opts.get('padding')!r}")
        if padding == "valid":
            return self._valid(src, size, ctx)
        left, right = int_opt(self, "window_left", None), int_opt(self, "window_right", None)
        if left is None:
            left = size - 1 - right if right is not None else (size - 1) // 2
        right = size - 1 - left
        if left < 0 or right < 0:
            raise self.error(f"window_left/window_right do not fit window_size {size}")
        x = src.tensor if src.sparse else src.dense()  # RETURNN keeps labels sparse: windows of class indices
        rank = ops.ndim(x)
        mask = src.mask(ops.dtype(x))
        for _ in range(rank - 2):
            mask = ops.expand_dims(mask, -1)
        padded = ops.pad(x * mask, [(0, 0), (left, right)] + [(0, 0)] * (rank - 2))
        # the padded time axis is T + size - 1 long, so frame i is padded[:, i : i + T] with static bounds
        out = ops.stack([padded[:, i : (i - size + 1) or None] for i in range(size)], axis=2)
        if src.sparse:
            return LayerOutput(out, src.seq_lens, src.dim, sparse=True)
        if theano:
            if src.dim is None or rank != 3:
                raise self.error("the Theano option window needs a (batch, time, feature) input")
            return LayerOutput(ops.reshape(out, (*ops.shape(out)[:2], size * int(src.dim))), src.seq_lens,
                               size * int(src.dim))
        return LayerOutput(out, src.seq_lens, src.dim)

    def _valid(self, src: LayerOutput, size: int, ctx: Context) -> LayerOutput:
        """Windows of frames t..t+size-1 for t up to each seq's length minus size."""
        ops = ctx.ops
        x = src.tensor if src.sparse else src.dense()
        out = ops.stack([x[:, i : (i - size + 1) or None] for i in range(size)], axis=2)
        seq_lens = ops.maximum(ops.cast(src.seq_lens, "int32") - (size - 1), 0)
        return LayerOutput(out, seq_lens, src.dim, src.sparse)


def gather_frames(ops: Ops, x: Any, idx: Any) -> Any:
    """``x[b, idx[b, i]]`` for batch-major ``x`` (B, T, ...) and int ``idx`` (B, N): (B, N, ...)."""
    shape = ops.shape(x)
    flat = ops.reshape(x, [-1, *shape[2:]])
    base = ops.expand_dims(ops.arange(shape[0]) * shape[1], 1)
    return ops.gather(flat, idx + base, axis=0)


#: pad modes besides "constant": where position ``i`` (``< 0`` or ``>= n``) of an axis of length ``n`` reads from
PAD_INDEX = {
    "reflect": lambda ops, i, n: ops.where(ops.less(i, 0), -i, ops.where(ops.less(i, n), i, 2 * (n - 1) - i)),
    "symmetric": lambda ops, i, n: ops.where(ops.less(i, 0), -i - 1, ops.where(ops.less(i, n), i, 2 * n - 1 - i)),
    "replication": lambda ops, i, n: ops.minimum(ops.maximum(i, 0), n - 1),
}


class PadLayer(Layer):
    """Pad ``axes`` by ``padding`` (int or (left, right)) with ``value``; time padding is per seq."""

    options = frozenset({"axes", "padding", "value", "mode"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Constant padding; on the time axis each seq is padded at its own end."""
        src = self.single_source(sources)
        ops = ctx.ops
        mode = str(self.opts.get("mode", "constant")).lower()
        if mode != "constant" and mode not in PAD_INDEX:
            raise self.error(f"unknown pad mode {mode!r}; known: constant, {', '.join(PAD_INDEX)}")
        axes = self.opts.get("axes", "T")
        axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
        pad = self.opts.get("padding", 0)
        single_pair = isinstance(pad, (list, tuple)) and len(pad) == 2 and isinstance(pad[0], int)
        if isinstance(pad, int) or (single_pair and len(axes) == 1):
            pads = [pad] * len(axes)
        else:
            pads = list(pad) if isinstance(pad, (list, tuple)) else []
        if len(pads) != len(axes):
            raise self.error(f"padding {pad!r} does not match axes {axes!r}")
        value = self.float_opt("value", 0.0)
        x, seq_lens = src.dense(), src.seq_lens
        rank = ops.ndim(x)
        dims = static_dims(src, x)
        for ax_name, p in zip(axes, pads):
            left, right = (p, p) if isinstance(p, int) else (int(p[0]), int(p[1]))
            if left < 0 or right < 0:
                raise self.error(f"padding must not be negative, got {p!r}")
            ax = axis_index(src, ax_name, layer=self.name)
            if ax == 0:
                raise self.error("cannot pad the batch axis")
            if mode != "constant":
                x = self._pad_from_inside(ops, x, ax, left, right, seq_lens if src.has_time and ax == 1 else None,
                                          mode, dims[ax])
                if src.has_time and ax == 1:
                    seq_lens = seq_lens + (left + right)
                elif dims[ax] is not None:
                    dims[ax] = dims[ax] + left + right
                continue
            paddings = [(0, 0)] * rank
            paddings[ax] = (left, right)
            x = ops.pad(x, paddings, value=value)
            if src.has_time and ax == 1:
                # frames after each seq's end (within its new length and beyond) get ``value``
                pos = ops.expand_dims(ops.arange(ops.dynamic_dim(x, 1)), 0)
                keep = ops.less(pos, ops.expand_dims(ops.cast(seq_lens, "int32"), 1) + left)
                for _ in range(rank - 2):
                    keep = ops.expand_dims(keep, -1)
                x = ops.where(keep, x, np.float32(value))
                seq_lens = seq_lens + (left + right)
            elif dims[ax] is not None:
                dims[ax] = dims[ax] + left + right
        return LayerOutput(x, seq_lens, feature_dim_of(dims, src.has_time))

    def _pad_from_inside(self, ops: Any, x: Any, ax: int, left: int, right: int, seq_lens: Any, mode: str,
                         dim: int | None) -> Any:
        """``x`` padded on axis ``ax`` with its own frames (``mode``); over time each seq mirrors at its own end."""
        perm = [0, ax] + [i for i in range(1, ops.ndim(x)) if i != ax]
        if ax != 1:
            x = ops.transpose(x, perm)
        length = ops.dynamic_dim(x, 1)
        if seq_lens is not None:
            n = ops.expand_dims(ops.cast(seq_lens, "int32"), 1)
        elif dim is not None:
            n = dim
        else:
            raise self.error(f"pad mode {mode!r} needs a known size of axis {ax}")
        if seq_lens is None and mode == "reflect" and max(left, right) >= dim:
            raise self.error(f"pad mode 'reflect' needs padding below the axis size {dim}, got {(left, right)}")
        pos = ops.expand_dims(ops.arange(length + left + right), 0) - left
        # a seq shorter than the padding mirrors as far as it can (clipped to its own frames)
        idx = ops.maximum(ops.minimum(PAD_INDEX[mode](ops, pos, n), n - 1), 0)
        out = gather_frames(ops, x, idx + ops.zeros([ops.dynamic_dim(x, 0), 1], "int32"))
        return out if ax == 1 else ops.transpose(out, list(np.argsort(perm)))


class ExpandDimsLayer(Layer):
    """Add an axis of size ``dim`` (default 1) at ``axis``: ``"F"`` (after the feature), ``"spatial"`` or an int."""

    options = frozenset({"axis", "dim"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Insert an axis (repeating the input ``dim`` times along it)."""
        src = self.single_source(sources)
        ops = ctx.ops
        x = src.dense()
        rank = ops.ndim(x)
        axis = self.opts.get("axis", "F")
        if isinstance(axis, str):
            key = axis.lower()
            if key in ("f", "feature"):
                idx = rank
            elif key == "spatial":
                idx = rank - 1
            else:
                raise self.error(f"unknown axis {axis!r} for expand_dims (use 'F', 'spatial' or an int)")
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            idx = int(axis) % (rank + 1)
        else:
            raise self.error(f"axis must be 'F', 'spatial' or an int, got {axis!r}")
        if idx == 0 or (src.has_time and idx == 1):
            raise self.error("cannot add an axis before batch or time")
        dim = int_opt(self, "dim", 1)
        dim = 1 if dim is None else dim
        if dim < 1:
            raise self.error(f"dim must be >= 1, got {dim}")
        out = ops.expand_dims(x, idx)
        if dim != 1:
            reps = [1] * (rank + 1)
            reps[idx] = dim
            out = ops.tile(out, reps)
        dims = static_dims(src, x)
        dims.insert(idx, dim)
        return LayerOutput(out, src.seq_lens, feature_dim_of(dims, src.has_time))


class SqueezeLayer(Layer):
    """Remove ``axis`` (an int, ``"F"`` or a list of them), which must have size 1."""

    options = frozenset({"axis", "enforce_batch_dim_axis", "allow_no_op"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Drop size-1 axes."""
        src = self.single_source(sources)
        ops = ctx.ops
        if self.opts.get("enforce_batch_dim_axis", 0) not in (None, 0):
            raise self.error("only batch-major inputs are supported (enforce_batch_dim_axis=0)")
        idx = axis_list(src, self.opts.get("axis", "F"), layer=self.name)
        if any(ax == 0 or (src.has_time and ax == 1) for ax in idx):
            raise self.error("cannot squeeze the batch or time axis")
        dims = static_dims(src)
        drop = []
        for ax in idx:
            if dims[ax] != 1:
                if self.opts.get("allow_no_op"):
                    continue
                raise self.error(f"squeeze axis {ax} has size {dims[ax]}, not 1")
            drop.append(ax)
        if not drop:
            return src
        out = ops.squeeze_axes(src.tensor, drop)
        out_dims = [d for i, d in enumerate(dims) if i not in drop]
        return LayerOutput(out, src.seq_lens, src.dim if src.sparse else feature_dim_of(out_dims, src.has_time),
                           src.sparse)


class TimeChunkingLayer(Layer):
    """Cut each seq into windows of ``chunk_size`` frames every ``chunk_step``: (B*C, chunk_size, D)."""

    options = frozenset({"chunk_size", "chunk_step"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Frame the time axis into chunks that become batch entries (chunk c of seq b is entry b*C + c)."""
        src = self.single_source(sources)
        ops = ctx.ops
        if not src.has_time:
            raise self.error("needs an input with a time axis")
        size = int_opt(self, "chunk_size", 0) or 0
        step = int_opt(self, "chunk_step", size) or 0
        if size < 1 or step < 1:
            raise self.error("chunk_size and chunk_step must be >= 1")
        x = src.tensor
        rank = ops.ndim(x)
        time = ops.cast(ops.dynamic_dim(x, 1), "int32")
        batch = ops.cast(ops.dynamic_dim(x, 0), "int32")
        num = ops.maximum(ops.floordiv(time - size + (step - 1), step), 0) + 1
        starts = ops.arange(num) * step
        frames = ops.reshape(ops.expand_dims(starts, 1) + ops.expand_dims(ops.arange(size), 0), [-1])
        # frames past the end of the (padded) input are zeros, as if the input were zero-padded to fit
        inside = ops.less(frames, time)
        chunks = ops.gather(x, ops.where(inside, frames, 0), axis=1)
        chunks = chunks * ops.reshape(ops.cast(inside, ops.dtype(x)), [1, -1] + [1] * (rank - 2))
        out = ops.reshape(chunks, [batch * num, size, *ops.shape(x)[2:]])
        lens = ops.expand_dims(ops.cast(src.seq_lens, "int32"), 1) - ops.expand_dims(starts, 0)
        lens = ops.minimum(ops.maximum(lens, 0), size)
        res = LayerOutput(out, ops.reshape(lens, [-1]), src.dim, src.sparse)
        res.extra["chunking"] = {"size": size, "step": step, "num": num, "time": time, "batch": batch,
                                 "seq_lens": src.seq_lens}
        return res


class TimeUnChunkingLayer(Layer):
    """Undo ``time_chunking`` (``chunking_layer``): overlapping frames are averaged."""

    options = frozenset({"chunking_layer"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Overlap-add the chunks back into seqs, divided by the number of chunks covering each frame."""
        src = self.single_source(sources)
        ops = ctx.ops
        ref = self.opts.get("chunking_layer")
        if not isinstance(ref, str):
            raise self.error("needs 'chunking_layer'")
        info = ctx.get(ref, layer=self.name).extra.get("chunking")
        if info is None:
            raise self.error(f"chunking_layer {ref!r} is not a time_chunking layer")
        x = src.dense()
        if ops.ndim(x) != 3:
            raise self.error("time_unchunking needs (batch, time, feature) input")
        size, step, num, batch, time = info["size"], info["step"], info["num"], info["batch"], info["time"]
        chunk_time = ops.static_shape(x)[1]
        if chunk_time is not None and chunk_time != size:
            raise self.error(f"its input has chunks of {chunk_time} frames, but {ref!r} cut chunks of {size}")
        dim = self.feature_dim(src)
        flat = ops.reshape(x, [batch, num * size, dim])
        t = ops.arange(time)
        first = ops.floordiv(t, step)  # the last chunk that starts at or before frame t
        offset = t - first * step
        total = None
        count = None
        # frame t lies in chunks first, first - 1, ...: at most ceil(size / step) of them
        for j in range(-(-size // step)):
            chunk = first - j
            pos = offset + j * step
            valid = (ops.cast(ops.greater(chunk, -1), "float32") * ops.cast(ops.less(chunk, num), "float32")
                     * ops.cast(ops.less(pos, size), "float32"))
            idx = ops.where(ops.greater(valid, 0.5), chunk * size + pos, 0)
            term = ops.gather(flat, idx, axis=1) * ops.reshape(valid, [1, -1, 1])
            total = term if total is None else total + term
            count = valid if count is None else count + valid
        out = total / ops.reshape(ops.maximum(count, 1.0), [1, -1, 1])
        return LayerOutput(out, info["seq_lens"], dim)
