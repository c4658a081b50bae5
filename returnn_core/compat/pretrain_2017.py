"""The names of RETURNN's ``Pretrain`` module (``returnn.pretrain`` in later versions) that configs import."""

from __future__ import annotations

from typing import Any

from returnn_core.compat import missing_name
from returnn_core.network.pretrain import WrapEpochValue, find_pretrain_wrap_values

__all__ = ["WrapEpochValue", "find_pretrain_wrap_values"]


def __getattr__(name: str) -> Any:
    return missing_name("Pretrain", name, __all__)
