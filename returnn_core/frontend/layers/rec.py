"""The ``rec`` layer (a registered rec unit over time) and ``get_last_hidden_state``."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend._unit import resolve_unit


class RecLayer(Layer):
    """A recurrent unit (``unit``: lstm, nativelstm, gru, rnn, ...) over the time axis of its input.

    ``direction`` 1 or -1 (backwards over each seq's present frames), ``unit_opts`` for the unit's constructor,
    ``initial_state`` a layer name (or one per state) giving (B, n) states, default zeros.
    """

    options = frozenset({"unit", "direction", "initial_state", "unit_opts", "max_seq_len",
                         "optimize_move_layers_out"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unit = self.opts.get("unit", "lstm")
        if not isinstance(unit, str):
            raise NetworkError(f"layer {self.name!r}: 'unit' must be a unit name (lstm, nativelstm, gru, ...), "
                               f"got {type(unit).__name__}; recurrent sub-networks are not supported yet")
        self.unit_cls = resolve_unit(self.net.manager, self.net.backend, unit, layer=self.name, log=self.net.log)
        self.direction = self.opts.get("direction", 1)
        if self.direction not in (1, -1):
            raise NetworkError(f"layer {self.name!r}: direction must be 1 or -1, got {self.direction!r}")
        self._unit: Any = None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Run the unit over the (concatenated) sources."""
        n_out = self.require_n_out()
        src = self.single_source(sources)
        if not src.has_time or src.ndim - (0 if src.sparse else 1) != 2:
            raise self.error("needs a (batch, time, feature) input")
        n_in = self.feature_dim(src)
        if self._unit is None:
            try:
                self._unit = self.unit_cls(n_in, n_out, **dict(self.opts.get("unit_opts") or {}))
            except (TypeError, NetworkError) as exc:
                raise self.error(f"cannot create unit {self.opts.get('unit', 'lstm')!r}: {exc}") from None
        unit = self._unit
        if unit.n_in != n_in:
            raise self.error(f"input dim changed from {unit.n_in} to {n_in}")
        params = {k: self.param(k, spec.shape, spec.init) for k, spec in unit.param_specs().items()}
        y, final = unit(params, src.dense(), src.mask(), initial_state=self._initial_state(unit, ctx),
                        direction=self.direction)
        return LayerOutput(y, src.seq_lens, n_out, final_state=tuple(final))

    def _initial_state(self, unit: Any, ctx: Context) -> tuple[Any, ...] | None:
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
    """The final state of ``rec`` sources: ``key`` (index, ``"h"``/``"c"``) or all states concatenated (``"*"``);
    ``combine`` ``"concat"`` (default) or ``"add"`` for several."""

    options = frozenset({"key", "combine"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pick or concatenate the final states of the sources."""
        ops = ctx.ops
        key = self.opts.get("key", "*")
        parts: list[tuple[Any, int]] = []
        for src in sources:
            if src.final_state is None:
                raise NetworkError(f"layer {self.name!r}: its source has no hidden state (use a 'rec' layer)")
            states = [(s, int(src.dim or 0)) for s in src.final_state]
            if key == "*":
                parts.extend(states)
                continue
            idx = {"h": 0, "c": 1}.get(key, key) if isinstance(key, str) else key
            if not isinstance(idx, int) or not 0 <= idx < len(states):
                raise NetworkError(f"layer {self.name!r}: state key {key!r} not in 0..{len(states) - 1} (or h, c)")
            parts.append(states[idx])
        if not parts:
            raise self.error("needs a source")
        if self.opts.get("combine", "concat") == "add":
            out = parts[0][0]
            for part, _ in parts[1:]:
                out = out + part
            return LayerOutput(out, None, parts[0][1])
        out = ops.concat([p for p, _ in parts], axis=-1) if len(parts) > 1 else parts[0][0]
        return LayerOutput(out, None, sum(d for _, d in parts))
