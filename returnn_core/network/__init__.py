"""Backend-neutral network handling: the resolved ``network`` dict and the rec-unit protocol."""

from returnn_core.network.axes import axis_index
from returnn_core.network.description import (
    COMMON_OPTIONS,
    DataRef,
    LayerRef,
    LayerSpec,
    NetworkDescription,
    Source,
    resolve_layer_class,
    resolve_network,
)
from returnn_core.network.init import initial_value
from returnn_core.network.rec_unit import LSTM_GATE_ORDER, GatedUnit, ParamSpec, RecUnit
from returnn_core.network.recurrence import is_recurrent

__all__ = [
    "COMMON_OPTIONS",
    "LSTM_GATE_ORDER",
    "DataRef",
    "GatedUnit",
    "LayerRef",
    "LayerSpec",
    "NetworkDescription",
    "ParamSpec",
    "RecUnit",
    "Source",
    "axis_index",
    "initial_value",
    "is_recurrent",
    "resolve_layer_class",
    "resolve_network",
]
