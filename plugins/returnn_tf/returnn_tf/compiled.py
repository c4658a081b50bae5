"""Compiled step functions with a cheap call path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from returnn_core.errors import NetworkError


class CompiledStep:
    """A ``tf.function`` with a fixed input signature, called through its single concrete function.

    ``tf.function.__call__`` binds and canonicalises the nested arguments against the signature and looks up the
    function cache on every call: 1-3 ms per step on CPU, as much as a small model's whole step. The signature
    is fixed, so the one concrete function is taken once and fed the flattened tensors directly (its
    ``_call_flat`` entry; when a TF version lacks it, the ordinary call is used).
    """

    def __init__(self, fn: Callable[..., Any], signature: Sequence[Any], *, name: str) -> None:
        self.name = name
        self.function = tf.function(fn, input_signature=tuple(signature), autograph=False)
        self.specs: list[tf.TensorSpec] = tf.nest.flatten(tuple(signature))
        self._concrete: Any = None
        self._flat_call: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        """Run the step on ``args`` (structured like the signature; numpy arrays or tensors)."""
        if self._concrete is None:
            self._concrete = self.function.get_concrete_function()
            self._flat_call = getattr(self._concrete, "_call_flat", None)
        if self._flat_call is None:
            return self.function(*args)
        flat = tf.nest.flatten(args)
        if len(flat) != len(self.specs):
            raise NetworkError(f"{self.name}: got {len(flat)} inputs, the compiled step takes {len(self.specs)}")
        tensors = []
        for value, spec in zip(flat, self.specs):
            # tf.constant is about half the cost of convert_to_tensor for numpy arrays
            tensor = value if isinstance(value, tf.Tensor) else tf.constant(value, dtype=spec.dtype)
            if tensor.dtype != spec.dtype:
                raise NetworkError(f"{self.name}: input {spec.name or ''} has dtype {tensor.dtype.name}, "
                                   f"the compiled step expects {spec.dtype.name}")
            if not spec.shape.is_compatible_with(tensor.shape):
                raise NetworkError(f"{self.name}: input {spec.name or ''} has shape {tensor.shape.as_list()}, "
                                   f"the compiled step expects {spec.shape.as_list()}")
            tensors.append(tensor)
        return self._flat_call(tensors, self._concrete.captured_inputs)  # packs the outputs like the signature
