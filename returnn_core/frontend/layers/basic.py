"""Basic layers: source, linear/softmax, activation, copy, dropout, combine, concat, constant, reinterpret_data."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, FrameShape, Layer, concat_features
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.activations import get_activation
from returnn_core.frontend.layers.shape import axis_index
from returnn_core.frontend.layers.theano_era import constant as theano_constant
from returnn_core.frontend.layers.theano_era import output as theano_output


class SourceLayer(Layer):
    """The extern data stream ``data_key`` (default ``data``); the Theano-era ``sparse``/``dtype`` must agree with it."""

    options = frozenset({"data_key", "sparse", "dtype", "delay"})
    recurrent = False

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Return the data stream."""
        key = self.opts.get("data_key") or "data"
        out = ctx.net.data_output(key, layer=self.name)
        if self.opts.get("delay", 0):
            raise self.error("delay is not supported; shift the frames with a 'time_shift' layer instead")
        sparse = self.opts.get("sparse")
        if sparse is not None and bool(sparse) != out.sparse:
            raise self.error(f"sparse={sparse} but data {key!r} is {'sparse' if out.sparse else 'dense'}")
        dtype = self.opts.get("dtype")
        if dtype is not None and str(dtype).startswith("int") != out.sparse:
            raise self.error(f"dtype {dtype!r} does not fit data {key!r}, which is {'sparse' if out.sparse else 'dense'}")
        return out


class LinearLayer(Layer):
    """``activation(x W + b)`` (``with_bias``, ``forward_weights_init``, ``bias_init``); a single sparse source is
    an embedding lookup (a row of ``W``)."""

    options = frozenset({"grad_filter"})
    handles_activation = True
    recurrent = False

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Affine transform over the feature axis, then the activation."""
        out = self.affine(sources, ctx)
        threshold = self.opts.get("grad_filter")
        if threshold is not None:
            # RETURNN: a frame whose gradient norm (before the activation) exceeds grad_filter gets no gradient
            out = out.with_tensor(ctx.ops.filter_gradient(out.tensor, float(threshold)), dim=out.dim)
        return self.activate(out, ctx.ops)

    def affine(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """``x W + b`` without the activation."""
        ops = ctx.ops
        n_out = self.require_n_out()
        init = self.opts.get("forward_weights_init", "glorot_uniform")
        if len(sources) == 1 and sources[0].sparse:
            src = sources[0]
            w = self.param("W", (self.feature_dim(src), n_out), init)
            x = ops.gather(w, src.tensor)
        else:
            src = self.single_source(sources)
            w = self.param("W", (self.feature_dim(src), n_out), init)
            x = ops.dot(src.tensor, w)
        if self.opts.get("with_bias", True):
            x = x + self.param("b", (n_out,), self.opts.get("bias_init", "zeros"))
        return LayerOutput(x, src.seq_lens, n_out)


class SoftmaxLayer(LinearLayer):
    """A linear layer with softmax activation (the classic output layer), with the Theano era's output options
    (``softmax_smoothing``, ``compute_priors``, ... in :mod:`~returnn_core.frontend.layers.theano_era.output`)."""

    default_activation = "softmax"
    options = LinearLayer.options | theano_output.OPTIONS | frozenset(theano_output.UNSUPPORTED)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        theano_output.check_options(self)
        name = theano_output.output_function(self)
        if name is not None:
            self.activation_name = name
            self.activation = theano_output.gauss if name == "gauss" else get_activation(name, layer=self.name)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Affine transform (image sources summed over their height first), Theano logit scaling, the output
        function, the priors, then ``copy_output``'s target."""
        pre = self.affine(theano_output.collapse_images(sources, ctx.ops), ctx)
        pre = pre.with_tensor(theano_output.scale_logits(self, pre.tensor, ctx), dim=pre.dim)
        out = theano_output.apply_priors(self, self.activate(pre, ctx.ops), ctx)
        return theano_output.copied_target(self, out, ctx)


