"""Optimizers: one update against the textbook formulas, fused TF kernels == the core's update rules, config
selection, gradient options, third-party optimizers, checkpoint names."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from returnn_tf.updates import Updater, fused_kernel
from tf_helpers import ToyDataset, batches_of, make_backend, train_epochs

from returnn_core.config import Config
from returnn_core.engine.optimizer_config import OptimizerSettings
from returnn_core.errors import ConfigError
from returnn_core.frontend import Optimizer
from returnn_core.plugin import get_plugin_manager

ALL = ["sgd", "momentum", "adam", "nadam", "adadelta", "adagrad", "rmsprop"]

G = np.array([0.5, -1.0, 2.0], np.float32)
V0 = np.array([1.0, 2.0, -1.0], np.float32)


def step(name: str, steps: int = 2, lr: float = 0.1, *, fused: bool = True, **opts) -> np.ndarray:
    opt = get_plugin_manager().updaters.get(name, backend="tf")(**opts)
    var = tf.Variable(V0)
    updater = Updater(opt, {"p": var}, fused=fused)
    assert (updater.kernel is not None) == fused
    for i in range(steps):
        grad = G * (1.0 + 0.5 * i)  # differing gradients, so the slots matter
        updater.apply([tf.constant(grad)], [var], ["p"], tf.constant(lr))
    return var.numpy()


def test_sgd_momentum_adam_formulas() -> None:
    g1, g2 = G, 1.5 * G
    np.testing.assert_allclose(step("sgd"), V0 - 0.1 * (g1 + g2), rtol=1e-6)
    # momentum: a = 0.9 a + g; v -= lr a  -> after 2 steps: lr*(g1 + (0.9 g1 + g2))
    np.testing.assert_allclose(step("momentum", momentum=0.9), V0 - 0.1 * (g1 + 0.9 * g1 + g2), rtol=1e-6)
    m = v = np.zeros(3)
    ref = V0.astype(np.float64)
    for t, g in ((1, g1), (2, g2)):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        lr_t = 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        ref = ref - lr_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(step("adam"), ref, rtol=1e-5)


@pytest.mark.parametrize("name", ["nadam", "adadelta", "adagrad", "rmsprop"])
def test_other_optimizers_descend(name: str) -> None:
    new = step(name, steps=3, lr=1.0 if name == "adadelta" else 0.05)
    assert np.all(np.sign(V0 - new) == np.sign(G))  # every coordinate moved against its gradient


@pytest.mark.parametrize(
    ("name", "opts"),
    [("sgd", {}), ("momentum", {"momentum": 0.8}), ("momentum", {"momentum": 0.5, "use_nesterov": True}),
     ("adam", {"beta_1": 0.8, "epsilon": 1e-3}), ("nadam", {}), ("adadelta", {"decay": 0.9}),
     ("adagrad", {"initial_accumulator_value": 0.3}), ("rmsprop", {"rho": 0.8, "momentum": 0.5})],
)
def test_fused_kernels_match_the_core_update_rules(name: str, opts: dict) -> None:
    lr = 1.0 if name == "adadelta" else 0.05
    np.testing.assert_allclose(step(name, steps=3, lr=lr, **opts), step(name, steps=3, lr=lr, fused=False, **opts),
                               rtol=2e-5, atol=1e-7)


def test_subclasses_and_third_party_optimizers_use_the_functional_update() -> None:
    adam = get_plugin_manager().updaters.get("adam", backend="tf")

    class SignSgd(Optimizer):
        """p -= lr * sign(g), with a step counter slot."""

        defaults = {"scale": 1.0}
        slots = {"count": 0.0}

        def update(self, ops, param, grad, slots, lr, step):
            return param - lr * self.f("scale") * ops.where(grad > 0.0, 1.0, -1.0), {"count": slots["count"] + 1.0}

    class MyAdam(adam):
        pass

    assert fused_kernel(adam()) is not None and fused_kernel(MyAdam()) is None and fused_kernel(SignSgd()) is None
    var = tf.Variable(V0)
    updater = Updater(SignSgd(scale=2.0), {"layer/W": var})
    for _ in range(2):
        updater.apply([tf.constant(G), None], [var, tf.Variable(1.0)], ["layer/W", "other"], tf.constant(0.1))
    np.testing.assert_allclose(var.numpy(), V0 - 2 * 0.1 * 2.0 * np.sign(G), rtol=1e-6)
    state = updater.state()
    assert set(state) == {"optimizer/iterations", "optimizer/layer/W/count"}
    assert int(state["optimizer/iterations"].numpy()) == 2
    np.testing.assert_array_equal(state["optimizer/layer/W/count"].numpy(), [2, 2, 2])


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_names_of_the_slots(name: str) -> None:
    slots = {"sgd": [], "momentum": ["momentum"], "adam": ["m", "v"], "nadam": ["m", "v"],
             "adadelta": ["accum", "accum_update"], "adagrad": ["accum"], "rmsprop": ["ms", "mom"]}[name]
    opt = get_plugin_manager().updaters.get(name, backend="tf")()
    state = Updater(opt, {"l1/W": tf.Variable(V0), "output/b": tf.Variable(V0[:2])}).state()
    assert set(state) == {"optimizer/iterations"} | {f"optimizer/{p}/{s}" for p in ("l1/W", "output/b") for s in slots}
    if name == "adagrad":
        np.testing.assert_allclose(state["optimizer/l1/W/accum"].numpy(), 0.1)


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
