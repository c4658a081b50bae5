"""Finding a rec unit by its config name, with RETURNN's one rule: ``lstm`` means ``nativelstm`` where it works."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import PluginError, UnknownNameError

NATIVE_LSTM = "nativelstm"


def resolve_unit(manager: Any, backend: str, unit: str, *, layer: str, log: Any = None) -> type:
    """The unit class registered for ``backend`` under ``unit`` (case-insensitive).

    ``lstm`` takes ``nativelstm`` when a plugin (returnn-native) registers it for this backend and it can be built
    (the unit's optional ``unusable_reason()`` returns None); otherwise the core's LSTM, which runs on the backend's
    fused kernel where it has one, and ``log`` gets one line saying why.
    """
    name = unit.lower()
    registry = manager.rec_units
    if name == "lstm":
        reason = f"no plugin provides nativelstm for {backend}: pip install returnn-native"
        if (backend, NATIVE_LSTM) in registry:
            try:
                native = registry.get(NATIVE_LSTM, backend=backend)
                reason = getattr(native, "unusable_reason", lambda: None)()
                if reason is None:
                    return native
            except PluginError as exc:
                reason = str(exc)
        if log is not None:
            log.v3(f"layer {layer!r}: unit lstm uses the {backend} backend's own LSTM kernel, not NativeLSTM ({reason})")
    try:
        return registry.get(name, backend=backend)
    except UnknownNameError as exc:
        raise UnknownNameError(f"layer {layer!r}: {exc}") from None
