"""Frame-wise losses: ``ce``, ``generic_ce``, ``mse``, ``l1``, ``bin_ce``."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_tf.losses.base import Loss

_EPS = 1e-8


def _frame_mask(output_mask: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return output_mask if target.shape.rank >= 2 else tf.ones_like(target, tf.float32)


def frame_errors(output: tf.Tensor, target: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Number of frames whose argmax differs from the sparse target."""
    wrong = tf.cast(tf.not_equal(tf.argmax(output, axis=-1, output_type=tf.int32), target), tf.float32)
    return tf.reduce_sum(wrong * mask)


class CrossEntropyLoss(Loss):
    """Cross entropy against sparse class indices (or dense distributions); error = wrong frames.

    ``loss_opts``: ``label_smoothing`` (float).
    """

    def __call__(self, *, logits: tf.Tensor, output: tf.Tensor, target: tf.Tensor, output_mask: tf.Tensor,
                 activation: str | None = None, **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Summed cross entropy, frame errors, frames."""
        mask = _frame_mask(output_mask, target)
        smoothing = float(self.opts.get("label_smoothing", 0.0) or 0.0)
        dim = output.shape[-1]
        if target.dtype.is_integer:
            if activation == "softmax":
                if smoothing:
                    dist = tf.one_hot(target, dim) * (1.0 - smoothing) + smoothing / float(dim)
                    xent = tf.nn.softmax_cross_entropy_with_logits(dist, logits)
                else:
                    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
            else:
                prob = tf.gather(output, target, batch_dims=target.shape.rank)
                xent = -tf.math.log(tf.maximum(prob, _EPS))
            error = frame_errors(output, target, mask)
        else:
            if activation == "softmax":
                xent = tf.nn.softmax_cross_entropy_with_logits(target, logits)
            else:
                xent = -tf.reduce_sum(target * tf.math.log(tf.maximum(output, _EPS)), axis=-1)
            error = frame_errors(output, tf.argmax(target, axis=-1, output_type=tf.int32), mask)
        return tf.reduce_sum(xent * mask), error, tf.reduce_sum(mask)


class GenericCrossEntropyLoss(Loss):
    """``-log output[target]`` on the output probabilities, whatever the activation; error = wrong frames."""

    def __call__(self, *, output: tf.Tensor, target: tf.Tensor, output_mask: tf.Tensor,
                 **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Summed negative log probability of the target, frame errors, frames."""
        mask = _frame_mask(output_mask, target)
        if target.dtype.is_integer:
            prob = tf.gather(output, target, batch_dims=target.shape.rank)
            xent = -tf.math.log(tf.maximum(prob, _EPS))
            error = frame_errors(output, target, mask)
        else:
            xent = -tf.reduce_sum(target * tf.math.log(tf.maximum(output, _EPS)), axis=-1)
            error = frame_errors(output, tf.argmax(target, axis=-1, output_type=tf.int32), mask)
        return tf.reduce_sum(xent * mask), error, tf.reduce_sum(mask)


def _dense_target(target: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    if target.dtype.is_integer:
        return tf.one_hot(target, output.shape[-1], dtype=tf.float32)
    return target


class MeanSquaredErrorLoss(Loss):
    """Squared difference summed over features and frames (no error measure)."""

    def __call__(self, *, output: tf.Tensor, target: tf.Tensor, output_mask: tf.Tensor,
                 **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Summed squared error."""
        mask = _frame_mask(output_mask, target)
        diff = tf.reduce_sum(tf.square(output - _dense_target(target, output)), axis=-1)
        return tf.reduce_sum(diff * mask), None, tf.reduce_sum(mask)


class L1Loss(Loss):
    """Absolute difference summed over features and frames (no error measure)."""

    def __call__(self, *, output: tf.Tensor, target: tf.Tensor, output_mask: tf.Tensor,
                 **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Summed absolute error."""
        mask = _frame_mask(output_mask, target)
        diff = tf.reduce_sum(tf.abs(output - _dense_target(target, output)), axis=-1)
        return tf.reduce_sum(diff * mask), None, tf.reduce_sum(mask)


class BinaryCrossEntropyLoss(Loss):
    """Sigmoid cross entropy per feature against 0/1 targets; error = mean wrong bits per frame."""

    def __call__(self, *, logits: tf.Tensor, output: tf.Tensor, target: tf.Tensor, output_mask: tf.Tensor,
                 activation: str | None = None, **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Summed binary cross entropy, wrong bits (averaged per frame), frames."""
        mask = _frame_mask(output_mask, target)
        target = tf.cast(_dense_target(target, output), tf.float32)
        if activation != "sigmoid":
            p = tf.clip_by_value(output, _EPS, 1.0 - _EPS)
            logits = tf.math.log(p) - tf.math.log1p(-p)
        xent = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits), axis=-1)
        wrong = tf.reduce_mean(tf.cast(tf.not_equal(logits > 0.0, target > 0.5), tf.float32), axis=-1)
        return tf.reduce_sum(xent * mask), tf.reduce_sum(wrong * mask), tf.reduce_sum(mask)
