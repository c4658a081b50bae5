"""Shared parts of the built-in TF rec units: parameter specs, masking, direction handling, a masked time loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from returnn_core.network import GatedUnit


class UnitBase(GatedUnit):
    """A built-in TF rec unit with the core's canonical parameters; options are left to each unit."""

    options = None

    def initial_states(self, x: tf.Tensor, initial_state: tuple[Any, ...] | None) -> tuple[tf.Tensor, ...]:
        """Zeros (B, n) per state unless given."""
        if initial_state is not None:
            return tuple(tf.convert_to_tensor(s, tf.float32) for s in initial_state)
        zeros = tf.zeros((tf.shape(x)[0], self.n_out), tf.float32)
        return (zeros,) * self.num_states


def seq_lens_from_mask(mask: tf.Tensor) -> tf.Tensor:
    """(B,) int32 number of present frames (masks are prefixes)."""
    return tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)


def reverse_if(x: tf.Tensor, seq_lens: tf.Tensor, direction: int) -> tf.Tensor:
    """Reverse the present frames of each seq when ``direction == -1`` (batch-major (B, T, ...))."""
    if direction == 1:
        return x
    return tf.reverse_sequence(x, seq_lens, seq_axis=1, batch_axis=0)


def masked_time_loop(
    step: Callable[[tf.Tensor, tuple[tf.Tensor, ...]], tuple[tf.Tensor, tuple[tf.Tensor, ...]]],
    inputs: tf.Tensor,
    mask: tf.Tensor,
    states: tuple[tf.Tensor, ...],
    n_out: int,
) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    """Run ``step(x_t, states) -> (y_t, new_states)`` over time (batch-major ``inputs`` (B, T, k)).

    Padded frames keep the previous states and give zero outputs.
    """
    xs = tf.transpose(inputs, (1, 0, 2))
    ms = tf.transpose(mask)[:, :, None]
    num_steps = tf.shape(xs)[0]
    ys = tf.TensorArray(tf.float32, size=num_steps, element_shape=tf.TensorShape([None, n_out]))

    def body(t: tf.Tensor, ys: tf.TensorArray, *states: tf.Tensor):
        m = ms[t]
        y, new_states = step(xs[t], tuple(states))
        kept = tuple(m * n + (1.0 - m) * s for n, s in zip(new_states, states))
        return (t + 1, ys.write(t, y * m), *kept)

    out = tf.while_loop(lambda t, *_: t < num_steps, body, (tf.constant(0), ys, *states))
    y = tf.transpose(out[1].stack(), (1, 0, 2))
    return y, tuple(out[2:])
