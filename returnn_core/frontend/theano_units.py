"""Rec units of RETURNN's Theano ``rec`` layer (NetworkRecurrentLayer) that are not plain aliases of ``units.py``.

``lstme``, ``lstmp``, ``lstmc`` and ``lstmb`` were different Theano implementations of the same LSTM and are
registered as aliases of ``lstm``; ``vanilla`` is ``rnn``. What has its own math lives here.
"""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._ops import Ops
from returnn_core.frontend.units import ScanUnit


def sru_update(ops: Ops, z_t: Any, h: Any, rec: Any, n: int) -> Any:
    """The SRU's new output from the frame's input part ``z_t`` and the recurrent part ``rec`` (both (B, 3n),
    blocks [update, reset, candidate]): ``u * h + (1 - u) * tanh(z_c + r * rec_c)``."""
    z_u, z_r, z_c = ops.split(z_t, (n, n, n), axis=1)
    r_u, r_r, r_c = ops.split(rec, (n, n, n), axis=1)
    update = ops.sigmoid(z_u + r_u)
    reset = ops.sigmoid(z_r + r_r)
    cand = ops.tanh(z_c + reset * r_c)
    return update * h + (1.0 - update) * cand


class SruUnit(ScanUnit):
    """NetworkRecurrentLayer.SRU, a GRU without the reset weights: blocks [update, reset, candidate] of both
    ``x W`` and ``h_prev W_re``; ``h = u * h_prev + (1 - u) * tanh(z_c + r * (h_prev W_re)_c)``."""

    blocks = 3

    def step(self, ops: Ops, z_t: Any, states: tuple[Any, ...], w_re: Any) -> tuple[Any, ...]:
        """One SRU frame."""
        (h,) = states
        return (sru_update(ops, z_t, h, ops.matmul(h, w_re), self.n_out),)
