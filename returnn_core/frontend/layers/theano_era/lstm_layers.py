"""The Theano-era LSTM layer classes (NetworkLstmLayer): lstm, lstm_opt, lstm_simple, lstm2, lstm3, ln_lstm,
native_lstm.

All use the canonical LSTM parameters ``W`` (n_in, 4c), ``b`` (4c), ``W_re`` (n, 4c) with gate blocks [cell input,
input, forget, output]; a plain LSTM runs through the registered ``lstm`` rec unit (``nativelstm`` or the backend's
fused kernel), the variants with peepholes, projections, sharpened gates or layer norm through their own step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend._unit import resolve_unit
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer

_LN_EPS = 1e-5


class Lstm2Layer(TheanoRecurrentLayer):
    """``lstm2``: ``n_cells`` (default ``n_out``; a projection ``W_out_proj`` maps cells to ``n_out`` when they
    differ), ``n_proj`` (``W_re_proj`` before the recurrent matrix), ``peepholes`` (``W_peep_i/f/o``),
    ``activation`` one name for the cell input and output or "CI,CO" or "CI,CO,G" (G for the gates)."""

    options = TheanoRecurrentLayer.options | {"n_cells", "n_proj", "peepholes"}
    activation_slots = 3
    default_activations = ("tanh", "tanh", "sigmoid")
    #: whether layer norm is applied to the input, the recurrent part and the cell (``ln_lstm``)
    layer_norm = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.custom_activation = bool(self.opts.get("activation")) if self.activation_slots else False
        if not self.activation_slots:
            if self.activation_name not in (None, "sigmoid"):
                # RETURNN ignores a single activation name for these classes (their LSTM activations are fixed);
                # say so instead of silently ignoring another name
                raise self.error(f"activation {self.activation_name!r}: the LSTM activations of this class are "
                                 "fixed (tanh, sigmoid gates); use class 'lstm2' for other activations")
            self.activations = self._activation_list(None)

    def activation_lengths(self) -> tuple[int, ...]:
        """"CI,CO" or "CI,CO,G"."""
        return (2, 3)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The LSTM over time."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.time_input(sources)
        n_in = self.feature_dim(src)
        n_cells = int(self.opts.get("n_cells") or n_out)
        n_proj = int(self.opts.get("n_proj") or 0)
        if self._is_plain(n_cells, n_out, n_proj):
            return self._plain(src, n_in, n_out, ctx)
        w = self.param("W", (n_in, 4 * n_cells), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (4 * n_cells,), self.opts.get("bias_init", "zeros"))
        w_re = self.param("W_re", (n_proj or n_out, 4 * n_cells), "glorot_uniform")
        extra = {"W_re": w_re}
        if n_proj:
            extra["W_re_proj"] = self.param("W_re_proj", (n_out, n_proj), "glorot_uniform")
        if n_cells != n_out:
            extra["W_out_proj"] = self.param("W_out_proj", (n_cells, n_out), "glorot_uniform")
        if self.opts.get("peepholes"):
            for gate in "ifo":
                extra[f"W_peep_{gate}"] = self.param(f"W_peep_{gate}", (n_cells,), "glorot_uniform")
        extra.update(self.extra_params(n_cells))
        z = ops.dot(src.dense(), w)
        if self.layer_norm:
            z = _layer_norm(ops, z, extra["ln_in_gain"], extra["ln_in_bias"])
        z = z + b
        names = sorted(extra)

        def step(z_t: Any, h: Any, c: Any, *params: Any) -> tuple[Any, tuple[Any, Any]]:
            p = dict(zip(names, params))
            h_new, c_new = self.cell(ops, z_t, h, c, p, n_cells)
            return h_new, (h_new, c_new)

        batch = ops.dynamic_dim(z, 0)
        initial = (ops.zeros([batch, n_out]), ops.zeros([batch, n_cells]))
        y, final = self.loop(ctx, step, [z], src, initial, [extra[k] for k in names])
        return LayerOutput(y, src.seq_lens, n_out, final_state=final)

    def _is_plain(self, n_cells: int, n_out: int, n_proj: int) -> bool:
        """Whether this is the standard LSTM the ``lstm`` rec unit computes."""
        return (n_cells == n_out and not n_proj and not self.opts.get("peepholes") and not self.layer_norm
                and self.grad_clip is None and not self.custom_activation and not self.extra_param_specs())

    def _plain(self, src: LayerOutput, n_in: int, n_out: int, ctx: Context) -> LayerOutput:
        """The standard LSTM through the registered ``lstm`` unit (``nativelstm`` or a fused kernel)."""
        unit_cls = resolve_unit(self.net.manager, self.net.backend, "lstm", layer=self.name, log=self.net.log)
        unit = unit_cls(n_in, n_out)
        params = {k: self.param(k, spec.shape, spec.init) for k, spec in unit.param_specs().items()}
        y, final = unit(params, src.dense(), src.mask(), direction=self.direction)
        return LayerOutput(y, src.seq_lens, n_out, final_state=tuple(final))

    def extra_param_specs(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Parameters a variant adds (name -> (shape with ``0`` for the cell count, init))."""
        if not self.layer_norm:
            return {}
        return {f"ln_{part}_{kind}": ((0,) if part == "cell" else (-4,), 1.0 if kind == "gain" else 0.0)
                for part in ("in", "re", "cell") for kind in ("gain", "bias")}

    def extra_params(self, n_cells: int) -> dict[str, Any]:
        """The variant's parameters for ``n_cells`` cells."""
        out = {}
        for key, (shape, init) in self.extra_param_specs().items():
            dims = tuple(n_cells if d == 0 else 4 * n_cells if d == -4 else d for d in shape)
            out[key] = self.param(key, dims, init)
        return out

    def gates(self, ops: Ops, zz: Any, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Gate pre-activations (input, forget, output) before peepholes; a variant may rescale them."""
        return zz[1], zz[2], zz[3]

    def cell(self, ops: Ops, z_t: Any, h: Any, c: Any, p: dict[str, Any], n: int) -> tuple[Any, Any]:
        """One frame: the new output and cell state."""
        ci_act, co_act, gate_act = self.activations
        rec_in = ops.matmul(h, p["W_re_proj"]) if "W_re_proj" in p else h
        rec = ops.matmul(rec_in, p["W_re"])
        if self.layer_norm:
            rec = _layer_norm(ops, rec, p["ln_re_gain"], p["ln_re_bias"])
        zz = ops.split(z_t + rec, (n, n, n, n), axis=-1)
        gate_i, gate_f, gate_o = self.gates(ops, zz, p)
        if "W_peep_i" in p:
            gate_i = gate_i + c * p["W_peep_i"]
            gate_f = gate_f + c * p["W_peep_f"]
        c_new = gate_act(ops, gate_f) * c + gate_act(ops, gate_i) * ci_act(ops, zz[0])
        if "W_peep_o" in p:
            gate_o = gate_o + c_new * p["W_peep_o"]
        cell_out = _layer_norm(ops, c_new, p["ln_cell_gain"], p["ln_cell_bias"]) if self.layer_norm else c_new
        h_new = co_act(ops, cell_out) * gate_act(ops, gate_o)
        if "W_out_proj" in p:
            h_new = ops.matmul(h_new, p["W_out_proj"])
        return h_new, c_new


class Lstm3Layer(Lstm2Layer):
    """``lstm3``: the standard LSTM with ``direction`` and ``grad_clip`` only."""

    options = TheanoRecurrentLayer.options - {"truncation"}
    activation_slots = 0


class LayerNormLstmLayer(Lstm3Layer):
    """``ln_lstm``: layer normalization (arXiv:1607.06450) of ``x W``, ``h W_re`` and the cell before its output
    activation, each with its own gain (init 1) and bias (init 0)."""

    layer_norm = True


class NativeLstmLayer(Lstm2Layer):
    """``native_lstm``: the standard LSTM through the native kernel (the ``nativelstm`` unit where registered)."""

    options = frozenset({"direction", "truncation"})
    activation_slots = 0


class LstmLayer(Lstm2Layer):
    """``lstm`` / ``lstm_opt`` (``sharp_gates``) and ``lstm_simple`` (``sharpgates``): the standard LSTM of the
    Theano RecurrentLayer family (``reverse`` for backwards).

    ``sharp_gates`` "global" scales each gate's pre-activation by a trained (3, n) matrix, "shared" by three trained
    scalars, "single" by one (all initialised to 1; RETURNN shares "shared"/"single" across all layers of the class,
    here each layer has its own). ``projection`` belongs to lstm2 here (``n_proj``).
    """

    options = TheanoRecurrentLayer.RECURRENT_LAYER_OPTIONS | {"sharp_gates", "encoder", "n_dec"}
    activation_slots = 0
    sharp_key = "sharp_gates"
    SHARPNESS = {"none": None, "global": (3, 0), "shared": (3, 1), "single": (1, 1)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sharpness = str(self.opts.get(self.sharp_key, "none"))
        if self.sharpness not in self.SHARPNESS:
            raise self.error(f"{self.sharp_key}={self.sharpness!r}; known: {', '.join(self.SHARPNESS)}")
        if self.opts.get("projection"):
            raise self.error("projection is not supported for this class; use class 'lstm2' with n_proj")

    def extra_param_specs(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """The gate scaling parameters of ``sharp_gates``."""
        shape = self.SHARPNESS[self.sharpness]
        if shape is None:
            return {}
        return {"gate_scaling": ((shape[0], 0) if shape[1] == 0 else (shape[0], 1), 1.0)}

    def gates(self, ops: Ops, zz: Any, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Gate pre-activations, scaled by the sharpness parameters if any."""
        if "gate_scaling" not in p:
            return zz[1], zz[2], zz[3]
        scale = p["gate_scaling"]
        rows = [scale[min(k, ops.static_shape(scale)[0] - 1)] for k in range(3)]
        return zz[1] * rows[0], zz[2] * rows[1], zz[3] * rows[2]


class SimpleLstmLayer(LstmLayer):
    """``lstm_simple``: like ``lstm`` with the option spelled ``sharpgates``."""

    options = TheanoRecurrentLayer.RECURRENT_LAYER_OPTIONS | {"sharpgates", "encoder", "n_dec"}
    sharp_key = "sharpgates"


def _layer_norm(ops: Ops, x: Any, gain: Any, bias: Any) -> Any:
    """Normalise the last axis to zero mean and unit variance, then scale and shift."""
    mean, var = ops.moments(x, -1, keepdims=True)
    return (x - mean) * ops.rsqrt(var + np.float32(_LN_EPS)) * gain + bias
