"""Theano-era layers that change the batch axis: concat_batch, split_batch, duplicate_index_batch, time_to_batch,
batch_to_time.

RETURNN's index travels with the seqs (here: their lengths); padding frames are zero.
"""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput


def _time_sources(layer: Layer, sources: list[LayerOutput]) -> list[LayerOutput]:
    if not sources or any(not s.has_time for s in sources):
        raise layer.error("needs sources with a time axis")
    return sources


def _pad_time(ops: Ops, x: Any, time: Any) -> Any:
    """``x`` (B, T, ...) with zero frames after its own up to ``time`` frames."""
    extra = ops.maximum(time - ops.cast(ops.dynamic_dim(x, 1), "int32"), 0)
    zeros = ops.zeros([ops.dynamic_dim(x, 0), extra, *ops.shape(x)[2:]], ops.dtype(x))
    return ops.concat([x, zeros], axis=1)


class ConcatBatchLayer(Layer):
    """``concat_batch``: the seqs of all sources (of one dim) in one batch, those of the first source first."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Join the batches."""
        ops = ctx.ops
        sources = _time_sources(self, sources)
        if len({s.dim for s in sources}) != 1 or len({s.sparse for s in sources}) != 1:
            raise self.error(f"needs sources of one dim, got dims {[s.dim for s in sources]}")
        time = ops.cast(ops.dynamic_dim(sources[0].tensor, 1), "int32")
        for src in sources[1:]:
            time = ops.maximum(time, ops.cast(ops.dynamic_dim(src.tensor, 1), "int32"))
        out = ops.concat([_pad_time(ops, s.tensor, time) for s in sources], axis=0)
        lens = ops.concat([ops.cast(s.seq_lens, "int32") for s in sources], axis=0)
        return LayerOutput(out, lens, sources[0].dim, sources[0].sparse)


class SplitBatchLayer(Layer):
    """``split_batch``: part ``part`` (from 0) of ``n_parts`` equal parts of the batch (batch // n_parts seqs each;
    a remainder is dropped, as in RETURNN), the sources concatenated on the feature axis."""

    options = frozenset({"n_parts", "part"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pick a slice of the seqs."""
        ops = ctx.ops
        n_parts, part = self.opts.get("n_parts", 1), self.opts.get("part", 0)
        if (isinstance(n_parts, bool) or not isinstance(n_parts, int) or n_parts < 1
                or isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < n_parts):
            raise self.error(f"needs integers n_parts >= 1 and 0 <= part < n_parts, got {n_parts!r} and {part!r}")
        src = self.single_source(_time_sources(self, sources))
        chunk = ops.floordiv(ops.cast(ops.dynamic_dim(src.tensor, 0), "int32"), n_parts)
        start, end = chunk * part, chunk * (part + 1)
        return LayerOutput(src.tensor[start:end], src.seq_lens[start:end], src.dim, src.sparse)


class DuplicateIndexBatchLayer(Layer):
    """``duplicate_index_batch``: zeros of dim 1 for the batch's seqs twice over (their lengths repeated), what
    RETURNN's layer gives; a helper for networks that later concatenate two batches."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Zeros over the doubled batch."""
        ops = ctx.ops
        src = _time_sources(self, sources)[0]
        lens = ops.cast(src.seq_lens, "int32")
        batch, time = ops.dynamic_dim(src.tensor, 0), ops.dynamic_dim(src.tensor, 1)
        return LayerOutput(ops.zeros([batch * 2, time, 1]), ops.concat([lens, lens], axis=0), 1)


#: ``LayerOutput.extra`` key of ``time_to_batch``: the batch size before, which ``batch_to_time`` restores
N_BATCH = "n_batch"


class TimeToBatchLayer(Layer):
    """``time_to_batch``: every frame its own seq of one frame (seq t * batch + b is frame t of seq b; padding
    frames become empty seqs), the sources concatenated on the feature axis."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Frames to seqs."""
        ops = ctx.ops
        src = self.single_source(_time_sources(self, sources))
        x = src.dense()
        shape = ops.shape(x)
        frames = ops.reshape(ops.transpose(x, (1, 0, *range(2, len(shape)))), (-1, 1, *shape[2:]))
        lens = ops.reshape(ops.transpose(src.mask("int32"), (1, 0)), (-1,))
        out = LayerOutput(frames, lens, src.dim)
        out.extra[N_BATCH] = ops.dynamic_dim(x, 0)
        return out


class BatchToTimeLayer(Layer):
    """``batch_to_time``: the inverse of the ``time_to_batch`` layer ``base``: the seqs, taken in order, become the
    frames of that layer's batch (its batch size), the sources concatenated on the feature axis."""

    options = frozenset({"base"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Seqs back to frames."""
        ops = ctx.ops
        base = self.opts.get("base")
        if isinstance(base, (list, tuple)) and len(base) == 1:
            base = base[0]
        if not isinstance(base, str):
            raise self.error(f"needs base, the time_to_batch layer whose batch to restore, got {base!r}")
        n_batch = ctx.get(base, layer=self.name).extra.get(N_BATCH)
        if n_batch is None:
            raise self.error(f"base {base!r} must be a time_to_batch layer")
        src = self.single_source(_time_sources(self, sources))
        x = src.dense()
        shape = ops.shape(x)
        rest = tuple(range(2, len(shape)))
        flat = ops.reshape(ops.transpose(x, (1, 0, *rest)), (-1, n_batch, *shape[2:]))  # time-major order
        out = ops.transpose(flat, (1, 0, *rest))
        mask = ops.reshape(ops.transpose(src.mask("int32"), (1, 0)), (-1, n_batch))
        return LayerOutput(out, ops.reduce(mask, "sum", 0), src.dim)
