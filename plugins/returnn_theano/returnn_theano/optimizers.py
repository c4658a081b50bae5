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

    #: option name -> default (``None``: an alias that, when given, wins over its partner)
    defaults: ClassVar[dict[str, float | None]] = {}

    def __init__(self, **opts: Any) -> None:
        opts.pop("learning_rate", None)  # the learning rate always comes from the learning-rate control
        unknown = set(opts) - set(self.defaults)
        if unknown:
            raise ConfigError(
                f"optimizer {type(self).__name__}: unknown option(s) {', '.join(sorted(unknown))};"
                f" known: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        self.opts: dict[str, float | None] = {**self.defaults, **opts}
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

    def c(self, key: str, alias: str | None = None) -> Any:
        """An option (or its alias, where given) as a float32 constant."""
        value = self.opts[alias] if alias is not None and self.opts.get(alias) is not None else self.opts[key]
        return np.float32(value)


class Sgd(Optimizer):
    """p -= lr * g."""

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """Plain gradient step."""
        return [(p, p - lr * g)]


class Momentum(Optimizer):
    """v = momentum * v + g; p -= lr * v (Nesterov: p -= lr * (g + momentum * v))."""

    defaults: ClassVar[dict[str, float | None]] = {"momentum": 0.9, "use_nesterov": 0.0, "nesterov": 0.0}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """Heavy-ball step."""
        mom = self.c("momentum")
        v = self.slot(p, "momentum")
        v_new = mom * v + g
        step = g + mom * v_new if (self.opts["use_nesterov"] or self.opts["nesterov"]) else v_new
        return [(v, v_new), (p, p - lr * step)]


class Adam(Optimizer):
    """Adam with the bias correction folded into the step size (as TensorFlow's kernel does)."""

    defaults: ClassVar[dict[str, float | None]] = {
        "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "beta_1": None, "beta_2": None,
    }
    nesterov = False

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Adam step."""
        b1, b2 = self.c("beta1", "beta_1"), self.c("beta2", "beta_2")
        m, v = self.slot(p, "m"), self.slot(p, "v")
        m_new = b1 * m + (1.0 - b1) * g
        v_new = b2 * v + (1.0 - b2) * pt.sqr(g)
        lr_t = lr * pt.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        direction = b1 * m_new + (1.0 - b1) * g if self.nesterov else m_new
        return [(m, m_new), (v, v_new), (p, p - lr_t * direction / (pt.sqrt(v_new) + self.c("epsilon")))]


class Nadam(Adam):
    """Adam with a Nesterov look-ahead on the first moment."""

    nesterov = True


class Adadelta(Optimizer):
    """Adadelta: step = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g, scaled by lr."""

    defaults: ClassVar[dict[str, float | None]] = {"rho": 0.95, "epsilon": 1e-6, "decay": None}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Adadelta step."""
        rho, eps = self.c("rho", "decay"), self.c("epsilon")
        acc_g, acc_d = self.slot(p, "accum"), self.slot(p, "accum_update")
        acc_g_new = rho * acc_g + (1.0 - rho) * pt.sqr(g)
        delta = pt.sqrt(acc_d + eps) / pt.sqrt(acc_g_new + eps) * g
        acc_d_new = rho * acc_d + (1.0 - rho) * pt.sqr(delta)
        return [(acc_g, acc_g_new), (acc_d, acc_d_new), (p, p - lr * delta)]


class Adagrad(Optimizer):
    """Adagrad: p -= lr * g / (sqrt(sum g^2) + eps)."""

    defaults: ClassVar[dict[str, float | None]] = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One Adagrad step."""
        acc = self.slot(p, "accum", float(self.opts["initial_accumulator_value"] or 0.0))
        acc_new = acc + pt.sqr(g)
        return [(acc, acc_new), (p, p - lr * g / (pt.sqrt(acc_new) + self.c("epsilon")))]


class RmsProp(Optimizer):
    """RMSprop: ms = rho * ms + (1 - rho) g^2; mom = momentum * mom + lr * g / sqrt(ms + eps); p -= mom."""

    defaults: ClassVar[dict[str, float | None]] = {"decay": 0.9, "rho": None, "momentum": 0.0, "epsilon": 1e-7}

    def param_updates(self, p: Any, g: Any, lr: Any, t: Any) -> list[tuple[Any, Any]]:
        """One RMSprop step."""
        rho = self.c("decay", "rho")
        ms, mom = self.slot(p, "ms"), self.slot(p, "mom")
        ms_new = rho * ms + (1.0 - rho) * pt.sqr(g)
        mom_new = self.c("momentum") * mom + lr * g / pt.sqrt(ms_new + self.c("epsilon"))
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
