"""``choice`` (a label per step: the target in training, beam search in search) and ``decide`` (the best beam)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import LOG_EPS
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.rec_subnet import NEG_INF

if TYPE_CHECKING:
    from returnn_core.frontend._network import Network


class ChoiceLayer(Layer):
    """Inside a rec unit: the target label in training (teacher forcing), the ``beam_size`` best continuations in
    search. ``input_type`` is ``"prob"`` (default) or ``"log_prob"``; ``length_normalization`` (default True) ranks
    finished hypotheses by score per label in :class:`DecideLayer`; ``search`` forces search on or off."""

    options = frozenset({"beam_size", "input_type", "length_normalization", "search"})

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        super().__init__(name, layer_class, opts, net)
        beam = self.opts.get("beam_size")
        if isinstance(beam, bool) or not isinstance(beam, int) or beam <= 0:
            raise self.error(f"needs 'beam_size', a positive int, got {beam!r}")
        self.beam_size = beam
        self.input_type = self.opts.get("input_type", "prob")
        if self.input_type not in ("prob", "log_prob"):
            raise self.error(f"input_type must be 'prob' or 'log_prob', got {self.input_type!r}")
        self.length_normalization = bool(self.opts.get("length_normalization", True))

    def searches(self, root: Network) -> bool:
        """Whether this choice runs beam search: its ``search`` option, else the network's search flag."""
        flag = self.opts.get("search")
        return bool(root.description.search_flag) if flag is None else bool(flag)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The target frame, or the labels of the new beam (recording its scores and source rows for the loop)."""
        loop = getattr(self.net, "rec_loop", None)
        state = loop.current if loop is not None else None
        if state is None:
            raise self.error("must be a sub-layer of a rec layer's unit (it chooses one label per step)")
        target = self.opts["target"]
        if not state.search:
            frame = state.frames.get(target)
            if frame is None:
                raise self.error(f"has no frame of its target {target!r} here (outside search it feeds the target)")
            return LayerOutput(frame.tensor, None, frame.dim, sparse=True)
        ops = ctx.ops
        src = self.single_source(sources)
        if src.sparse or src.has_time or src.ndim != 2:
            raise self.error("needs a (batch, classes) distribution over labels as input")
        dim = self.feature_dim(src)
        logp = ops.log(ops.maximum(src.tensor, LOG_EPS)) if self.input_type == "prob" else src.tensor
        # a finished hypothesis goes on unchanged: label 0 at no cost, every other label impossible
        keep = np.full((1, dim), NEG_INF, dtype=np.float32)
        keep[0, 0] = 0.0
        logp = ops.where(ops.expand_dims(ops.greater(state.ended, 0.5), 1), ops.constant(keep), logp)
        batch = ops.dynamic_dim(state.scores, 0)
        beam = self.beam_size
        total = ops.reshape(ops.reshape(state.scores, [batch * beam, 1]) + logp, [batch, beam * dim])
        scores, idx = ops.top_k(total, beam)
        from_beam = ops.floordiv(idx, dim)
        labels = ops.reshape(idx - from_beam * dim, [batch * beam])
        rows = ops.reshape(from_beam + ops.expand_dims(ops.arange(batch) * beam, 1), [batch * beam])
        state.choice = (labels, rows, scores)
        return LayerOutput(labels, None, dim, sparse=True)


class DecideLayer(Layer):
    """The best hypothesis of a searched output (B*K, T, ...) as (B, T, ...); without a beam, its input unchanged."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pick per seq the beam entry with the highest (length-normalised) score."""
        if len(sources) != 1:
            raise self.error("needs exactly one source")
        src = sources[0]
        beam = src.extra.get("beam_size")
        if not beam:
            return src
        ops = ctx.ops
        scores = src.extra["beam_scores"]
        batch = ops.dynamic_dim(scores, 0)
        if src.extra.get("length_normalization") and src.seq_lens is not None:
            lens = ops.reshape(ops.cast(src.seq_lens, "float32"), [batch, beam])
            scores = scores / ops.maximum(lens, 1.0)
        rows = ops.argmax(scores, axis=1) + ops.arange(batch) * beam
        lens = None if src.seq_lens is None else ops.gather(src.seq_lens, rows, axis=0)
        return LayerOutput(ops.gather(src.tensor, rows, axis=0), lens, src.dim, sparse=src.sparse,
                           activation=src.activation)


class BeamScoresLayer(Layer):
    """The (batch, beam) log scores of its source's hypotheses, best first (RETURNN's search writes each hypothesis
    with its score); a source without a beam gives one score 0 per seq. The search task adds one for its output."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The beam scores that the loop recorded with the searched output."""
        if len(sources) != 1:
            raise self.error("needs exactly one source")
        src = sources[0]
        ops = ctx.ops
        if not src.extra.get("beam_size"):
            return LayerOutput(ops.zeros([ops.dynamic_dim(src.tensor, 0), 1]), None, 1)
        return LayerOutput(src.extra["beam_scores"], None, int(src.extra["beam_size"]))

