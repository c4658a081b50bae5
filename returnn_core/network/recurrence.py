"""RETURNN's ``network.recurrent``: whether batches must keep seqs apart, or may join the frames of several."""

from __future__ import annotations

from typing import Any

from returnn_core.network.description import NetworkDescription, resolve_layer_class


def is_recurrent(network: NetworkDescription, manager: Any, backend: str) -> bool:
    """False only when every layer is framewise (its class says ``recurrent = False``) and every loss is too."""
    for spec in network.layers.values():
        if getattr(resolve_layer_class(manager, spec, backend), "recurrent", True):
            return True
        loss = spec.opts.get("loss")
        if loss and not getattr(manager.losses.get(loss, backend=backend), "framewise", False):
            return True
    return False
