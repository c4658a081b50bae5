"""The Theano-era plain recurrent layers: ``recurrent`` (NetworkLstmLayer.RecurrentLayer) and ``linear_recurrent``."""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer


class RecurrentLayer(TheanoRecurrentLayer):
    """``recurrent``: ``h_t = activation(x_t W + b + h_{t-1} W_re)`` (activation tanh by default), ``reverse`` for
    backwards; with ``projection`` p the previous output goes through ``W_proj`` (n_out, p) before ``W_re`` (p, n)."""

    options = TheanoRecurrentLayer.RECURRENT_LAYER_OPTIONS
    default_activation = "tanh"

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The RNN over time."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.time_input(sources)
        n_in = self.feature_dim(src)
        proj = int(self.opts.get("projection") or 0)
        w = self.param("W", (n_in, n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
        z = ops.dot(src.dense(), w)
        if self.opts.get("with_bias", True):
            z = z + self.param("b", (n_out,), self.opts.get("bias_init", "zeros"))
        params = [self.param("W_re", (proj or n_out, n_out), "glorot_uniform")]
        if proj:
            # RETURNN multiplies the previous output with W_re twice here (a bug that breaks the shapes);
            # the intent, W_proj then W_re, is what its parameter shapes describe
            params.append(self.param("W_proj", (n_out, proj), "glorot_uniform"))
        act = self.activation or (lambda o, x: x)

        def step(z_t: Any, h: Any, w_re: Any, *w_proj: Any) -> tuple[Any, tuple[Any]]:
            prev = ops.matmul(h, w_proj[0]) if w_proj else h
            h_new = act(ops, z_t + ops.matmul(prev, w_re))
            return h_new, (h_new,)

        y, final = self.loop(ctx, step, [z], src, (ops.zeros([ops.dynamic_dim(z, 0), n_out]),), params)
        return LayerOutput(y, src.seq_lens, n_out, final_state=final)


class LinearRecurrentLayer(TheanoRecurrentLayer):
    """``linear_recurrent`` (arXiv:1510.02693): ``h_t = sigmoid(a) * h_{t-1} + x_t W + b`` with a trained per-unit
    decay ``a`` (init 0), output ``activation(h)`` (sigmoid by default, as for every Theano hidden layer)."""

    options = frozenset({"direction"})
    default_activation = "sigmoid"

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The linear recurrence over time, then the activation."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.time_input(sources)
        w = self.param("W", (self.feature_dim(src), n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
        x = ops.dot(src.dense(), w)
        if self.opts.get("with_bias", True):
            x = x + self.param("b", (n_out,), self.opts.get("bias_init", "zeros"))
        decay = ops.sigmoid(self.param("a", (n_out,), "zeros"))

        def step(x_t: Any, h: Any, a: Any) -> tuple[Any, tuple[Any]]:
            h_new = a * h + x_t
            return h_new, (h_new,)

        h, final = self.loop(ctx, step, [x], src, (ops.zeros([ops.dynamic_dim(x, 0), n_out]),), [decay])
        if self.activation is not None:
            h = self.activation(ops, h) * ops.expand_dims(src.mask(), -1)  # padding stays zero
        return LayerOutput(h, src.seq_lens, n_out, final_state=final, activation=self.activation_name)
