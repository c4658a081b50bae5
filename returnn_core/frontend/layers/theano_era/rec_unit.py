"""The ``rec`` layer with the options of RETURNN's Theano RecurrentUnitLayer: ``encoder`` (initial states from
other layers' final states), ``n_dec`` (a fixed or relative number of decoder steps), ``base`` with the
``attention_list`` recurrent transform, and the LM feedback of ``lm``/``attention_lm``.

Without those options it is the core's ``rec`` layer (:class:`RecLayer`); with them the unit runs step by step,
each step adding the transforms' parts to the unit's input before the recurrent matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context
from returnn_core.frontend._network import Network
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.rec import RecLayer
from returnn_core.frontend.layers.theano_era.attention_2017 import AttentionList, LmFeedback
from returnn_core.frontend.layers.theano_era.recurrence import time_input, time_loop
from returnn_core.frontend.units import LstmUnit, ScanUnit

#: the options RecurrentUnitLayer adds to ``rec`` (the manual's signature)
THEANO_REC_OPTIONS = frozenset({
    "encoder", "n_dec", "base", "attention", "recurrent_transform", "recurrent_transform_attribs", "lm", "force_lm",
    "droplm", "n_units", "truncation", "sampling", "attention_template", "attention_distance", "attention_step",
    "attention_beam", "attention_norm", "attention_momentum", "attention_sharpening", "attention_nbest",
    "attention_store", "attention_smooth", "attention_align", "attention_glimpse", "attention_filters",
    "attention_accumulator", "attention_loss", "attention_bn", "attention_lm", "attention_ndec", "attention_memory",
    "aligner", "bias_random_init_forget_shift", "copy_weights_from_base", "segment_input", "join_states",
    "sample_segment",
})
#: options that switch to the step-by-step decoder mode when set
_DECODER_KEYS = ("encoder", "n_dec", "base", "lm", "force_lm")
TRANSFORMS = ("none", "attention_list", "lm")
#: RETURNN's LSTM implementations, one LSTM here; ``lstmr`` has no recurrent matrix (only the transform feeds back)
LSTM_UNITS = frozenset({"lstm", "lstme", "lstmp", "lstmc", "lstmb", "blstm", "lstmr"})
#: options of RecurrentUnitLayer left at their defaults here, with what each would do
_FIXED = {
    "copy_weights_from_base": (False, "share the base layer's weights"),
    "segment_input": (False, "the segment-wise LSTM"),
    "aligner": (None, "an aligner layer for segment attention"),
    "join_states": (False, "joined encoder states"),
    "sample_segment": (None, "sampled segments"),
    "bias_random_init_forget_shift": (0, "a forget gate bias offset"),
    "recurrent_transform_attribs": ({}, "attributes of other recurrent transforms"),
}


class RecurrentUnitLayer(RecLayer):
    """``rec``: :class:`RecLayer`, plus RETURNN's Theano decoder options. ``encoder`` (a layer name or list): the
    initial states are the encoders' final states concatenated (``n_out`` defaults to the sum of their dims);
    ``base`` (default: the encoders) are the layers ``recurrent_transform`` "attention_list" attends over
    (see :class:`AttentionList`); ``lm``/``attention_lm``/``recurrent_transform`` "lm" feed back labels
    (:class:`LmFeedback`, labels from ``target``, default "classes"). Without sources (``from: []``) the steps
    are ``n_dec`` (int: that many; float: that times the first encoder's/base's length, rounded up) or, with
    ``n_dec`` 0, the target's length. The transforms need an LSTM unit, as in RETURNN; every LSTM unit name
    applies them (RETURNN's lstmp ignored them on GPU and ran as lstme, which applies them, on CPU).
    ``attention`` is accepted and has no effect, as in RETURNN's layer; ``truncation`` only -1, ``sampling``
    only 1."""

    options = RecLayer.options | THEANO_REC_OPTIONS
    read_data_keys: tuple[str, ...] = ()

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        unit = opts.get("unit", "lstm")
        self.unit_name = unit.lower() if isinstance(unit, str) else None
        transform = opts.get("recurrent_transform", "none") or "none"
        self.decoder_mode = self.unit_name == "lstmr" or transform != "none" or any(
            opts.get(k) not in (None, 0, False, [], (), "none") for k in _DECODER_KEYS + ("attention_lm",))
        base_opts = dict(opts)
        if self.unit_name == "lstmr":
            base_opts["unit"] = "lstm"  # the same parameters, without W_re
        super().__init__(name, layer_class, base_opts, net)
        self.transform = transform
        self.target_key = str(self.opts.get("target") or "classes")
        self._check_fixed_options()
        if not self.decoder_mode:
            return
        if self.subnet is not None:
            raise self.error("the Theano decoder options (encoder, base, n_dec, recurrent_transform, lm) need a "
                             "unit name (lstm, gru, ...), not a sub-network")
        if transform not in TRANSFORMS:
            raise self.error(f"recurrent_transform {transform!r} is not supported; use one of {', '.join(TRANSFORMS)}")
        self.lm_active = transform == "lm" or bool(self.opts.get("lm")) or self.opts.get(
            "attention_lm", "none") not in (None, "none")
        if (transform != "none" or self.unit_name == "lstmr") and self.unit_name not in LSTM_UNITS:
            raise self.error(f"recurrent_transform {transform!r} needs an LSTM unit ({', '.join(sorted(LSTM_UNITS))})"
                             f", as in RETURNN; got unit {self.unit_name!r}")
        if self.unit_name == "lstmr" and transform == "none" and not self.lm_active:
            raise self.error("unit 'lstmr' (an LSTM without recurrent matrix) needs a recurrent_transform")
        self.encoders = self._names("encoder")
        self.bases = self._names("base") or self.encoders
        if transform == "attention_list" and not self.bases:
            raise self.error("recurrent_transform 'attention_list' needs 'base' (or 'encoder'): the layers to attend")
        n_dec = self.opts.get("n_dec", 0) or 0
        if isinstance(n_dec, bool) or not isinstance(n_dec, (int, float)) or n_dec < 0:
            raise self.error(f"n_dec must be a non-negative int (steps) or float (relative to the encoder's length), "
                             f"got {n_dec!r}; negative n_dec (relative to the layer's own index) is not supported")
        self.n_dec = n_dec
        spec = net.description.layers.get(name.rpartition("/")[2])
        if self.lm_active or (spec is not None and not spec.sources and not n_dec):
            #: the extern data this layer reads besides its sources: the labels it feeds back or takes its length from
            self.read_data_keys = (self.target_key,)

    def _check_fixed_options(self) -> None:
        for key, (default, what) in _FIXED.items():
            if self.opts.get(key, default) not in (default, None, 0, False, "{}"):
                raise self.error(f"{key}={self.opts[key]!r} ({what}) is not supported; leave it at {default!r}")
        if self.opts.get("truncation", -1) not in (None, -1):
            raise self.error(f"truncation={self.opts['truncation']!r}: truncated backpropagation through time is not "
                             "supported; remove it (full backpropagation) or set it to -1")
        if self.opts.get("sampling", 1) not in (None, 1):
            raise self.error(f"sampling={self.opts['sampling']!r} (scan every n-th frame) is not supported; use 1")

    def _names(self, key: str) -> list[str]:
        value = self.opts.get(key)
        names = [] if value in (None, "", [], ()) else [value] if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise self.error(f"{key} must be a layer name or a list of layer names, got {value!r}")
        return list(names)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The core's rec layer, or the decoder loop where the Theano decoder options are set."""
        if not self.decoder_mode:
            return super().call(sources, ctx)
        ops = ctx.ops
        encoders = [self._layer(name, ctx, with_state=True) for name in self.encoders]
        if self.n_out is None and encoders:
            self.n_out = sum(int(e.dim or 0) for e in encoders)
        if self.opts.get("n_units") not in (None, self.n_out):
            raise self.error(f"n_units {self.opts['n_units']} must equal n_out {self.n_out}")
        n = self.require_n_out()
        unit = self._step_unit()
        z_dim = unit.blocks * n
        bias = self.param("b", (z_dim,), self.opts.get("bias_init", "zeros"))
        target = self._target(ctx) if (self.lm_active or (not sources and not self.n_dec)) else None
        if sources:
            if self.n_dec:
                raise self.error("n_dec sets the number of steps of a layer without sources; use 'from': [] with it")
            src = time_input(self, sources)
            w = self.param("W", (self.feature_dim(src), z_dim), self.opts.get("forward_weights_init", "glorot_uniform"))
            z, seq_lens = ops.dot(src.dense(), w) + bias, src.seq_lens
        else:
            seq_lens = self._steps(ctx, encoders, target)
            batch = ops.dynamic_dim(seq_lens, 0)
            z = ops.zeros([batch, ops.reduce(seq_lens, "max"), z_dim]) + bias
        mask = ops.sequence_mask(seq_lens, ops.dynamic_dim(z, 1))
        initial = self._initial_states(ops, encoders, unit, z)
        tensors: dict[str, Any] = {}
        if self.unit_name != "lstmr":
            tensors["W_re"] = self.param("W_re", (n, z_dim), self.opts.get("recurrent_weights_init") or "glorot_uniform")
        attention = None
        if self.transform == "attention_list":
            bases = [self._layer(name, ctx) for name in self.bases]
            attention = AttentionList(self, self.opts, bases, n, z_dim)
            tensors.update(attention.setup(ops))
        lm, lm_seqs = None, []
        if self.lm_active:
            lm = LmFeedback(self, self.opts, n, z_dim, int(target.dim or 0))
            lm_tensors, lm_seqs = lm.setup(ops, target, ctx.train, self.direction, seq_lens)
            tensors.update(lm_tensors)
        # a tensor named twice (a base that is its own template, a base listed twice) goes into the loop once
        unique: list[Any] = []
        slot: dict[str, int] = {}
        for key, value in tensors.items():
            found = next((j for j, u in enumerate(unique) if u is value), None)
            if found is None:
                unique.append(value)
            slot[key] = len(unique) - 1 if found is None else found

        def step(z_t: Any, *args: Any) -> tuple[Any, tuple[Any, ...]]:
            frames, rest = list(args[: len(lm_seqs)]), args[len(lm_seqs):]
            states, loop_tensors = rest[: unit.num_states], rest[unit.num_states:]
            t = {key: loop_tensors[j] for key, j in slot.items()}
            y_p = states[0]
            if attention is not None:
                z_t = z_t + attention.step(ops, y_p, t)
            if lm is not None:
                z_t = z_t + lm.step(ops, y_p, t, frames)
            w_re = t.get("W_re")
            if w_re is None:  # lstmr: only the transforms carry the previous output into the gates
                w_re = ops.zeros([n, z_dim])
            new = unit.step(ops, z_t, tuple(states), w_re)
            return new[0], tuple(new)

        y, final = time_loop(ops, step, [z, *lm_seqs], mask, seq_lens, initial, unique,
                             direction=self.direction)
        return LayerOutput(y, seq_lens, n, final_state=final)

    def _step_unit(self) -> ScanUnit:
        """The registered unit (its one-step function) for ``unit``; ``lstmr`` takes the LSTM's."""
        name = "lstm" if self.unit_name == "lstmr" else str(self.unit_name)
        cls = self.net.manager.rec_units.get(name, backend=self.net.backend)
        if not (isinstance(cls, type) and issubclass(cls, ScanUnit)):
            cls = LstmUnit if self.unit_name in LSTM_UNITS else None
        if cls is None:
            raise self.error(f"unit {self.unit_name!r} has no step function for the Theano decoder options; use "
                             "lstm, gru, sru or vanilla")
        return cls(1, self.require_n_out(), **dict(self.opts.get("unit_opts") or {}))

    def _layer(self, name: str, ctx: Context, *, with_state: bool = False) -> LayerOutput:
        out = ctx.get(name, layer=self.name)
        if out.sparse or not out.has_time or out.feature_ndim != 1:
            raise self.error(f"layer {name!r} must be dense (batch, time, feature)")
        if with_state and not out.final_state:
            raise self.error(f"encoder {name!r} has no final state; name recurrent layers (rec, lstm, ...)")
        return out

    def _target(self, ctx: Context) -> LayerOutput:
        return ctx.net.data_output(self.target_key, layer=self.name)

    def _steps(self, ctx: Context, encoders: list[LayerOutput], target: LayerOutput | None) -> Any:
        """The decoder's seq lengths (B,) without sources: ``n_dec`` steps, relative to the encoder, or the target's."""
        ops = ctx.ops
        ref = encoders[0] if encoders else ctx.get(self.bases[0], layer=self.name) if self.bases else None
        if isinstance(self.n_dec, int) and self.n_dec > 0:
            if ref is None:
                raise self.error("n_dec without sources needs 'encoder' or 'base' (for the batch size)")
            return ops.fill([ops.dynamic_dim(ref.seq_lens, 0)], self.n_dec, "int32")
        if self.n_dec:
            if ref is None:
                raise self.error(f"n_dec {self.n_dec} (relative to the encoder's length) needs 'encoder' or 'base'")
            scaled = ops.cast(ref.seq_lens, "float32") * np.float32(self.n_dec)
            return ops.cast(-ops.floor(-scaled), "int32")
        if target is None or not target.has_time:
            raise self.error("without sources it needs 'n_dec' or a 'target' with a time axis for its length")
        return target.seq_lens

    def _initial_states(self, ops: Any, encoders: list[LayerOutput], unit: ScanUnit, z: Any) -> tuple[Any, ...]:
        n = unit.n_out
        if not encoders:
            return (ops.zeros([ops.dynamic_dim(z, 0), n]),) * unit.num_states
        if any(len(e.final_state or ()) < unit.num_states for e in encoders):
            raise self.error(f"unit {self.unit_name!r} needs {unit.num_states} states from each encoder")
        total = sum(int(e.dim or 0) for e in encoders)
        if total != n:
            raise self.error(f"the encoders' dims add up to {total}, but n_out is {n} (the states must match)")
        return tuple(ops.concat([e.final_state[i] for e in encoders], axis=-1) if len(encoders) > 1
                     else encoders[0].final_state[i] for i in range(unit.num_states))
