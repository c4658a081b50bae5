"""Optimizers in plain TF on TF's fused ``ResourceApply*`` kernels (one op per parameter and step).

Interface (duck-typed, registered under ``updaters`` for ``backend="tf"``): constructed with the optimizer
options (``cls(**opts)``), :meth:`build` creates the slot variables for a list of variables, :meth:`apply`
updates them in place from gradients inside the compiled step, :meth:`state` names every state variable
for checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.errors import ConfigError


class Optimizer:
    """Base: option checking, slot creation and the update counter."""

    #: option name -> default
    defaults: dict[str, Any] = {}
    #: slot names and their initial value
    slots: dict[str, float] = {}

    def __init__(self, **opts: Any) -> None:
        opts.pop("learning_rate", None)  # the learning rate always comes from the learning-rate control
        unknown = sorted(set(opts) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "(none)"
            raise ConfigError(f"optimizer {type(self).__name__}: unknown option(s) {', '.join(unknown)}; known: {known}")
        self.opts = {**self.defaults, **opts}
        self.slot_vars: dict[str, dict[str, tf.Variable]] = {}
        self.iterations: tf.Variable | None = None
        self._names: list[str] = []

    def build(self, variables: dict[str, tf.Variable]) -> None:
        """Create the slots for ``variables`` (canonical name -> variable)."""
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="optimizer_iterations")
        self._names = list(variables)
        for name, var in variables.items():
            self.slot_vars[name] = {
                slot: tf.Variable(np.full(var.shape, init, dtype=np.float32), trainable=False)
                for slot, init in self.slots.items()
            }

    def state(self) -> dict[str, tf.Variable]:
        """Every state variable by checkpoint name (``optimizer/<param>/<slot>``)."""
        out: dict[str, tf.Variable] = {"optimizer/iterations": self.iterations} if self.iterations is not None else {}
        for name, slots in self.slot_vars.items():
            for slot, var in slots.items():
                out[f"optimizer/{name}/{slot}"] = var
        return out

    def apply(self, grads: list[tf.Tensor], variables: list[tf.Variable], names: list[str], lr: tf.Tensor) -> None:
        """Update ``variables`` in place (inside the compiled step)."""
        assert self.iterations is not None, "build() first"
        self.iterations.assign_add(1)
        step = tf.cast(self.iterations, tf.float32)
        for grad, var, name in zip(grads, variables, names):
            if grad is None:
                continue
            self.update(tf.convert_to_tensor(grad), var, self.slot_vars.get(name, {}), lr, step)

    def update(self, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
               step: tf.Tensor) -> None:
        """Update one variable."""
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent."""

    def update(self, grad, var, slots, lr, step):  # noqa: D102
        tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)


class Momentum(Optimizer):
    """Gradient descent with momentum (``momentum``, ``use_nesterov``)."""

    defaults = {"momentum": 0.9, "use_nesterov": False, "nesterov": False}
    slots = {"momentum": 0.0}

    def update(self, grad, var, slots, lr, step):  # noqa: D102
        tf.raw_ops.ResourceApplyMomentum(
            var=var.handle, accum=slots["momentum"].handle, lr=lr, grad=grad, momentum=float(self.opts["momentum"]),
            use_nesterov=bool(self.opts["use_nesterov"] or self.opts["nesterov"]),
        )


class Adam(Optimizer):
    """Adam (``beta1``, ``beta2``, ``epsilon``)."""

    defaults = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "beta_1": None, "beta_2": None}
    slots = {"m": 0.0, "v": 0.0}
    nesterov = False

    def update(self, grad, var, slots, lr, step):  # noqa: D102
        b1 = float(self.opts["beta_1"] if self.opts["beta_1"] is not None else self.opts["beta1"])
        b2 = float(self.opts["beta_2"] if self.opts["beta_2"] is not None else self.opts["beta2"])
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=slots["m"].handle, v=slots["v"].handle, beta1_power=tf.pow(b1, step),
            beta2_power=tf.pow(b2, step), lr=lr, beta1=b1, beta2=b2, epsilon=float(self.opts["epsilon"]),
            grad=grad, use_nesterov=self.nesterov,
        )


class Nadam(Adam):
    """Adam with Nesterov momentum."""

    nesterov = True


class Adadelta(Optimizer):
    """Adadelta (``rho``, ``epsilon``)."""

    defaults = {"rho": 0.95, "epsilon": 1e-6, "decay": None}
    slots = {"accum": 0.0, "accum_update": 0.0}

    def update(self, grad, var, slots, lr, step):  # noqa: D102
        rho = float(self.opts["decay"] if self.opts["decay"] is not None else self.opts["rho"])
        tf.raw_ops.ResourceApplyAdadelta(
            var=var.handle, accum=slots["accum"].handle, accum_update=slots["accum_update"].handle, lr=lr,
            rho=rho, epsilon=float(self.opts["epsilon"]), grad=grad,
        )


class Adagrad(Optimizer):
    """Adagrad (``initial_accumulator_value``, ``epsilon``)."""

    defaults = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}
    slots = {"accum": 0.1}

    def build(self, variables: dict[str, tf.Variable]) -> None:  # noqa: D102
        self.slots = {"accum": float(self.opts["initial_accumulator_value"])}
        super().build(variables)

    def update(self, grad, var, slots, lr, step):  # noqa: D102
        tf.raw_ops.ResourceApplyAdagradV2(
            var=var.handle, accum=slots["accum"].handle, lr=lr, epsilon=float(self.opts["epsilon"]), grad=grad,
        )


class RMSProp(Optimizer):
    """RMSProp (``decay``/``rho``, ``momentum``, ``epsilon``)."""

    defaults = {"decay": 0.9, "rho": None, "momentum": 0.0, "epsilon": 1e-7}
    slots = {"ms": 0.0, "mom": 0.0}

    def update(self, grad, var, slots, lr, step):  # noqa: D102
        rho = float(self.opts["rho"] if self.opts["rho"] is not None else self.opts["decay"])
        tf.raw_ops.ResourceApplyRMSProp(
            var=var.handle, ms=slots["ms"].handle, mom=slots["mom"].handle, lr=lr, rho=rho,
            momentum=float(self.opts["momentum"]), epsilon=float(self.opts["epsilon"]), grad=grad,
        )
