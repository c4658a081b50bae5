"""RETURNN's gradient treatment (its TFUpdater of 2018-2019) by our process_gradients on TF tensors, and the
config keys that select it."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from returnn_tf.ops import TF_OPS

from returnn_core.config import Config
from returnn_core.engine import OptimizerSettings
from returnn_core.frontend import process_gradients

A = np.array([3.0, -4.0], np.float32)  # norm 5
B = np.array([[0.5, np.nan], [np.inf, -1.0]], np.float32)


def processed(config: dict, grads: list) -> list:
    """The gradients as the settings of ``config`` treat them."""
    opts = OptimizerSettings.from_config(Config(config)).gradient_options()
    out = process_gradients(TF_OPS, [None if g is None else tf.constant(g) for g in grads], **opts)
    return [None if g is None else g.numpy() for g in out]


def test_gradient_clip_norm_is_per_tensor() -> None:
    small = np.array([0.3, 0.4], np.float32)  # norm 0.5: below the limit, unchanged
    a, b, none = processed({"gradient_clip_norm": 1.0}, [A, small, None])
    np.testing.assert_allclose(a, A / 5.0, rtol=1e-6)
    np.testing.assert_allclose(b, small, rtol=1e-6)
    assert none is None


def test_gradient_nan_inf_filter_zeroes_them() -> None:
    (b,) = processed({"gradient_nan_inf_filter": True}, [B])
    assert b.tolist() == [[0.5, 0.0], [0.0, -1.0]]


def test_global_norm_uses_the_gradients_as_they_came_before_value_clipping() -> None:
    # RETURNN: norm 5 of the raw gradient, so the value-clipped (3 -> 1, -4 -> -1) one is scaled by 1/5
    (a,) = processed({"gradient_clip": 1.0, "gradient_clip_global_norm": 1.0}, [A])
    np.testing.assert_allclose(a, [0.2, -0.2], rtol=1e-6)
