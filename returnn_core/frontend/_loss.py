"""The loss protocol every backend runs: ``loss(output, target, ctx) -> (loss_sum, error_sum, frames)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from returnn_core.errors import NetworkError
from returnn_core.frontend._ops import LOG_EPS, Ops
from returnn_core.frontend._output import LayerOutput


@dataclass
class LossContext:
    """What a loss sees besides the output and target: the ops, the layer, seq tags, other layers' outputs."""

    ops: Ops
    layer: str
    #: string (B,) seq names when the loss sets ``needs_seq_tags``; else ``None``
    seq_tags: Any
    get_layer_output: Callable[[str], LayerOutput]


class Loss:
    """Base of the losses (``loss`` in a layer dict), written once for all backends.

    Constructed as ``cls(**loss_opts)`` from the layer's ``loss_opts``; unknown options are errors.
    :meth:`__call__` gets the layer's :class:`LayerOutput` (``tensor`` after the activation, ``logits`` before
    it, ``activation`` its name), the target's (``None`` where ``needs_target`` is False) and a
    :class:`LossContext`; it returns three float32 scalars summed over the present frames of the batch:
    ``loss_sum`` (minimised as ``loss_scale * loss_sum / frames``), ``error_sum`` (``None`` if no error
    measure) and ``frames`` (what both are normalised by).
    """

    #: loss_opts and their defaults
    options: ClassVar[dict[str, Any]] = {}
    #: whether the layer needs a ``target``
    needs_target: ClassVar[bool] = True
    #: whether the loss is a sum over frames aligned with the target (so seqs may be joined into one row)
    framewise: ClassVar[bool] = False
    #: whether :attr:`LossContext.seq_tags` is filled
    needs_seq_tags: ClassVar[bool] = False

    def __init__(self, **loss_opts: Any) -> None:
        unknown = sorted(set(loss_opts) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "(none)"
            raise NetworkError(f"unknown loss_opts {', '.join(unknown)}; known: {known}")
        self.opts = {**self.options, **loss_opts}

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """``(loss_sum, error_sum or None, frames)``."""
        raise NotImplementedError

    # -- helpers for subclasses -----------------------------------------------------------------------------
    @staticmethod
    def frame_mask(output: LayerOutput) -> Any:
        """(B, T) float mask of present frames, or (B,) ones without a time axis."""
        ops = output.ops
        if output.has_time:
            return output.mask()
        return ops.ones([ops.dynamic_dim(output.tensor, 0)])

    @staticmethod
    def log_probs(output: LayerOutput) -> Any:
        """log of the output distribution, from the logits where the activation allows it (stable)."""
        ops = output.ops
        if output.activation == "softmax" and output.logits is not None:
            return ops.log_softmax(output.logits)
        if output.activation == "log_softmax":
            return output.tensor
        return ops.log(ops.maximum(output.tensor, LOG_EPS))

    @staticmethod
    def dense_target(output: LayerOutput, target: LayerOutput) -> Any:
        """The target as float features of the output's dim (sparse ones one-hot)."""
        if target.sparse:
            return output.ops.one_hot(target.tensor, int(output.dim or target.dim or 0))
        return target.tensor


def make_loss(cls: Any, name: str, opts: dict[str, Any], *, layer: str) -> Any:
    """Instantiate a registered loss class with the layer's ``loss_opts``, naming the layer on bad options."""
    try:
        return cls(**opts)
    except NetworkError as exc:
        raise NetworkError(f"layer {layer!r}: loss {name!r}: {exc}") from None
    except TypeError as exc:
        raise NetworkError(f"layer {layer!r}: loss {name!r} rejects loss_opts {opts!r}: {exc}") from None
