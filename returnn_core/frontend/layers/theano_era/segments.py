"""Theano-era layers that make every frame the start of a segment of the next ``window`` frames of its seq:
segment_input (the segments as a batch of seqs), segment_class_targets (their running class distributions, a
target for a ``softmax`` with ``copy_output``) and unsegment_input (the segments' outputs back on the frames); and
segment (two sources' halves of each seq joined).

Segment ``b * T + f`` (T: the padded batch length) starts at frame f of seq b; those starting on padding are empty.
RETURNN's segment batch held the segments of present frames only, in the same order; the frames each one holds,
and what unsegment_input gives back, are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.time import RESAMPLED_TARGET, _int, _shift_time, _time_source


def _segment_lens(ops: Ops, src: LayerOutput, window: int) -> Any:
    """(B * T,) frames of each segment: the seq's frames from its start on, at most ``window``."""
    time = ops.cast(ops.dynamic_dim(src.tensor, 1), "int32")
    rest = ops.expand_dims(ops.cast(src.seq_lens, "int32"), 1) - ops.expand_dims(ops.arange(time), 0)  # (B, T)
    return ops.reshape(ops.minimum(ops.maximum(rest, 0), window), (-1,))


def _segments(ops: Ops, x: Any, window: int) -> Any:
    """(B, T, D) ``x`` as (B * T, window, D): segment b * T + f holds frames f .. f + window - 1 (zeros after T)."""
    batch, time, dim = ops.dynamic_dim(x, 0), ops.dynamic_dim(x, 1), ops.shape(x)[2]
    x = ops.concat([x, ops.zeros([batch, window, dim])], axis=1)  # so every segment's frames exist
    idx = ops.expand_dims(ops.arange(time), 1) + ops.expand_dims(ops.arange(window), 0)  # (T, window)
    return ops.reshape(ops.gather(x, ops.reshape(idx, (-1,)), axis=1), (batch * time, window, dim))


def _masked(ops: Ops, x: Any, lens: Any) -> Any:
    mask = ops.sequence_mask(lens, ops.dynamic_dim(x, 1), "float32")
    return x * ops.expand_dims(mask, -1)


class SegmentInputLayer(Layer):
    """``segment_input``: every frame's segment of ``window`` frames (default 15) as a seq of its own; class labels
    (``input_is_sparse``, ``num_classes``) become one-hot vectors."""

    options = frozenset({"window", "input_is_sparse", "num_classes"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Cut the segments."""
        ops = ctx.ops
        src = _time_source(self, sources)
        window = _int(self, "window", 15, 1)
        if src.sparse:
            if not self.opts.get("input_is_sparse"):
                raise self.error("the source is class labels: set input_is_sparse=True (and num_classes)")
            classes = _int(self, "num_classes", src.dim, 1)
            x, dim = ops.one_hot(src.tensor, classes), classes
        else:
            x, dim = src.tensor, self.feature_dim(src)
        lens = _segment_lens(ops, src, window)
        masked = x * ops.expand_dims(src.mask(), -1)
        return LayerOutput(_masked(ops, _segments(ops, masked, window), lens), lens, dim)


class SegmentClassTargets(Layer):
    """``segment_class_targets``: for every frame's segment (``window`` frames, default 15) of the source's class
    labels, at each position w the distribution of the classes of its first w + 1 frames (``num_classes``
    classes); a ``softmax`` on ``segment_input`` segments with ``copy_output`` naming this layer trains on it.
    RETURNN counted the padding frames' labels too; here a segment ends with its seq."""

    options = frozenset({"num_classes", "window"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Running class distributions of the segments."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if not src.sparse:
            raise self.error("needs class labels (a sparse source, e.g. data:classes)")
        classes = _int(self, "num_classes", None, 1)
        window = _int(self, "window", 15, 1)
        hot = ops.one_hot(src.tensor, classes) * ops.expand_dims(src.mask(), -1)  # (B, T, C)
        running, counts = [], None
        for w in range(window):
            frame = _shift_time(ops, hot, -w)  # frame f + w at f
            counts = frame if counts is None else counts + frame
            running.append(counts * np.float32(1.0 / (w + 1)))
        y = ops.stack(running, axis=2)  # (B, T, window, C)
        lens = _segment_lens(ops, src, window)
        batch, time = ops.dynamic_dim(hot, 0), ops.dynamic_dim(hot, 1)
        out = LayerOutput(_masked(ops, ops.reshape(y, (batch * time, window, classes)), lens), lens, classes)
        out.extra[RESAMPLED_TARGET] = out
        return out


class UnsegmentInputLayer(Layer):
    """``unsegment_input``: the outputs of the segments (a source over ``segment_input``'s batch) back on the frames
    of ``original_output``'s seqs: frame t gets, for each position w, what the segment starting at t - w gave at w
    (zero before the seq's start), concatenated (dim ``window`` times the source's)."""

    options = frozenset({"original_output"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Scatter the segments back."""
        ops = ctx.ops
        name = self.opts.get("original_output")
        if not isinstance(name, str):
            raise self.error(f"needs original_output, the layer whose frames the segments came from, got {name!r}")
        original = ctx.get(name, layer=self.name)
        if not original.has_time:
            raise self.error(f"original_output {name!r} has no time axis")
        post = self.single_source(sources)
        if post.sparse or post.feature_ndim != 1:
            raise self.error("needs dense segment outputs (batch of segments, window, feature)")
        dim = self.feature_dim(post)
        window = ops.static_shape(post.tensor)[1]
        if window is None:
            raise self.error("the segments' window must be known before the run")
        batch, time = ops.dynamic_dim(original.tensor, 0), ops.dynamic_dim(original.tensor, 1)
        seg = ops.reshape(post.tensor, (batch, time, window, dim))
        out = ops.concat([_shift_time(ops, seg[:, :, w], w) for w in range(window)], axis=-1)
        result = LayerOutput(out, original.seq_lens, window * dim)
        return result.with_tensor(out * ops.expand_dims(result.mask(), -1), dim=window * dim)


class SegmentLayer(Layer):
    """``segment``: the first half of each seq's frames (length // 2) from the first source, the rest from the
    second (two sources of one dim; RETURNN split the padded batch at T // 2, the same for one seq)."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Join the halves."""
        ops = ctx.ops
        if len(sources) != 2 or sources[0].dim != sources[1].dim or not all(s.has_time for s in sources):
            raise self.error(f"needs two sources with time of one dim, got dims {[s.dim for s in sources]}")
        first, second = sources
        time = ops.dynamic_dim(first.tensor, 1)
        half = ops.floordiv(ops.cast(first.seq_lens, "int32"), 2)
        early = ops.sequence_mask(half, time, "float32")  # (B, T)
        late = ops.expand_dims(first.mask() - early, -1)
        out = first.dense() * ops.expand_dims(early, -1) + second.dense()[:, :time] * late
        return first.with_tensor(out, dim=first.dim)
