"""LSTM units on the canonical layout: ``W`` (n_in, 4n), ``W_re`` (n, 4n), ``b`` (4n,), gates [cell in, input, forget, output].

``lstmblockfused`` runs TF's fused ``BlockLSTM`` kernel over the whole sequence (the fastest built-in on CPU);
``standardlstm``/``basiclstm``/``lstmblock`` run a masked ``tf.while_loop`` step by step.
``cudnnlstm`` uses the fused kernel too (it has CPU and GPU kernels), so its parameters load on any machine.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_tf.units.base import UnitBase, masked_time_loop, reverse_if, seq_lens_from_mask


def lstm_gates(z: tf.Tensor, c_prev: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
    """From pre-activations ``z`` (B, 4n) in canonical order to ``(h, c)``."""
    cell_in, in_gate, forget_gate, out_gate = tf.split(z, 4, axis=-1)
    c = tf.sigmoid(forget_gate) * c_prev + tf.sigmoid(in_gate) * tf.tanh(cell_in)
    return tf.sigmoid(out_gate) * tf.tanh(c), c


class StandardLSTMUnit(UnitBase):
    """LSTM with the input projection for all frames at once, then a step loop over the recurrence."""

    blocks = 4
    num_states = 2

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, *, initial_state: tuple[Any, ...] | None = None,
                 direction: int = 1) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """Run over the padded batch; states are ``(h, c)``."""
        seq_lens = seq_lens_from_mask(mask)
        x = reverse_if(x, seq_lens, direction)
        w_re = params["W_re"]
        n = self.n_out
        shape = tf.shape(x)
        xw = tf.reshape(tf.matmul(tf.reshape(x, (-1, self.n_in)), params["W"]) + params["b"], (shape[0], shape[1], 4 * n))

        def step(z_x: tf.Tensor, states: tuple[tf.Tensor, ...]):
            h, c = lstm_gates(z_x + tf.matmul(states[0], w_re), states[1], n)
            return h, (h, c)

        y, final = masked_time_loop(step, xw, mask, self.initial_states(x, initial_state), n)
        return reverse_if(y, seq_lens, direction), final


class BasicLSTMUnit(UnitBase):
    """LSTM computing all gates from ``[x_t, h]`` with one matmul per step (like a basic LSTM cell)."""

    blocks = 4
    num_states = 2

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, *, initial_state: tuple[Any, ...] | None = None,
                 direction: int = 1) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """Run over the padded batch; states are ``(h, c)``."""
        seq_lens = seq_lens_from_mask(mask)
        x = reverse_if(x, seq_lens, direction)
        w = tf.concat([params["W"], params["W_re"]], axis=0)
        b = params["b"]
        n = self.n_out

        def step(x_t: tf.Tensor, states: tuple[tf.Tensor, ...]):
            h, c = lstm_gates(tf.matmul(tf.concat([x_t, states[0]], axis=-1), w) + b, states[1], n)
            return h, (h, c)

        y, final = masked_time_loop(step, x, mask, self.initial_states(x, initial_state), n)
        return reverse_if(y, seq_lens, direction), final


class LSTMBlockUnit(BasicLSTMUnit):
    """``lstmblock``: the per-step block LSTM (same computation as ``basiclstm``)."""


class FusedLSTMUnit(UnitBase):
    """LSTM over the whole sequence in TF's fused ``BlockLSTM`` kernel (with its registered gradient)."""

    blocks = 4
    num_states = 2

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, *, initial_state: tuple[Any, ...] | None = None,
                 direction: int = 1) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """Run over the padded batch; states are ``(h, c)``."""
        n = self.n_out
        seq_lens = seq_lens_from_mask(mask)
        x = reverse_if(x, seq_lens, direction)
        h0, c0 = self.initial_states(x, initial_state)
        w_cat = tf.concat([params["W"], params["W_re"]], axis=0)
        # BlockLSTM wants blocks [input, cell in, forget, output]; ours start with cell in
        w = tf.concat([w_cat[:, n : 2 * n], w_cat[:, :n], w_cat[:, 2 * n :]], axis=1)
        b = params["b"]
        b = tf.concat([b[n : 2 * n], b[:n], b[2 * n :]], axis=0)
        xs = tf.transpose(x, (1, 0, 2))
        zeros = tf.zeros((n,), tf.float32)
        res = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(xs)[0], tf.int64), x=xs, cs_prev=c0, h_prev=h0, w=w,
            wci=zeros, wcf=zeros, wco=zeros, b=b, forget_bias=0.0, cell_clip=-1.0, use_peephole=False,
        )
        time_mask = tf.transpose(mask)[:, :, None]
        y = tf.transpose(res.h * time_mask, (1, 0, 2))
        final_h = _last_frame(res.h, seq_lens, h0)
        final_c = _last_frame(res.cs, seq_lens, c0)
        return reverse_if(y, seq_lens, direction), (final_h, final_c)


class CudnnLSTMUnit(FusedLSTMUnit):
    """``cudnnlstm``: the fused LSTM kernel (CPU and GPU), canonical parameters."""


def _last_frame(seq: tf.Tensor, seq_lens: tf.Tensor, initial: tf.Tensor) -> tf.Tensor:
    """``seq[len - 1, b]`` per batch entry of a time-major (T, B, n) tensor; ``initial`` for empty seqs."""
    idx = tf.maximum(seq_lens - 1, 0)
    batch = tf.range(tf.shape(seq_lens)[0])
    last = tf.gather_nd(seq, tf.stack([idx, batch], axis=1))
    return tf.where((seq_lens > 0)[:, None], last, initial)
