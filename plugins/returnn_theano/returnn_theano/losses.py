"""Losses of the Theano backend: ``ce``, ``mse``, ``bin_ce``, ``ctc``, each summed over present frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_theano._pt import floatX, pt
from returnn_theano.ctc import ctc_label_errors, ctc_log_likelihood
from returnn_theano.layers.base import LayerOutput

_LOG_EPS = np.float32(1e-10)


@dataclass
class LossTerms:
    """Symbolic sums over a batch; ``host_error`` computes the error from ``host_outputs`` after the step."""

    loss: Any
    error: Any | None
    frames: Any
    host_outputs: list[Any] = field(default_factory=list)
    host_error: Callable[[list[np.ndarray]], float] | None = None


class Loss:
    """Base of the losses: ``cls(layer, **loss_opts)(output, target) -> LossTerms``."""

    def __init__(self, layer: str, **opts: Any) -> None:
        self.layer = layer
        if opts:
            raise NetworkError(f"layer {layer!r}: loss {type(self).__name__} got unknown loss_opts {sorted(opts)}")

    def error(self, msg: str) -> NetworkError:
        """A :class:`NetworkError` naming the layer."""
        return NetworkError(f"layer {self.layer!r}: {msg}")

    def check_frames(self, out: LayerOutput, target: LayerOutput) -> None:
        """Output and target must both be framewise."""
        if not out.has_time or not target.has_time:
            raise self.error("the loss needs an output and a target with a time axis")

    def dense_target(self, out: LayerOutput, target: LayerOutput) -> Any:
        """The target as (B, T, D) float (one-hot where sparse)."""
        if target.sparse:
            if target.dim != out.dim:
                raise self.error(f"target has {target.dim} classes but the output dim is {out.dim}")
            return pt.eq(target.value[:, :, None], pt.arange(int(out.dim))[None, None, :]).astype(floatX)
        return target.value

    def __call__(self, out: LayerOutput, target: LayerOutput) -> LossTerms:
        """Loss, error and frame count summed over the batch."""
        raise NotImplementedError


def _log_probs(out: LayerOutput) -> Any:
    if out.activation == "softmax" and out.logits is not None:
        return pt.special.log_softmax(out.logits, axis=-1)
    if out.activation == "log_softmax":
        return out.value
    return pt.log(pt.maximum(out.value, _LOG_EPS))


class CrossEntropyLoss(Loss):
    """Cross entropy of a softmax output against sparse class indices (or a dense distribution); frame error."""

    def __call__(self, out: LayerOutput, target: LayerOutput) -> LossTerms:
        """-log p(target) summed over present frames."""
        self.check_frames(out, target)
        mask = out.mask()
        logp = _log_probs(out)
        if target.sparse:
            if target.dim is not None and out.dim is not None and target.dim > out.dim:
                raise self.error(f"target has {target.dim} classes but the output has only dim {out.dim}")
            flat = logp.reshape((-1, logp.shape[-1]))
            labels = target.value.flatten()
            nll = -flat[pt.arange(flat.shape[0]), labels].reshape(target.value.shape)
            wrong = pt.neq(pt.argmax(out.value, axis=-1), target.value)
        else:
            nll = -(target.value * logp).sum(axis=-1)
            wrong = pt.neq(pt.argmax(out.value, axis=-1), pt.argmax(target.value, axis=-1))
        return LossTerms((nll * mask).sum(), (wrong * mask).sum(), mask.sum())


class MeanSquaredErrorLoss(Loss):
    """Squared error summed over the feature axis, per present frame."""

    def __call__(self, out: LayerOutput, target: LayerOutput) -> LossTerms:
        """sum((y - t)^2) over present frames."""
        self.check_frames(out, target)
        mask = out.mask()
        diff = out.value - self.dense_target(out, target)
        return LossTerms((pt.sqr(diff).sum(axis=-1) * mask).sum(), None, mask.sum())


class BinaryCrossEntropyLoss(Loss):
    """Per-dim binary cross entropy of sigmoid outputs against 0/1 targets; error = mismatched dims per frame."""

    def __call__(self, out: LayerOutput, target: LayerOutput) -> LossTerms:
        """-(t log p + (1 - t) log(1 - p)) summed over dims and present frames."""
        self.check_frames(out, target)
        mask = out.mask()
        t = self.dense_target(out, target)
        if out.activation == "sigmoid" and out.logits is not None:
            z = out.logits
            per_dim = pt.maximum(z, 0.0) - z * t + pt.log1p(pt.exp(-pt.abs(z)))
        else:
            p = pt.clip(out.value, _LOG_EPS, 1.0 - _LOG_EPS)
            per_dim = -(t * pt.log(p) + (1.0 - t) * pt.log(1.0 - p))
        wrong = pt.neq(pt.gt(out.value, 0.5), pt.gt(t, 0.5)).astype(floatX).mean(axis=-1)
        return LossTerms((per_dim.sum(axis=-1) * mask).sum(), (wrong * mask).sum(), mask.sum())


class CtcLoss(Loss):
    """CTC over a softmax of ``n_labels + 1`` outputs (blank = last index); error = label edit distance."""

    def __call__(self, out: LayerOutput, target: LayerOutput) -> LossTerms:
        """-log p(labels | input) summed over seqs; frames = target labels."""
        if not target.sparse:
            raise self.error("CTC needs sparse target labels")
        if not out.has_time:
            raise self.error("CTC needs an output with a time axis")
        if target.dim is not None and out.dim is not None and out.dim != target.dim + 1:
            raise self.error(f"CTC output dim must be target classes + 1 (blank) = {target.dim + 1}, got {out.dim}")
        logp = _log_probs(out)
        blank = int(out.dim) - 1
        loglik = ctc_log_likelihood(logp, out.seq_lens, target.value, target.seq_lens, blank)
        frames = target.seq_lens.sum().astype(floatX)
        best = pt.argmax(out.value, axis=-1)
        host = [best, out.seq_lens, target.value, target.seq_lens]

        def host_error(values: list[np.ndarray]) -> float:
            return float(ctc_label_errors(*values, blank=blank))

        return LossTerms(-loglik.sum(), None, frames, host, host_error)