class CopyLayer(Layer):
    """The sources as they are (several are concatenated on the feature axis)."""

    recurrent = False

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The sources' shape, their features concatenated."""
        own = super().out_shape_from_opts(opts, sources, layer_shape)
        if own is not None or not sources or any(s is None or not s for s in sources):
            return own
        return (*sources[0][:-1], None if None in [s[-1] for s in sources] else sum(s[-1] for s in sources))

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Identity."""
        return self.single_source(sources)


class ActivationLayer(CopyLayer):
    """Only the ``activation`` applied to the sources."""


class DropoutLayer(Layer):
    """Dropout with rate ``dropout`` in training, identity otherwise."""

    options = frozenset({"dropout_noise_shape"})
    dropout_on_input = False
    recurrent = False

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The source's shape."""
        return CopyLayer.out_shape_from_opts(opts, sources, layer_shape)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Drop units during training."""
        src = self.single_source(sources)
        if ctx.train and self.dropout and not src.sparse:
            return src.with_tensor(ctx.ops.dropout(src.tensor, self.dropout, self._noise_shape(src, ctx.ops)),
                                   dim=src.dim)
        return src

    def _noise_shape(self, src: LayerOutput, ops: Ops) -> list[Any] | None:
        """RETURNN's ``dropout_noise_shape``: axis (``"T"``, ``"F"``, ``"*"`` for the others, ...) -> 1 to share
        the mask along it, None for a mask entry per index."""
        spec = self.opts.get("dropout_noise_shape")
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise self.error(f"dropout_noise_shape must be a dict axis -> 1 or None, got {spec!r}")
        shape = ops.shape(src.tensor)
        default = spec.get("*")
        sizes: list[Any] = [default] * len(shape)
        for axis, size in spec.items():
            if axis != "*":
                sizes[axis_index(src, axis, layer=self.name)] = size
        for size in sizes:
            if size not in (None, 1):
                raise self.error(f"dropout_noise_shape sizes must be 1 or None, got {spec!r}")
        return [dim if size is None else 1 for dim, size in zip(shape, sizes)]


class CombineLayer(Layer):
    """Element-wise ``kind`` (add, sub, mul, truediv, average, maximum, minimum) of all sources (broadcasting);
    ``with_bias`` adds a bias ``b`` (off by default)."""

    options = frozenset({"kind"})
    recurrent = False
    KINDS = ("add", "sub", "mul", "truediv", "average", "maximum", "minimum")

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The broadcast shape of the sources; one whose shape is unknown (on a ``prev:`` cycle) takes the others'."""
        return super().out_shape_from_opts(opts, sources, layer_shape) or elementwise_shape(sources)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Combine the sources."""
        ops = ctx.ops
        kind = self.opts.get("kind", "add")
        if kind not in self.KINDS:
            raise NetworkError(f"layer {self.name!r}: unknown combine kind {kind!r}; known: {', '.join(self.KINDS)}")
        if not sources:
            raise self.error("needs at least one source")
        if any(s.sparse for s in sources):
            raise NetworkError(f"layer {self.name!r}: cannot {kind} sparse sources")
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
                out = ops.maximum(out, t)
            else:
                out = ops.minimum(out, t)
        if kind == "average":
            out = out / float(len(tensors))
        dim = dims.pop() if dims else 1
        if self.opts.get("with_bias", False):  # RETURNN's combine: a bias before the activation, off by default
            out = out + self.param("b", (dim,), self.opts.get("bias_init", "zeros"))
        ref = next((s for s in sources if s.has_time), sources[0])
        return LayerOutput(out, ref.seq_lens, dim)


def elementwise_shape(sources: Sequence[FrameShape | None]) -> FrameShape | None:
    """The shape of an element-wise result of sources that broadcast: the widest known one (None: none known)."""
    known = [s for s in sources if s is not None]
    return max(known, key=lambda s: (len(s), [d or 0 for d in s])) if known else None


def broadcast_sources(sources: list[LayerOutput]) -> list:
    """Dense tensors of the sources, with an axis added after batch to those without time when others have it."""
    any_time = any(s.has_time for s in sources)
    out = []
    for s in sources:
        t = s.dense()
        if any_time and not s.has_time:
            t = s.ops.expand_dims(t, 1)
        out.append(t)
    return out


class ConcatLayer(Layer):
    """Sources concatenated on the feature axis, or, given as ``(layer, axis)`` pairs in ``from``, on that axis."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Concatenate."""
        if not sources:
            raise self.error("needs at least one source")
        axes = [src.axis for src in self.net.description[self.name[len(self.net.prefix):]].sources]
        if any(axis is not None for axis in axes):
            from returnn_core.frontend.layers.time_axis import concat_on_axis

            return concat_on_axis(self, sources, axes, ctx)
        return concat_features(sources, layer=self.name)


