"""GRU and plain tanh RNN units on the canonical parameter layout."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_tf.units.base import UnitBase, masked_time_loop, reverse_if, seq_lens_from_mask


def _project(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, n_in: int, k: int) -> tf.Tensor:
    shape = tf.shape(x)
    return tf.reshape(tf.matmul(tf.reshape(x, (-1, n_in)), w) + b, (shape[0], shape[1], k))


class GRUUnit(UnitBase):
    """GRU: blocks [reset, update, candidate]; ``h = u*h_prev + (1-u)*tanh(x W_c + (r*h_prev) W_re_c + b_c)``."""

    blocks = 3

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, *, initial_state: tuple[Any, ...] | None = None,
                 direction: int = 1) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """Run over the padded batch; the state is ``(h,)``."""
        n = self.n_out
        seq_lens = seq_lens_from_mask(mask)
        x = reverse_if(x, seq_lens, direction)
        xw = _project(x, params["W"], params["b"], self.n_in, 3 * n)
        w_re = params["W_re"]
        w_re_ru, w_re_c = w_re[:, : 2 * n], w_re[:, 2 * n :]

        def step(z_x: tf.Tensor, states: tuple[tf.Tensor, ...]):
            h_prev = states[0]
            ru = tf.sigmoid(z_x[:, : 2 * n] + tf.matmul(h_prev, w_re_ru))
            r, u = ru[:, :n], ru[:, n:]
            cand = tf.tanh(z_x[:, 2 * n :] + tf.matmul(r * h_prev, w_re_c))
            h = u * h_prev + (1.0 - u) * cand
            return h, (h,)

        y, final = masked_time_loop(step, xw, mask, self.initial_states(x, initial_state), n)
        return reverse_if(y, seq_lens, direction), final


class RNNUnit(UnitBase):
    """Plain RNN: ``h = tanh(x W + h_prev W_re + b)``."""

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, *, initial_state: tuple[Any, ...] | None = None,
                 direction: int = 1) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """Run over the padded batch; the state is ``(h,)``."""
        seq_lens = seq_lens_from_mask(mask)
        x = reverse_if(x, seq_lens, direction)
        xw = _project(x, params["W"], params["b"], self.n_in, self.n_out)
        w_re = params["W_re"]

        def step(z_x: tf.Tensor, states: tuple[tf.Tensor, ...]):
            h = tf.tanh(z_x + tf.matmul(states[0], w_re))
            return h, (h,)

        y, final = masked_time_loop(step, xw, mask, self.initial_states(x, initial_state), self.n_out)
        return reverse_if(y, seq_lens, direction), final
