"""``via_layer``: the gradient comes from another layer (``error_signal_layer``) or CE on its alignment (``align_layer``)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_tf.losses.base import Loss
from returnn_tf.losses.framewise import frame_errors


class ViaLayerLoss(Loss):
    """``loss_opts``: ``error_signal_layer`` (its output is the gradient w.r.t. this layer's output, or w.r.t. the
    logits with ``loss_wrt_to_act_in``) or ``align_layer`` (sparse alignment to train against with CE)."""

    needs_target = False

    def __init__(self, **loss_opts: Any) -> None:
        super().__init__(**loss_opts)
        if bool(loss_opts.get("error_signal_layer")) == bool(loss_opts.get("align_layer")):
            raise NetworkError("loss 'via_layer' needs exactly one of loss_opts 'error_signal_layer' or 'align_layer'")

    def __call__(self, *, logits: tf.Tensor, output: tf.Tensor, output_mask: tf.Tensor, get_layer_output: Any,
                 **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Loss whose gradient is the given error signal, or CE against the alignment."""
        mask = output_mask
        frames = tf.reduce_sum(mask)
        if self.opts.get("error_signal_layer"):
            signal = tf.stop_gradient(get_layer_output(self.opts["error_signal_layer"]))
            wrt = logits if self.opts.get("loss_wrt_to_act_in") else output
            value = tf.reduce_sum(tf.reduce_sum(signal * wrt, axis=-1) * mask)
            return value, None, frames
        align = tf.stop_gradient(get_layer_output(self.opts["align_layer"]))
        prob = tf.gather(output, align, batch_dims=2)
        xent = -tf.math.log(tf.maximum(prob, 1e-8))
        return tf.reduce_sum(xent * mask), frame_errors(output, align, mask), frames
