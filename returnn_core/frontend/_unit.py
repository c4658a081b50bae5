"""Finding a rec unit by its config name, with RETURNN's one rule: ``lstm`` means ``nativelstm`` where it works."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import PluginError, UnknownNameError

NATIVE_LSTM = "nativelstm"


def resolve_unit(manager: Any, backend: str, unit: str, *, layer: str, log: Any = None) -> type:
    """The unit class registered for ``backend`` under ``unit`` (case-insensitive).

    ``lstm`` takes ``nativelstm`` when a plugin (returnn-native) registers it for this backend and it loads;
    otherwise the core's LSTM, which runs on the backend's fused kernel where it has one.
    """
    name = unit.lower()
    registry = manager.rec_units
    if name == "lstm" and (backend, NATIVE_LSTM) in registry:
        try:
            return registry.get(NATIVE_LSTM, backend=backend)
        except PluginError as exc:
            if log is not None:
                log.v2(f"layer {layer!r}: nativelstm is registered but unusable ({exc}); using the built-in lstm")
    try:
        return registry.get(name, backend=backend)
    except UnknownNameError as exc:
        raise UnknownNameError(f"layer {layer!r}: {exc}") from None
