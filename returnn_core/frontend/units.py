"""Rec units written once on :class:`Ops` (the core's :class:`RecUnit` protocol): ``lstm``, ``gru``, ``rnn``.

All use the canonical parameters of :class:`GatedUnit` (``W``, ``W_re``, ``b``), so parameters move between
backends and between these units and ``nativelstm``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._dispatch import ops_for
from returnn_core.frontend._ops import Ops
from returnn_core.network import GatedUnit


class ScanUnit(GatedUnit):
    """Shared driver: ``direction=-1`` runs backwards over each seq's present frames; :meth:`run` projects the
    input of all frames at once, then loops :meth:`step` over time."""

    options = frozenset()

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, *, initial_state: tuple[Any, ...] | None = None,
                 direction: int = 1) -> tuple[Any, tuple[Any, ...]]:
        """Run over the padded batch ``x`` (B, T, n_in) with ``mask`` (B, T); returns y (B, T, n) and the final state."""
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, got {direction}")
        ops = ops_for(x)
        mask = ops.cast(mask, "float32")
        seq_lens = ops.cast(ops.reduce(mask, "sum", 1) + 0.5, "int32")
        if direction == -1:
            x = ops.reverse_sequence(x, seq_lens)
        if initial_state is None:
            zeros = ops.zeros([ops.dynamic_dim(x, 0), self.n_out])
            initial_state = (zeros,) * self.num_states
        y, final = self.run(ops, params, x, mask, tuple(initial_state))
        if direction == -1:
            y = ops.reverse_sequence(y, seq_lens)
        return y, final

    def run(self, ops: Ops, params: dict[str, Any], x: Any, mask: Any,
            states: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """The recurrence over the forward-ordered input ``x`` (B, T, n_in)."""
        z = ops.dot(x, params["W"]) + params["b"]

        def step(z_t: Any, m_t: Any, *args: Any) -> tuple[Any, tuple[Any, ...]]:
            *prev, w_re = args
            new = self.step(ops, z_t, tuple(prev), w_re)
            return new[0] * m_t, tuple(m_t * s_new + (1.0 - m_t) * s for s_new, s in zip(new, prev))

        ys, final = ops.scan(step, [ops.transpose(z, (1, 0, 2)), ops.expand_dims(ops.transpose(mask, (1, 0)), 2)],
                             states, non_sequences=[params["W_re"]])
        return ops.transpose(ys, (1, 0, 2)), final

    def step(self, ops: Ops, z_t: Any, states: tuple[Any, ...], w_re: Any) -> tuple[Any, ...]:
        """One frame: the new states (the first is the output)."""
        raise NotImplementedError


class LstmUnit(ScanUnit):
    """LSTM, gates [cell input, input, forget, output], no forget bias offset, ``h = o * tanh(c)``.

    Runs through :meth:`Ops.lstm`, which a backend may implement with a fused kernel (TF: ``BlockLSTM``).
    """

    blocks = 4
    num_states = 2

    def run(self, ops: Ops, params: dict[str, Any], x: Any, mask: Any,
            states: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """The whole sequence in one :meth:`Ops.lstm` call."""
        y, h, c = ops.lstm(x, params["W"], params["b"], params["W_re"], mask, states[0], states[1])
        return y, (h, c)

    def step(self, ops: Ops, z_t: Any, states: tuple[Any, ...], w_re: Any) -> tuple[Any, ...]:
        """One LSTM frame (the recurrence :meth:`Ops.lstm` runs), for one step inside a rec loop: (h, c)."""
        n = self.n_out
        h, c = states
        cell_in, gate_in, gate_f, gate_o = ops.split(z_t + ops.matmul(h, w_re), (n, n, n, n), axis=-1)
        c_new = ops.sigmoid(gate_f) * c + ops.sigmoid(gate_in) * ops.tanh(cell_in)
        return ops.sigmoid(gate_o) * ops.tanh(c_new), c_new


class TfCellLstmUnit(LstmUnit):
    """The LSTM of RETURNN's TF cell units (``lstmblock``, ``lstmblockfused``, ``basiclstm``, ``standardlstm``):
    TensorFlow's cells add ``forget_bias`` (unit option, default 1.0, as TF's) to the forget gate's input.

    Same parameters and gate layout as ``lstm``/``nativelstm``, which add none.
    """

    options = frozenset({"forget_bias"})

    def _forget_offset(self, ops: Ops) -> Any:
        n = self.n_out
        offset = np.zeros(4 * n, "float32")
        offset[2 * n : 3 * n] = float(self.opts.get("forget_bias", 1.0))
        return ops.constant(offset)

    def run(self, ops: Ops, params: dict[str, Any], x: Any, mask: Any,
            states: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """The whole sequence with the forget bias in ``b``."""
        return super().run(ops, {**params, "b": params["b"] + self._forget_offset(ops)}, x, mask, states)

    def step(self, ops: Ops, z_t: Any, states: tuple[Any, ...], w_re: Any) -> tuple[Any, ...]:
        """One frame with the forget bias added to its gate input."""
        return super().step(ops, z_t + self._forget_offset(ops), states, w_re)


class GruUnit(ScanUnit):
    """GRU, blocks [reset, update, candidate]: ``h = u * h_prev + (1 - u) * tanh(x W_c + (r * h_prev) W_re_c + b_c)``."""

    blocks = 3

    def step(self, ops: Ops, z_t: Any, states: tuple[Any, ...], w_re: Any) -> tuple[Any, ...]:
        """One GRU frame."""
        n = self.n_out
        (h,) = states
        w_ru, w_c = ops.split(w_re, (2 * n, n), axis=1)
        z_ru, z_c = ops.split(z_t, (2 * n, n), axis=1)
        reset, update = ops.split(ops.sigmoid(z_ru + ops.matmul(h, w_ru)), (n, n), axis=1)
        cand = ops.tanh(z_c + ops.matmul(reset * h, w_c))
        return (update * h + (1.0 - update) * cand,)


class RnnUnit(ScanUnit):
    """Plain RNN: ``h = tanh(x W + h_prev W_re + b)``."""

    def step(self, ops: Ops, z_t: Any, states: tuple[Any, ...], w_re: Any) -> tuple[Any, ...]:
        """One RNN frame."""
        return (ops.tanh(z_t + ops.matmul(states[0], w_re)),)
