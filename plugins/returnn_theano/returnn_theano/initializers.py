"""Initial parameter values from init names (``glorot_uniform``, ``orthogonal``, ``uniform:0.1``, ...)."""

from __future__ import annotations

import numpy as np

from returnn_core.errors import NetworkError


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def init_value(init: str | float | int, shape: tuple[int, ...], rng: np.random.RandomState, *, what: str) -> np.ndarray:
    """A float32 array of ``shape`` drawn as ``init`` says; ``what`` names the parameter in errors."""
    if isinstance(init, (int, float)):
        return np.full(shape, init, dtype="float32")
    name, _, arg = str(init).partition(":")
    name = name.strip().lower()
    if name in ("zeros", "zero", "0"):
        return np.zeros(shape, "float32")
    if name in ("ones", "one", "1"):
        return np.ones(shape, "float32")
    if name in ("glorot_uniform", "xavier", "xavier_uniform"):
        fan_in, fan_out = _fans(shape)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype("float32")
    if name == "glorot_normal":
        fan_in, fan_out = _fans(shape)
        return (rng.randn(*shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype("float32")
    if name == "uniform":
        scale = float(arg or 0.05)
        return rng.uniform(-scale, scale, size=shape).astype("float32")
    if name == "normal":
        return (rng.randn(*shape) * float(arg or 0.05)).astype("float32")
    if name == "orthogonal":
        if len(shape) < 2:
            raise NetworkError(f"{what}: orthogonal init needs a matrix, got shape {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.randn(max(rows, cols), min(rows, cols))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        q = q if rows >= cols else q.T
        return q[:rows, :cols].reshape(shape).astype("float32")
    raise NetworkError(
        f"{what}: unknown init {init!r}; use glorot_uniform, glorot_normal, orthogonal, zeros, ones, "
        "uniform:<scale>, normal:<stddev> or a number"
    )
