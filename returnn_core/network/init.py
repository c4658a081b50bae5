"""Initial parameter values from the init names of :class:`ParamSpec` and layer options, for every backend."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def initial_value(init: Any, shape: tuple[int, ...], rng: np.random.RandomState, *, what: str) -> np.ndarray:
    """Draw float32 values for ``shape``: ``glorot_uniform``, ``glorot_normal``, ``orthogonal``, ``zeros``,
    ``ones``, ``uniform:<scale>``, ``normal:<stddev>``, ``constant:<value>``, a number (constant) or an array of
    ``shape`` (the values themselves, for layouts no name covers)."""
    shape = tuple(int(d) for d in shape)
    if isinstance(init, np.ndarray):
        if init.shape != shape:
            raise NetworkError(f"{what}: initial values of shape {init.shape}, need {shape}")
        return init.astype(np.float32)
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        return np.full(shape, float(init), dtype=np.float32)
    if not isinstance(init, str):
        raise NetworkError(f"{what}: cannot understand initializer {init!r}")
    name, _, arg = init.replace("(", ":").rstrip(")").partition(":")
    name = name.strip().lower()
    fan_in, fan_out = _fans(shape)
    if name in ("glorot_uniform", "xavier", "xavier_uniform"):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        out = rng.uniform(-limit, limit, size=shape)
    elif name in ("glorot_normal", "xavier_normal"):
        out = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    elif name == "orthogonal":
        flat = (int(np.prod(shape[:-1])) if len(shape) > 1 else 1, shape[-1] if shape else 1)
        a = rng.normal(size=(max(flat), min(flat)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        out = (q if flat[0] >= flat[1] else q.T).reshape(shape)
    elif name in ("zeros", "zero"):
        out = np.zeros(shape)
    elif name in ("ones", "one"):
        out = np.ones(shape)
    elif name in ("uniform", "random_uniform"):
        scale = _number(arg, 0.05, what, init)
        out = rng.uniform(-scale, scale, size=shape)
    elif name in ("normal", "random_normal", "truncated_normal"):
        out = rng.normal(0.0, _number(arg, 0.05, what, init), size=shape)
    elif name == "constant":
        out = np.full(shape, _number(arg, 0.0, what, init))
    else:
        raise NetworkError(
            f"{what}: unknown initializer {init!r} (use glorot_uniform, glorot_normal, orthogonal, zeros, ones, "
            "uniform:<scale>, normal:<stddev>, constant:<value> or a number)"
        )
    return np.asarray(out, dtype=np.float32)


def _number(arg: str, default: float, what: str, init: str) -> float:
    arg = arg.strip()
    if "=" in arg:
        arg = arg.split("=", 1)[1]
    if not arg:
        return default
    try:
        return float(arg)
    except ValueError:
        raise NetworkError(f"{what}: bad number in initializer {init!r}") from None
