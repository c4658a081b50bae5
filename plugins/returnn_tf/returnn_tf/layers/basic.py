"""Basic layers: source, linear/softmax, activation, copy, dropout, combine, concat, eval, constant, reinterpret_data."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer, concat_features


class SourceLayer(Layer):
    """The extern data stream ``data_key`` (default ``data``)."""

    options = frozenset({"data_key"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Return the data stream."""
        return ctx.net.data_output(self.opts.get("data_key", "data"), layer=self.name)


class LinearLayer(Layer):
    """``activation(x W + b)``; a single sparse source is an embedding lookup."""

    options = frozenset()
    handles_activation = True

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Affine transform over the feature axis."""
        n_out = self.require_n_out()
        if len(sources) == 1 and sources[0].sparse:
            src = sources[0]
            w = self.param("W", (self.feature_dim(src), n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
            x = tf.gather(w, src.tensor)
        else:
            src = self.single_source(sources)
            w = self.param("W", (self.feature_dim(src), n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
            x = src.tensor
            rank = x.shape.rank
            if rank == 2:
                x = tf.matmul(x, w)
            elif rank == 3:
                shape = tf.shape(x)
                x = tf.reshape(tf.matmul(tf.reshape(x, (-1, shape[-1])), w), (shape[0], shape[1], n_out))
            else:
                x = tf.tensordot(x, w, axes=[[rank - 1], [0]])
        if self.opts.get("with_bias", True):
            x = x + self.param("b", (n_out,), self.opts.get("bias_init", "zeros"))
        if self.activation is None:
            return LayerOutput(x, src.seq_lens, n_out)
        return LayerOutput(self.activation(x), src.seq_lens, n_out, logits=x, activation=self.activation_name)


class SoftmaxLayer(LinearLayer):
    """A linear layer with softmax activation (the classic output layer)."""

    default_activation = "softmax"


class CopyLayer(Layer):
    """The sources as they are (several are concatenated on the feature axis)."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Identity."""
        return self.single_source(sources)


class ActivationLayer(CopyLayer):
    """Only the ``activation`` applied to the sources."""


class DropoutLayer(Layer):
    """Dropout with rate ``dropout`` in training, identity otherwise."""

    dropout_on_input = False

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Drop units during training."""
        src = self.single_source(sources)
        if ctx.train and self.dropout and not src.sparse:
            return src.with_tensor(tf.nn.dropout(src.tensor, rate=self.dropout), dim=src.dim)
        return src


class CombineLayer(Layer):
    """Element-wise ``kind`` (add, sub, mul, average, maximum, minimum) of all sources (broadcasting)."""

    options = frozenset({"kind", "eval"})
    KINDS = ("add", "sub", "mul", "average", "maximum", "minimum", "truediv")

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Combine the sources."""
        kind = self.opts.get("kind", "add")
        if kind not in self.KINDS:
            raise NetworkError(f"layer {self.name!r}: unknown combine kind {kind!r}; known: {', '.join(self.KINDS)}")
        if not sources:
            raise NetworkError(f"layer {self.name!r} (class 'combine') needs at least one source")
        dims = {s.dim for s in sources if s.dim not in (None, 1)}
        if len(dims) > 1:
            desc = ", ".join(f"{s.dim}" for s in sources)
            raise NetworkError(f"layer {self.name!r}: cannot {kind} sources of different feature dims ({desc})")
        tensors = broadcast_sources(sources)
        out = tensors[0]
        for t in tensors[1:]:
            if kind in ("add", "average"):
                out = out + t
            elif kind == "sub":
                out = out - t
            elif kind == "mul":
                out = out * t
            elif kind == "truediv":
                out = out / t
            elif kind == "maximum":
                out = tf.maximum(out, t)
            else:
                out = tf.minimum(out, t)
        if kind == "average":
            out = out / float(len(tensors))
        ref = next((s for s in sources if s.has_time), sources[0])
        return LayerOutput(out, ref.seq_lens, dims.pop() if dims else 1)


def broadcast_sources(sources: list[LayerOutput]) -> list[tf.Tensor]:
    """Dense tensors of the sources, with an axis added after batch to those without time when others have it."""
    any_time = any(s.has_time for s in sources)
    out = []
    for s in sources:
        t = s.dense()
        if any_time and not s.has_time:
            t = tf.expand_dims(t, 1)
        out.append(t)
    return out


