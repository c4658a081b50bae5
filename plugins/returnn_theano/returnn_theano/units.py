"""Built-in recurrent units on ``pytensor.scan``: LSTM, GRU and plain RNN (the core's RecUnit protocol)."""

from __future__ import annotations

from typing import Any

from returnn_core.network import GatedUnit
from returnn_theano._pt import floatX, pt, scan


def reverse_padded(x: Any, seq_lens: Any) -> Any:
    """Reverse each seq of batch-major ``x`` (B, T, ...) within its first ``seq_lens[b]`` frames."""
    time = pt.arange(x.shape[1])[None, :]
    lens = seq_lens[:, None]
    idx = pt.switch(pt.lt(time, lens), lens - 1 - time, time)
    return x[pt.arange(x.shape[0])[:, None], idx]


class ScanUnit(GatedUnit):
    """Shared driver: project inputs for all frames, scan over time, keep state on masked frames."""

    def step(self, z_t: Any, m_t: Any, *states_and_weights: Any) -> list[Any]:
        """One frame: new states (kept where ``m_t`` is 0) and the output."""
        raise NotImplementedError

    def __call__(
        self,
        params: dict[str, Any],
        x: Any,
        mask: Any,
        *,
        initial_state: tuple[Any, ...] | None = None,
        direction: int = 1,
    ) -> tuple[Any, tuple[Any, ...]]:
        """Run over the padded batch ``x`` (B, T, n_in) with ``mask`` (B, T)."""
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, got {direction}")
        seq_lens = pt.cast(pt.round(mask.sum(axis=1)), "int32")
        if direction == -1:
            x = reverse_padded(x, seq_lens)
        batch = x.shape[0]
        z = (pt.tensordot(x, params["W"], axes=[[2], [0]]) + params["b"]).dimshuffle(1, 0, 2)
        m = mask.dimshuffle(1, 0, "x").astype(floatX)
        if initial_state is None:
            initial_state = tuple(pt.zeros((batch, size), dtype=floatX) for size in self.state_sizes())
        results = scan(
            self.step,
            sequences=[z, m],
            outputs_info=[*initial_state, None],
            non_sequences=[params["W_re"]],
            strict=True,
            return_list=True,
            return_updates=False,
        )
        *states, y = results
        y = y.dimshuffle(1, 0, 2)
        if direction == -1:
            y = reverse_padded(y, seq_lens)
        return y, tuple(s[-1] for s in states)


def _keep(m: Any, new: Any, old: Any) -> Any:
    return m * new + (1.0 - m) * old


class LstmUnit(ScanUnit):
    """LSTM with gate blocks [cell input, input, forget, output], no forget bias offset, h = o * tanh(c)."""

    blocks = 4
    num_states = 2

    def step(self, z_t: Any, m_t: Any, h: Any, c: Any, w_re: Any) -> list[Any]:
        """One LSTM frame."""
        n = self.n_out
        z = z_t + pt.dot(h, w_re)
        cell_in = pt.tanh(z[:, :n])
        gate_in = pt.sigmoid(z[:, n : 2 * n])
        gate_forget = pt.sigmoid(z[:, 2 * n : 3 * n])
        gate_out = pt.sigmoid(z[:, 3 * n :])
        c_new = gate_forget * c + gate_in * cell_in
        h_new = gate_out * pt.tanh(c_new)
        return [_keep(m_t, h_new, h), _keep(m_t, c_new, c), h_new * m_t]


class GruUnit(ScanUnit):
    """GRU with blocks [reset, update, candidate]: h = u * h_prev + (1 - u) * cand."""

    blocks = 3

    def step(self, z_t: Any, m_t: Any, h: Any, w_re: Any) -> list[Any]:
        """One GRU frame."""
        n = self.n_out
        hz = pt.dot(h, w_re[:, : 2 * n])
        reset = pt.sigmoid(z_t[:, :n] + hz[:, :n])
        update = pt.sigmoid(z_t[:, n : 2 * n] + hz[:, n:])
        cand = pt.tanh(z_t[:, 2 * n :] + pt.dot(reset * h, w_re[:, 2 * n :]))
        h_new = update * h + (1.0 - update) * cand
        return [_keep(m_t, h_new, h), h_new * m_t]


class RnnUnit(ScanUnit):
    """Plain tanh RNN: h = tanh(x W + h W_re + b)."""

    blocks = 1

    def step(self, z_t: Any, m_t: Any, h: Any, w_re: Any) -> list[Any]:
        """One RNN frame."""
        h_new = pt.tanh(z_t + pt.dot(h, w_re))
        return [_keep(m_t, h_new, h), h_new * m_t]
