"""Axis names in layer options (``"B"``, ``"T"``, ``"F"`` or an int) for batch-major layer outputs."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import NetworkError


def axis_index(axis: Any, *, rank: int, has_time: bool, sparse: bool, layer: str) -> int:
    """Absolute index of ``axis`` in a batch-major value of ``rank`` (time, if any, is axis 1)."""
    if isinstance(axis, str):
        key = axis.upper()
        if key in ("B", "BATCH"):
            return 0
        if key in ("T", "TIME"):
            if not has_time:
                raise NetworkError(f"layer {layer!r}: axis {axis!r}, but the input has no time axis")
            return 1
        if key in ("F", "FEATURE"):
            if sparse:
                raise NetworkError(f"layer {layer!r}: axis {axis!r}, but the input is sparse (no feature axis)")
            return rank - 1
        raise NetworkError(f"layer {layer!r}: unknown axis {axis!r} (use 'B', 'T', 'F' or an int)")
    idx = int(axis)
    if not -rank <= idx < rank:
        raise NetworkError(f"layer {layer!r}: axis {axis} out of range for rank {rank}")
    return idx % rank
