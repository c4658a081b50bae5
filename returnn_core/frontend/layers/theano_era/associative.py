"""``associative_lstm`` (NetworkLstmLayer.AssociativeLstmLayer): Associative LSTM, arXiv:1602.03032."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer

#: RETURNN draws the copies' key permutations from this fixed seed, so they are the same in every run
PERMUTATION_SEED = 1234


def key_permutations(n_copies: int, n_cells: int) -> np.ndarray:
    """(n_copies, n_cells) indices: one permutation of the complex cells per copy, the same for real and imaginary
    halves."""
    half = n_cells // 2
    rng = np.random.RandomState(PERMUTATION_SEED)
    out = np.zeros((n_copies, n_cells), "int32")
    for i in range(n_copies):
        out[i, :half] = rng.permutation(half)
        out[i, half:] = out[i, :half] + half
    return out


def complex_mul(ops: Ops, a: Any, b: Any, half: int) -> Any:
    """Elementwise complex product of vectors stored as [real parts, imaginary parts] on the last axis."""
    a_re, a_im = a[..., :half], a[..., half:]
    b_re, b_im = b[..., :half], b[..., half:]
    return ops.concat([a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re], axis=-1)


class AssociativeLstmLayer(TheanoRecurrentLayer):
    """Holographic memory with ``n_copies`` permuted copies; ``n_out`` (even) cells as n_out/2 complex numbers.

    ``activation`` is one name for the cell input, output and both keys (default tanh), or "CI,CO,RI,RO" or
    "CI,CO,RI,RO,G" (G for the gates, sigmoid by default). Input and forget gates are per complex cell.
    """

    options = frozenset({"n_copies", "direction", "grad_clip"})
    activation_slots = 5
    default_activations = ("tanh", "tanh", "tanh", "tanh", "sigmoid")
    single_activation_slots = 4

    def activation_lengths(self) -> tuple[int, ...]:
        """"CI,CO,RI,RO" or "CI,CO,RI,RO,G"."""
        return (4, 5)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The associative LSTM over time."""
        ops = ctx.ops
        n = self.require_n_out()
        copies = self.opts.get("n_copies")
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise self.error(f"needs n_copies, a positive integer, got {copies!r}")
        if n % 2:
            raise self.error(f"n_out must be even (complex cells as real and imaginary halves), got {n}")
        half = n // 2
        n_z = 3 * half + 3 * n
        src = self.time_input(sources)
        w = self.param("W", (self.feature_dim(src), n_z), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (n_z,), self.opts.get("bias_init", "zeros"))
        w_re = self.param("W_re", (n, n_z), "glorot_uniform")
        perm = ops.constant(key_permutations(copies, n), "int32")
        ci, co, ri, ro, gate = self.activations
        z = ops.dot(src.dense(), w) + b

        def step(z_t: Any, h: Any, s_flat: Any, w_re: Any, perm: Any) -> tuple[Any, tuple[Any, Any]]:
            s = ops.reshape(s_flat, (ops.dynamic_dim(s_flat, 0), copies, n))
            zz = z_t + ops.matmul(h, w_re)
            gates = gate(ops, zz[:, : 3 * half])
            key_in = ops.gather(ri(ops, zz[:, 3 * half : 3 * half + n]), perm, axis=1)  # (B, copies, n)
            key_out = ops.gather(ro(ops, zz[:, 3 * half + n : 3 * half + 2 * n]), perm, axis=1)
            update = ci(ops, zz[:, 3 * half + 2 * n :])
            in_gate, forget, out_gate = (ops.concat([g, g], axis=-1) for g in ops.split(gates, (half,) * 3))
            s_new = complex_mul(ops, key_in, ops.expand_dims(update * in_gate, 1), half)
            s_new = s_new + s * ops.expand_dims(forget, 1)
            readout = ops.reduce(complex_mul(ops, key_out, s_new, half), "mean", 1)
            h_new = co(ops, readout) * out_gate
            return h_new, (h_new, ops.reshape(s_new, (ops.dynamic_dim(s_new, 0), copies * n)))

        batch = ops.dynamic_dim(z, 0)
        initial = (ops.zeros([batch, n]), ops.zeros([batch, copies * n]))
        y, final = self.loop(ctx, step, [z], src, initial, [w_re, perm])
        return LayerOutput(y, src.seq_lens, n, final_state=final)
