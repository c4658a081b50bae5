"""Optimizers: one update against the textbook formulas, config selection, gradient options."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import ToyDataset, batches_of, make_backend, train_epochs

from returnn_core.config import Config
from returnn_core.engine.optimizer_config import OptimizerSettings
from returnn_core.errors import ConfigError
from returnn_core.plugin import get_plugin_manager

G = np.array([0.5, -1.0, 2.0], np.float32)
V0 = np.array([1.0, 2.0, -1.0], np.float32)


def step(name: str, steps: int = 2, lr: float = 0.1, **opts) -> np.ndarray:
    opt = get_plugin_manager().updaters.get(name, backend="tf")(**opts)
    var = tf.Variable(V0)
    opt.build({"p": var})
    for _ in range(steps):
        opt.apply([tf.constant(G)], [var], ["p"], tf.constant(lr))
    return var.numpy()


def test_sgd_momentum_adam_formulas() -> None:
    np.testing.assert_allclose(step("sgd"), V0 - 2 * 0.1 * G, rtol=1e-6)
    # momentum: a = 0.9 a + g; v -= lr a  -> after 2 steps: lr*(g + 1.9g)
    np.testing.assert_allclose(step("momentum", momentum=0.9), V0 - 0.1 * (G + 1.9 * G), rtol=1e-6)
    m = v = np.zeros(3)
    ref = V0.astype(np.float64)
    for t in (1, 2):
        m = 0.9 * m + 0.1 * G
        v = 0.999 * v + 0.001 * G**2
        lr_t = 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        ref = ref - lr_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(step("adam"), ref, rtol=1e-5)


@pytest.mark.parametrize("name", ["nadam", "adadelta", "adagrad", "rmsprop"])
def test_other_optimizers_descend(name: str) -> None:
    new = step(name, steps=3, lr=1.0 if name == "adadelta" else 0.05)
    assert np.all(np.sign(V0 - new) == np.sign(G))  # every coordinate moved against its gradient


def test_unknown_optimizer_option_is_rejected() -> None:
    with pytest.raises(ConfigError, match="beta3"):
        get_plugin_manager().updaters.get("adam", backend="tf")(beta3=1)


@pytest.mark.parametrize(
    ("config", "name"),
    [({"adam": True}, "adam"), ({"optimizer": {"class": "nadam"}}, "nadam"), ({"rmsprop": True}, "rmsprop"),
     ({"optimizer": {"class": "Momentum", "momentum": 0.5}}, "momentum"), ({}, "sgd")],
)
def test_config_selects_optimizer(config: dict, name: str) -> None:
    settings = OptimizerSettings.from_config(Config(config))
    cls = get_plugin_manager().updaters.get(settings.name, backend="tf")
    be = make_backend({"output": {"class": "softmax", "loss": "ce"}}, **config)
    assert type(be.optimizer) is cls and settings.name == name


def test_gradient_options_and_accumulation() -> None:
    batches = batches_of(ToyDataset(16))
    net = {"output": {"class": "softmax", "loss": "ce"}}
    plain = make_backend(net)
    before = plain.get_param_values()
    clipped = make_backend(net, gradient_clip=1e-4)
    clipped.set_param_values(before)
    clipped.train_step(batches[0], 1.0)
    delta = np.abs(clipped.get_param_values()["output/W"] - before["output/W"]).max()
    assert 0 < delta <= 1e-4 + 1e-7
    gnorm = make_backend(net, gradient_clip_global_norm=1e-3)
    gnorm.set_param_values(before)
    gnorm.train_step(batches[0], 1.0)
    diff = np.concatenate([(gnorm.get_param_values()[k] - before[k]).ravel() for k in before])
    assert np.linalg.norm(diff) == pytest.approx(1e-3, rel=1e-3)
    accum = make_backend(net, accum_grad_multiple_step=2)
    accum.set_param_values(before)
    accum.train_step(batches[0], 0.5)
    np.testing.assert_array_equal(accum.get_param_values()["output/W"], before["output/W"])  # not yet applied
    accum.train_step(batches[1], 0.5)
    assert not np.allclose(accum.get_param_values()["output/W"], before["output/W"])
    noisy = make_backend(net, gradient_noise=0.3)
    assert train_epochs(noisy, batches, 1, 0.1)[0] > 0
