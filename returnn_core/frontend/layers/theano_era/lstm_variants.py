"""LSTM variants of NetworkLstmLayer with other gate shapes: ``lstm_half_gates``, ``lstm_proj_gates`` and
``lstm_complex``.

Each has ``W`` (n_in, n_z), ``b`` and ``W_re`` with the blocks [input, forget, output gate, cell input] as in
RETURNN, ``direction`` and ``grad_clip``; ``activation`` names the cell and gate activations as described per class.
"""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.associative import complex_mul
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer


class _GateShapeLstm(TheanoRecurrentLayer):
    """The shared LSTM loop: subclasses give the width of ``x W`` and one step."""

    options = frozenset({"direction", "grad_clip", "truncation"})

    def z_width(self, n: int) -> int:
        """Width of the input projection."""
        raise NotImplementedError

    def re_width(self, n: int) -> int:
        """Columns of ``W_re``."""
        return self.z_width(n)

    def extra_params(self, n: int) -> list[Any]:
        """Further weights the step takes."""
        return []

    def cell(self, ops: Ops, zz: Any, c: Any, n: int, extra: tuple[Any, ...]) -> tuple[Any, Any]:
        """The new output and cell state from the frame's pre-activations ``zz``."""
        raise NotImplementedError

    def recurrent_part(self, ops: Ops, h: Any, w_re: Any) -> Any:
        """``h W_re``."""
        return ops.matmul(h, w_re)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The LSTM over time."""
        ops = ctx.ops
        n = self.require_n_out()
        src = self.time_input(sources)
        width = self.z_width(n)
        w = self.param("W", (self.feature_dim(src), width), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (width,), self.opts.get("bias_init", "zeros"))
        w_re = self.param("W_re", (n, self.re_width(n)), "glorot_uniform")
        z = ops.dot(src.dense(), w) + b

        def step(z_t: Any, h: Any, c: Any, w_re: Any, *extra: Any) -> tuple[Any, tuple[Any, Any]]:
            h_new, c_new = self.cell(ops, z_t + self.recurrent_part(ops, h, w_re), c, n, extra)
            return h_new, (h_new, c_new)

        batch = ops.dynamic_dim(z, 0)
        initial = (ops.zeros([batch, n]), ops.zeros([batch, n]))
        y, final = self.loop(ctx, step, [z], src, initial, [w_re, *self.extra_params(n)])
        return LayerOutput(y, src.seq_lens, n, final_state=final)

    def even_n_out(self) -> int:
        """``n_out``, which must be even (real and imaginary or two halves)."""
        n = self.require_n_out()
        if n % 2:
            raise self.error(f"n_out must be even, got {n}")
        return n


class LstmHalfGatesLayer(_GateShapeLstm):
    """``lstm_half_gates``: n_out/2 input, forget and output gates, each used for both halves of the cells.
    ``activation``: one name or "CI,CO" for the cell input and output, or "CI,CO,GI,GF,GO"."""

    activation_slots = 5
    default_activations = ("tanh", "tanh", "sigmoid", "sigmoid", "sigmoid")

    def activation_lengths(self) -> tuple[int, ...]:
        """"CI,CO" or "CI,CO,GI,GF,GO"."""
        return (2, 5)

    def z_width(self, n: int) -> int:
        """Three half-size gates and the cell input."""
        return 3 * (self.even_n_out() // 2) + n

    def cell(self, ops: Ops, zz: Any, c: Any, n: int, extra: tuple[Any, ...]) -> tuple[Any, Any]:
        """One frame with the gates tiled over both halves."""
        ci, co, gi, gf, go = self.activations
        half = n // 2
        i_g, f_g, o_g = (ops.concat([g, g], axis=-1) for g in (gi(ops, zz[:, :half]), gf(ops, zz[:, half : 2 * half]),
                                                                 go(ops, zz[:, 2 * half : 3 * half])))
        c_new = ci(ops, zz[:, 3 * half :]) * i_g + c * f_g
        return co(ops, c_new) * o_g, c_new


class LstmProjGatesLayer(_GateShapeLstm):
    """``lstm_proj_gates``: each gate's pre-activation is ``n_gate_proj`` wide, goes through ``PG`` and a matrix
    ``W_{i,f,o}gate_proj`` (n_gate_proj, n_out). ``activation``: one name for PG (default relu), "PG,CI,CO" or
    "PG,CI,CO,GI,GF,GO"."""

    options = _GateShapeLstm.options | {"n_gate_proj"}
    activation_slots = 6
    default_activations = ("relu", "tanh", "tanh", "sigmoid", "sigmoid", "sigmoid")
    single_activation_slots = 1

    def activation_lengths(self) -> tuple[int, ...]:
        """"PG,CI,CO" or "PG,CI,CO,GI,GF,GO"."""
        return (3, 6)

    def proj(self) -> int:
        """``n_gate_proj``."""
        p = self.opts.get("n_gate_proj")
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise self.error(f"needs n_gate_proj, a positive integer, got {p!r}")
        return p

    def z_width(self, n: int) -> int:
        """Three projected gates and the cell input."""
        return 3 * self.proj() + n

    def extra_params(self, n: int) -> list[Any]:
        """The three gate projections."""
        return [self.param(f"W_{g}gate_proj", (self.proj(), n), "glorot_uniform") for g in "ifo"]

    def cell(self, ops: Ops, zz: Any, c: Any, n: int, extra: tuple[Any, ...]) -> tuple[Any, Any]:
        """One frame with projected gates."""
        pg, ci, co, gi, gf, go = self.activations
        p = self.proj()
        gates = [act(ops, ops.matmul(pg(ops, zz[:, k * p : (k + 1) * p]), w))
                 for k, (act, w) in enumerate(zip((gi, gf, go), extra))]
        c_new = ci(ops, zz[:, 3 * p :]) * gates[0] + c * gates[1]
        return co(ops, c_new) * gates[2], c_new


class LstmComplexLayer(_GateShapeLstm):
    """``lstm_complex``: cells as n_out/2 complex numbers ([real parts, imaginary parts]); ``use_complex``
    "a:b:c:d" (default "1:1:1:1") makes the recurrent product (``W_re`` then has half the columns) and the input,
    forget and output gate products complex. ``activation``: one name or "CI,CO", or "CI,CO,GI,GF,GO"."""

    options = _GateShapeLstm.options | {"use_complex"}
    activation_slots = 5
    default_activations = ("tanh", "tanh", "sigmoid", "sigmoid", "sigmoid")

    def activation_lengths(self) -> tuple[int, ...]:
        """"CI,CO" or "CI,CO,GI,GF,GO"."""
        return (2, 5)

    def flags(self) -> list[bool]:
        """``use_complex`` as four booleans."""
        spec = str(self.opts.get("use_complex", "1:1:1:1"))
        parts = spec.split(":")
        if len(parts) != 4 or any(p not in ("0", "1") for p in parts):
            raise self.error(f"use_complex must be four 0/1 flags like '1:0:1:1', got {spec!r}")
        return [p == "1" for p in parts]

    def z_width(self, n: int) -> int:
        """Three gates and the cell input, all n_out wide."""
        return 4 * self.even_n_out()

    def re_width(self, n: int) -> int:
        """Half the columns for the complex recurrent product."""
        return 2 * n if self.flags()[0] else 4 * n

    def recurrent_part(self, ops: Ops, h: Any, w_re: Any) -> Any:
        """``h W_re``, as a complex product when ``use_complex`` says so."""
        if not self.flags()[0]:
            return ops.matmul(h, w_re)
        half = self.require_n_out() // 2
        h_re, h_im = h[:, :half], h[:, half:]
        w_r, w_i = w_re[:half], w_re[half:]
        return ops.concat([ops.matmul(h_re, w_r) - ops.matmul(h_im, w_i),
                           ops.matmul(h_re, w_i) + ops.matmul(h_im, w_r)], axis=-1)

    def cell(self, ops: Ops, zz: Any, c: Any, n: int, extra: tuple[Any, ...]) -> tuple[Any, Any]:
        """One frame with complex gate products where asked."""
        ci, co, gi, gf, go = self.activations
        _, in_c, forget_c, out_c = self.flags()
        half = n // 2

        def mul(complex_: bool, a: Any, b: Any) -> Any:
            return complex_mul(ops, a, b, half) if complex_ else a * b

        i_g, f_g, o_g = gi(ops, zz[:, :n]), gf(ops, zz[:, n : 2 * n]), go(ops, zz[:, 2 * n : 3 * n])
        c_new = mul(in_c, ci(ops, zz[:, 3 * n :]), i_g) + mul(forget_c, c, f_g)
        return mul(out_c, co(ops, c_new), o_g), c_new
