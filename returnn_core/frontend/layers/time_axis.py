"""Layers that change the time (or another) axis: ``prefix_in_time``, ``postfix_in_time``, ``resize``,
``split_batch_time`` and ``combine_dims``; ``concat`` of ``(layer, axis)`` sources along one axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.shape import MergeDimsLayer, axis_index, gather_frames, int_opt, static_dims


def _frames(layer: Layer, src: LayerOutput, ctx: Context, key: str, repeat: int) -> Any:
    """(B, repeat, ...) frames of option ``key``: a constant, or a layer without time (repeated ``repeat`` times)."""
    ops = ctx.ops
    value = layer.opts.get(key, 0.0)
    shape = ops.shape(src.tensor)
    if isinstance(value, str):
        other = ctx.get(value, layer=layer.name)
        if other.has_time or other.sparse != src.sparse or ops.ndim(other.tensor) != src.ndim - 1:
            raise layer.error(f"{key} layer {value!r} must be like one frame of the input (no time axis, same rank "
                              f"and sparsity)")
        if not src.sparse and other.dim != src.dim:
            raise layer.error(f"{key} layer {value!r} has dim {other.dim}, the input {src.dim}")
        frame = ops.expand_dims(other.tensor, 1)
        return ops.tile(frame, [1, repeat] + [1] * (src.ndim - 2))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise layer.error(f"{key} must be a number or a layer name, got {value!r}")
    return ops.fill([shape[0], repeat, *shape[2:]], value, ops.dtype(src.tensor))


def _repeat(layer: Layer) -> int:
    repeat = int_opt(layer, "repeat", 1)
    if repeat is None or repeat < 0:
        raise layer.error(f"repeat must be >= 0, got {repeat}")
    return repeat


class PrefixInTimeLayer(Layer):
    """``repeat`` frames of ``prefix`` (a constant, default 0, or a layer without time) put before each seq."""

    options = frozenset({"prefix", "repeat"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Prepend the frames; seq lengths grow by ``repeat``."""
        src = self.single_source(sources)
        if not src.has_time:
            raise self.error("needs an input with a time axis")
        repeat = _repeat(self)
        out = ctx.ops.concat([_frames(self, src, ctx, "prefix", repeat), src.tensor], axis=1)
        return LayerOutput(out, src.seq_lens + repeat, src.dim, src.sparse)


