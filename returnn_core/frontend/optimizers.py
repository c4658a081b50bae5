"""Optimizers written once as functional update rules: sgd, momentum, adam, nadam, adadelta, adagrad, rmsprop.

The formulas are those of TensorFlow's ``ApplyX`` kernels, so a backend may run those kernels as a fast path
for these classes and get the same numbers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from returnn_core.frontend._ops import Ops
from returnn_core.frontend._optimizer import Optimizer

Slots = dict[str, Any]


class Sgd(Optimizer):
    """``p -= lr * g``."""

    def update(self, ops: Ops, param: Any, grad: Any, slots: Slots, lr: Any, step: Any) -> tuple[Any, Slots]:
        """Plain gradient step."""
        return param - lr * grad, {}


class Momentum(Optimizer):
    """``v = momentum * v + g; p -= lr * v`` (Nesterov: ``p -= lr * (g + momentum * v)``)."""

    defaults: ClassVar[dict[str, Any]] = {"momentum": 0.9, "use_nesterov": False}
    aliases: ClassVar[dict[str, str]] = {"nesterov": "use_nesterov"}
    slots: ClassVar[dict[str, float | str]] = {"momentum": 0.0}

    def update(self, ops: Ops, param: Any, grad: Any, slots: Slots, lr: Any, step: Any) -> tuple[Any, Slots]:
        """Heavy-ball step."""
        mom = self.f("momentum")
        v = mom * slots["momentum"] + grad
        direction = grad + mom * v if self.opts["use_nesterov"] else v
        return param - lr * direction, {"momentum": v}


class Adam(Optimizer):
    """Adam (``beta1``/``beta_1``, ``beta2``/``beta_2``, ``epsilon``), bias correction folded into the step size."""

    defaults: ClassVar[dict[str, Any]] = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    aliases: ClassVar[dict[str, str]] = {"beta_1": "beta1", "beta_2": "beta2"}
    slots: ClassVar[dict[str, float | str]] = {"m": 0.0, "v": 0.0}
    nesterov: ClassVar[bool] = False

    def update(self, ops: Ops, param: Any, grad: Any, slots: Slots, lr: Any, step: Any) -> tuple[Any, Slots]:
        """One Adam step."""
        b1, b2 = self.f("beta1"), self.f("beta2")
        m = b1 * slots["m"] + (1.0 - b1) * grad
        v = b2 * slots["v"] + (1.0 - b2) * ops.square(grad)
        # Python floats as bases: ``float ** tensor`` defers to the tensor's __rpow__ on every backend
        lr_t = lr * ops.sqrt(1.0 - float(b2) ** step) / (1.0 - float(b1) ** step)
        direction = b1 * m + (1.0 - b1) * grad if self.nesterov else m
        return param - lr_t * direction / (ops.sqrt(v) + self.f("epsilon")), {"m": m, "v": v}


class Nadam(Adam):
    """Adam with a Nesterov look-ahead on the first moment."""

    nesterov = True


class Adadelta(Optimizer):
    """Adadelta (``rho``/``decay``, ``epsilon``): ``step = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g``, times lr."""

    defaults: ClassVar[dict[str, Any]] = {"rho": 0.95, "epsilon": 1e-6}
    aliases: ClassVar[dict[str, str]] = {"decay": "rho"}
    slots: ClassVar[dict[str, float | str]] = {"accum": 0.0, "accum_update": 0.0}

    def update(self, ops: Ops, param: Any, grad: Any, slots: Slots, lr: Any, step: Any) -> tuple[Any, Slots]:
        """One Adadelta step."""
        rho, eps = self.f("rho"), self.f("epsilon")
        accum = rho * slots["accum"] + (1.0 - rho) * ops.square(grad)
        delta = ops.sqrt(slots["accum_update"] + eps) * ops.rsqrt(accum + eps) * grad
        accum_update = rho * slots["accum_update"] + (1.0 - rho) * ops.square(delta)
        return param - lr * delta, {"accum": accum, "accum_update": accum_update}


class Adagrad(Optimizer):
    """Adagrad (``initial_accumulator_value``, ``epsilon``): ``p -= lr * g / (sqrt(sum g^2) + eps)``."""

    defaults: ClassVar[dict[str, Any]] = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}
    slots: ClassVar[dict[str, float | str]] = {"accum": "initial_accumulator_value"}

    def update(self, ops: Ops, param: Any, grad: Any, slots: Slots, lr: Any, step: Any) -> tuple[Any, Slots]:
        """One Adagrad step."""
        accum = slots["accum"] + ops.square(grad)
        return param - lr * grad / (ops.sqrt(accum) + self.f("epsilon")), {"accum": accum}


class RmsProp(Optimizer):
    """RMSProp (``decay``/``rho``, ``momentum``, ``epsilon``):
    ``ms = rho ms + (1 - rho) g^2; mom = momentum mom + lr g / sqrt(ms + eps); p -= mom``."""

    defaults: ClassVar[dict[str, Any]] = {"decay": 0.9, "momentum": 0.0, "epsilon": 1e-7}
    aliases: ClassVar[dict[str, str]] = {"rho": "decay"}
    slots: ClassVar[dict[str, float | str]] = {"ms": 0.0, "mom": 0.0}

    def update(self, ops: Ops, param: Any, grad: Any, slots: Slots, lr: Any, step: Any) -> tuple[Any, Slots]:
        """One RMSProp step."""
        rho = self.f("decay")
        ms = rho * slots["ms"] + (1.0 - rho) * ops.square(grad)
        mom = self.f("momentum") * slots["mom"] + lr * grad / ops.sqrt(ms + self.f("epsilon"))
        return param - mom, {"ms": ms, "mom": mom}
