"""Sprint losses for the TF backend, duck-typed on TF tensors (see the TF backend's loss interface).

``"loss": "sprint"``: Sprint children compute the loss and the error signal of each seq.
``"loss": "fast_bw"``: Sprint children export each seq's HMM automaton; full-sum Baum-Welch here gives the loss
and the soft alignment, the error signal is ``am_scale * (softmax - soft alignment)``.

Both take ``"loss_opts": {"sprint_opts": {"sprintExecPath": ..., "sprintConfigStr": ..., "numInstances": 2}}`` on a
softmax output layer (``fast_bw`` also ``am_scale`` and ``tdp_scale``). The log-softmax of the layer's logits is
used per seq (by seq tag, so no chunking); the error signal is the gradient w.r.t. the pre-softmax activations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.engine import relayed_errors
from returnn_core.errors import NetworkError, ReturnnError
from returnn_sprint.error_signals import SprintInstancePool
from returnn_sprint.fast_bw import batch_baum_welch


def _names(tags: np.ndarray) -> list[str]:
    return [t.decode("utf8") if isinstance(t, bytes) else str(t) for t in tags]


class SprintLoss:
    """Loss sum and gradient from :meth:`SprintInstancePool.get_batch_loss_and_error_signal`."""

    needs_target = False
    needs_seq_tags = True
    loss_name = "sprint"

    def __init__(self, sprint_opts: Mapping[str, Any] | None = None, **opts: Any) -> None:
        if not sprint_opts or "sprintExecPath" not in sprint_opts:
            raise NetworkError(
                f"loss {self.loss_name!r} needs loss_opts {{'sprint_opts': {{'sprintExecPath': ..., 'sprintConfigStr': ...}}}}"
            )
        self.sprint_opts = dict(sprint_opts)
        self._take_opts(opts)

    def _take_opts(self, opts: dict[str, Any]) -> None:
        if opts:
            raise NetworkError(f"loss {self.loss_name!r}: unknown loss_opts {', '.join(sorted(opts))} (only 'sprint_opts')")

    def pool(self) -> SprintInstancePool:
        """The shared Sprint children for these options."""
        return SprintInstancePool.get_global_instance(self.sprint_opts)

    def numpy_loss(self, log_probs: np.ndarray, seq_lens: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-seq losses (B,) and error signals (B, T, D) for log posteriors (B, T, D)."""
        losses, errors = self.pool().get_batch_loss_and_error_signal(log_probs, seq_lens, _names(tags))
        return losses.astype(np.float32), errors.astype(np.float32)

    def _numpy_loss_relayed(self, *args: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # TF turns an exception here into its own error with a traceback; keep the clear one for the run
        try:
            return self.numpy_loss(*args)
        except ReturnnError as exc:
            relayed_errors.relay(exc)
            raise

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
        """``(loss_sum, None, num_frames)``; the gradient of ``loss_sum`` w.r.t. ``logits`` is the error signal."""
        if seq_tags is None:
            raise NetworkError(f"loss {self.loss_name!r} needs the seq tags of the batch (the backend passed none)")
        if activation not in (None, "softmax", "log_softmax"):
            raise NetworkError(f"loss {self.loss_name!r} needs a softmax output layer, got activation {activation!r}")
        mask = tf.cast(output_mask, tf.float32)

        @tf.custom_gradient
        def loss_from_sprint(x: tf.Tensor) -> tuple[tf.Tensor, Any]:
            log_probs = tf.nn.log_softmax(x)
            losses, errors = tf.numpy_function(
                self._numpy_loss_relayed,
                [log_probs, tf.cast(output_seq_lens, tf.int32), seq_tags],
                [tf.float32, tf.float32],
                stateful=True,
                name=f"{self.loss_name}_loss_and_error_signal",
            )
            losses.set_shape([None])
            errors.set_shape(x.shape)

            def grad(dy: tf.Tensor) -> tf.Tensor:
                return dy * errors * mask[..., None]

            return tf.reduce_sum(losses), grad

        loss_sum = loss_from_sprint(tf.cast(logits, tf.float32))
        return loss_sum, None, tf.reduce_sum(mask)


class FastBaumWelchLoss(SprintLoss):
    """Full-sum loss over the automata Sprint exports (``export_allophone_state_fsa_by_segment_name``)."""

    loss_name = "fast_bw"

    def _take_opts(self, opts: dict[str, Any]) -> None:
        self.am_scale = float(opts.pop("am_scale", 1.0))
        self.tdp_scale = float(opts.pop("tdp_scale", 1.0))
        if opts:
            raise NetworkError(f"loss 'fast_bw': unknown loss_opts {', '.join(sorted(opts))} (sprint_opts, am_scale, tdp_scale)")

    def numpy_loss(self, log_probs: np.ndarray, seq_lens: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Baum-Welch per seq over its exported automaton."""
        automata = self.pool().get_automata_for_batch(_names(tags))
        return batch_baum_welch(log_probs, seq_lens, automata, am_scale=self.am_scale, tdp_scale=self.tdp_scale)
