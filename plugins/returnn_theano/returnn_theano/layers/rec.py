"""The ``rec`` layer: runs a recurrent unit from the ``rec_units`` registry over time."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import UnknownNameError
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
        y, _ = unit(params, inp.value, inp.mask(), direction=direction)
        return LayerOutput(y, inp.seq_lens, n_out)
