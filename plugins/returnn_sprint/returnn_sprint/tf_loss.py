"""The ``sprint`` loss for the TF backend: Sprint children compute the loss and the error signal of each seq.

Config: ``"loss": "sprint", "loss_opts": {"sprint_opts": {"sprintExecPath": ..., "sprintConfigStr": ...,
"numInstances": 2}}`` on a softmax output layer. The log-softmax of the layer's logits goes to Sprint per seq
(by seq tag, so no chunking); Sprint's error signal is used as the gradient w.r.t. the pre-softmax activations.

Duck-typed on TF tensors (see the TF backend's loss interface); returnn_tf is not imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_sprint.error_signals import SprintInstancePool


class SprintLoss:
    """Loss sum and gradient from :meth:`SprintInstancePool.get_batch_loss_and_error_signal`."""

    needs_target = False
    needs_seq_tags = True

    def __init__(self, sprint_opts: Mapping[str, Any] | None = None, **opts: Any) -> None:
        if not sprint_opts or "sprintExecPath" not in sprint_opts:
            raise NetworkError("loss 'sprint' needs loss_opts {'sprint_opts': {'sprintExecPath': ..., 'sprintConfigStr': ...}}")
        if opts:
            raise NetworkError(f"loss 'sprint': unknown loss_opts {', '.join(sorted(opts))} (only 'sprint_opts')")
        self.sprint_opts = dict(sprint_opts)

    def pool(self) -> SprintInstancePool:
        """The shared Sprint children for these options."""
        return SprintInstancePool.get_global_instance(self.sprint_opts)

    def _numpy_loss(self, log_probs: np.ndarray, seq_lens: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        names = [t.decode("utf8") if isinstance(t, bytes) else str(t) for t in tags]
        losses, errors = self.pool().get_batch_loss_and_error_signal(log_probs, seq_lens, names)
        return losses.astype(np.float32), errors.astype(np.float32)

    def __call__(
        self,
        *,
        logits: tf.Tensor,
        output_mask: tf.Tensor,
        output_seq_lens: tf.Tensor,
        seq_tags: tf.Tensor | None,
        activation: str | None = None,
        **kwargs: Any,
    ) -> tuple[tf.Tensor, None, tf.Tensor]:
        """``(loss_sum, None, num_frames)``; the gradient of ``loss_sum`` w.r.t. ``logits`` is Sprint's error signal."""
        if seq_tags is None:
            raise NetworkError("loss 'sprint' needs the seq tags of the batch (the backend did not pass seq_tags)")
        if activation not in (None, "softmax", "log_softmax"):
            raise NetworkError(f"loss 'sprint' needs a softmax output layer, got activation {activation!r}")
        mask = tf.cast(output_mask, tf.float32)

        @tf.custom_gradient
        def sprint_loss(x: tf.Tensor) -> tuple[tf.Tensor, Any]:
            log_probs = tf.nn.log_softmax(x)
            losses, errors = tf.numpy_function(
                self._numpy_loss,
                [log_probs, tf.cast(output_seq_lens, tf.int32), seq_tags],
                [tf.float32, tf.float32],
                stateful=True,
                name="sprint_loss_and_error_signal",
            )
            losses.set_shape([None])
            errors.set_shape(x.shape)

            def grad(dy: tf.Tensor) -> tf.Tensor:
                return dy * errors * mask[..., None]

            return tf.reduce_sum(losses), grad

        loss_sum = sprint_loss(tf.cast(logits, tf.float32))
        return loss_sum, None, tf.reduce_sum(mask)
