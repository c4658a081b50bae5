"""Activation functions by config name (``tanh``, ``relu``, ``softmax``, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from returnn_core.errors import NetworkError
from returnn_theano._pt import pt


def _gelu(x: Any) -> Any:
    return 0.5 * x * (1.0 + pt.erf(x / pt.sqrt(2.0).astype("float32")))


ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda x: x,
    "linear": lambda x: x,
    "tanh": pt.tanh,
    "sigmoid": pt.sigmoid,
    "relu": lambda x: pt.maximum(x, 0.0),
    "elu": lambda x: pt.switch(x > 0, x, pt.expm1(x)),
    "softplus": pt.softplus,
    "softmax": lambda x: pt.special.softmax(x, axis=-1),
    "log_softmax": lambda x: pt.special.log_softmax(x, axis=-1),
    "exp": pt.exp,
    "log": pt.log,
    "abs": pt.abs,
    "square": pt.sqr,
    "sqrt": pt.sqrt,
    "gelu": _gelu,
    "swish": lambda x: x * pt.sigmoid(x),
    "silu": lambda x: x * pt.sigmoid(x),
}


def activation_fn(name: str | None, *, layer: str) -> Callable[[Any], Any]:
    """The function for ``name`` (``None`` = identity); chains like ``"relu+tanh"`` apply left to right."""
    if name is None:
        return ACTIVATIONS["identity"]
    fns = []
    for part in str(name).split("+"):
        fn = ACTIVATIONS.get(part.strip())
        if fn is None:
            raise NetworkError(
                f"layer {layer!r}: unknown activation {part!r}; known: {', '.join(sorted(ACTIVATIONS))}"
            )
        fns.append(fn)

    def chained(x: Any) -> Any:
        for fn in fns:
            x = fn(x)
        return x

    return chained
