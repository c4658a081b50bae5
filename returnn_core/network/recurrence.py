"""RETURNN's ``network.recurrent``: whether batches must keep seqs apart, or may join the frames of several."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import PluginError, UnknownNameError
from returnn_core.network.description import NetworkDescription


def is_recurrent(network: NetworkDescription, manager: Any, backend: str) -> bool:
    """False only when every layer is framewise (its class says ``recurrent = False``) and every loss is too.

    A name the registries don't know (a backend that builds its layers itself) counts as recurrent.
    """
    try:
        for spec in network.layers.values():
            if getattr(manager.layers.get(spec.layer_class, backend=backend), "recurrent", True):
                return True
            loss = spec.opts.get("loss")
            if loss and not getattr(manager.losses.get(loss, backend=backend), "framewise", False):
                return True
    except (UnknownNameError, PluginError):
        return True
    return False