class ConstantLayer(Layer):
    """A constant ``value`` (scalar or array) repeated over the batch: (B, *shape), scalars as (B, 1)."""

    options = frozenset({"value", "dtype"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Broadcast the constant over the batch."""
        if self.n_out is not None and sources and sources[0].has_time:  # the Theano era's form: over the frames
            return theano_constant.constant_over_time(self, self.single_source(sources), ctx)
        ops = ctx.ops
        dtype = str(self.opts.get("dtype", "float32"))
        value = np.asarray(self.opts.get("value", 0.0), dtype=dtype)
        if value.ndim == 0:
            value = value.reshape((1,))
        const = ops.expand_dims(ops.constant(value, dtype), 0)
        # a network that reads no data has no batch: RETURNN's batch of 1, which broadcasts
        out = const if ctx.batch_size is None else ops.tile(const, [ctx.batch_size] + [1] * value.ndim)
        return LayerOutput(out, None, int(value.shape[-1]))


class ReinterpretDataLayer(Layer):
    """The source with changed metadata: ``set_sparse``, ``set_sparse_dim``, ``increase_sparse_dim``, ``size_base``;
    ``register_as_extern_data`` makes it usable as the data key of that name for loss targets."""

    options = frozenset({"set_sparse", "set_sparse_dim", "increase_sparse_dim", "enforce_batch_major",
                         "enforce_time_major", "size_base", "set_axes", "register_as_extern_data"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Change how the data is interpreted."""
        ops = ctx.ops
        src = self.single_source(sources)
        key = self.opts.get("register_as_extern_data")
        if key is not None and (not isinstance(key, str) or key in ctx.net.extern_data):
            raise self.error(f"register_as_extern_data must be a new data key, got {key!r} "
                             f"(the data has {', '.join(sorted(ctx.net.extern_data))})")
        out = LayerOutput(src.tensor, src.seq_lens, src.dim, src.sparse)
        if "size_base" in self.opts:
            out.seq_lens = ctx.get(self.opts["size_base"], layer=self.name).seq_lens
        set_sparse = self.opts.get("set_sparse")
        if set_sparse is True and not src.sparse:
            tensor = src.tensor[..., 0] if src.dim == 1 else src.tensor
            out = LayerOutput(ops.cast(tensor, "int32"), out.seq_lens, self.opts.get("set_sparse_dim", src.dim), True)
        elif set_sparse is False and src.sparse:
            out = LayerOutput(ops.expand_dims(ops.cast(src.tensor, "float32"), -1), out.seq_lens, 1)
        if self.opts.get("set_sparse_dim") is not None and out.sparse:
            out.dim = int(self.opts["set_sparse_dim"])
        if self.opts.get("increase_sparse_dim"):
            if not out.sparse:
                raise NetworkError(f"layer {self.name!r}: increase_sparse_dim needs a sparse source")
            out.dim = int(out.dim or 0) + int(self.opts["increase_sparse_dim"])
        return out
