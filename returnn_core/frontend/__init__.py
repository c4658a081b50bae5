"""Backend-neutral layers, losses, rec units and optimizers: written once against :class:`Ops`, run on every backend.

A backend supplies an :class:`Ops` subclass (registered for its tensor types with :func:`register_ops`),
variables and step compilation; :class:`Network` builds and runs the layers of a network dict with those.

The names below load on first access: plugin ``_hooks`` modules import :mod:`returnn_core.frontend.catalogue`
while plugins are discovered, which must not pull in numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LOG_EPS": "_ops",
    "Ops": "_ops",
    "Context": "_layer",
    "Layer": "_layer",
    "concat_features": "_layer",
    "LayerOutput": "_output",
    "Loss": "_loss",
    "LossContext": "_loss",
    "LossTerm": "_network",
    "Network": "_network",
    "VariableFactory": "_network",
    "Optimizer": "_optimizer",
    "accumulate": "_optimizer",
    "process_gradients": "_optimizer",
    "ops_for": "_dispatch",
    "register_ops": "_dispatch",
    "resolve_unit": "_unit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
