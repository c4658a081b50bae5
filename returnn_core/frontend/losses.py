"""Losses written once on :class:`Ops`: ``ce``, ``generic_ce``, ``mse``, ``l1``, ``bin_ce``, ``ctc``,
``edit_distance``, ``via_layer``. All sums cover the present frames only."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend._loss import Loss, LossContext
from returnn_core.frontend._ops import LOG_EPS, Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.activations import IDENTITY_NAMES


def frame_errors(ops: Ops, output: Any, labels: Any, mask: Any) -> Any:
    """Number of (masked-in) frames whose argmax differs from the int ``labels``."""
    wrong = ops.cast(ops.not_equal(ops.argmax(output, -1), ops.cast(labels, "int32")), "float32")
    return ops.reduce(wrong * mask, "sum")


def smoothed_cross_entropy(ops: Ops, logp: Any, one_hot: Any, smoothing: float, num_classes: int) -> Any:
    """RETURNN's label-smoothed cross entropy per frame: targets ``1 - smoothing`` on the true class and
    ``smoothing / (K - 1)`` on each other one, less that target's own entropy (the best reachable value, so a
    perfect model scores 0 as without smoothing)."""
    if num_classes < 2:
        raise NetworkError(f"label_smoothing needs at least 2 classes, got {num_classes}")
    on, off = 1.0 - smoothing, smoothing / (num_classes - 1)
    entropy = -(on * np.log(on) if on > 0 else 0.0) - (num_classes - 1) * off * np.log(off + 1e-20)
    dist = one_hot * np.float32(on - off) + np.float32(off)
    return -ops.reduce(dist * logp, "sum", -1) - np.float32(entropy)


class CrossEntropyLoss(Loss):
    """Cross entropy against sparse class indices (or dense distributions); error = wrong frames.

    ``loss_opts``: ``label_smoothing`` (float, spreads that much probability mass uniformly over the other classes,
    see :func:`smoothed_cross_entropy`).
    """

    options = {"label_smoothing": 0.0}
    framewise = True

    def output_log_probs(self, output: LayerOutput) -> Any:
        """log of the output distribution (from the logits where the activation allows it)."""
        return self.log_probs(output)

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """Summed cross entropy, frame errors, frames."""
        ops = ctx.ops
        mask = self.frame_mask(output)
        logp = self.output_log_probs(output)
        smoothing = float(self.opts.get("label_smoothing") or 0.0)
        if target.sparse:
            if smoothing:
                xent = smoothed_cross_entropy(ops, logp, self.dense_target(output, target), smoothing,
                                              int(output.dim or 0))
            else:
                xent = ops.cross_entropy_sparse(logp, target.tensor)
            labels = target.tensor
        else:
            xent = -ops.reduce(target.tensor * logp, "sum", -1)
            labels = ops.argmax(target.tensor, -1)
        return ops.reduce(xent * mask, "sum"), frame_errors(ops, output.tensor, labels, mask), ops.reduce(mask, "sum")


class GenericCrossEntropyLoss(CrossEntropyLoss):
    """``-log output[target]`` on the output probabilities, whatever the activation; error = wrong frames."""

    options = {}

    def output_log_probs(self, output: LayerOutput) -> Any:
        """log of the output values themselves (floored), not of the logits."""
        return output.ops.log(output.ops.maximum(output.tensor, LOG_EPS))


class _DistanceLoss(Loss):
    """A per-feature distance to the (dense) target, summed over features and frames (no error measure)."""

    framewise = True

    def distance(self, ops: Ops, diff: Any) -> Any:
        """The per-entry distance of ``output - target``."""
        raise NotImplementedError

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """Summed distance, no error, frames."""
        ops = ctx.ops
        mask = self.frame_mask(output)
        diff = ops.reduce(self.distance(ops, output.tensor - self.dense_target(output, target)), "sum", -1)
        return ops.reduce(diff * mask, "sum"), None, ops.reduce(mask, "sum")


class MeanSquaredErrorLoss(_DistanceLoss):
    """Squared difference summed over features and frames (no error measure)."""

    def distance(self, ops: Ops, diff: Any) -> Any:
        """diff**2."""
        return ops.square(diff)


class L1Loss(_DistanceLoss):
    """Absolute difference summed over features and frames (no error measure)."""

    def distance(self, ops: Ops, diff: Any) -> Any:
        """|diff|."""
        return ops.abs(diff)


class BinaryCrossEntropyLoss(Loss):
    """Sigmoid cross entropy per feature against 0/1 targets; error = wrong bits averaged per frame."""

    framewise = True

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """Summed binary cross entropy, wrong bits (averaged per frame), frames."""
        ops = ctx.ops
        mask = self.frame_mask(output)
        t = ops.cast(self.dense_target(output, target), "float32")
        if output.activation == "sigmoid" and output.logits is not None:
            z = output.logits
        else:
            p = ops.clip(output.tensor, LOG_EPS, 1.0 - LOG_EPS)
            z = ops.log(p) - ops.log1p(-p)
        xent = ops.reduce(ops.maximum(z, 0.0) - z * t + ops.log1p(ops.exp(-ops.abs(z))), "sum", -1)
        wrong = ops.reduce(ops.cast(ops.not_equal(ops.greater(z, 0.0), ops.greater(t, 0.5)), "float32"), "mean", -1)
        return ops.reduce(xent * mask, "sum"), ops.reduce(wrong * mask, "sum"), ops.reduce(mask, "sum")


def ctc_logits(output: LayerOutput) -> Any:
    """Unnormalised scores of a CTC output layer: the logits of a softmax, else the log probabilities."""
    if output.activation == "softmax" and output.logits is not None:
        return output.logits
    if output.activation in IDENTITY_NAMES or output.activation == "log_softmax":
        return output.tensor
    return Loss.log_probs(output)


class CtcLoss(Loss):
    """CTC; the blank is the last output class. Error = edit distance of the best-path decoding to the labels.

    The sums are normalised by the number of target labels.
    """

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """Summed CTC loss, summed label edit distance, label count."""
        ops = ctx.ops
        if not target.sparse:
            raise NetworkError(f"layer {ctx.layer!r}: loss 'ctc' needs sparse target labels")
        logits = ctc_logits(output)
        labels = ops.cast(target.tensor, "int32")
        loss = ops.reduce(ops.ctc_loss(logits, output.seq_lens, labels, target.seq_lens), "sum")
        hyp, hyp_lens = ops.ctc_greedy_decode(logits, output.seq_lens)
        error = ops.edit_distance(hyp, hyp_lens, labels, target.seq_lens)
        return loss, error, ops.cast(ops.reduce(target.seq_lens, "sum"), "float32")


class EditDistanceLoss(Loss):
    """Edit distance between the output's labels (the frame-wise argmax of a dense one) and the target labels;
    nothing to minimise (the loss is 0)."""

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """Zero loss, summed edit distance, label count."""
        ops = ctx.ops
        # a sparse output (a decide layer's labels, as in RETURNN's search configs) is the hypothesis itself
        hyp = ops.cast(output.tensor, "int32") if output.sparse else ops.argmax(output.tensor, -1)
        error = ops.edit_distance(hyp, output.seq_lens, ops.cast(target.tensor, "int32"), target.seq_lens)
        return ops.constant(0.0), error, ops.cast(ops.reduce(target.seq_lens, "sum"), "float32")


class ViaLayerLoss(Loss):
    """The gradient comes from another layer.

    ``loss_opts``: ``error_signal_layer`` (its output is the gradient w.r.t. this layer's output, or w.r.t. the
    logits with ``loss_wrt_to_act_in``) or ``align_layer`` (a sparse alignment to train against with CE).
    """

    options = {"error_signal_layer": None, "align_layer": None, "loss_wrt_to_act_in": False}
    needs_target = False

    def __init__(self, **loss_opts: Any) -> None:
        super().__init__(**loss_opts)
        if bool(self.opts["error_signal_layer"]) == bool(self.opts["align_layer"]):
            raise NetworkError("loss 'via_layer' needs exactly one of loss_opts 'error_signal_layer' or 'align_layer'")

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """Loss whose gradient is the given error signal, or CE against the alignment."""
        ops = ctx.ops
        mask = self.frame_mask(output)
        frames = ops.reduce(mask, "sum")
        if self.opts["error_signal_layer"]:
            signal = ops.stop_gradient(ctx.get_layer_output(self.opts["error_signal_layer"]).tensor)
            wrt = output.logits if self.opts["loss_wrt_to_act_in"] and output.logits is not None else output.tensor
            return ops.reduce(ops.reduce(signal * wrt, "sum", -1) * mask, "sum"), None, frames
        align = ops.stop_gradient(ctx.get_layer_output(self.opts["align_layer"]).tensor)
        xent = ops.cross_entropy_sparse(ops.log(ops.maximum(output.tensor, LOG_EPS)), align)
        return ops.reduce(xent * mask, "sum"), frame_errors(ops, output.tensor, align, mask), frames
