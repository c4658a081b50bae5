"""The ``rec`` layer (a registered rec unit over time, or a sub-network per step), ``rnn_cell`` (one step of a
unit) and ``get_last_hidden_state``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend._unit import resolve_unit
from returnn_core.frontend.layers.rec_subnet import RecSubnet, repeat_beam
from returnn_core.frontend.units import ScanUnit


class RecLayer(Layer):
    """A recurrent unit (``unit``: lstm, nativelstm, gru, rnn, ...) over the time axis of its input, or, with a dict
    ``unit``, a sub-network evaluated per time step (see :mod:`returnn_core.frontend.layers.rec_subnet`).

    ``direction`` 1 or -1 (backwards over each seq's present frames), ``unit_opts`` for the unit's constructor,
    ``initial_state`` a layer name (or one per state) giving (B, n) states, ``"var"`` for trainable ones, default
    zeros. Inside another rec
    layer's unit (an input without time) a string unit makes one step, its state carried to the next step.
    """

    options = frozenset({"unit", "direction", "initial_state", "unit_opts", "max_seq_len",
                         "optimize_move_layers_out", "unroll", "size_target", "recurrent_weights_init"})
    #: unit parameter -> the option that sets its initializer (RETURNN's RecLayer)
    INIT_OPTIONS = {"W": "forward_weights_init", "W_re": "recurrent_weights_init", "b": "bias_init"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unit = self.opts.get("unit", "lstm")
        self.subnet: RecSubnet | None = None
        self.unit_cls: Any = None
        if isinstance(unit, Mapping):
            self.subnet = RecSubnet(self, unit)
        elif isinstance(unit, str):
            self.unit_cls = resolve_unit(self.net.manager, self.net.backend, unit, layer=self.name, log=self.net.log)
        else:
            raise NetworkError(f"layer {self.name!r}: 'unit' must be a unit name (lstm, nativelstm, gru, ...) or a "
                               f"dict of sub-layers, got {type(unit).__name__}")
        self.direction = self.opts.get("direction", 1)
        if self.direction not in (1, -1):
            raise NetworkError(f"layer {self.name!r}: direction must be 1 or -1, got {self.direction!r}")
        self._unit: Any = None

    @property
    def inner_loss_terms(self) -> list[Any]:
        """Loss terms of the sub-layers of a dict unit (they count like outer layers' losses)."""
        return self.subnet.loss_terms if self.subnet is not None else []

    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the unit's state tensors (what one step carries to the next)."""
        return tuple(self.unit_cls(1, self.require_n_out(), **dict(self.opts.get("unit_opts") or {})).state_sizes())

    def _get_unit(self, n_in: int) -> Any:
        if self._unit is None:
            try:
                self._unit = self.unit_cls(n_in, self.require_n_out(), **dict(self.opts.get("unit_opts") or {}))
            except (TypeError, NetworkError) as exc:
                raise self.error(f"cannot create unit {self.opts.get('unit', 'lstm')!r}: {exc}") from None
        if self._unit.n_in != n_in:
            raise self.error(f"input dim changed from {self._unit.n_in} to {n_in}")
        return self._unit

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Run the unit over the (concatenated) sources, or the sub-network step by step."""
        if self.subnet is not None:
            return self.subnet(sources, ctx)
        n_out = self.require_n_out()
        src = self.single_source(sources)
        if not src.has_time:
            return self._one_step(src, ctx)
        if src.ndim - (0 if src.sparse else 1) != 2:
            raise self.error("needs a (batch, time, feature) input")
        unit = self._get_unit(self.feature_dim(src))
        params = self.unit_params(unit)
        y, final = unit(params, src.dense(), src.mask(), initial_state=self._initial_state(unit, ctx),
                        direction=self.direction)
        return LayerOutput(y, src.seq_lens, n_out, final_state=tuple(final))

    def unit_params(self, unit: Any) -> dict[str, Any]:
        """The unit's parameters, each with the initializer its option gives (:attr:`INIT_OPTIONS`; ``rnn_cell``'s
        ``weights_init`` for all but the bias), else the unit's own."""
        params = {}
        for key, spec in unit.param_specs().items():
            init = self.opts.get(self.INIT_OPTIONS.get(key, ""))
            if init is None and key != "b":
                init = self.opts.get("weights_init")
            params[key] = self.param(key, spec.shape, spec.init if init is None else init)
        return params

    def _one_step(self, src: LayerOutput, ctx: Context) -> LayerOutput:
        """One step of the unit inside a rec loop, from the state it carried out of the previous step."""
        loop = getattr(self.net, "rec_loop", None)
        if loop is None or loop.current is None:
            raise self.error("needs a (batch, time, feature) input, or to be a sub-layer of a rec layer's unit")
        if src.ndim - (0 if src.sparse else 1) != 1:
            raise self.error("inside a rec loop it needs a (batch, feature) input")
        ops = ctx.ops
        unit = self._get_unit(self.feature_dim(src))
        params = self.unit_params(unit)
        prev = loop.current.prev_states[self.name[len(loop.name) + 1:]]
        # "lstm" may run as nativelstm over sequences; one frame takes the registered unit's own step (same params)
        step_cls = self.net.manager.rec_units.get(str(self.opts.get("unit", "lstm")).lower(), backend=self.net.backend)
        if isinstance(step_cls, type) and issubclass(step_cls, ScanUnit):
            step_unit = step_cls(unit.n_in, unit.n_out, **dict(self.opts.get("unit_opts") or {}))
            z = ops.dot(src.dense(), params["W"]) + params["b"]
            final = step_unit.step(ops, z, tuple(prev), params["W_re"])
            return LayerOutput(final[0], None, self.require_n_out(), final_state=tuple(final))
        x = ops.expand_dims(src.dense(), 1)
        y, final = unit(params, x, ops.ones([ops.dynamic_dim(x, 0), 1]), initial_state=prev)
        return LayerOutput(ops.squeeze(y, 1), None, self.require_n_out(), final_state=tuple(final))

    def state_keys(self, n_states: int) -> tuple[str, ...]:
        """Names of the unit's states as ``initial_state`` dicts and ``get_last_hidden_state`` use them."""
        return ("h", "c") if n_states == 2 else tuple(str(i) for i in range(n_states))

    def initial_state_per_state(self, n_states: int) -> list[Any] | None:
        """``initial_state`` as one entry per state (0 or a number, or a layer name), None for all zeros.

        RETURNN takes a layer name or number for all states, a list of one per state, or a dict by state key
        (``{"c": "base:enc_state", "h": 0}``; missing keys are zeros).
        """
        init = self.opts.get("initial_state")
        if init in (None, "zeros", 0):
            return None
        keys = self.state_keys(n_states)
        if isinstance(init, Mapping):
            unknown = sorted(set(init) - set(keys))
            if unknown:
                raise self.error(f"initial_state keys {unknown} are not states of the unit ({', '.join(keys)})")
            return [init.get(k, 0) for k in keys]
        if isinstance(init, (list, tuple)):
            if len(init) != n_states:
                raise self.error(f"initial_state needs one entry per state ({', '.join(keys)}), got {init!r}")
            return list(init)
        return [init] * n_states

    def _initial_state(self, unit: Any, ctx: Context) -> tuple[Any, ...] | None:
        init = self.opts.get("initial_state")
        if init in (None, "zeros", 0):
            return None
        sizes = tuple(unit.state_sizes())
        if init == "var":
            # RETURNN: trainable initial states, one vector per state broadcast over the batch
            ops = ctx.ops
            keys = ("h", "c") if len(sizes) == 2 else tuple(str(i) for i in range(len(sizes)))
            names = [f"initial_{k}" for k in keys] if len(sizes) > 1 else ["initial_state"]
            return tuple(ops.tile(ops.expand_dims(self.param(name, (size,), "zeros"), 0), [ctx.batch_size, 1])
                         for name, size in zip(names, sizes))
        if init == "keep_over_epoch":
            raise NetworkError(f"layer {self.name!r}: initial_state 'keep_over_epoch' (states carried over batches "
                               "within an epoch) is not supported; use 'zeros', 'var' or a layer name")
        per_state = self.initial_state_per_state(len(sizes))
        assert per_state is not None
        return tuple(self.initial_state_value(ctx, value, size, ctx.batch_size) for value, size in zip(per_state, sizes))

    def initial_state_value(self, ctx: Context, value: Any, size: int, rows: Any, beam: int = 1) -> Any:
        """One initial state (rows, size): a number filled in, or a layer's (batch, size) output (``base:`` for the
        enclosing network's, repeated for each of ``beam`` hypotheses)."""
        ops = ctx.ops
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return ops.fill([rows, size], float(value))
        if not isinstance(value, str):
            raise self.error(f"initial_state entries must be numbers or layer names, got {value!r}")
        ref = value[len("base:"):] if value.startswith("base:") else value
        out = ctx.get(ref, layer=self.name)
        if out.has_time or out.dim != size:
            raise self.error(f"initial_state layer {value!r} must be (batch, {size}) without time, got dim "
                             f"{out.dim}{' with time' if out.has_time else ''}")
        return out.tensor if beam == 1 else repeat_beam(ops, out.tensor, beam)


class RnnCellLayer(RecLayer):
    """RETURNN's ``rnn_cell``: one step of the rec ``unit`` per call inside a rec loop, (B, n_in) -> (B, n_out); its
    state (for an LSTM: h and c) goes to the next step with the loop. On an input with time it runs over it."""

    options = frozenset({"unit", "unit_opts", "initial_state", "weights_init"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.opts.get("unit"), str):
            raise self.error("needs 'unit', the name of a rec unit (lstm, gru, rnn, ...)")
        if self.opts.get("initial_state") == "var":
            raise self.error("initial_state 'var' is not supported for rnn_cell; use a layer name or numbers")
        self.require_n_out()


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
