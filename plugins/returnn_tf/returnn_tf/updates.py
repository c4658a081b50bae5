"""The TF driver of the core's optimizers: slot variables, checkpoint names, and one update per step.

The seven built-in classes of :mod:`returnn_core.frontend.optimizers` run on TF's fused ``ResourceApply*``
kernels (one op per parameter and step; the core's formulas are those kernels'). Any other
:class:`~returnn_core.frontend.Optimizer` subclass runs its functional :meth:`~returnn_core.frontend.Optimizer.update`
and the results are assigned. Checkpoint names: ``optimizer/iterations`` and ``optimizer/<param>/<slot>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.frontend import Optimizer
from returnn_tf.ops import TF_OPS

_CORE_MODULE = "returnn_core.frontend.optimizers"

Kernel = Callable[[Optimizer, tf.Tensor, tf.Variable, dict[str, tf.Variable], tf.Tensor, tf.Tensor], None]


def _sgd(opt: Optimizer, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
         step: tf.Tensor) -> None:
    tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)


def _momentum(opt: Optimizer, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
              step: tf.Tensor) -> None:
    tf.raw_ops.ResourceApplyMomentum(
        var=var.handle, accum=slots["momentum"].handle, lr=lr, grad=grad, momentum=opt.f("momentum"),
        use_nesterov=bool(opt.opts["use_nesterov"]),
    )


def _adam(opt: Optimizer, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
          step: tf.Tensor) -> None:
    b1, b2 = float(opt.opts["beta1"]), float(opt.opts["beta2"])
    tf.raw_ops.ResourceApplyAdam(
        var=var.handle, m=slots["m"].handle, v=slots["v"].handle, beta1_power=tf.pow(b1, step),
        beta2_power=tf.pow(b2, step), lr=lr, beta1=b1, beta2=b2, epsilon=opt.f("epsilon"), grad=grad,
        use_nesterov=bool(getattr(opt, "nesterov", False)),
    )


def _adadelta(opt: Optimizer, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
              step: tf.Tensor) -> None:
    tf.raw_ops.ResourceApplyAdadelta(
        var=var.handle, accum=slots["accum"].handle, accum_update=slots["accum_update"].handle, lr=lr,
        rho=opt.f("rho"), epsilon=opt.f("epsilon"), grad=grad,
    )


def _adagrad(opt: Optimizer, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
             step: tf.Tensor) -> None:
    tf.raw_ops.ResourceApplyAdagradV2(var=var.handle, accum=slots["accum"].handle, lr=lr,
                                      epsilon=opt.f("epsilon"), grad=grad)


def _rmsprop(opt: Optimizer, grad: tf.Tensor, var: tf.Variable, slots: dict[str, tf.Variable], lr: tf.Tensor,
             step: tf.Tensor) -> None:
    tf.raw_ops.ResourceApplyRMSProp(
        var=var.handle, ms=slots["ms"].handle, mom=slots["mom"].handle, lr=lr, rho=opt.f("decay"),
        momentum=opt.f("momentum"), epsilon=opt.f("epsilon"), grad=grad,
    )


#: fused kernels by the class name of the core's built-in optimizers
FUSED: dict[str, Kernel] = {
    "Sgd": _sgd,
    "Momentum": _momentum,
    "Adam": _adam,
    "Nadam": _adam,
    "Adadelta": _adadelta,
    "Adagrad": _adagrad,
    "RmsProp": _rmsprop,
}


def fused_kernel(optimizer: Optimizer) -> Kernel | None:
    """The fused kernel of a built-in core optimizer; ``None`` for anything else (subclasses included,
    since they may change :meth:`~returnn_core.frontend.Optimizer.update`)."""
    cls = type(optimizer)
    if cls.__module__ != _CORE_MODULE:
        return None
    return FUSED.get(cls.name())


class Updater:
    """Slots and step counter of one :class:`Optimizer` for a set of TF variables; applies updates in the step."""

    def __init__(self, optimizer: Optimizer, variables: dict[str, tf.Variable], *, fused: bool = True) -> None:
        self.optimizer = optimizer
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="optimizer_iterations")
        self.slot_vars: dict[str, dict[str, tf.Variable]] = {
            name: {slot: tf.Variable(np.full(tuple(var.shape), optimizer.slot_init(slot), np.float32),
                                     trainable=False, name=f"optimizer__{name.replace('/', '__')}__{slot}")
                   for slot in optimizer.slots}
            for name, var in variables.items()
        }
        self.kernel = fused_kernel(optimizer) if fused else None

    def state(self) -> dict[str, tf.Variable]:
        """Every state variable by checkpoint name (``optimizer/iterations``, ``optimizer/<param>/<slot>``)."""
        out: dict[str, tf.Variable] = {"optimizer/iterations": self.iterations}
        for name, slots in self.slot_vars.items():
            for slot, var in slots.items():
                out[f"optimizer/{name}/{slot}"] = var
        return out

    def apply(self, grads: list[Any], variables: list[tf.Variable], names: list[str], lr: Any) -> None:
        """Update ``variables`` in place from ``grads`` (``None`` skips a variable); counts the step."""
        self.iterations.assign_add(1)
        step = tf.cast(self.iterations, tf.float32)
        lr = tf.cast(lr, tf.float32)
        for grad, var, name in zip(grads, variables, names):
            if grad is None:
                continue
            grad = tf.convert_to_tensor(grad)
            slots = self.slot_vars.get(name, {})
            if self.kernel is not None:
                self.kernel(self.optimizer, grad, var, slots, lr, step)
                continue
            new_param, new_slots = self.optimizer.update(TF_OPS, var.read_value(), grad,
                                                         {k: v.read_value() for k, v in slots.items()}, lr, step)
            for slot, value in new_slots.items():
                slots[slot].assign(tf.cast(value, tf.float32))
            var.assign(tf.cast(new_param, var.dtype))
