"""Random LSTM problems shared by the binding tests: shapes, sequence-length masks, parameters, directions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LstmCase:
    """One problem: inputs (B, T, n_in), mask (B, T), params, initial state, direction."""

    x: np.ndarray
    mask: np.ndarray
    W: np.ndarray
    W_re: np.ndarray
    b: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    direction: int
    dy: np.ndarray
    dh: np.ndarray
    dc: np.ndarray

    @property
    def n(self) -> int:
        """Units."""
        return self.W_re.shape[0]


def make_case(seed: int, direction: int, *, zero_state: bool = False, sizes: tuple[int, int, int, int] | None = None,
              weight_scales: tuple[float, float] = (0.5, 0.5)) -> LstmCase:
    """A random case with random seq lengths (one seq of full length, one possibly empty).

    ``sizes`` (B, T, n_in, n) are random and small unless given; ``weight_scales`` scale W and W_re.
    """
    rng = np.random.default_rng(seed)
    if sizes is None:
        sizes = tuple(int(rng.integers(1, hi)) for hi in (5, 8, 6, 7))  # type: ignore[assignment]
    B, T, n_in, n = sizes
    lengths = rng.integers(0, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    f = np.float32

    def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.normal(size=shape) * scale).astype(f)

    return LstmCase(
        x=rand(B, T, n_in),
        mask=mask,
        W=rand(n_in, 4 * n, scale=weight_scales[0]),
        W_re=rand(n, 4 * n, scale=weight_scales[1]),
        b=rand(4 * n, scale=0.3),
        h0=np.zeros((B, n), f) if zero_state else rand(B, n, scale=0.5),
        c0=np.zeros((B, n), f) if zero_state else rand(B, n, scale=0.5),
        direction=direction,
        dy=rand(B, T, n),
        dh=rand(B, n),
        dc=rand(B, n),
    )
