"""``act_lstm`` (NetworkLstmLayer.ActLstmLayer): an LSTM with Adaptive Computation Time (Graves, arXiv:1603.08983).

Each frame runs up to ``n_max_calc_steps`` LSTM steps; the last cell is the halting unit, ``(h + 1) / 2`` its
halting probability. The frame's state and output are the steps' states weighted by the probabilities until their
sum reaches ``1 - eps`` (the remainder goes to the last counted step); the time penalty enters the objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context
from returnn_core.frontend._loss import Loss, LossContext
from returnn_core.frontend._network import LossTerm
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer

#: the key of :attr:`LayerOutput.extra` that holds the per-frame time penalty (B, T)
PENALTY = "act_time_penalty"


class ActTimePenalty(Loss):
    """The time penalty of an ``act_lstm`` layer times ``scale`` (its ``time_penalty``), summed over its present
    frames (no target); reported as the layer's cost, and part of the score, as RETURNN's constraint was."""

    options = {"scale": 0.01}
    needs_target = False

    def __call__(self, output: LayerOutput, target: LayerOutput | None, ctx: LossContext) -> tuple[Any, Any, Any]:
        """``(scaled penalty sum, None, frames)``."""
        ops = ctx.ops
        total = ops.reduce(output.extra[PENALTY], "sum") * np.float32(self.opts["scale"])
        return total, None, ops.reduce(output.mask(), "sum")


class ActLstmLayer(TheanoRecurrentLayer):
    """``act_lstm``: ``n_out`` cells plus the halting unit; ``W`` (n_in, 4c), ``b``, ``W_re`` (c, 4c) and
    ``W_delay`` (1, 4c) with c = n_out + 1, blocks [input, forget, output gate, cell input] as in RETURNN; step k
    (from 0) adds ``k * W_delay`` to the input.

    ``time_penalty`` scales the penalty, which enters the objective and the score as the layer's cost (normalised
    by the frames like a loss; 0 adds none);
    ``time_penalty_type`` "linear_p" (step count times weight, the expected step count), "linear" (times the
    halting probability) or "sqrt"; ``total_halt_penalty`` with ``total_halt_penalty_type`` "inv" (plus
    penalty / halting probability) or "linear" (minus penalty times it). As in RETURNN the inner loop stops once
    every present seq of the batch has halted (which changes the "linear"/"sqrt" penalties, not the output); the
    inner loop is always unrolled here, ``unroll_inner_scan`` is accepted. Padded frames add no penalty (RETURNN's
    padded frames added a constant one).
    """

    options = frozenset({"n_max_calc_steps", "time_penalty", "time_penalty_type", "total_halt_penalty",
                         "total_halt_penalty_type", "direction", "eps", "grad_clip", "unroll_inner_scan"})
    PENALTY_TYPES = ("linear", "linear_p", "sqrt")
    HALT_PENALTY_TYPES = ("inv", "linear")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        steps = self.opts.get("n_max_calc_steps", 10)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise self.error(f"n_max_calc_steps must be a positive integer, got {steps!r}")
        self.max_steps = steps
        self.eps = self.float_opt("eps", 0.01)
        if not 0.0 < self.eps < 1.0:
            raise self.error(f"eps must be in (0, 1), got {self.eps}")
        self.time_penalty = self.float_opt("time_penalty", 0.01)
        self.halt_penalty = self.float_opt("total_halt_penalty", 0.0)
        self.penalty_type = self.opts.get("time_penalty_type", "linear_p")
        if self.penalty_type not in self.PENALTY_TYPES:
            raise self.error(f"time_penalty_type {self.penalty_type!r}; use {', '.join(self.PENALTY_TYPES)}")
        self.halt_type = self.opts.get("total_halt_penalty_type", "inv")
        if self.halt_type not in self.HALT_PENALTY_TYPES:
            raise self.error(f"total_halt_penalty_type {self.halt_type!r}; use {', '.join(self.HALT_PENALTY_TYPES)}")

    @property
    def inner_loss_terms(self) -> list[LossTerm]:
        """The time penalty as a term of the objective (none when ``time_penalty`` is 0)."""
        if not self.time_penalty:
            return []
        return [LossTerm(self.name, ActTimePenalty(scale=self.time_penalty), PENALTY, None, 1.0)]

    def clip(self, ops: Ops, x: Any) -> Any:
        """No clipping of the frame's state: ``grad_clip`` applies inside each calculation step, as in RETURNN."""
        return x

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The ACT LSTM over time; the output holds the penalty per frame in ``extra``."""
        ops = ctx.ops
        n_out = self.require_n_out()
        cells = n_out + 1
        src = self.time_input(sources)
        w = self.param("W", (self.feature_dim(src), 4 * cells), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (4 * cells,), self.opts.get("bias_init", "zeros"))
        w_re = self.param("W_re", (cells, 4 * cells), "glorot_uniform")
        w_delay = self.param("W_delay", (1, 4 * cells), "glorot_uniform")
        z = ops.dot(src.dense(), w) + b
        mask = ops.expand_dims(src.mask(), -1)
        limit = np.float32(1.0 - self.eps)
        one = np.float32(1.0)

        def lstm_step(z_t: Any, s: Any, h: Any, w_re: Any) -> tuple[Any, Any]:
            zz = z_t + ops.matmul(h, w_re)
            gates = ops.sigmoid(zz[:, : 3 * cells])
            s_new = ops.tanh(zz[:, 3 * cells :]) * gates[:, :cells] + s * gates[:, cells : 2 * cells]
            h_new = ops.tanh(s_new) * gates[:, 2 * cells :]
            return self.clip_inner(ops, s_new), self.clip_inner(ops, h_new)

        def step(z_t: Any, m_t: Any, h: Any, s: Any, w_re: Any, w_delay: Any) -> tuple[Any, tuple[Any, Any]]:
            present = m_t[:, 0]
            s_k, h_k = s, h
            total = ops.zeros_like(present)  # halting probabilities summed so far
            running = ops.constant(1.0)  # whether the inner loop still runs (RETURNN's scan until)
            s_out, h_out, penalty = ops.zeros_like(s), ops.zeros_like(h), ops.zeros_like(present)
            for k in range(self.max_steps):
                s_k, h_k = lstm_step(z_t + np.float32(k) * w_delay[0], s_k, h_k, w_re)
                halt = (h_k[:, -1] + one) * np.float32(0.5)
                new_total = total + halt
                rest = one - total
                last = k + 1 >= self.max_steps - 0.1
                p = ops.where(new_total < limit, rest if last else halt,
                              ops.where(total < limit, rest, ops.zeros_like(halt)))
                s_out = s_out + s_k * ops.expand_dims(p, 1)
                h_out = h_out + h_k * ops.expand_dims(p, 1)
                penalty = penalty + running * self._penalty(ops, k + 1, halt, p)
                halted = one - ops.cast(ops.less(total, limit), "float32")
                running = running * (one - ops.reduce(halted * present, "min"))
                total = new_total
            y = ops.concat([h_out[:, :n_out], ops.expand_dims(penalty, 1)], axis=1)
            return y, (h_out, s_out)

        batch = ops.dynamic_dim(z, 0)
        initial = (ops.zeros([batch, cells]), ops.zeros([batch, cells]))
        y, final = self.loop(ctx, step, [z, mask], src, initial, [w_re, w_delay])
        out = LayerOutput(y[:, :, :n_out], src.seq_lens, n_out, final_state=final)
        out.extra[PENALTY] = y[:, :, n_out]
        return out

    def clip_inner(self, ops: Ops, x: Any) -> Any:
        """``x`` with its gradient clipped to ``grad_clip`` if set."""
        return x if self.grad_clip is None else ops.clip_gradient(x, -self.grad_clip, self.grad_clip)

    def _penalty(self, ops: Ops, count: int, halt: Any, p: Any) -> Any:
        """The time penalty of calculation step ``count`` (from 1) per seq."""
        if self.penalty_type == "linear":
            out = halt * np.float32(count)
        elif self.penalty_type == "linear_p":
            out = p * np.float32(count)
        else:
            out = halt * np.float32(np.sqrt(count))
        if self.halt_penalty:
            scale = np.float32(self.halt_penalty)
            out = out + scale / halt if self.halt_type == "inv" else out - halt * scale
        return out

