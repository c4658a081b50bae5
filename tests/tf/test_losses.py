"""The core's losses (registered for tf) on TF tensors against numpy, and their gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from returnn_tf.ops import TF_OPS

from returnn_core.frontend import LayerOutput, LossContext
from returnn_core.plugin import get_plugin_manager

RNG = np.random.RandomState(5)
LOGITS = RNG.normal(size=(2, 4, 3)).astype(np.float32)
MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float32)
LENS = np.array([4, 2], np.int32)
TARGET = np.array([[0, 2, 1, 1], [2, 0, 0, 0]], np.int32)


def loss(name: str, **opts):
    return get_plugin_manager().losses.get(name, backend="tf")(**opts)


def call(loss_obj, logits=LOGITS, target=TARGET, activation="softmax", output=None, *,
         target_seq_lens=None, output_seq_lens=None, get_layer_output=None):
    """The loss on an output layer of ``logits`` (the frames of ``LENS`` unless given) and ``target``."""
    logits_t = tf.convert_to_tensor(logits)
    if output is None:
        output = tf.nn.softmax(logits_t) if activation == "softmax" else tf.sigmoid(logits_t)
    out = LayerOutput(output, tf.constant(LENS) if output_seq_lens is None else output_seq_lens, 3,
                      logits=logits_t, activation=activation)
    target = np.asarray(target)
    tgt = LayerOutput(tf.constant(target), tf.constant(LENS) if target_seq_lens is None else target_seq_lens,
                      3, sparse=target.dtype.kind == "i")
    get = get_layer_output or (lambda name: pytest.fail(f"unexpected layer lookup {name!r}"))
    ctx = LossContext(ops=TF_OPS, layer="output", seq_tags=None, get_layer_output=get)
    return loss_obj(out, tgt, ctx)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_ce_and_frame_error() -> None:
    p = softmax(LOGITS)
    ref = -np.log(np.take_along_axis(p, TARGET[..., None], -1)[..., 0])
    value, error, frames = call(loss("ce"))
    np.testing.assert_allclose(value.numpy(), (ref * MASK).sum(), rtol=1e-5)
    assert error.numpy() == ((p.argmax(-1) != TARGET) * MASK).sum()
    assert frames.numpy() == 6
    value2, error2, _ = call(loss("generic_ce"))
    np.testing.assert_allclose(value2.numpy(), value.numpy(), rtol=1e-4)
    assert error2.numpy() == error.numpy()


def test_ce_label_smoothing_raises_the_loss() -> None:
    value, _, _ = call(loss("ce"))
    smooth, _, _ = call(loss("ce", label_smoothing=0.2))
    assert smooth.numpy() != pytest.approx(value.numpy())


def test_mse_l1_bin_ce() -> None:
    target = RNG.uniform(size=(2, 4, 3)).astype(np.float32)
    out = tf.constant(LOGITS)
    value, error, frames = call(loss("mse"), target=target, output=out, activation=None)
    np.testing.assert_allclose(value.numpy(), (((LOGITS - target) ** 2).sum(-1) * MASK).sum(), rtol=1e-5)
    assert error is None and frames.numpy() == 6
    value, _, _ = call(loss("l1"), target=target, output=out, activation=None)
    np.testing.assert_allclose(value.numpy(), ((np.abs(LOGITS - target)).sum(-1) * MASK).sum(), rtol=1e-5)
    bits = (target > 0.5).astype(np.float32)
    value, error, _ = call(loss("bin_ce"), target=bits, activation="sigmoid")
    p = 1 / (1 + np.exp(-LOGITS))
    ref = -(bits * np.log(p) + (1 - bits) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(value.numpy(), (ref * MASK).sum(), rtol=1e-4)
    np.testing.assert_allclose(error.numpy(), (((p > 0.5) != (bits > 0.5)).mean(-1) * MASK).sum(), rtol=1e-5)


def np_ctc(logits: np.ndarray, labels: list[int]) -> float:
    """-log P(labels) by summing over all alignments (blank = last class), brute force."""
    t_len, dim = logits.shape
    logp = np.log(softmax(logits))
    blank = dim - 1
    total = 0.0
    for path in itertools.product(range(dim), repeat=t_len):
        collapsed = [k for k, _ in itertools.groupby(path) if k != blank]
        if collapsed == labels:
            total += np.exp(sum(logp[t, k] for t, k in enumerate(path)))
    return -np.log(total)


def test_ctc_matches_brute_force_and_decodes() -> None:
    logits = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    target = np.array([[0, 1], [1, 0]], np.int32)
    tlens = np.array([2, 1], np.int32)
    value, error, frames = call(loss("ctc"), logits=logits, target=target, target_seq_lens=tf.constant(tlens),
                                output_seq_lens=tf.constant(np.array([4, 3], np.int32)))
    ref = np_ctc(logits[0], [0, 1]) + np_ctc(logits[1, :3], [1])
    np.testing.assert_allclose(value.numpy(), ref, rtol=1e-4)
    assert frames.numpy() == 3
    assert 0 <= error.numpy() <= 4


def test_edit_distance_is_an_error_only() -> None:
    out = tf.one_hot([[0, 2, 2, 1], [2, 0, 0, 0]], 3)
    value, error, frames = call(loss("edit_distance"), output=out)
    assert value.numpy() == 0.0
    assert error.numpy() == 1.0  # seq 0: [0 2 2 1] vs [0 2 1 1] one substitution; seq 1: [2 0] == [2 0]
    assert frames.numpy() == 6


def test_via_layer_gradient_is_the_error_signal() -> None:
    signal = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    logits = tf.Variable(LOGITS)
    via = loss("via_layer", error_signal_layer="sig", loss_wrt_to_act_in=True)
    with tf.GradientTape() as tape:
        value, _, _ = call(via, logits=logits.read_value(),
                           get_layer_output=lambda name: LayerOutput(tf.constant(signal), tf.constant(LENS), 3))
    grad = tape.gradient(value, logits)
    np.testing.assert_allclose(grad.numpy(), signal * MASK[..., None], rtol=1e-5)


def test_ce_gradient_matches_softmax_minus_onehot() -> None:
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        value, _, _ = call(loss("ce"), logits=logits.read_value(),
                           output=tf.nn.softmax(logits.read_value()))
    grad = tape.gradient(value, logits).numpy()
    ref = (softmax(LOGITS) - np.eye(3)[TARGET]) * MASK[..., None]
    np.testing.assert_allclose(grad, ref, atol=1e-5)
