"""The Theano-era ``native`` layer class (NetworkHiddenLayer.NativeLayer): a NativeOp run over the sources.

``native_class`` names the op; the supported ones are RETURNN's LSTM ops ``NativeLstm`` and ``LstmGenericBase``,
which take the concatenated sources as ``Z`` (time, batch, 4 * n_out; gate blocks [cell input, input, forget,
output], no bias and no input matrix: a preceding layer projects to 4 * n_out), one recurrent matrix ``V_h``
(n_out, 4 * n_out) from ``params``, zero initial state and the index, and output ``Y`` (time, batch, n_out), zero on
padded frames. Both run through the registered ``lstm`` rec unit (the NativeLSTM kernel of returnn-native where it
is installed, the backend's own LSTM otherwise).

``params`` lists the op's parameters in order, each ``{"name": ..., "shape": [...]}`` (or a JSON string of that
list); a shape's entries are ints or arithmetic over ``n_in`` and ``n_out`` (``"n_out"``, ``"n_out*4"``). The
parameter is stored as ``<layer>/<name>``.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend._unit import resolve_unit

#: native_class -> the LSTM ops whose inputs are (Z, V_h, i) and whose layer output is Y
LSTM_NATIVE_CLASSES = ("NativeLstm", "LstmGenericBase")

_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
          ast.Div: operator.floordiv}


class NativeLayer(Layer):
    """``native``: ``native_class`` (``NativeLstm`` or ``LstmGenericBase``) over the sources with ``params``."""

    options = frozenset({"native_class", "params"})
    handles_activation = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.native_class = self.opts.get("native_class")
        if self.native_class not in LSTM_NATIVE_CLASSES:
            raise self.error(f"native_class {self.native_class!r} is not supported; supported: "
                             f"{', '.join(LSTM_NATIVE_CLASSES)} (use class 'rec' for other recurrences)")
        if self.activation_name is not None:
            raise self.error("the native layer has no 'activation' option (its op fixes the output); remove it")
        self.param_specs = self._param_list(self.opts.get("params"))

    def _param_list(self, params: Any) -> list[Mapping[str, Any]]:
        """``params`` as a list of ``{"name", "shape"}`` dicts."""
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError as exc:
                raise self.error(f"params is a string but not JSON ({exc}); give a list of "
                                 "{'name': ..., 'shape': [...]} dicts") from None
        if not isinstance(params, Sequence) or isinstance(params, str) or not all(
                isinstance(p, Mapping) and isinstance(p.get("name"), str) and isinstance(p.get("shape"), Sequence)
                for p in params):
            raise self.error(f"params must be a list of {{'name': str, 'shape': [dims]}} dicts, got {params!r}")
        return list(params)

    def _shape(self, spec: Mapping[str, Any], n_in: int, n_out: int) -> tuple[int, ...]:
        """The parameter's shape with ``n_in`` and ``n_out`` put in."""
        dims = []
        for dim in spec["shape"]:
            try:
                value = _eval_dim(dim, {"n_in": n_in, "n_out": n_out})
            except (ValueError, SyntaxError, ZeroDivisionError):
                raise self.error(f"param {spec['name']!r}: shape entry {dim!r} is not an int or arithmetic over "
                                 "n_in and n_out") from None
            if value <= 0:
                raise self.error(f"param {spec['name']!r}: shape entry {dim!r} is {value}, must be positive")
            dims.append(value)
        return tuple(dims)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Y of the LSTM op over Z = the concatenated sources."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.single_source(sources)
        if not src.has_time or src.ndim - (0 if src.sparse else 1) != 2:
            raise self.error("needs a (batch, time, feature) input")
        n_in = self.feature_dim(src)
        if n_in != 4 * n_out:
            raise self.error(f"native_class {self.native_class!r} takes the sources as the gate inputs Z of dim "
                             f"4 * n_out = {4 * n_out}, but they have dim {n_in}; put a layer with n_out "
                             f"{4 * n_out} (e.g. 'hidden' with activation 'identity') before it")
        if len(self.param_specs) != 1:
            raise self.error(f"native_class {self.native_class!r} takes one parameter (the recurrent matrix V_h, "
                             f"shape [n_out, 4*n_out]), params gives {len(self.param_specs)}")
        (spec,) = self.param_specs
        shape = self._shape(spec, n_in, n_out)
        if shape != (n_out, 4 * n_out):
            raise self.error(f"param {spec['name']!r}: native_class {self.native_class!r} needs the recurrent "
                             f"matrix V_h of shape (n_out, 4*n_out) = {(n_out, 4 * n_out)}, got {shape}")
        v_h = self.param(spec["name"], shape, spec.get("init", "glorot_uniform"))
        unit_cls = resolve_unit(self.net.manager, self.net.backend, "lstm", layer=self.name, log=self.net.log)
        unit = unit_cls(n_in, n_out)
        # Z already holds x W + b: the unit's input matrix is the identity and its bias zero (constants, no params)
        unit_params = {"W": ops.constant(np.eye(n_in, dtype="float32")),
                       "b": ops.constant(np.zeros(n_in, dtype="float32")), "W_re": v_h}
        y, final = unit(unit_params, src.dense(), src.mask(), direction=1)
        return LayerOutput(y, src.seq_lens, n_out, final_state=tuple(final))


def _eval_dim(dim: Any, names: Mapping[str, int]) -> int:
    """An int shape entry, or one given as arithmetic over ``names`` (``"n_out*4"``)."""
    if isinstance(dim, bool):
        raise ValueError(dim)
    if isinstance(dim, int):
        return dim
    if not isinstance(dim, str):
        raise ValueError(dim)

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return _ARITH[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(dim)

    return int(ev(ast.parse(dim.strip(), mode="eval")))
