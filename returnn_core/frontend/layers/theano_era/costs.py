"""Theano-era layers that bring their own cost or error against a target: errors, detection, loss.

Their cost or error enters the scores (and the objective) as a term of the layer, as RETURNN's ``cost()`` and
``errors()`` of the layer did; the target's data is fed for them like for a loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._loss import Loss, LossContext
from returnn_core.frontend._network import LossTerm
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.hidden import HiddenLayer
from returnn_core.frontend.losses import frame_errors

if TYPE_CHECKING:
    from returnn_core.frontend._network import Network


def _target(layer: Layer) -> str:
    target = layer.opts.get("target")
    if not isinstance(target, str) or not target:
        raise layer.error("needs 'target', the data key of the class labels")
    return target


def _labels(layer: Layer, target: str, ctx: Context) -> LayerOutput | None:
    """The sparse target data ``target``, None where no targets are fed (forward)."""
    try:
        labels = ctx.get(f"data:{target}", layer=layer.name)
    except NetworkError:
        return None
    if not labels.sparse or not labels.has_time:
        raise layer.error(f"target {target!r} must be sparse class labels over time")
    return labels


class _FrameErrors(Loss):
    """The ``errors`` layer's output summed as the error; it adds nothing to the objective."""

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """``(0, wrong frames, frames)``."""
        ops = ctx.ops
        frames = ops.reduce(output.mask(), "sum")
        return frames * 0.0, ops.reduce(ops.cast(output.tensor, "float32"), "sum"), frames


class ErrorsLayer(Layer):
    """``errors``: 1 in each frame where the argmax of the (concatenated) sources differs from the class of
    ``target``, else 0 (sparse, dim = the target's classes, which must be the input dim); their sum is the
    layer's error in the scores. Forwarding feeds no targets: there the output is all 0."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = _target(self)

    @property
    def inner_loss_terms(self) -> list[LossTerm]:
        """The wrong frames as the layer's error."""
        return [LossTerm(self.name, _FrameErrors(), "errors", self.target, 1.0)]

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Compare the argmax with the target."""
        ops = ctx.ops
        src = self.single_source(sources)
        labels = _labels(self, self.target, ctx)
        if labels is None:  # forwarding feeds no targets: no error is known
            return LayerOutput(src.mask("int32") * 0, src.seq_lens, self.feature_dim(src), sparse=True)
        if self.feature_dim(src) != labels.dim:
            raise self.error(f"input dim {src.dim} must be the {labels.dim} classes of target {self.target!r}")
        wrong = ops.cast(ops.not_equal(ops.argmax(src.dense(), -1), ops.cast(labels.tensor, "int32")), "int32")
        return LayerOutput(wrong * src.mask("int32"), src.seq_lens, labels.dim, sparse=True)


class _DetectionCost(Loss):
    """Cross entropy of the two-class output against "target == label"."""

    options = {"label": 0}

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """``(summed cross entropy, wrong frames, frames)``."""
        ops = ctx.ops
        mask = output.mask()
        hit = ops.cast(ops.equal(ops.cast(target.tensor, "int32"), int(self.opts["label"])), "int32")
        xent = ops.cross_entropy_sparse(ops.log_softmax(output.logits), hit)
        return ops.reduce(xent * mask, "sum"), frame_errors(ops, output.tensor, hit, mask), ops.reduce(mask, "sum")


class DetectionLayer(HiddenLayer):
    """``detection``: a two-class ``hidden`` softmax that detects the class ``label_idx`` of ``target`` in each
    frame: its cross entropy against "the target is label_idx" is the layer's cost (RETURNN's output was the
    flattened (time * batch, 2) probabilities, and its cost applied the softmax once more to them; here the
    probabilities keep their frames and the cost is their own cross entropy)."""

    options = HiddenLayer.options | {"label_idx"}
    default_activation = "softmax"

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        super().__init__(name, layer_class, {**opts, "n_out": 2}, net)  # two classes, whatever n_out says
        label = self.opts.get("label_idx")
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise self.error(f"needs label_idx, a class index, got {label!r}")
        self.label = label
        self.target = _target(self)

    @property
    def inner_loss_terms(self) -> list[LossTerm]:
        """The detection cross entropy as the layer's cost."""
        return [LossTerm(self.name, _DetectionCost(label=self.label), "detection", self.target, 1.0)]


class LossLayer(HiddenLayer):
    """``loss``: a ``hidden`` layer (or the output of the layer ``copy_input``, no parameters then) trained by its
    ``loss`` against ``target`` like an output layer; with ``loss`` "ce" its output is the softmax (RETURNN's
    ``pcx``), otherwise the linear values. The loss is the core's registered one of that name."""

    options = HiddenLayer.options | {"copy_input"}

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        loss = opts.get("loss")
        if not loss:
            raise NetworkError(f"layer {name!r} (class {layer_class!r}): needs 'loss', e.g. 'ce'")
        default = "softmax" if loss == "ce" else "linear"
        super().__init__(name, layer_class, {"activation": default, **opts}, net)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The affine map (or ``copy_input``'s output), then the activation."""
        ref = self.opts.get("copy_input")
        if ref is None:
            return super().call(sources, ctx)
        if not isinstance(ref, str):
            raise self.error(f"copy_input must name a layer, got {ref!r}")
        copied = ctx.get(ref, layer=self.name)
        return self.activate(copied.with_tensor(copied.dense(), dim=copied.dim), ctx.ops)
