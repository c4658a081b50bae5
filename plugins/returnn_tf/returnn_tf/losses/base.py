"""The legacy interface of a TF loss, duck-typed on plain TF tensors (still accepted by the TF backend).

New losses subclass the backend-neutral :class:`returnn_core.frontend.Loss` and run on every backend; a loss
that is not such a subclass is called with the keyword protocol below (see ``Network._legacy_loss`` in the core).

A loss is registered in the ``losses`` registry for ``backend="tf"`` under its config ``loss`` name and is
used like this by the TF backend (inside the ``tf.function`` of the train/eval step, i.e. in graph mode)::

    loss = LossClass(**loss_opts)               # loss_opts: the layer's ``loss_opts`` dict from the config
    loss_sum, error_sum, num_frames = loss(
        logits=logits,                          # float32 (B, T, D): the output layer before its activation
        output=output,                          # float32 (B, T, D): the layer's output (after the activation)
        target=target,                          # int32 (B, T') for sparse targets, float32 (B, T', D') dense
        target_seq_lens=target_seq_lens,        # int32 (B,): valid frames of ``target``
        output_mask=output_mask,                # float32 (B, T): 1.0 for valid frames of the output
        output_seq_lens=output_seq_lens,        # int32 (B,): valid frames of the output
        seq_tags=seq_tags,                      # string (B,): seq names, only if ``needs_seq_tags``; else None
        target_dim=target_dim,                  # Python int: classes (sparse) or feature dim of the target
        activation=activation,                  # Python str: the layer's activation name ("softmax", ...)
        get_layer_output=get_layer_output,      # callable: layer name -> that layer's output tensor
    )

Every argument is passed by keyword; a loss may accept ``**kwargs`` and ignore what it does not need.
It returns three scalar tensors: ``loss_sum`` (float32, summed over all valid frames of the batch: what is
reported and, divided by ``num_frames`` and times ``loss_scale``, minimised), ``error_sum`` (float32, e.g. the
number of wrong frames; ``None`` if the loss has no error measure) and ``num_frames`` (float32, what the sums
are normalised by, e.g. the number of valid target frames).

Class attributes the backend reads (all optional):

- ``needs_target`` (default True): when False the layer may have no ``target`` (``target`` is then ``None``).
- ``needs_seq_tags`` (default False): when True ``seq_tags`` holds the batch's seq names.

Gradients flow through TF autodiff from ``loss_sum``. A loss that computes its own error signal outside
TF (e.g. Sprint's) wraps that in ``tf.py_function`` and attaches the gradient with ``tf.custom_gradient``.
Padded frames (``output_mask == 0``) must not contribute to any of the three values.
:class:`Loss` below is an optional convenience base; subclassing it is not required.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


class Loss:
    """Optional base class of TF losses: stores ``loss_opts`` and provides masking helpers."""

    needs_target = True
    needs_seq_tags = False

    def __init__(self, **loss_opts: Any) -> None:
        self.opts = loss_opts

    def __call__(self, **kwargs: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Compute ``(loss_sum, error_sum or None, num_frames)``."""
        raise NotImplementedError

    @staticmethod
    def masked_sum(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Sum of ``values`` (B, T) over the frames where ``mask`` (B, T) is 1."""
        return tf.reduce_sum(values * mask)
