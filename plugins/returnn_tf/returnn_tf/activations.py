"""Activation functions by their config names."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from returnn_core.errors import NetworkError

ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "leaky_relu": tf.nn.leaky_relu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "gelu": tf.nn.gelu,
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "softmax": tf.nn.softmax,
    "log_softmax": tf.nn.log_softmax,
    "softplus": tf.nn.softplus,
    "softsign": tf.nn.softsign,
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
    "abs": tf.abs,
    "exp": tf.exp,
    "log": tf.math.log,
    "sqrt": tf.sqrt,
    "square": tf.square,
    "sin": tf.sin,
    "cos": tf.cos,
}
IDENTITY_NAMES = (None, "", "linear", "identity", "none")


def get_activation(name: str | None, *, layer: str) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """The function for ``name`` (``None`` for identity); a clear error naming ``layer`` if unknown."""
    if name in IDENTITY_NAMES:
        return None
    fn = ACTIVATIONS.get(str(name).lower())
    if fn is None:
        raise NetworkError(
            f"layer {layer!r}: unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}, linear"
        )
    return fn
