"""The ``rec`` layer (a registered rec unit over time) and ``get_last_hidden_state``."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from returnn_core.errors import NetworkError, PluginError
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer

#: what the ``lstm`` unit falls back to when no ``nativelstm`` is registered for TF
FALLBACK_LSTM = "lstmblockfused"


def resolve_unit(net: Any, unit: str, *, layer: str) -> type:
    """The unit class for a config ``unit`` name (case-insensitive); ``lstm`` prefers ``nativelstm``."""
    name = unit.lower()
    registry = net.manager.rec_units
    if name == "lstm":
        if ("tf", "nativelstm") in registry:
            try:
                return registry.get("nativelstm", backend="tf")
            except PluginError as exc:
                net.log.v2(f"layer {layer!r}: nativelstm is registered but unusable ({exc}); using {FALLBACK_LSTM}")
        name = FALLBACK_LSTM
    return registry.get(name, backend="tf")


class RecLayer(Layer):
    """A recurrent unit (``unit``: lstm, nativelstm, gru, ...) over the time axis of its input."""

    options = frozenset({"unit", "direction", "initial_state", "unit_opts", "max_seq_len",
                         "optimize_move_layers_out"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unit = self.opts.get("unit", "lstm")
        if not isinstance(unit, str):
            raise NetworkError(f"layer {self.name!r}: 'unit' must be a unit name (lstm, nativelstm, gru, ...), "
                               f"got {type(unit).__name__}; recurrent sub-networks are not supported by this backend")
        self.unit_name = unit
        self.unit_cls = resolve_unit(self.net, unit, layer=self.name)
        self.direction = int(self.opts.get("direction", 1))
        if self.direction not in (1, -1):
            raise NetworkError(f"layer {self.name!r}: direction must be 1 or -1, got {self.direction}")
        self._unit: Any = None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Run the unit over the (concatenated) sources."""
        n_out = self.require_n_out()
        src = self.single_source(sources)
        if not src.has_time:
            raise NetworkError(f"layer {self.name!r} (class 'rec') needs an input with a time axis")
        n_in = self.feature_dim(src)
        if self._unit is None:
            self._unit = self.unit_cls(n_in, n_out, **dict(self.opts.get("unit_opts") or {}))
        unit = self._unit
        if unit.n_in != n_in:
            raise NetworkError(f"layer {self.name!r}: input dim changed from {unit.n_in} to {n_in}")
        params = {k: self.param(k, spec.shape, spec.init) for k, spec in unit.param_specs().items()}
        x = src.dense()
        mask = src.mask()
        y, final = unit(params, x, mask, initial_state=self._initial_state(unit, ctx), direction=self.direction)
        return LayerOutput(y, src.seq_lens, n_out, final_state=tuple(final))

    def _initial_state(self, unit: Any, ctx: Context) -> tuple[tf.Tensor, ...] | None:
        init = self.opts.get("initial_state")
        if init in (None, "zeros", 0):
            return None
        sizes = tuple(unit.state_sizes())
        if isinstance(init, str):
            init = [init] * len(sizes)
        if not isinstance(init, (list, tuple)) or len(init) != len(sizes):
            raise NetworkError(f"layer {self.name!r}: initial_state must be a layer name or a list of "
                               f"{len(sizes)} layer names (one per state)")
        states = []
        for ref, size in zip(init, sizes):
            out = ctx.get(ref, layer=self.name)
            if out.has_time or out.dim != size:
                raise NetworkError(f"layer {self.name!r}: initial_state layer {ref!r} must be (batch, {size}) "
                                   f"without time, got dim {out.dim}{' with time' if out.has_time else ''}")
            states.append(out.tensor)
        return tuple(states)


class GetLastHiddenStateLayer(Layer):
    """The final state of a ``rec`` layer: ``key`` (index, ``"h"``/``"c"``) or all states concatenated (``"*"``)."""

    options = frozenset({"key", "combine"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pick or concatenate the final states of the sources."""
        parts = []
        for src in sources:
            if src.final_state is None:
                raise NetworkError(f"layer {self.name!r}: its source has no hidden state (use a 'rec' layer)")
            key = self.opts.get("key", "*")
            states = list(src.final_state)
            if key == "*":
                parts.extend(states)
            else:
                idx = {"h": 0, "c": 1}.get(key, key) if isinstance(key, str) else key
                if not isinstance(idx, int) or not 0 <= idx < len(states):
                    raise NetworkError(f"layer {self.name!r}: state key {key!r} not in 0..{len(states) - 1} (or h, c)")
                parts.append(states[idx])
        combine = self.opts.get("combine", "concat")
        if combine == "add":
            out = tf.add_n(parts)
        else:
            out = tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]
        return LayerOutput(out, None, int(out.shape[-1]))
