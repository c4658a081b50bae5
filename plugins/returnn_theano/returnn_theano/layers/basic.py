"""Feed-forward layers: source, linear (forward/hidden), softmax, activation, copy, dropout, combine, concat."""

from __future__ import annotations

from typing import Any

from returnn_theano._pt import pt
from returnn_theano.activations import activation_fn
from returnn_theano.layers.base import Layer, LayerOutput

#: activations whose pre-activation a loss can use for a stable log
_LOGIT_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")


def dot_last(x: Any, w: Any) -> Any:
    """``x`` (..., n_in) times ``w`` (n_in, n_out) as one 2-D product."""
    if x.ndim == 2:
        return pt.dot(x, w)
    flat = x.reshape((-1, x.shape[-1]))
    out = pt.dot(flat, w)
    return out.reshape((*[x.shape[i] for i in range(x.ndim - 1)], w.shape[1]), ndim=x.ndim)


def with_activation(layer: Layer, z: Any, seq_lens: Any, dim: int | None, default: str | None = None) -> LayerOutput:
    """Apply the layer's ``activation`` to ``z``, keeping ``z`` as logits where a loss can use them."""
    act = layer.opt("activation", default)
    value = activation_fn(act, layer=layer.name)(z)
    logits = z if act in _LOGIT_ACTIVATIONS else None
    return LayerOutput(value, seq_lens, dim, logits=logits, activation=act)


class SourceLayer(Layer):
    """An extern data stream (``data_key``, default the first source)."""

    options = frozenset({"data_key"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """The data stream itself."""
        key = self.opt("data_key")
        if key is None:
            if not sources:
                raise self.error("needs 'data_key' or a source")
            return sources[0]
        if key not in self.ctx.inputs:
            raise self.error(f"data_key {key!r} is not in the data ({', '.join(sorted(self.ctx.inputs))})")
        return self.ctx.inputs[key]


class LinearLayer(Layer):
    """``activation(x W + b)``; a sparse source is embedded (row lookup in ``W``)."""

    default_activation: str | None = None

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Affine transform of the concatenated sources."""
        n_out = self.n_out()
        inp = self.concat_sources(sources, allow_sparse=True)
        if not inp.dim:
            raise self.error("the input feature dim is unknown")
        w = self.param("W", (inp.dim, n_out), self.opt("forward_weights_init", "glorot_uniform"))
        z = w[inp.value] if inp.sparse else dot_last(inp.value, w)
        if self.opt("with_bias", True):
            z = z + self.param("b", (n_out,), self.opt("bias_init", "zeros"))
        return with_activation(self, z, inp.seq_lens, n_out, self.default_activation)


class SoftmaxLayer(LinearLayer):
    """A linear layer with softmax activation (the usual output layer)."""

    default_activation = "softmax"


class ActivationLayer(Layer):
    """``activation`` applied to the concatenated sources."""

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Elementwise activation."""
        inp = self.concat_sources(sources)
        return with_activation(self, inp.value, inp.seq_lens, inp.dim)


class CopyLayer(Layer):
    """The sources concatenated on the feature axis (a single sparse source passes through)."""

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """Concatenation (or the source itself)."""
        inp = self.concat_sources(sources, allow_sparse=True)
        if len(sources) == 1 and not self.opt("dropout"):
            return sources[0]
        return inp


class DropoutLayer(CopyLayer):
    """The source with ``dropout`` applied in training."""


class ConcatLayer(CopyLayer):
    """The sources concatenated on the feature axis."""


_COMBINE_KINDS = {
    "add": lambda xs: _fold(xs, lambda a, b: a + b),
    "sub": lambda xs: _fold(xs, lambda a, b: a - b),
    "mul": lambda xs: _fold(xs, lambda a, b: a * b),
    "truediv": lambda xs: _fold(xs, lambda a, b: a / b),
    "maximum": lambda xs: _fold(xs, pt.maximum),
    "minimum": lambda xs: _fold(xs, pt.minimum),
    "average": lambda xs: _fold(xs, lambda a, b: a + b) / float(len(xs)),
}


def _fold(xs: list[Any], fn: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


class CombineLayer(Layer):
    """Elementwise ``kind`` (add, sub, mul, truediv, maximum, minimum, average) of the sources."""

    options = frozenset({"kind"})

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """The combined sources, then ``activation``."""
        kind = self.opt("kind", "add")
        fn = _COMBINE_KINDS.get(kind)
        if fn is None:
            raise self.error(f"unknown combine kind {kind!r}; known: {', '.join(sorted(_COMBINE_KINDS))}")
        if not sources:
            raise self.error("needs at least one source")
        if any(s.sparse for s in sources):
            raise self.error("cannot combine sparse sources")
        dims = {s.dim for s in sources}
        if len(dims) > 1 and not dims & {1}:
            raise self.error(f"sources have different feature dims {sorted(d or 0 for d in dims)}")
        any_time = any(s.has_time for s in sources)
        values = [s.value if s.has_time or not any_time else s.value[:, None] for s in sources]
        value = fn([self.dropout(v, self.opt("dropout")) for v in values])
        base = max(sources, key=lambda s: (s.has_time, s.dim or 0))
        return with_activation(self, value, base.seq_lens, base.dim)
