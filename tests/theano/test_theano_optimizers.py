"""Optimizer updates, gradient clipping and L2 on a linear model, against NumPy updates of the same rules."""

from __future__ import annotations

import numpy as np
import pytest
from theano_helpers import batch, make_backend

from returnn_core.datasets import DataSpec
from returnn_core.errors import ConfigError

EXTERN = {"data": DataSpec(3), "target": DataSpec(2)}
LR = 0.1
#: RETURNN's optimizer_epsilon, every optimizer's epsilon unless given
EPS = 1e-16


def _setup(**config):
    net = {"lin": {"class": "linear", "n_out": 2, "loss": "mse", "target": "target", **config.pop("layer", {})}}
    backend = make_backend(net, EXTERN, **config)
    rng = np.random.RandomState(5)
    xs = [rng.randn(4, 3).astype("f"), rng.randn(2, 3).astype("f")]
    ts = [rng.randn(4, 2).astype("f"), rng.randn(2, 2).astype("f")]
    return backend, batch({"data": xs, "target": ts}, EXTERN), np.concatenate(xs), np.concatenate(ts)


def _grads(p: dict, x: np.ndarray, t: np.ndarray, l2: float = 0.0) -> dict:
    err = 2 * (x @ p["lin/W"] + p["lin/b"] - t) / len(x)  # the loss is normalised per frame
    return {"lin/W": x.T @ err + 2 * l2 * p["lin/W"], "lin/b": err.sum(0) + 2 * l2 * p["lin/b"]}


def _np_update(name: str, opts: dict, p: np.ndarray, g: np.ndarray, s: dict, t: int) -> np.ndarray:
    if name == "sgd":
        return p - LR * g
    if name == "momentum":
        s["v"] = opts.get("momentum", 0.9) * s.get("v", 0) + g
        return p - LR * s["v"]
    if name in ("adam", "nadam"):
        b1, b2, eps = 0.9, 0.999, opts.get("epsilon", EPS)
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        lr_t = LR * np.sqrt(1 - b2**t) / (1 - b1**t)
        m = b1 * s["m"] + (1 - b1) * g if name == "nadam" else s["m"]
        return p - lr_t * m / (np.sqrt(s["v"]) + eps)
    if name == "adadelta":
        rho, eps = 0.95, EPS
        s["ag"] = rho * s.get("ag", 0) + (1 - rho) * g * g
        d = np.sqrt(s.get("ad", 0) + eps) / np.sqrt(s["ag"] + eps) * g
        s["ad"] = rho * s.get("ad", 0) + (1 - rho) * d * d
        return p - LR * d
    if name == "adagrad":
        s["acc"] = s.get("acc", 0.1) + g * g
        return p - LR * g / (np.sqrt(s["acc"]) + EPS)
    if name == "rmsprop":
        s["ms"] = 0.9 * s.get("ms", 0) + 0.1 * g * g
        s["mom"] = opts.get("momentum", 0.0) * s.get("mom", 0) + LR * g / np.sqrt(s["ms"] + EPS)
        return p - s["mom"]
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "opts"), [
    ("sgd", {}), ("momentum", {"momentum": 0.5}), ("adam", {}), ("nadam", {"epsilon": 1e-3}), ("adadelta", {}),
    ("adagrad", {}), ("rmsprop", {"momentum": 0.3}),
])
def test_optimizer_steps_match_numpy(name: str, opts: dict) -> None:
    backend, bd, x, t = _setup(optimizer={"class": name, **opts})
    p = {k: v.astype("float64") for k, v in backend.get_param_values().items()}
    slots: dict[str, dict] = {k: {} for k in p}
    for step in (1, 2, 3):
        loss = backend.train_step(bd, LR).losses["lin"]
        np.testing.assert_allclose(loss, ((x @ p["lin/W"] + p["lin/b"] - t) ** 2).sum(), rtol=1e-4)
        g = _grads(p, x, t)
        p = {k: _np_update(name, opts, p[k], g[k], slots[k], step) for k in p}
        got = backend.get_param_values()
        for k in p:
            np.testing.assert_allclose(got[k], p[k], rtol=2e-4, atol=1e-5, err_msg=f"{name} step {step} {k}")


