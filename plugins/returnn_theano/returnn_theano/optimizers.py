"""Optimizers as symbolic update rules: sgd, momentum, adam, nadam, adadelta, adagrad, rmsprop.

Each is built as ``cls(**opts)`` from the config's ``optimizer`` dict; :meth:`Optimizer.updates` returns the
``(shared, new value)`` pairs of one step. Slot variables are named ``<param>/<slot>`` for checkpoints.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from returnn_core.errors import ConfigError
from returnn_theano._pt import floatX, pt, pytensor


class Optimizer:
    """Base: holds the slot variables and the step counter."""

    #: option name -> default
    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, **opts: Any) -> None:
        unknown = set(opts) - set(self.defaults) - {"learning_rate"}
        if unknown:
            raise ConfigError(
                f"optimizer {type(self).__name__}: unknown option(s) {', '.join(sorted(unknown))};"
                f" known: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        self.opts = {k: float(opts.get(k, v)) for k, v in self.defaults.items()}
        self.slots: dict[str, Any] = {}
        self.step = pytensor.shared(np.float32(0.0), name="optimizer/step")
        self.slots[self.step.name] = self.step

    def slot(self, param: Any, name: str, init: float = 0.0) -> Any:
        """A variable shaped like ``param`` (per-parameter optimizer state)."""
        value = np.full(param.get_value(borrow=True).shape, init, dtype=floatX)
        var = pytensor.shared(value, name=f"{param.name}/{name}")
        self.slots[var.name] = var
        return var

    def updates(self, params: list[Any], grads: list[Any], lr: Any) -> list[tuple[Any, Any]]:
        """The updates of one step, including the step counter."""
        t = self.step + 1.0
        out = [(self.step, t)]
        for p, g in zip(params, grads, strict=True):
            out.extend(self.param_updates(p, g, lr, t))
        return out

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """Updates of one parameter ``p`` with gradient ``g`` at step ``t`` (1-based)."""
        raise NotImplementedError

    def c(self, key: str) -> Any:
        """An option as a float32 constant."""
        return np.float32(self.opts[key])


class Sgd(Optimizer):
    """p -= lr * g."""

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """Plain gradient step."""
        return [(p, p - lr * g)]


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v (``nesterov``: p += momentum * v - lr * g)."""

    defaults: ClassVar[dict[str, float]] = {"momentum": 0.9, "nesterov": 0.0}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """Heavy-ball step."""
        v = self.slot(p, "momentum")
        v_new = self.c("momentum") * v - lr * g
        step = self.c("momentum") * v_new - lr * g if self.opts["nesterov"] else v_new
        return [(v, v_new), (p, p + step)]


class Adam(Optimizer):
    """Adam with bias correction folded into the step size (as TensorFlow and Keras do)."""

    defaults: ClassVar[dict[str, float]] = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Adam step."""
        b1, b2 = self.c("beta1"), self.c("beta2")
        m, v = self.slot(p, "m"), self.slot(p, "v")
        m_new = b1 * m + (1.0 - b1) * g
        v_new = b2 * v + (1.0 - b2) * pt.sqr(g)
        lr_t = lr * pt.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        return [(m, m_new), (v, v_new), (p, p - lr_t * m_new / (pt.sqrt(v_new) + self.c("epsilon")))]


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat): the bias-corrected look-ahead first moment."""

    defaults: ClassVar[dict[str, float]] = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Nadam step."""
        b1, b2 = self.c("beta1"), self.c("beta2")
        m, v = self.slot(p, "m"), self.slot(p, "v")
        m_new = b1 * m + (1.0 - b1) * g
        v_new = b2 * v + (1.0 - b2) * pt.sqr(g)
        m_hat = b1 * m_new / (1.0 - b1 ** (t + 1.0)) + (1.0 - b1) * g / (1.0 - b1**t)
        v_hat = v_new / (1.0 - b2**t)
        return [(m, m_new), (v, v_new), (p, p - lr * m_hat / (pt.sqrt(v_hat) + self.c("epsilon")))]


class Adadelta(Optimizer):
    """Adadelta: step = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g, scaled by lr."""

    defaults: ClassVar[dict[str, float]] = {"rho": 0.95, "epsilon": 1e-7}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Adadelta step."""
        rho, eps = self.c("rho"), self.c("epsilon")
        acc_g, acc_d = self.slot(p, "accum_grad"), self.slot(p, "accum_delta")
        acc_g_new = rho * acc_g + (1.0 - rho) * pt.sqr(g)
        delta = pt.sqrt(acc_d + eps) / pt.sqrt(acc_g_new + eps) * g
        acc_d_new = rho * acc_d + (1.0 - rho) * pt.sqr(delta)
        return [(acc_g, acc_g_new), (acc_d, acc_d_new), (p, p - lr * delta)]


class Adagrad(Optimizer):
    """Adagrad: p -= lr * g / (sqrt(sum g^2) + eps)."""

    defaults: ClassVar[dict[str, float]] = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Adagrad step."""
        acc = self.slot(p, "accumulator", self.opts["initial_accumulator_value"])
        acc_new = acc + pt.sqr(g)
        return [(acc, acc_new), (p, p - lr * g / (pt.sqrt(acc_new) + self.c("epsilon")))]


class RmsProp(Optimizer):
    """RMSprop: p -= lr * g / (sqrt(E[g^2]) + eps), with optional momentum."""

    defaults: ClassVar[dict[str, float]] = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "decay": -1.0}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One RMSprop step."""
        rho = np.float32(self.opts["decay"] if self.opts["decay"] >= 0 else self.opts["rho"])
        ms = self.slot(p, "rms")
        ms_new = rho * ms + (1.0 - rho) * pt.sqr(g)
        step = lr * g / (pt.sqrt(ms_new) + self.c("epsilon"))
        if not self.opts["momentum"]:
            return [(ms, ms_new), (p, p - step)]
        mom = self.slot(p, "momentum")
        mom_new = self.c("momentum") * mom + step
        return [(ms, ms_new), (mom, mom_new), (p, p - mom_new)]


def clip_gradients(grads: list[Any], *, clip: float | None, global_norm: float | None) -> list[Any]:
    """Elementwise clip to [-clip, clip], then rescale so the global norm is at most ``global_norm``."""
    if clip:
        grads = [pt.clip(g, -np.float32(clip), np.float32(clip)) for g in grads]
    if global_norm:
        norm = pt.sqrt(sum(pt.sqr(g).sum() for g in grads))
        scale = pt.minimum(np.float32(1.0), np.float32(global_norm) / pt.maximum(norm, np.float32(1e-12)))
        grads = [g * scale for g in grads]
    return grads