class ConcatLayer(Layer):
    """Sources concatenated on the feature axis."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Concatenate."""
        return concat_features(sources, layer=self.name)


class EvalLayer(Layer):
    """A TF expression in ``eval`` using ``source(i)``, ``tf`` and ``np`` (e.g. ``"tf.exp(source(0)) * 2"``)."""

    options = frozenset({"eval", "eval_locals"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        expr = self.opts.get("eval")
        if not isinstance(expr, str) or not expr.strip():
            raise NetworkError(f"layer {self.name!r} (class 'eval') needs 'eval', a TF expression using source(i)")
        try:
            self._code = compile(expr, f"<eval layer {self.name}>", "eval")
        except SyntaxError as exc:
            raise NetworkError(f"layer {self.name!r}: 'eval' is not a valid expression: {exc.msg}") from None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Evaluate the expression."""
        tensors = broadcast_sources(sources) if sources else []

        def source(i: int, auto_convert: bool = True, enforce_batch_major: bool = False) -> tf.Tensor:
            if not 0 <= i < len(tensors):
                raise NetworkError(f"layer {self.name!r}: eval uses source({i}) but has {len(tensors)} source(s)")
            return tensors[i]

        scope = {"source": source, "tf": tf, "np": np, **dict(self.opts.get("eval_locals") or {})}
        try:
            out = eval(self._code, scope)  # noqa: S307 - evaluating the user's config expression is the feature
        except NetworkError:
            raise
        except Exception as exc:  # noqa: BLE001 - report any failure of the user's expression with the layer name
            raise NetworkError(f"layer {self.name!r}: eval {self.opts['eval']!r} failed: {type(exc).__name__}: {exc}") from None
        out = tf.convert_to_tensor(out)
        ref = next((s for s in sources if s.has_time), sources[0] if sources else None)
        seq_lens = ref.seq_lens if ref is not None and out.shape.rank and out.shape.rank >= 2 else None
        return LayerOutput(out, seq_lens, int(out.shape[-1]) if out.shape.rank and out.shape[-1] else None)


class ConstantLayer(Layer):
    """A constant ``value`` (scalar or array) repeated over the batch: (B, *shape), scalars as (B, 1)."""

    options = frozenset({"value", "dtype"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Broadcast the constant over the batch."""
        value = np.asarray(self.opts.get("value", 0.0), dtype=self.opts.get("dtype", "float32"))
        if value.ndim == 0:
            value = value.reshape((1,))
        const = tf.constant(value)
        out = tf.tile(const[None], [ctx.batch_size] + [1] * value.ndim)
        return LayerOutput(out, None, int(value.shape[-1]))


class ReinterpretDataLayer(Layer):
    """The source with changed metadata: ``set_sparse``, ``set_sparse_dim``, ``increase_sparse_dim``."""

    options = frozenset({"set_sparse", "set_sparse_dim", "increase_sparse_dim", "enforce_batch_major",
                         "enforce_time_major", "size_base", "set_axes"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Change how the data is interpreted."""
        src = self.single_source(sources)
        out = LayerOutput(src.tensor, src.seq_lens, src.dim, src.sparse)
        if "size_base" in self.opts:
            out.seq_lens = ctx.get(self.opts["size_base"], layer=self.name).seq_lens
        set_sparse = self.opts.get("set_sparse")
        if set_sparse is True and not src.sparse:
            out = LayerOutput(tf.cast(src.tensor[..., 0] if src.dim == 1 else src.tensor, tf.int32), out.seq_lens,
                              self.opts.get("set_sparse_dim", src.dim), True)
        elif set_sparse is False and src.sparse:
            out = LayerOutput(tf.cast(src.tensor, tf.float32)[..., None], out.seq_lens, 1)
        if self.opts.get("set_sparse_dim") is not None and out.sparse:
            out.dim = int(self.opts["set_sparse_dim"])
        if self.opts.get("increase_sparse_dim"):
            if not out.sparse:
                raise NetworkError(f"layer {self.name!r}: increase_sparse_dim needs a sparse source")
            out.dim = int(out.dim or 0) + int(self.opts["increase_sparse_dim"])
        return out