def test_legacy_flag_selects_optimizer() -> None:
    backend, bd, x, t = _setup(adam=True)
    p0 = backend.get_param_values()
    backend.train_step(bd, LR)
    # Adam's first step moves every weight by about lr (sign of its gradient)
    np.testing.assert_allclose(np.abs(backend.get_param_values()["lin/W"] - p0["lin/W"]), LR, rtol=1e-3)


def test_gradient_clip_and_l2() -> None:
    backend, bd, x, t = _setup(gradient_clip=0.05, layer={"L2": 0.5})
    p = {k: v.astype("float64") for k, v in backend.get_param_values().items()}
    backend.train_step(bd, LR)
    g = _grads(p, x, t, l2=0.5)
    got = backend.get_param_values()
    for k in p:
        np.testing.assert_allclose(got[k], p[k] - LR * np.clip(g[k], -0.05, 0.05), rtol=1e-4, atol=1e-6)


def test_gradient_clip_global_norm() -> None:
    backend, bd, x, t = _setup(gradient_clip_global_norm=0.01)
    p = {k: v.astype("float64") for k, v in backend.get_param_values().items()}
    backend.train_step(bd, LR)
    g = _grads(p, x, t)
    norm = np.sqrt(sum((v**2).sum() for v in g.values()))
    assert norm > 0.01
    got = backend.get_param_values()
    for k in p:
        np.testing.assert_allclose(got[k], p[k] - LR * g[k] * 0.01 / norm, rtol=1e-4, atol=1e-7)


def test_unknown_optimizer_and_option() -> None:
    with pytest.raises(ConfigError, match="optimizer.*'adamm'.*did you mean 'adam'"):
        _setup(optimizer={"class": "adamm"})
    with pytest.raises(ConfigError, match="Adam: unknown option.*betta"):
        _setup(optimizer={"class": "adam", "betta": 0.1})


def test_accum_grad_multiple_step() -> None:
    backend, bd, x, t = _setup(accum_grad_multiple_step=2, optimizer={"class": "momentum", "momentum": 0.5})
    p0 = {k: v.astype("float64") for k, v in backend.get_param_values().items()}
    backend.train_step(bd, LR)
    for k, v in backend.get_param_values().items():
        np.testing.assert_array_equal(v, p0[k].astype("float32"))  # only accumulated
    backend.train_step(bd, LR)
    g = _grads(p0, x, t)  # both steps saw the same parameters and batch: the mean is g
    p1 = backend.get_param_values()
    for k in p0:
        np.testing.assert_allclose(p1[k], p0[k] - LR * g[k], rtol=1e-4, atol=1e-6)
    backend.train_step(bd, LR)
    assert all(np.array_equal(v, p1[k]) for k, v in backend.get_param_values().items())


def test_gradient_noise_draws_fresh_noise_each_step() -> None:
    backend, bd, x, t = _setup(gradient_noise=0.3)
    p = {k: v.astype("float64") for k, v in backend.get_param_values().items()}
    backend.train_step(bd, LR)
    g = _grads(p, x, t)
    got = backend.get_param_values()
    noise = {k: (p[k] - LR * g[k] - got[k]) / LR for k in p}
    all_noise = np.concatenate([v.ravel() for v in noise.values()])
    assert 0.1 < all_noise.std() < 0.6  # N(0, 0.3) added to each gradient entry
    p2 = {k: v.astype("float64") for k, v in got.items()}
    backend.train_step(bd, LR)
    g2 = _grads(p2, x, t)
    noise2 = {k: (p2[k] - LR * g2[k] - backend.get_param_values()[k]) / LR for k in p}
    assert not np.allclose(noise2["lin/W"], noise["lin/W"], atol=1e-3)
