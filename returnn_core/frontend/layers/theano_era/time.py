"""Theano-era layers that change the time axis: frame_concat_zero, frame_cutoff, time_shift, upsample, chunking,
downsample.

RETURNN's Theano versions work on the padded (time, batch) tensor and note themselves that they are "not correct
for max_seqs > 1"; here each seq gets what the manual describes for it (its own frames, its own length).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput


def _int(layer: Layer, key: str, default: int | None, minimum: int) -> int:
    value = layer.opts.get(key, default)
    if value is None:
        raise layer.error(f"needs {key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise layer.error(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _time_source(layer: Layer, sources: list[LayerOutput]) -> LayerOutput:
    src = layer.single_source(sources)
    if not src.has_time:
        raise layer.error("needs an input with a time axis")
    return src


def _masked(ops: Ops, src: LayerOutput) -> Any:
    x = src.tensor
    mask = src.mask(ops.dtype(x)) if ops.dtype(x) != "bool" else src.mask("bool")
    for _ in range(ops.ndim(x) - 2):
        mask = ops.expand_dims(mask, -1)
    return x * mask


def _repeat_time(ops: Ops, x: Any, factor: int) -> Any:
    """Each frame of batch-major ``x`` repeated ``factor`` times in place."""
    shape = ops.shape(x)
    tiled = ops.tile(ops.expand_dims(x, 2), [1, 1, factor] + [1] * (len(shape) - 2))
    return ops.reshape(tiled, (shape[0], shape[1] * factor, *shape[2:]))


class FrameConcatZeroLayer(Layer):
    """``frame_concat_zero``: ``num_frames`` zero frames before (``left``, default) or after each seq."""

    options = frozenset({"num_frames", "left"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pad each seq with zero frames."""
        ops = ctx.ops
        src, n, left = self.frames(sources)
        x = _masked(ops, src)
        out = ops.pad(x, [(0, 0), (n, 0) if left else (0, n)] + [(0, 0)] * (ops.ndim(x) - 2))
        return LayerOutput(out, ops.cast(src.seq_lens, "int32") + n, src.dim, src.sparse)

    def frames(self, sources: list[LayerOutput]) -> tuple[LayerOutput, int, bool]:
        """The time source, ``num_frames`` and ``left``."""
        return _time_source(self, sources), _int(self, "num_frames", None, 0), bool(self.opts.get("left", True))


class FrameCutoffLayer(FrameConcatZeroLayer):
    """``frame_cutoff``: drop ``num_frames`` frames at the start (``left``, default) or end of each seq."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Cut frames off each seq."""
        ops = ctx.ops
        src, n, left = self.frames(sources)
        lens = ops.maximum(ops.cast(src.seq_lens, "int32") - n, 0)
        out = LayerOutput(src.tensor[:, n:] if left else src.tensor, lens, src.dim, src.sparse)
        return out.with_tensor(_masked(ops, out), dim=src.dim, sparse=src.sparse)


