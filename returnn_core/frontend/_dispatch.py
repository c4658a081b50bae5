"""Which :class:`Ops` serve a tensor: backends register their tensor types, so two backends live in one process."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import NetworkError
from returnn_core.frontend._ops import Ops

_BY_TYPE: list[tuple[tuple[type, ...], Ops]] = []


def register_ops(tensor_types: tuple[type, ...], ops: Ops) -> None:
    """Make ``ops`` serve tensors of ``tensor_types`` (a backend calls this when its ops module is imported)."""
    _BY_TYPE.insert(0, (tuple(tensor_types), ops))


def ops_for(tensor: Any) -> Ops:
    """The ops of the backend that owns ``tensor``."""
    for types, ops in _BY_TYPE:
        if isinstance(tensor, types):
            return ops
    known = ", ".join(o.backend for _, o in _BY_TYPE) or "none"
    raise NetworkError(f"no backend ops registered for a tensor of type {type(tensor).__name__} (backends: {known})")
