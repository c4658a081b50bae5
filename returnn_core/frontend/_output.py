"""What flows between layers: a backend tensor with its seq lengths, feature dim and sparsity."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from returnn_core.frontend._dispatch import ops_for
from returnn_core.frontend._ops import Ops


@dataclass
class LayerOutput:
    """A layer's output: batch-major ``tensor`` (B, T, ..., D) with a time axis when ``seq_lens`` is set.

    Sparse outputs are int32 class indices (B, T) (or (B,) without time) and ``dim`` is the class count.
    """

    tensor: Any
    seq_lens: Any | None
    dim: int | None
    sparse: bool = False
    #: pre-activation values (for losses that want logits); ``None`` means "same as tensor"
    logits: Any | None = None
    #: name of the activation applied after ``logits``
    activation: str | None = None
    #: final state of a recurrent layer, a tuple of (B, n) tensors
    final_state: tuple[Any, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> Ops:
        """The ops of the backend that owns :attr:`tensor`."""
        return ops_for(self.tensor)

    @property
    def has_time(self) -> bool:
        """Whether axis 1 is a (padded) time axis."""
        return self.seq_lens is not None

    @property
    def ndim(self) -> int:
        """Rank of the tensor."""
        return self.ops.ndim(self.tensor)

    @property
    def feature_ndim(self) -> int:
        """Number of axes after batch (and time)."""
        return self.ndim - 1 - int(self.has_time)

    def mask(self, dtype: str = "float32") -> Any:
        """(B, T) 1 for present frames, 0 for padding."""
        if self.seq_lens is None:
            raise ValueError("output has no time axis")
        ops = self.ops
        return ops.sequence_mask(self.seq_lens, ops.dynamic_dim(self.tensor, 1), dtype)

    def dense(self) -> Any:
        """The tensor as float features (sparse indices become one-hot)."""
        if self.sparse:
            return self.ops.one_hot(self.tensor, int(self.dim or 0))
        return self.tensor

    def with_tensor(self, tensor: Any, **changes: Any) -> LayerOutput:
        """A copy with another tensor (dim taken from its last axis unless given); logits/state dropped."""
        if "dim" not in changes:
            changes["dim"] = self.dim if changes.get("sparse", False) else _last_dim(tensor)
        changes.setdefault("sparse", False)
        changes.setdefault("logits", None)
        changes.setdefault("activation", None)
        changes.setdefault("final_state", None)
        return replace(self, tensor=tensor, **changes)


def _last_dim(tensor: Any) -> int | None:
    shape = ops_for(tensor).static_shape(tensor)
    return int(shape[-1]) if shape and shape[-1] is not None else None
