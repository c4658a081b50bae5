"""Theano-era layers that attend over the frames of a ``base`` layer: base (BaseInterpolationLayer),
source_attention (SourceAttentionLayer) and attention_vector (AttentionVectorLayer).

Both weight the base seq's own frames (RETURNN's softmax also ran over the padded frames of the batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer, concat_features
from returnn_core.frontend._loss import Loss, LossContext
from returnn_core.frontend._network import LossTerm
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.hidden import HiddenLayer

_FLOOR = np.float32(1e-20)


def _bases(layer: Layer, ctx: Context) -> list[LayerOutput]:
    """The layers ``base`` names (a name or a list of names), dense with a time axis."""
    names = layer.opts.get("base")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise layer.error(f"needs base, the layer(s) to attend over, got {layer.opts.get('base')!r}")
    bases = [ctx.get(name, layer=layer.name) for name in names]
    if any(b.sparse or not b.has_time or b.feature_ndim != 1 for b in bases):
        raise layer.error("the base layers must be dense (batch, time, feature)")
    return bases


def _attend(ops: Ops, scores: Any, base: LayerOutput) -> Any:
    """Softmax of ``scores`` (B, T', T) over the base seq's present frames, then the weighted base frames."""
    mask = ops.expand_dims(base.mask(), 1)  # (B, 1, T)
    scores = scores + (mask - np.float32(1.0)) * np.float32(1e30)
    weights = ops.softmax(scores, axis=-1) * mask
    return ops.batch_matmul(weights, base.tensor)


class BaseInterpolationLayer(HiddenLayer):
    """``base``: each frame the base frames (``base``, several concatenated) weighted by a softmax over them of
    ``sum_k base_k W_base_k`` (one ``W_base_k`` (dim_k, 1) per base layer) plus the layer's own linear score of the
    frame (``hidden`` with one unit; being the same for every base frame it leaves the softmax as it is, as in
    RETURNN); ``method`` only "softmax"; ``output_weights`` (an output as wide as the base seq) gives a clear
    error."""

    options = HiddenLayer.options | {"base", "method", "output_weights"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.opts.get("method", "softmax") != "softmax":
            raise self.error(f"method {self.opts['method']!r}: only 'softmax'")
        if self.opts.get("output_weights"):
            raise self.error("output_weights (an output of the base seq's length as features) is not supported")
        self.units = 1
        self.n_out = None  # the output has the base's dim
        self.activation = None  # RETURNN scores with the linear output, whatever the activation

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Softmax over the base frames, then their weighted sum."""
        ops = ctx.ops
        own = super().call(sources, ctx)  # (B, T', 1), the layer's linear score (activation not applied)
        bases = _bases(self, ctx)
        base_score = None
        for k, base in enumerate(bases):
            w = self.param(f"W_base_{k}", (self.feature_dim(base), 1), "glorot_uniform")
            part = ops.dot(base.tensor, w)[..., 0]
            base_score = part if base_score is None else base_score + part
        memory = bases[0] if len(bases) == 1 else concat_features(bases, layer=self.name)
        scores = ops.expand_dims(base_score, 1) + own.tensor  # (B, T', T)
        out = _attend(ops, scores, memory)
        return LayerOutput(out, own.seq_lens, memory.dim)


class SourceAttentionLayer(Layer):
    """``source_attention``: each frame the base frames (``base``) weighted by a softmax over them of minus the
    distance between ``tanh(x W_in + b_in)`` and ``tanh(base W_base + b_base)`` (``n_tmp`` units, default 64).
    RETURNN's softmax was of plus the distance, favouring the farthest frame, a sign slip; the nearest weigh most
    here."""

    options = frozenset({"base", "n_tmp"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Distances to the base frames, softmax, weighted sum."""
        ops = ctx.ops
        src = self.single_source(sources)
        if src.sparse or not src.has_time:
            raise self.error("needs a dense input with a time axis")
        bases = _bases(self, ctx)
        memory = bases[0] if len(bases) == 1 else concat_features(bases, layer=self.name)
        n_tmp = self.opts.get("n_tmp", 64)
        if isinstance(n_tmp, bool) or not isinstance(n_tmp, int) or n_tmp < 1:
            raise self.error(f"n_tmp must be a positive integer, got {n_tmp!r}")
        init = self.opts.get("forward_weights_init", "glorot_uniform")
        keys = ops.tanh(ops.dot(memory.tensor, self.param("W_base", (self.feature_dim(memory), n_tmp), init))
                        + self.param("b_base", (n_tmp,), "zeros"))
        query = ops.tanh(ops.dot(src.tensor, self.param("W_in", (self.feature_dim(src), n_tmp), init))
                         + self.param("b_in", (n_tmp,), "zeros"))
        diff = ops.expand_dims(query, 2) - ops.expand_dims(keys, 1)  # (B, T', T, n_tmp)
        dist = ops.sqrt(ops.maximum(ops.reduce(ops.square(diff), "sum", -1), _FLOOR))
        return LayerOutput(_attend(ops, -dist, memory), src.seq_lens, memory.dim)


class _PositionCost(Loss):
    """``attention_vector``'s cost: minus the log of the weight at the target's base position of each seq."""

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """``(summed -log weight, None, seqs)``."""
        ops = ctx.ops
        weights = output.extra[WEIGHTS]  # (B, T)
        position = ops.cast(target.tensor, "int32")
        position = position[:, :1] if ops.ndim(position) == 2 else ops.expand_dims(position, 1)
        picked = ops.take_along_axis(weights, position, axis=1)[:, 0]
        frames = ops.cast(ops.dynamic_dim(weights, 0), "float32")
        return -ops.reduce(ops.log(ops.maximum(picked, _FLOOR)), "sum"), None, frames


#: ``LayerOutput.extra`` key of ``attention_vector``: its weights over the base frames (B, T)
WEIGHTS = "attention_vector_weights"


class AttentionVectorLayer(Layer):
    """``attention_vector``: one frame per seq, the base frames (``base``) weighted by a softmax over them of
    ``-|tanh(base W_base + b_base) - tanh(s W_state + b_state)|^2 / template`` (``template`` units) where s is the
    sources' one frame per seq (or a source without time); with ``target`` (a base position per seq, sparse) the
    minus log weight of that position is the layer's cost."""

    options = frozenset({"base", "template"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = self.opts.get("target")

    @property
    def inner_loss_terms(self) -> list[LossTerm]:
        """The position cost, with a target."""
        return [LossTerm(self.name, _PositionCost(), "attention_vector", self.target, 1.0)] if self.target else []

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """One attention over the base per seq."""
        ops = ctx.ops
        bases = _bases(self, ctx)
        memory = bases[0] if len(bases) == 1 else concat_features(bases, layer=self.name)
        template = self.opts.get("template")
        if isinstance(template, bool) or not isinstance(template, int) or template < 1:
            raise self.error(f"needs template, a positive integer, got {template!r}")
        states = []
        for src in sources:
            x = src.dense()
            if src.has_time:
                if ops.static_shape(x)[1] not in (1, None):
                    raise self.error("its sources give one frame per seq (or have no time axis)")
                x = x[:, 0]
            states.append(x)
        state = states[0] if len(states) == 1 else ops.concat(states, axis=-1)
        n_in = int(ops.static_shape(state)[-1] or 0)
        keys = ops.tanh(ops.dot(memory.tensor, self.param("W_base", (self.feature_dim(memory), template),
                                                          "uniform:0.01")) + self.param("b_base", (template,), "zeros"))
        query = ops.tanh(ops.dot(state, self.param("W_state", (n_in, template), "uniform:0.1"))
                         + self.param("b_state", (template,), "zeros"))
        scores = -ops.reduce(ops.square(keys - ops.expand_dims(query, 1)), "sum", -1) / np.float32(template)
        mask = memory.mask()
        weights = ops.softmax(scores + (mask - np.float32(1.0)) * np.float32(1e30), axis=-1) * mask  # (B, T)
        out = ops.reduce(ops.expand_dims(weights, -1) * memory.tensor, "sum", 1, keepdims=True)
        batch = ops.dynamic_dim(out, 0)
        result = LayerOutput(out, ops.cast(ops.ones([batch]), "int32"), memory.dim)
        result.extra[WEIGHTS] = weights
        return result