class TimeShiftLayer(Layer):
    """``time_shift``: the input delayed by ``n_shift`` frames (zeros first), same length; ``base`` is accepted
    and unused, as in RETURNN."""

    options = frozenset({"n_shift", "base"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Delay the frames."""
        ops = ctx.ops
        src = _time_source(self, sources[:1])
        n = _int(self, "n_shift", 1, 1)
        x = _masked(ops, src)
        shifted = ops.pad(x, [(0, 0), (n, 0)] + [(0, 0)] * (ops.ndim(x) - 2))[:, :-n]
        return src.with_tensor(shifted, dim=src.dim, sparse=src.sparse)


class UpsampleLayer(Layer):
    """``upsample``: nearest-neighbour repetition by ``factor`` along ``axis`` (0 or "T": time, 2 or "F":
    features); time upsampling takes its length from the last source (``time_like_last_source``), cut or
    zero-padded to it."""

    options = frozenset({"factor", "axis", "time_like_last_source", "method"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Repeat frames or features."""
        ops = ctx.ops
        method = self.opts.get("method", "nearest-neighbor")
        if method != "nearest-neighbor":
            raise self.error(f"method {method!r}: only 'nearest-neighbor' is supported")
        axes = self.opts.get("axis")
        if axes is None:
            raise self.error("needs 'axis' (0 or 'T' for time, 2 or 'F' for features)")
        axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
        factors = self.opts.get("factor")
        factors = list(factors) if isinstance(factors, (list, tuple)) else [factors] * len(axes)
        if len(factors) != len(axes) or not all(isinstance(f, int) and f >= 1 for f in factors):
            raise self.error(f"factor must be a positive integer (or one per axis), got {self.opts.get('factor')!r}")
        time_ref = None
        if self.opts.get("time_like_last_source"):
            if len(sources) < 2:
                raise self.error("time_like_last_source needs at least two sources")
            sources, time_ref = sources[:-1], sources[-1]
        src = _time_source(self, sources)
        out = _masked(ops, src) if not src.sparse else src.dense()
        dim, seq_lens = src.dim, src.seq_lens
        for axis, factor in zip(axes, factors):
            if axis in (0, "T", "t"):
                if time_ref is None or not time_ref.has_time:
                    raise self.error("time upsampling needs time_like_last_source=True and a last source with time")
                out = _repeat_time(ops, out, factor)
                target = ops.dynamic_dim(time_ref.tensor, 1)
                extra = ops.maximum(target - ops.dynamic_dim(out, 1), 0)
                zeros = ops.zeros([ops.dynamic_dim(out, 0), extra, *ops.shape(out)[2:]])
                out = ops.concat([out, zeros], axis=1)[:, :target]
                seq_lens = time_ref.seq_lens
            elif axis in (2, "F", "f"):
                shape = ops.shape(out)
                tiled = ops.tile(ops.expand_dims(out, -1), [1] * len(shape) + [factor])
                out = ops.reshape(tiled, (*shape[:-1], int(dim or 0) * factor))
                dim = int(dim or 0) * factor
            else:
                raise self.error(f"axis {axis!r}: use 0/'T' (time) or 2/'F' (features)")
        result = LayerOutput(out, seq_lens, dim)
        return result.with_tensor(_masked(ops, result), dim=dim)


class ChunkingLayer(Layer):
    """``chunking``: time reduction as in the pyramidal LSTM (arXiv:1508.01211): each ``chunk_size`` consecutive
    frames become one, their features concatenated (``method="concat"``) or averaged (``"average"``)."""

    options = frozenset({"chunk_size", "method"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Group consecutive frames."""
        ops = ctx.ops
        # RETURNN's reshape groups frames t, t + T/c, ... (a layout slip); the pLSTM it cites groups neighbours
        src = _time_source(self, sources)
        size = _int(self, "chunk_size", 1, 1)
        method = self.opts.get("method", "concat")
        if method not in ("concat", "average"):
            raise self.error(f"method {method!r}: use 'concat' or 'average'")
        grouped, mask = _group_frames(self, src, size, ctx)
        lens = ops.floordiv(ops.cast(src.seq_lens, "int32") + (size - 1), size)
        dim = self.feature_dim(src)
        if method == "concat":
            return LayerOutput(ops.reshape(grouped, (ops.dynamic_dim(grouped, 0), -1, size * dim)), lens, size * dim)
        mean = ops.reduce(grouped, "sum", 2) / ops.maximum(ops.reduce(mask, "sum", 2), 1.0)
        return LayerOutput(mean, lens, dim)


#: ``LayerOutput.extra`` key of a ``downsample`` with ``sample_target``: the loss target resampled like its frames (a
#: :class:`LayerOutput`), which a following ``downsample``'s ``base`` and a ``softmax``'s ``copy_output`` read
RESAMPLED_TARGET = "resampled_target"


class DownsampleLayer(Layer):
    """``downsample``: every ``factor`` frames (``axis`` 0 or "T") or features (2 or "F") reduced to one by
    ``method`` "average" (default), "max", "concat" or "mlp" (concat, then ``relu(z DP + b)`` back to the input
    dim); ``axis`` may list both (``factor`` one for all or one per axis, in the sorted axes' order, as RETURNN),
    also as JSON text. On time only complete groups count (length // factor), as RETURNN's minimum over the
    group's index.

    ``sample_target`` resamples the loss target (``target``, default "classes") the same way (class indices by the
    maximum over each group, dense targets by ``method``); ``base`` (a ``downsample`` layer) starts from that layer's
    resampled target instead of the data. A ``softmax`` with ``copy_output`` naming this layer trains on it.
    ``padding`` (RETURNN's zero frames up to a multiple of ``factor``) changes no present frame: a group it
    completes still holds padding, whose index is 0, so it is accepted and has no effect.
    """

    options = frozenset({"factor", "axis", "method", "padding", "sample_target", "base"})
    METHODS = ("average", "max", "concat", "mlp")

    def steps(self) -> list[tuple[int, bool]]:
        """(factor, on time) per axis to reduce, in RETURNN's order (axes sorted, factors as given)."""
        axis, factor = self.opts.get("axis"), self.opts.get("factor")
        try:
            axis = json.loads(axis) if isinstance(axis, str) and axis not in ("T", "t", "F", "f") else axis
            factor = json.loads(factor) if isinstance(factor, str) else factor
        except ValueError:
            raise self.error(f"axis and factor must be numbers, lists or their JSON, got {axis!r}, {factor!r}") from None
        axes = list(axis) if isinstance(axis, (list, tuple, set)) else [axis]
        names = {0: 0, "T": 0, "t": 0, 2: 2, "F": 2, "f": 2}
        if not axes or any(isinstance(a, bool) or a not in names for a in axes):
            raise self.error(f"axis {self.opts.get('axis')!r}: use 0/'T' (time) or 2/'F' (features), or a list")
        factors = list(factor) if isinstance(factor, (list, tuple)) else [factor] * len(axes)
        if len(factors) != len(axes) or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 1
                                                for f in factors):
            raise self.error(f"factor must be a positive integer or one per axis, got {self.opts.get('factor')!r}")
        return [(f, a == 0) for f, a in zip(factors, sorted(names[a] for a in axes)) if f != 1]

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reduce groups of frames or features (and the target, with ``sample_target``)."""
        ops = ctx.ops
        method = self.opts.get("method", "average")
        if method not in self.METHODS:
            raise self.error(f"method {method!r}: use {', '.join(self.METHODS)}")
        steps = self.steps()
        src = _time_source(self, sources)
        reduce = "concat" if method == "mlp" else method
        result = src if steps else src.with_tensor(_masked(ops, src), dim=src.dim)
        for factor, on_time in steps:
            result = self.downsample(result, factor, on_time, reduce, ctx)
        if method == "mlp":
            dim = self.feature_dim(src)
            w = self.param("DP", (self.feature_dim(result), dim), self.opts.get("forward_weights_init",
                                                                                "glorot_uniform"))
            b = self.param("b", (dim,), self.opts.get("bias_init", "zeros"))
            result = result.with_tensor(ops.relu(ops.dot(result.tensor, w) + b), dim=dim)
            result = result.with_tensor(_masked(ops, result), dim=dim)
        target = self.target(steps, reduce, ctx)
        if target is not None:
            result.extra = {**result.extra, RESAMPLED_TARGET: target}
        return result

    def downsample(self, src: LayerOutput, factor: int, on_time: bool, method: str, ctx: Context) -> LayerOutput:
        """``src`` with each ``factor`` frames (``on_time``) or features reduced to one by ``method``."""
        ops = ctx.ops
        dim = self.feature_dim(src)
        if on_time:
            grouped, _ = _group_frames(self, src, factor, ctx)
            lens = ops.floordiv(ops.cast(src.seq_lens, "int32"), factor)
        else:
            if dim % factor:
                raise self.error(f"feature dim {dim} is not a multiple of factor {factor}")
            x = src.dense()
            grouped = ops.reshape(x, (*ops.shape(x)[:2], dim // factor, factor))
            grouped = ops.transpose(grouped, (0, 1, 3, 2))  # (B, T, factor, D / factor)
            lens = src.seq_lens
        out_dim = int(ops.static_shape(grouped)[-1] or dim)
        if method == "concat":
            out = ops.reshape(grouped, (*ops.shape(grouped)[:2], factor * out_dim))
            out_dim *= factor
        else:
            out = ops.reduce(grouped, "mean" if method == "average" else "max", 2)
        result = LayerOutput(out, lens, out_dim)
        return result.with_tensor(_masked(ops, result), dim=out_dim)

    def target(self, steps: list[tuple[int, bool]], method: str, ctx: Context) -> LayerOutput | None:
        """The resampled loss target, or None without ``sample_target``/``base`` or without target data here."""
        base = self.opts.get("base")
        if isinstance(base, (list, tuple)):
            base = base[0] if base else None
        sample = bool(self.opts.get("sample_target"))
        if base is None and not sample:
            return None
        data = target_data(self, ctx)
        if data is None:
            return None  # no targets fed (forward): nothing to resample, no loss reads it
        target = data
        if base is not None:
            if not isinstance(base, str):
                raise self.error(f"base must name a downsample layer, got {base!r}")
            target = ctx.get(base, layer=self.name).extra.get(RESAMPLED_TARGET)
            if target is None:
                # RETURNN would carry the base's unresampled target on with resampled frames: a length mismatch
                raise self.error(f"base {base!r} resampled no target; give it sample_target=True")
        if not sample:
            return target
        for factor, on_time in steps:
            if not target.sparse:
                target = self.downsample(target, factor, on_time, method, ctx)
            elif on_time:  # class indices have no feature axis to reduce, as in RETURNN
                target = _downsample_labels(ctx.ops, target, factor)
        return target


def target_data(layer: Layer, ctx: Context) -> LayerOutput | None:
    """The data of ``layer``'s ``target`` (default "classes"), None where no targets are fed (forward)."""
    try:
        return ctx.get(f"data:{layer.opts.get('target', 'classes')}", layer=layer.name)
    except NetworkError:
        return None


def _downsample_labels(ops: Ops, target: LayerOutput, factor: int) -> LayerOutput:
    """Sparse (B, T) labels: the maximum class index of each ``factor`` frames, length // factor per seq."""
    labels = ops.cast(target.tensor, "int32") * target.mask("int32")
    batch = ops.dynamic_dim(labels, 0)
    time = ops.cast(ops.dynamic_dim(labels, 1), "int32")
    pad = ops.floordiv(time + (factor - 1), factor) * factor - time
    labels = ops.concat([labels, ops.zeros([batch, pad], "int32")], axis=1)
    grouped = ops.reduce(ops.reshape(labels, (batch, -1, factor)), "max", 2)
    return LayerOutput(grouped, ops.floordiv(ops.cast(target.seq_lens, "int32"), factor), target.dim, sparse=True)


def _group_frames(layer: Layer, src: LayerOutput, size: int, ctx: Context) -> tuple[Any, Any]:
    """The masked frames padded to a multiple of ``size`` as (B, T / size, size, D), and the mask (B, T', size, 1)."""
    ops = ctx.ops
    if src.feature_ndim != 1 and not src.sparse:
        raise layer.error("needs a (batch, time, feature) input")
    x = _masked(ops, src) if not src.sparse else src.dense()
    dim = layer.feature_dim(src)
    batch = ops.dynamic_dim(x, 0)
    time = ops.cast(ops.dynamic_dim(x, 1), "int32")
    pad = ops.floordiv(time + (size - 1), size) * size - time
    x = ops.concat([x, ops.zeros([batch, pad, dim])], axis=1)
    mask = ops.concat([src.mask(), ops.zeros([batch, pad])], axis=1)
    return ops.reshape(x, (batch, -1, size, dim)), ops.reshape(mask, (batch, -1, size, 1))


class TruncationLayer(Layer):
    """``trunc``: only the first ``n_trunc`` frames (of the concatenated sources)."""

    options = frozenset({"n_trunc"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Cut time."""
        ops = ctx.ops
        src = _time_source(self, sources)
        n = _int(self, "n_trunc", None, 1)
        lens = ops.minimum(ops.cast(src.seq_lens, "int32"), n)
        return LayerOutput(src.tensor[:, :n], lens, src.dim, src.sparse)


class TimeBlurLayer(Layer):
    """``time_blur``: each frame the weighted mean of the seq's frames at offsets ``range(t_start, t_end,
    t_step)`` before it, weighted by ``distribution`` "uniform", "triangle", "hamming" or "gauss(sigma)" over
    the offsets; offsets outside the seq count with weight 0."""

    options = frozenset({"t_start", "t_end", "t_step", "distribution"})

    def weights(self) -> tuple[list[int], np.ndarray]:
        """The offsets and their weights."""
        offsets = list(range(_int(self, "t_start", None, -10**9), _int(self, "t_end", None, -10**9),
                             _int(self, "t_step", None, 1)))
        if not offsets:
            raise self.error("t_start, t_end and t_step give no offsets")
        nums = np.arange(len(offsets))
        dist = self.opts.get("distribution")
        if dist == "uniform":
            return offsets, np.ones(len(offsets), "float32")
        if dist == "triangle":
            return offsets, (1 + np.minimum(nums, nums[::-1])).astype("float32")
        if dist == "hamming":
            alpha = 0.53836
            return offsets, (alpha - (1 - alpha) * np.cos(2 * np.pi * nums / max(len(nums) - 1, 1))).astype("float32")
        if isinstance(dist, str) and dist.startswith("gauss(") and dist.endswith(")"):
            sigma, n = float(dist[6:-1]), len(nums) - 1
            return offsets, np.exp(-0.5 * ((nums - n / 2.0) / (sigma * n / 2.0)) ** 2).astype("float32")
        raise self.error(f"distribution {dist!r}: use 'uniform', 'triangle', 'hamming' or 'gauss(sigma)'")

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Blur over time."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if src.sparse or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        offsets, weights = self.weights()
        mask = ops.expand_dims(src.mask(), -1)
        x = src.tensor * mask
        total, weight_sum = ops.zeros_like(x), ops.zeros_like(mask)
        for offset, weight in zip(offsets, weights):
            total = total + _shift_time(ops, x, offset) * weight
            weight_sum = weight_sum + _shift_time(ops, mask, offset) * weight
        out = total / ops.maximum(weight_sum, np.float32(1e-4)) * mask
        return src.with_tensor(out, dim=src.dim)


def _shift_time(ops: Ops, x: Any, offset: int) -> Any:
    """``x`` moved ``offset`` frames later (earlier if negative), zeros coming in, same length."""
    if offset == 0:
        return x
    time = ops.dynamic_dim(x, 1)
    if offset > 0:
        return ops.pad(x, [(0, 0), (offset, 0), (0, 0)])[:, :time]
    return ops.pad(x, [(0, 0), (0, -offset), (0, 0)])[:, -offset:]


class TimeConcatLayer(Layer):
    """``time_concat``: per seq the frames of all sources one after the other (sources of one dim); RETURNN joined
    the padded tensors, which leaves the padding of the first source inside the seq."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Join the sources in time."""
        ops = ctx.ops
        if not sources or any(not s.has_time or s.sparse or s.feature_ndim != 1 for s in sources):
            raise self.error("needs dense (batch, time, feature) sources")
        if len({s.dim for s in sources}) != 1:
            raise self.error(f"needs sources of one dim, got dims {[s.dim for s in sources]}")
        dim = self.feature_dim(sources[0])
        joined = ops.concat([_masked(ops, s) for s in sources], axis=1)
        batch = ops.dynamic_dim(joined, 0)
        time = ops.expand_dims(ops.arange(ops.dynamic_dim(joined, 1)), 0)  # (1, T)
        idx = ops.cast(ops.zeros([batch, 1]), "int32") + time
        # frame t of the result: source k's frame t - (lengths before k), found at offset (padded lengths before k)
        lens_before, pads_before = ops.cast(ops.zeros([batch]), "int32"), 0
        for src in sources:
            lens = ops.cast(src.seq_lens, "int32")
            start = ops.expand_dims(lens_before, 1)
            end = start + ops.expand_dims(lens, 1)
            inside = ops.cast(ops.greater(time + 1, start), "int32") * ops.cast(ops.less(time, end), "int32")
            idx = idx * (1 - inside) + (time - start + pads_before) * inside
            lens_before = lens_before + lens
            pads_before = pads_before + ops.cast(ops.dynamic_dim(src.tensor, 1), "int32")
        idx = ops.minimum(idx, ops.cast(ops.dynamic_dim(joined, 1), "int32") - 1)
        full = ops.expand_dims(idx, 2) + ops.cast(ops.zeros([batch, ops.dynamic_dim(joined, 1), dim]), "int32")
        out = LayerOutput(ops.take_along_axis(joined, full, axis=1), lens_before, dim)
        return out.with_tensor(_masked(ops, out), dim=dim)
