"""The optimizer protocol every backend runs: options with aliases, slots, and a functional update rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from returnn_core.errors import ConfigError
from returnn_core.frontend._ops import Ops


class Optimizer:
    """Base of the optimizers (``optimizer = {"class": name, ...}``), written once for all backends.

    Constructed as ``cls(**opts)``; ``learning_rate`` is dropped (it always comes from the learning-rate
    control), aliases (``beta_1`` for ``beta1``) are folded in and unknown options are errors. The backend keeps
    one variable per parameter and slot (initialised by :meth:`slot_init`) plus the step counter, and calls
    :meth:`update` inside the compiled step.
    """

    #: option name -> default
    defaults: ClassVar[dict[str, Any]] = {}
    #: alternative option name -> canonical name
    aliases: ClassVar[dict[str, str]] = {}
    #: per-parameter state: slot name -> initial value (a number, or the name of an option holding it)
    slots: ClassVar[dict[str, float | str]] = {}

    def __init__(self, **opts: Any) -> None:
        opts.pop("learning_rate", None)
        for alias, canonical in self.aliases.items():
            if alias in opts:
                if canonical in opts and opts[canonical] != opts[alias]:
                    raise ConfigError(f"optimizer {self.name()}: both {canonical!r} and its alias {alias!r} given")
                opts[canonical] = opts.pop(alias)
        unknown = sorted(set(opts) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted({*self.defaults, *self.aliases})) or "(none)"
            raise ConfigError(f"optimizer {self.name()}: unknown option(s) {', '.join(unknown)}; known: {known}")
        self.opts: dict[str, Any] = {**self.defaults, **opts}
        for key, value in self.opts.items():
            if isinstance(self.defaults[key], float) and not isinstance(value, (int, float)):
                raise ConfigError(f"optimizer {self.name()}: option {key!r} must be a number, got {value!r}")

    @classmethod
    def name(cls) -> str:
        """The class name as users see it."""
        return cls.__name__

    def slot_init(self, slot: str) -> float:
        """Initial value of ``slot`` for every parameter."""
        init = self.slots[slot]
        return float(self.opts[init]) if isinstance(init, str) else float(init)

    def f(self, key: str) -> np.float32:
        """Option ``key`` as a float32 constant."""
        return np.float32(self.opts[key])

    def update(self, ops: Ops, param: Any, grad: Any, slots: dict[str, Any], lr: Any, step: Any) -> tuple[Any, dict[str, Any]]:
        """New parameter value and new slot values for one step (``step`` counts from 1, float32)."""
        raise NotImplementedError


def process_gradients(ops: Ops, grads: Sequence[Any], *, clip: float | None = None,
                      global_norm: float | None = None, noise: float | None = None, clip_norm: float | None = None,
                      nan_inf_filter: bool = False) -> list[Any]:
    """The gradient treatment of RETURNN's updater, in its order (``None`` kept): ``gradient_noise``, then
    ``gradient_clip`` (elementwise), ``gradient_clip_norm`` (per tensor), ``gradient_clip_global_norm`` (by the
    global norm of the gradients as they came), ``gradient_nan_inf_filter`` (nan and inf become 0)."""
    grads = list(grads)
    norm = None
    if global_norm:
        present = [g for g in grads if g is not None]
        norm = ops.sqrt(sum(ops.reduce(ops.square(g), "sum") for g in present))
    if noise:
        grads = [None if g is None else g + ops.random_normal(ops.shape(g), float(noise)) for g in grads]
    if clip:
        grads = [None if g is None else ops.clip(g, -float(clip), float(clip)) for g in grads]
    if clip_norm:
        limit = np.float32(clip_norm)
        grads = [None if g is None else g * (limit / ops.maximum(ops.sqrt(ops.reduce(ops.square(g), "sum")), limit))
                 for g in grads]
    if norm is not None:
        scale = np.float32(global_norm) / ops.maximum(norm, np.float32(global_norm))
        grads = [None if g is None else g * scale for g in grads]
    if nan_inf_filter:
        # x - x is 0 exactly for finite x (nan for nan and inf)
        grads = [None if g is None else ops.where(ops.equal(g - g, 0.0), g, 0.0) for g in grads]
    return grads


def accumulate(ops: Ops, optimizer: Optimizer, param: Any, grad: Any, slots: dict[str, Any], accum: Any, lr: Any,
               step: Any, counter: Any, n: int) -> tuple[Any, dict[str, Any], Any]:
    """``accum_grad_multiple_step``: add ``grad`` to ``accum``; every ``n``-th call apply the mean of the sum.

    ``counter`` is the number of calls before this one; returns the new parameter, slots and accumulator.
    """
    summed = accum + grad
    apply_now = ops.equal((counter + 1) % n, 0)
    new_param, new_slots = optimizer.update(ops, param, summed / np.float32(n), slots, lr, step)
    return (ops.where(apply_now, new_param, param),
            {k: ops.where(apply_now, v, slots[k]) for k, v in new_slots.items()},
            ops.where(apply_now, ops.zeros_like(summed), summed))
