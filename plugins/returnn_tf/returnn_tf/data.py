"""What flows between TF layers: a tensor with its seq lengths, feature dim and sparsity."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import tensorflow as tf


@dataclass
class LayerOutput:
    """A layer's output: batch-major ``tensor`` (B, T, ..., D) with a time axis when ``seq_lens`` is set.

    Sparse outputs are int32 class indices (B, T) (or (B,) without time) and ``dim`` is the class count.
    """

    tensor: tf.Tensor
    seq_lens: tf.Tensor | None
    dim: int | None
    sparse: bool = False
    #: pre-activation values (for losses that want logits); ``None`` means "same as tensor"
    logits: tf.Tensor | None = None
    #: name of the activation applied after ``logits``
    activation: str | None = None
    #: final state of a recurrent layer, a tuple of (B, n) tensors
    final_state: tuple[tf.Tensor, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_time(self) -> bool:
        """Whether axis 1 is a (padded) time axis."""
        return self.seq_lens is not None

    @property
    def ndim(self) -> int:
        """Rank of the tensor."""
        return self.tensor.shape.rank

    def mask(self, dtype: tf.DType = tf.float32) -> tf.Tensor:
        """(B, T) 1 for present frames, 0 for padding."""
        if self.seq_lens is None:
            raise ValueError("output has no time axis")
        return tf.sequence_mask(self.seq_lens, maxlen=tf.shape(self.tensor)[1], dtype=dtype)

    def dense(self) -> tf.Tensor:
        """The tensor as float features (sparse indices become one-hot)."""
        if self.sparse:
            return tf.one_hot(self.tensor, int(self.dim or 0), dtype=tf.float32)
        return self.tensor

    def with_tensor(self, tensor: tf.Tensor, **changes: Any) -> LayerOutput:
        """A copy with another tensor (dim taken from its last axis unless given); logits/state dropped."""
        changes.setdefault("dim", _last_dim(tensor) if not changes.get("sparse", False) else self.dim)
        changes.setdefault("sparse", False)
        changes.setdefault("logits", None)
        changes.setdefault("activation", None)
        changes.setdefault("final_state", None)
        return replace(self, tensor=tensor, **changes)


def _last_dim(tensor: tf.Tensor) -> int | None:
    shape = tensor.shape
    return int(shape[-1]) if shape.rank and shape[-1] is not None else None
