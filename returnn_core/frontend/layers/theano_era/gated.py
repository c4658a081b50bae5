"""``gru`` and ``sru`` (NetworkLstmLayer.GRULayer, SRULayer): the gated recurrent units as layer classes.

Both run on the rec units of the same name (``units.GruUnit``, ``theano_units.SruUnit``), so a ``gru`` layer and a
``rec`` layer with ``unit="gru"`` share the parameters ``W``, ``b``, ``W_re``; the SRU options that change the
recurrence (``psize``, ``carry_time``) add their own weights and step.
"""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend._unit import resolve_unit
from returnn_core.frontend.activations import get_activation
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer
from returnn_core.frontend.theano_units import sru_update


class _UnitLayer(TheanoRecurrentLayer):
    """A Theano-era RecurrentLayer subclass computed by the rec unit ``unit`` (``reverse`` for backwards)."""

    unit = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.opts.get("projection"):
            # RETURNN creates W_proj for these classes but its step never uses it (and breaks on the shapes)
            raise self.error("projection is not supported for this class (RETURNN's step never applies it); "
                             "remove it")

    def run_unit(self, src: LayerOutput) -> LayerOutput:
        """``src`` through the registered rec unit, in ``direction``."""
        n_out = self.require_n_out()
        unit_cls = resolve_unit(self.net.manager, self.net.backend, self.unit, layer=self.name, log=self.net.log)
        unit = unit_cls(self.feature_dim(src), n_out)
        params = {k: self.param(k, spec.shape, spec.init) for k, spec in unit.param_specs().items()}
        y, final = unit(params, src.dense(), src.mask(), direction=self.direction)
        return LayerOutput(y, src.seq_lens, n_out, final_state=tuple(final))


class GruLayer(_UnitLayer):
    """``gru``: Cho et al.'s GRU, ``h = u * h_prev + (1 - u) * tanh(z_c + (r * h_prev) W_reset)``, blocks
    [reset, update, candidate] (RETURNN's ``W_re`` and ``W_reset`` are the first two and the last block of
    ``W_re`` here). ``mode`` is accepted with any value, as in RETURNN, where every mode computes this."""

    options = TheanoRecurrentLayer.RECURRENT_LAYER_OPTIONS | {"mode", "encoder", "n_dec"}
    unit = "gru"

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The GRU over time."""
        return self.run_unit(self.time_input(sources))


class SruLayer(_UnitLayer):
    """``sru``: the SRU of the ``rec`` layer's ``sru`` unit, plus RETURNN's options: ``psize`` > 0 maps the previous
    output through ``pdepth`` layers ``Wp_0`` (n_out, psize), ``Wp_1``... (psize, psize) with activation ``pact``
    (default relu) before ``W_re`` (psize, 3 n_out); ``carry_time`` mixes the input back in,
    ``h = t * h + (1 - t) * x`` with ``t = sigmoid(x W_RT)`` (input dim must equal n_out)."""

    options = TheanoRecurrentLayer.RECURRENT_LAYER_OPTIONS | {"encoder", "psize", "pact", "pdepth", "carry_time",
                                                              "n_dec"}
    unit = "sru"

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The SRU over time."""
        ops = ctx.ops
        src = self.time_input(sources)
        psize = self._int_opt("psize", 0, 0)
        depth = self._int_opt("pdepth", 1, 1)
        carry = bool(self.opts.get("carry_time", False))
        if not psize and not carry:
            return self.run_unit(src)
        n = self.require_n_out()
        n_in = self.feature_dim(src)
        if carry and n_in != n:
            raise self.error(f"carry_time needs the input dim ({n_in}) to equal n_out ({n})")
        pact = get_activation(self.opts.get("pact", "relu"), layer=self.name) or (lambda o, v: v)
        x = src.dense()
        w = self.param("W", (n_in, 3 * n), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (3 * n,), "zeros")
        rec = [self.param("W_re", (psize or n, 3 * n), "glorot_uniform")]
        if psize:
            rec += [self.param(f"Wp_{i}", (n if i == 0 else psize, psize), "glorot_uniform") for i in range(depth)]
        if carry:
            rec.append(self.param("W_RT", (n, n), "glorot_uniform"))
        z = ops.dot(x, w) + b

        def step(z_t: Any, x_t: Any, h: Any, w_re: Any, *extra: Any) -> tuple[Any, tuple[Any]]:
            proj = extra[:depth] if psize else ()
            h_in = h
            for wp in proj:
                h_in = pact(ops, ops.matmul(h_in, wp))
            h_new = sru_update(ops, z_t, h, ops.matmul(h_in, w_re), n)
            if carry:
                gate = ops.sigmoid(ops.matmul(x_t, extra[-1]))
                h_new = gate * h_new + (1.0 - gate) * x_t
            return h_new, (h_new,)

        y, final = self.loop(ctx, step, [z, x], src, (ops.zeros([ops.dynamic_dim(z, 0), n]),), rec)
        return LayerOutput(y, src.seq_lens, n, final_state=final)

    def _int_opt(self, key: str, default: int, minimum: int) -> int:
        value = self.opts.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"{key} must be an integer >= {minimum}, got {value!r}")
        return value


class SraLayer(SruLayer):
    """``sra``: ``z = x W + b`` (n_out wide); from the previous output (through ``psize``/``pdepth``/``pact`` as
    in ``sru``) ``h W_re`` gives an update gate ``u = sigmoid(.)`` and ``r = tanh(.)``; the state
    ``s = r * s_prev + r * sp`` (``sp`` trained, init uniform in [-1, 1]), the output ``h = tanh(u * z + s)``.
    ``reverse`` runs backwards over each seq (RETURNN left that output in reversed order)."""

    options = TheanoRecurrentLayer.RECURRENT_LAYER_OPTIONS | {"encoder", "psize", "pact", "pdepth", "n_dec"}

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The SRA over time."""
        ops = ctx.ops
        src = self.time_input(sources)
        psize = self._int_opt("psize", 0, 0)
        depth = self._int_opt("pdepth", 1, 1)
        n = self.require_n_out()
        pact = get_activation(self.opts.get("pact", "relu"), layer=self.name) or (lambda o, v: v)
        w = self.param("W", (self.feature_dim(src), n), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (n,), "zeros")
        rec = [self.param("W_re", (psize or n, 2 * n), "glorot_uniform"), self.param("sp", (n,), "uniform:1.0")]
        if psize:
            rec += [self.param(f"Wp_{i}", (n if i == 0 else psize, psize), "glorot_uniform") for i in range(depth)]
        z = ops.dot(src.dense(), w) + b

        def step(z_t: Any, h: Any, s: Any, w_re: Any, sp: Any, *proj: Any) -> tuple[Any, tuple[Any, Any]]:
            h_in = h
            for wp in proj:
                h_in = pact(ops, ops.matmul(h_in, wp))
            h_x = ops.matmul(h_in, w_re)
            update, r = ops.sigmoid(h_x[:, :n]), ops.tanh(h_x[:, n:])
            s_new = r * s + r * sp
            h_new = ops.tanh(update * z_t + s_new)
            return h_new, (h_new, s_new)

        batch = ops.dynamic_dim(z, 0)
        initial = (ops.zeros([batch, n]), ops.zeros([batch, n]))
        y, final = self.loop(ctx, step, [z], src, initial, rec)
        return LayerOutput(y, src.seq_lens, n, final_state=final)
