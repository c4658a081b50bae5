"""The ``rec`` layer: runs a recurrent unit from the ``rec_units`` registry over time."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import UnknownNameError
from returnn_theano._pt import pt
from returnn_theano.layers.base import Layer, LayerOutput

#: unit names that mean "an LSTM"; ``lstm`` prefers the registered ``nativelstm`` of this backend
NATIVE_LSTM = "nativelstm"


class RecLayer(Layer):
    """Recurrent layer: ``unit`` (default ``lstm``), ``n_out``, ``direction`` 1 or -1, ``unit_opts``."""

    options = frozenset({"unit", "direction", "unit_opts"})

    def resolve_unit(self) -> Any:
        """The unit class from the registry (``lstm`` uses ``nativelstm`` when returnn-native provides it)."""
        name = self.opt("unit", "lstm")
        if not isinstance(name, str):
            raise self.error(f"'unit' must be a unit name, got {name!r}")
        name = name.lower()
        registry = self.ctx.manager.rec_units
        if name == "lstm" and (self.ctx.backend, NATIVE_LSTM) in registry:
            name = NATIVE_LSTM
        try:
            return registry.get(name, backend=self.ctx.backend)
        except UnknownNameError as exc:
            raise UnknownNameError(f"layer {self.name!r}: {exc}") from exc

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """The unit's output over the concatenated sources."""
        n_out = self.n_out()
        direction = self.opt("direction", 1)
        if direction not in (1, -1):
            raise self.error(f"direction must be 1 or -1, got {direction!r}")
        inp = self.concat_sources(sources)
        if not inp.has_time or inp.feature_ndim != 1:
            raise self.error("needs a (batch, time, feature) input")
        unit_cls = self.resolve_unit()
        unit_opts = self.opt("unit_opts") or {}
        try:
            unit = unit_cls(inp.dim, n_out, **unit_opts)
        except TypeError as exc:
            raise self.error(f"cannot create unit {self.opt('unit', 'lstm')!r}: {exc}") from exc
        params = {pname: self.param(pname, spec.shape, spec.init) for pname, spec in unit.param_specs().items()}
        y, state = unit(params, inp.value, inp.mask(), direction=direction)
        return LayerOutput(y, inp.seq_lens, n_out, final_state=tuple(state))


class GetLastHiddenStateLayer(Layer):
    """The final state of ``rec`` sources: ``key`` (index, ``"h"``/``"c"``) or all states concatenated (``"*"``)."""

    options = frozenset({"key", "combine"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """(B, n) without a time axis."""
        key = self.opt("key", "*")
        parts = []
        for src in sources:
            if src.final_state is None:
                raise self.error("its source has no hidden state (use a 'rec' layer)")
            states = list(src.final_state)
            if key == "*":
                parts.extend(states)
                continue
            idx = {"h": 0, "c": 1}.get(key, key) if isinstance(key, str) else key
            if not isinstance(idx, int) or not 0 <= idx < len(states):
                raise self.error(f"state key {key!r} not in 0..{len(states) - 1} (or h, c)")
            parts.append(states[idx])
        if not parts:
            raise self.error("needs a source")
        if self.opt("combine", "concat") == "add":
            out = parts[0]
            for part in parts[1:]:
                out = out + part
            dim = self._dim(parts[0], sources)
        else:
            out = pt.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
            dim = sum(self._dim(p, sources) for p in parts)
        return LayerOutput(out, None, dim)

    @staticmethod
    def _dim(state: Any, sources: list[LayerOutput]) -> int:
        static = state.type.shape[-1]
        return int(static) if static is not None else int(sources[0].dim or 0)
