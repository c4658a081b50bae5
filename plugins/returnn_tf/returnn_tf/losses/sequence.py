"""Sequence losses: ``ctc`` (blank = last class) and ``edit_distance`` (an error measure only)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_tf.losses.base import Loss


def dense_to_sparse(labels: tf.Tensor, lengths: tf.Tensor) -> tf.SparseTensor:
    """(B, L) labels with lengths (B,) as a SparseTensor (label 0 is kept, unlike ``tf.sparse.from_dense``)."""
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(labels)[1])
    idx = tf.where(mask)
    vals = tf.gather_nd(labels, idx)
    return tf.SparseTensor(idx, tf.cast(vals, tf.int32), tf.cast(tf.shape(labels), tf.int64))


def edit_distance_sum(hyp: tf.SparseTensor, ref: tf.SparseTensor) -> tf.Tensor:
    """Total (unnormalised) edit distance between two batches of label seqs."""
    return tf.reduce_sum(tf.edit_distance(tf.cast(hyp, tf.int64), tf.cast(ref, tf.int64), normalize=False))


class CtcLoss(Loss):
    """CTC on the pre-activation logits; the blank is the last output class. Error = label edit distance.

    The sums are normalised by the number of target labels.
    """

    def __call__(self, *, logits: tf.Tensor, target: tf.Tensor, target_seq_lens: tf.Tensor,
                 output_seq_lens: tf.Tensor, **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Summed CTC loss, summed edit distance of the greedy decoding, label count."""
        labels = dense_to_sparse(target, target_seq_lens)
        loss = tf.nn.ctc_loss(labels=labels, logits=logits, label_length=None, logit_length=output_seq_lens,
                              logits_time_major=False, blank_index=-1)
        decoded, _ = tf.nn.ctc_greedy_decoder(tf.transpose(logits, (1, 0, 2)), output_seq_lens)
        error = edit_distance_sum(decoded[0], labels)
        return tf.reduce_sum(loss), error, tf.cast(tf.reduce_sum(target_seq_lens), tf.float32)


class EditDistanceLoss(Loss):
    """Edit distance between the frame-wise argmax and the target labels; no loss to minimise (it is 0)."""

    def __call__(self, *, output: tf.Tensor, target: tf.Tensor, target_seq_lens: tf.Tensor,
                 output_seq_lens: tf.Tensor, **_: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """Zero loss, summed edit distance, label count."""
        hyp = dense_to_sparse(tf.argmax(output, axis=-1, output_type=tf.int32), output_seq_lens)
        error = edit_distance_sum(hyp, dense_to_sparse(target, target_seq_lens))
        return tf.constant(0.0), error, tf.cast(tf.reduce_sum(target_seq_lens), tf.float32)
