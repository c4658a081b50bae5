"""Activation functions by their config names, written once on :class:`Ops`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend._ops import Ops

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

ACTIVATIONS: dict[str, Callable[[Ops, Any], Any]] = {
    "relu": lambda o, x: o.relu(x),
    "relu6": lambda o, x: o.clip(x, 0.0, 6.0),
    "leaky_relu": lambda o, x: o.where(x > 0.0, x, x * 0.2),
    "elu": lambda o, x: o.where(x > 0.0, x, o.exp(o.minimum(x, 0.0)) - 1.0),
    "selu": lambda o, x: _SELU_SCALE * o.where(x > 0.0, x, _SELU_ALPHA * (o.exp(o.minimum(x, 0.0)) - 1.0)),
    "gelu": lambda o, x: 0.5 * x * (1.0 + o.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (x + 0.044715 * x * x * x))),
    "tanh": lambda o, x: o.tanh(x),
    "sigmoid": lambda o, x: o.sigmoid(x),
    "softmax": lambda o, x: o.softmax(x),
    "log_softmax": lambda o, x: o.log_softmax(x),
    "softplus": lambda o, x: o.softplus(x),
    "log_sigmoid": lambda o, x: -o.softplus(-x),
    "softsign": lambda o, x: x / (1.0 + o.abs(x)),
    "swish": lambda o, x: x * o.sigmoid(x),
    "silu": lambda o, x: x * o.sigmoid(x),
    "abs": lambda o, x: o.abs(x),
    "exp": lambda o, x: o.exp(x),
    "log": lambda o, x: o.log(x),
    "sqrt": lambda o, x: o.sqrt(x),
    "square": lambda o, x: o.square(x),
    "sin": lambda o, x: o.sin(x),
    "cos": lambda o, x: o.cos(x),
}
IDENTITY_NAMES = (None, "", "linear", "identity", "none")
#: activations whose input a loss may use as logits (for a stable log)
LOGIT_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")


_BIN_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
}


def get_activation(name: str | None, *, layer: str) -> Callable[[Ops, Any], Any] | None:
    """``fn(ops, x)`` for ``name`` (``None`` for identity); a clear error naming ``layer`` if unknown.

    As in RETURNN, one binary operator may join two activations or numbers: ``"2*sigmoid"``, ``"1+tanh"``.
    """
    if name in IDENTITY_NAMES:
        return None
    text = str(name).replace(" ", "").lower()
    op = next((k for k in _BIN_OPS if k in text[1:]), None)  # a leading "-" is a sign, not an operator
    if op is not None:
        left, right = text.split(op, 1)
        a, b = _operand(left, name, layer), _operand(right, name, layer)
        return lambda o, x: _BIN_OPS[op](a(o, x), b(o, x))
    fn = ACTIVATIONS.get(text)
    if fn is None:
        raise NetworkError(
            f"layer {layer!r}: unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}, linear, "
            "or two of them (or a number) joined by one of + - * / like '2*sigmoid'"
        )
    return fn


def _operand(text: str, name: Any, layer: str) -> Callable[[Ops, Any], Any]:
    try:
        value = np.float32(text)
    except ValueError:
        fn = get_activation(text, layer=layer)
        return fn if fn is not None else (lambda o, x: x)
    return lambda o, x: value
