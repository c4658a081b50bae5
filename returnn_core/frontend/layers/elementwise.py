"""Element-wise layers of RETURNN's TF era: ``compare`` (bool output) and ``gating`` (half gates the other half)."""

from __future__ import annotations

from typing import Any

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.activations import get_activation
from returnn_core.frontend.layers.basic import broadcast_sources


def _less_equal(ops: Ops, a: Any, b: Any) -> Any:
    return ops.greater(ops.cast(ops.less(a, b), "int32") + ops.cast(ops.equal(a, b), "int32"), 0)


#: RETURNN's ``kind`` names (the TensorFlow comparison functions) -> the comparison on ``Ops``
COMPARISONS = {
    "equal": lambda ops, a, b: ops.equal(a, b),
    "not_equal": lambda ops, a, b: ops.not_equal(a, b),
    "less": lambda ops, a, b: ops.less(a, b),
    "greater": lambda ops, a, b: ops.greater(a, b),
    "less_equal": _less_equal,
    "greater_equal": lambda ops, a, b: _less_equal(ops, b, a),
}


class CompareLayer(Layer):
    """``kind`` (equal, not_equal, less, less_equal, greater, greater_equal) of the first source against ``value``
    and against every further source, all results and-ed; a bool output of the first source's shape."""

    options = frozenset({"kind", "value"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Compare element-wise (sources without time broadcast over those with it)."""
        ops = ctx.ops
        kind = self.opts.get("kind", "equal")
        if kind not in COMPARISONS:
            raise self.error(f"unknown compare kind {kind!r}; known: {', '.join(COMPARISONS)}")
        value = self.opts.get("value")
        if not sources:
            raise self.error("needs at least one source")
        if value is None and len(sources) < 2:
            raise self.error("needs a 'value' or at least two sources to compare")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise self.error(f"value must be a number, got {value!r}")
        op = COMPARISONS[kind]
        any_time = any(s.has_time for s in sources)
        tensors = [ops.expand_dims(s.tensor, 1) if any_time and not s.has_time else s.tensor for s in sources]
        first = tensors[0]
        result = None
        if value is not None:
            result = op(ops, first, ops.constant(value, ops.dtype(first)))
        for other in tensors[1:]:
            r = op(ops, first, other)
            result = r if result is None else ops.greater(ops.cast(result, "int32") + ops.cast(r, "int32"), 1)
        ref = next((s for s in sources if s.has_time), sources[0])
        # RETURNN keeps the first source's format; a sparse one becomes a 2-class (True/False) output
        return LayerOutput(result, ref.seq_lens, 2 if sources[0].sparse else sources[0].dim)


class GatingLayer(Layer):
    """``activation(a) * gate_activation(b)`` where ``a, b`` are the two halves of the input's feature axis; two
    sources of the output dim are taken as ``a`` and ``b`` directly. The output dim is half the input's."""

    options = frozenset({"gate_activation"})
    handles_activation = True

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Gate one half by the other."""
        ops = ctx.ops
        gate = get_activation(self.opts.get("gate_activation", "sigmoid"), layer=self.name)
        if any(s.sparse for s in sources):
            raise self.error("needs dense sources")
        dims = [s.dim for s in sources]
        if len(sources) == 2 and dims[0] is not None and dims[0] == dims[1] and self.n_out in (None, dims[0]):
            a, b = broadcast_sources(sources)
            ref = next((s for s in sources if s.has_time), sources[0])
            dim = int(dims[0])
        else:
            src = self.single_source(sources)
            total = self.feature_dim(src)
            if total % 2:
                raise self.error(f"its input dim {total} is odd; gating needs two equal halves")
            dim = total // 2
            a, b = ops.split(src.tensor, (dim, dim), axis=-1)
            ref = src
        if self.activation is not None:
            a = self.activation(ops, a)
        if gate is not None:
            b = gate(ops, b)
        return LayerOutput(a * b, ref.seq_lens, dim)
