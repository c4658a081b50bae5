"""``generic_lstm`` (NetworkLstmLayer.GenericLstmLayer): an LSTM whose gate pre-activations come from a sub-layer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.recurrence import TheanoRecurrentLayer


class GenericLstmLayer(TheanoRecurrentLayer):
    """``sublayer`` (a layer dict) maps [input frame, previous output] to ``4 * n_cells`` values: input, forget and
    output gates, then the cell input; ``out_sublayer`` (optional) maps the cell state to the output before ``CO``.

    ``activation`` is one name for the cell input and output, or "CI,CO" or "CI,CO,G" (G for the gates). The output
    gate multiplies the output, so ``n_cells`` must equal ``n_out``. Sub-layer parameters are named
    ``<layer>/sublayer/...`` and ``<layer>/out_sublayer/...``.
    """

    options = frozenset({"sublayer", "out_sublayer", "n_cells", "direction", "grad_clip", "truncation"})
    activation_slots = 3
    default_activations = ("tanh", "tanh", "sigmoid")

    def activation_lengths(self) -> tuple[int, ...]:
        """"CI,CO" or "CI,CO,G"."""
        return (2, 3)

    def _sub(self, key: str, n_out: int) -> Layer | None:
        """The sub-layer ``key`` (a dict or its JSON text) as a layer object with ``n_out`` outputs."""
        spec = self.opts.get(key)
        if spec is None:
            return None
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except ValueError:
                raise self.error(f"{key} must be a layer dict (or its JSON), got {spec!r}") from None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("class"), str):
            raise self.error(f"{key} must be a layer dict with a 'class', got {spec!r}")
        opts = {k: v for k, v in spec.items() if k != "class"}
        opts["n_out"] = n_out
        cls = self.net.manager.layers.get(spec["class"], backend=self.net.backend)
        return cls(f"{self.name}/{key}", spec["class"], opts, self.net)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The LSTM over time with the sub-layers inside each step."""
        ops = ctx.ops
        n = self.require_n_out()
        cells = int(self.opts.get("n_cells") or n)
        if cells != n:
            raise self.error(f"n_cells ({cells}) must equal n_out ({n}): the output gate has one value per cell")
        if self.opts.get("sublayer") is None:
            raise self.error("needs 'sublayer', a layer dict such as {'class': 'hidden', 'activation': 'identity'}")
        sub, out_sub = self._sub("sublayer", 4 * cells), self._sub("out_sublayer", n)
        src = self.time_input(sources)
        n_in = self.feature_dim(src)
        x = src.dense()
        ci, co, gate = self.activations

        def step(x_t: Any, h: Any, c: Any) -> tuple[Any, tuple[Any, Any]]:
            z = sub([LayerOutput(x_t, None, n_in), LayerOutput(h, None, n)], ctx).tensor
            gates = gate(ops, z[:, : 3 * cells])
            c_new = ci(ops, z[:, 3 * cells :]) * gates[:, :cells] + c * gates[:, cells : 2 * cells]
            out = out_sub([LayerOutput(c_new, None, cells)], ctx).tensor if out_sub is not None else c_new
            h_new = co(ops, out) * gates[:, 2 * cells :]
            return h_new, (h_new, c_new)

        batch = ops.dynamic_dim(x, 0)
        initial = (ops.zeros([batch, n]), ops.zeros([batch, cells]))
        step(x[:, 0], *initial)  # creates the sub-layers' parameters outside the loop
        y, final = self.loop(ctx, step, [x], src, initial)
        return LayerOutput(y, src.seq_lens, n, final_state=final)