class PostfixInTimeLayer(Layer):
    """``repeat`` frames of ``postfix`` (a constant, default 0, or a layer without time) put after each seq's end."""

    options = frozenset({"postfix", "repeat"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Write the frames at each seq's own end; seq lengths grow by ``repeat``."""
        ops = ctx.ops
        src = self.single_source(sources)
        if not src.has_time:
            raise self.error("needs an input with a time axis")
        repeat = _repeat(self)
        frames = _frames(self, src, ctx, "postfix", repeat)
        padded = ops.concat([src.tensor, ops.zeros_like(frames) if not src.sparse else frames * 0], axis=1)
        time = ops.dynamic_dim(padded, 1)
        lens = ops.expand_dims(ops.cast(src.seq_lens, "int32"), 1)
        pos = ops.expand_dims(ops.arange(time), 0)
        offset = pos - lens  # (B, T + repeat): index into the postfix frames where 0 <= offset < repeat
        inside = ops.greater(ops.cast(ops.greater(offset, -1), "int32") + ops.cast(ops.less(offset, repeat), "int32"), 1)
        idx = ops.minimum(ops.maximum(offset, 0), max(repeat - 1, 0))
        post = gather_frames(ops, frames, idx)
        for _ in range(src.ndim - 2):
            inside = ops.expand_dims(inside, -1)
        return LayerOutput(ops.where(inside, post, padded), src.seq_lens + repeat, src.dim, src.sparse)


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights of the 4 taps around position ``t`` in [0, 1) (TensorFlow's legacy a)."""
    def k(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        if d < 2:
            return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
        return 0.0

    return [k(t + 1), k(t), k(1 - t), k(2 - t)]


#: kind -> (tap offsets, weights per phase p of factor f): output frame k*f + p reads input frames k + offsets
RESIZE_KINDS = {
    "nn": ((0,), lambda p, f: [1.0]),
    "linear": ((0, 1), lambda p, f: [1.0 - p / f, p / f]),
    "cubic": ((-1, 0, 1, 2), lambda p, f: _cubic_weights(p / f)),
    "fill": ((0,), lambda p, f: [1.0]),  # each frame, then factor - 1 frames of fill_value
}


class ResizeLayer(Layer):
    """Upsample ``axis`` (``"T"`` or another non-batch axis) by the int ``factor`` with ``kind`` ``nn`` (each frame
    repeated), ``linear`` or ``cubic`` interpolation (TensorFlow's ``resize_*`` without align_corners), or ``fill``
    (each frame followed by ``factor - 1`` frames of ``fill_value``; negative for a sparse input counts from its
    dim)."""

    options = frozenset({"factor", "axis", "kind", "fill_value"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Interpolate along the axis; over time, each seq's own last frame is the edge."""
        ops = ctx.ops
        src = self.single_source(sources)
        factor = int_opt(self, "factor", None)
        if factor is None or factor < 1:
            raise self.error(f"needs an int factor >= 1, got {self.opts.get('factor')!r}")
        kind = self.opts.get("kind", "nn")
        kind = "nn" if kind == "nearest_neighbor" else kind
        if kind not in RESIZE_KINDS:
            raise self.error(f"unknown kind {kind!r}; known: nn (nearest_neighbor), linear, cubic, fill")
        fill_value = self.opts.get("fill_value")
        if kind == "fill":
            if not isinstance(fill_value, (int, float)) or isinstance(fill_value, bool) or (
                    src.sparse and not isinstance(fill_value, int)):
                raise self.error(f"kind 'fill' needs a numeric fill_value (an int class for a sparse input), "
                                 f"got {fill_value!r}")
            if src.sparse and fill_value < 0:
                fill_value += int(src.dim or 0)
        if "axis" not in self.opts:
            raise self.error("needs 'axis'")
        ax = axis_index(src, self.opts["axis"], layer=self.name)
        if ax == 0:
            raise self.error("cannot resize the batch axis")
        dims = static_dims(src)
        over_time = src.has_time and ax == 1
        x = src.dense() if kind not in ("nn", "fill") else src.tensor
        perm = [0, ax] + [i for i in range(1, src.ndim) if i != ax]
        if ax != 1:
            x = ops.transpose(x, perm)
        length = ops.cast(ops.dynamic_dim(x, 1), "int32")
        if over_time:
            last = ops.expand_dims(ops.maximum(ops.cast(src.seq_lens, "int32") - 1, 0), 1)
        else:
            last = ops.fill([1, 1], int(dims[ax]) - 1, "int32")
        offsets, weights = RESIZE_KINDS[kind]
        table = np.array([weights(p, factor) for p in range(factor)], dtype=np.float32)  # (factor, taps)
        pos = ops.arange(length * factor)
        k = ops.floordiv(pos, factor)
        phase = pos - k * factor
        per_batch = ops.zeros([ops.dynamic_dim(x, 0), 1], "int32")
        out = None
        for j, off in enumerate(offsets):
            idx = ops.minimum(ops.maximum(ops.expand_dims(k + off, 0), 0), last) + per_batch
            frames = gather_frames(ops, x, idx)
            if kind == "nn":
                out = frames
                break
            if kind == "fill":
                first = ops.reshape(ops.equal(phase, 0), [1, -1] + [1] * (ops.ndim(frames) - 2))
                out = ops.where(first, frames, ops.constant(np.asarray(fill_value), ops.dtype(frames)))
                break
            w = ops.gather(ops.constant(table[:, j]), phase)
            term = frames * ops.reshape(w, [1, -1] + [1] * (ops.ndim(frames) - 2))
            out = term if out is None else out + term
        if ax != 1:
            out = ops.transpose(out, list(np.argsort(perm)))
        seq_lens = src.seq_lens * factor if over_time else src.seq_lens
        out_dims = list(dims)
        if dims[ax] is not None:
            out_dims[ax] = dims[ax] * factor
        sparse = src.sparse and kind in ("nn", "fill")
        dim = src.dim if src.sparse else out_dims[-1]
        return LayerOutput(out, seq_lens, dim, sparse)


class SplitBatchTimeLayer(Layer):
    """Its input of shape (B*T, ...) (no time axis) as (B, T, ...), batch and time and seq lengths taken from
    ``base`` (default ``data``)."""

    options = frozenset({"base"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reshape the merged batch axis back into batch and time."""
        ops = ctx.ops
        src = self.single_source(sources)
        if src.has_time:
            raise self.error("needs an input without a time axis, of shape (batch * time, ...)")
        base = ctx.get(self.opts.get("base", "data"), layer=self.name)
        if not base.has_time:
            raise self.error(f"base {self.opts.get('base', 'data')!r} has no time axis")
        shape = ops.shape(src.tensor)
        out = ops.reshape(src.tensor, [ops.dynamic_dim(base.tensor, 0), ops.dynamic_dim(base.tensor, 1), *shape[1:]])
        return LayerOutput(out, base.seq_lens, src.dim, src.sparse)


class CombineDimsLayer(MergeDimsLayer):
    """Combine ``axes`` (two or more, of fixed size, not batch or time) into one at the first one's place, in the
    given order (like ``merge_dims`` with ``keep_order``)."""

    options = frozenset({"axes"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Check the axes, then merge them in order."""
        src = self.single_source(sources)
        if "axes" not in self.opts:
            raise self.error("needs 'axes'")
        axes = self.opts["axes"]
        if isinstance(axes, str) and axes in self.ALL_STATIC:
            self.opts = {**self.opts, "keep_order": True}
            return super().call(sources, ctx)
        idx = [axis_index(src, a, layer=self.name) for a in (axes if isinstance(axes, (list, tuple)) else [axes])]
        if len(set(idx)) < 2:
            raise self.error(f"needs at least two different axes, got {axes!r}")
        dims = static_dims(src)
        if any(dims[i] is None for i in idx if i > 0 and not (src.has_time and i == 1)):
            raise self.error("all axes which are combined must have a fixed size")
        self.opts = {**self.opts, "keep_order": True}
        return super().call(sources, ctx)


def concat_on_axis(layer: Layer, sources: list[LayerOutput], axes: list[Any], ctx: Context) -> LayerOutput:
    """``concat`` of ``(layer, axis)`` sources: all along the same axis; on time each seq's frames follow the
    previous source's (the seq lengths add up), on another axis the tensors are joined as they are."""
    ops = ctx.ops
    if None in axes:
        raise layer.error(f"give every source as a (source, axis) pair or none, got axes {axes}")
    idx = {axis_index(s, a, layer=layer.name) for s, a in zip(sources, axes)}
    if len(idx) != 1:
        raise layer.error(f"(source, axis) pairs must name the same axis for every source, got {axes}")
    ax = idx.pop()
    if ax == 0:
        raise layer.error("cannot concatenate along the batch axis")
    if len({s.has_time for s in sources}) != 1 or len({s.ndim for s in sources}) != 1:
        raise layer.error("its sources must all have the same rank, all with or all without time")
    first = sources[0]
    if first.has_time and ax == 1:
        if len({s.sparse for s in sources}) != 1 or len({s.dim for s in sources}) != 1:
            raise layer.error("sources concatenated in time need the same feature dim and sparsity")
        lens = [ops.cast(s.seq_lens, "int32") for s in sources]
        total = lens[0]
        for n in lens[1:]:
            total = total + n
        padded = ops.concat([s.tensor for s in sources], axis=1)  # only for its (sufficient) length
        pos = ops.expand_dims(ops.arange(ops.dynamic_dim(padded, 1)), 0)
        out = ops.zeros_like(padded) if not first.sparse else padded * 0
        offset = ops.zeros([ops.dynamic_dim(padded, 0), 1], "int32")
        for s, n in zip(sources, lens):
            rel = pos - offset
            inside = ops.greater(ops.cast(ops.greater(rel, -1), "int32") + ops.cast(ops.less(rel, ops.expand_dims(n, 1)),
                                                                                  "int32"), 1)
            frames = gather_frames(ops, s.tensor, ops.minimum(ops.maximum(rel, 0), ops.dynamic_dim(s.tensor, 1) - 1))
            for _ in range(s.ndim - 2):
                inside = ops.expand_dims(inside, -1)
            out = ops.where(inside, frames, out)
            offset = offset + ops.expand_dims(n, 1)
        return LayerOutput(out, total, first.dim, first.sparse)
    if any(s.sparse for s in sources):
        raise layer.error("sparse sources can only be concatenated in time")
    dims = [static_dims(s) for s in sources]
    fixed = [i for i in range(1 + int(first.has_time), first.ndim) if i != ax]
    if any([d[i] for i in fixed] != [dims[0][i] for i in fixed] for d in dims[1:]):
        raise layer.error(f"its sources differ outside the concatenated axis {ax}: {dims}")
    out = ops.concat([s.tensor for s in sources], axis=ax)
    out_dims = list(dims[0])
    out_dims[ax] = None if any(d[ax] is None for d in dims) else sum(int(d[ax]) for d in dims)
    return LayerOutput(out, first.seq_lens, out_dims[-1] if ax == len(out_dims) - 1 else first.dim)
