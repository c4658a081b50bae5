"""Descriptions of data streams: :class:`DataSpec` per key and :class:`ExternData` for a whole network input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from returnn_core.errors import ConfigError


class NumOutputs(list):
    """RETURNN's ``[dim, ndim]`` pair of ``num_outputs``; equal to the same two numbers as a list or a tuple.

    RETURNN held the pair as a list in some places and a tuple in others (its manual: ``(dim, ndim)``), and
    configs and scripts compare against either.
    """

    def __eq__(self, other: object) -> bool:
        return list.__eq__(self, list(other) if isinstance(other, tuple) else other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # a list, so unhashable


@dataclass(frozen=True)
class DataSpec:
    """One data stream: feature dim (dense) or class count (sparse), time-major per seq."""

    dim: int | None
    sparse: bool = False
    dtype: str = ""
    labels: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.dtype:
            object.__setattr__(self, "dtype", "int32" if self.sparse else "float32")

    @property
    def ndim(self) -> int:
        """RETURNN's ``num_outputs`` ndim: 1 for sparse (time), 2 for dense (time, feature)."""
        return 1 if self.sparse else 2

    def as_num_outputs(self) -> NumOutputs:
        """The ``[dim, ndim]`` pair used by ``num_outputs`` and HDF ``targets/size``."""
        return NumOutputs([int(self.dim or 0), self.ndim])

    @classmethod
    def from_config(cls, key: str, value: Any) -> DataSpec:
        """Accept ``[dim, ndim]``, a plain ``dim`` (dense for ``data``, sparse otherwise) or an ``extern_data`` dict."""
        if isinstance(value, DataSpec):
            return value
        if isinstance(value, int):
            return cls(value, sparse=key != "data")
        if isinstance(value, (list, tuple)) and len(value) == 2:
            dim, ndim = value
            return cls(int(dim), sparse=int(ndim) == 1)
        if isinstance(value, Mapping):
            unknown = set(value) - {"dim", "sparse", "dtype", "shape", "available_for_inference", "labels"}
            if unknown:
                raise ConfigError(f"extern_data {key!r}: unknown option(s) {', '.join(sorted(unknown))}")
            sparse = bool(value.get("sparse", False))
            dim = value.get("dim")
            shape = value.get("shape")
            if shape is not None and not sparse and dim is None and len(shape) >= 1:
                dim = shape[-1]
            labels = value.get("labels")
            return cls(dim, sparse=sparse, dtype=value.get("dtype", ""), labels=tuple(labels) if labels else None)
        raise ConfigError(f"data {key!r}: cannot understand {value!r} (use [dim, ndim] or a dict)")


class ExternData(dict):
    """Data key -> :class:`DataSpec` of the network inputs and targets."""

    default_input = "data"
    default_target = "classes"

    @classmethod
    def from_config(cls, config: Any, dataset: Any = None) -> ExternData:
        """From ``extern_data``, else ``num_inputs``/``num_outputs``, else the dataset's own specs."""
        out = cls()
        extern = config.typed_value("extern_data") if config is not None else None
        if extern:
            for key, value in dict(extern).items():
                out[key] = DataSpec.from_config(key, value)
            return out
        if dataset is not None:
            out.update(dataset.output_specs())  # as delivered: ``window`` widens the input
        num_outputs = config.typed_value("num_outputs") if config is not None else None
        if isinstance(num_outputs, str):
            import ast

            num_outputs = ast.literal_eval(num_outputs)
        if isinstance(num_outputs, Mapping):
            for key, value in num_outputs.items():
                out[key] = DataSpec.from_config(key, value)
        elif num_outputs is not None:
            out["classes"] = DataSpec(int(num_outputs), sparse=True)
        num_inputs = config.int("num_inputs") if config is not None else None
        if num_inputs is not None and not (isinstance(num_outputs, Mapping) and "data" in num_outputs):
            out["data"] = DataSpec(num_inputs)  # as RETURNN: num_outputs["data"] (e.g. [n, 1], sparse) wins
        if not out:
            raise ConfigError("no data description: set extern_data, or num_inputs/num_outputs, or a train dataset")
        return out
