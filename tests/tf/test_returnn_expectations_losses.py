"""RETURNN's loss values (its TF losses of 2018-2019) from our losses on TF tensors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from returnn_tf.ops import TF_OPS

from returnn_core.frontend import LayerOutput, LossContext
from returnn_core.plugin import get_plugin_manager

LENS = np.array([4, 2], np.int32)
MASK = (np.arange(4)[None] < LENS[:, None]).astype(np.float32)
TARGET = np.array([[0, 2, 1, 3], [2, 0, 0, 0]], np.int32)


def ce_value(logits: np.ndarray, **opts) -> float:
    """Summed ``ce`` loss over the present frames of a softmax output with ``logits``."""
    loss = get_plugin_manager().losses.get("ce", backend="tf")(**opts)
    logits_t = tf.constant(logits)
    out = LayerOutput(tf.nn.softmax(logits_t), tf.constant(LENS), 4, logits=logits_t, activation="softmax")
    tgt = LayerOutput(tf.constant(TARGET), tf.constant(LENS), 4, sparse=True)
    value, _, _ = loss(out, tgt, LossContext(ops=TF_OPS, layer="output", seq_tags=None, get_layer_output=None))
    return float(value.numpy())


def test_label_smoothing_as_returnn() -> None:
    logits = np.random.RandomState(3).normal(size=(2, 4, 4)).astype(np.float32)
    s, k = 0.1, 4
    soft = np.full((2, 4, k), s / (k - 1), np.float32)
    np.put_along_axis(soft, TARGET[..., None], 1 - s, -1)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    entropy = -((1 - s) * np.log(1 - s) + (k - 1) * s / (k - 1) * np.log(s / (k - 1)))
    want = ((-(soft * logp).sum(-1) - entropy) * MASK).sum()
    np.testing.assert_allclose(ce_value(logits, label_smoothing=s), want, rtol=1e-5)


def test_label_smoothing_perfect_prediction_scores_zero() -> None:
    s, k = 0.2, 4
    soft = np.full((2, 4, k), s / (k - 1), np.float32)
    np.put_along_axis(soft, TARGET[..., None], 1 - s, -1)
    assert abs(ce_value(np.log(soft), label_smoothing=s)) < 1e-4


def test_edit_distance_of_a_decided_label_sequence() -> None:
    # RETURNN's search configs: "decision": {"class": "decide", "loss": "edit_distance"} on sparse labels
    loss = get_plugin_manager().losses.get("edit_distance", backend="tf")()
    hyp = LayerOutput(tf.constant([[1, 2, 3, 0], [2, 0, 0, 0]]), tf.constant([3, 1]), 4, sparse=True)
    ref = LayerOutput(tf.constant([[1, 3, 0, 0], [2, 1, 0, 0]]), tf.constant([2, 2]), 4, sparse=True)
    value, error, labels = loss(hyp, ref, LossContext(ops=TF_OPS, layer="decision", seq_tags=None,
                                                      get_layer_output=None))
    assert float(value) == 0.0 and float(error) == 2.0 and float(labels) == 4.0  # one deletion, one insertion
