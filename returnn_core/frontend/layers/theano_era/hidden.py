"""``hidden``/``forward`` (NetworkHiddenLayer.ForwardLayer): ``activation(sum_s x_s W_s + b)``, sigmoid by default;
its variants embedding and hidden_shared, and input_base (a hidden layer's weights as a seq)."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.basic import LinearLayer
from returnn_core.network import LayerRef


class HiddenLayer(LinearLayer):
    """The Theano-era feed-forward layer: one weight block per source (sparse sources pick rows), ``input_scale``
    scales the pre-activation, ``sparse_window`` > 1 takes sparse sources with a trailing window axis of that many
    labels and concatenates their embeddings (output dim ``n_out * sparse_window``)."""

    options = frozenset({"sparse_window", "input_scale"})
    default_activation = "sigmoid"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        window = self.opts.get("sparse_window", 1)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise self.error(f"sparse_window must be a positive integer, got {window!r}")
        self.sparse_window = window
        if self.n_out is not None:
            # like RETURNN, the layer's output dim is n_out per window position
            self.units = int(self.n_out)
            self.n_out = self.units * window
        else:
            self.units = None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Sum of the per-source affine maps, then ``input_scale`` and the activation."""
        ops = ctx.ops
        if not sources:
            raise self.error("needs at least one source")
        if self.units is None:
            self.units = self.require_n_out() // self.sparse_window
        units, window = self.units, self.sparse_window
        dims = [self.feature_dim(s) for s in sources]
        w = self.param("W", (sum(dims), units), self.opts.get("forward_weights_init", "glorot_uniform"))
        z = None
        offset = 0
        for src, dim in zip(sources, dims):
            block = w[offset : offset + dim]
            offset += dim
            if src.sparse:
                part = ops.gather(block, src.tensor)
                if window > 1:
                    part = self._flatten_window(src, part, ops)
            else:
                if window > 1:
                    raise self.error(f"sparse_window {window} needs sparse sources")
                part = ops.dot(src.tensor, block)
            if z is not None and src.has_time != sources[0].has_time:
                raise self.error("cannot combine sources with and without a time axis")
            z = part if z is None else z + part
        if self.opts.get("with_bias", True):
            b = self.param("b", (units,), self.opts.get("bias_init", "zeros"))
            z = z + (ops.concat([b] * window, axis=0) if window > 1 else b)
        scale = self.float_opt("input_scale", 1.0)
        if scale != 1.0:
            z = z * np.float32(scale)
        return self.activate(LayerOutput(z, sources[0].seq_lens, units * window), ops)

    def _flatten_window(self, src: LayerOutput, part: Any, ops: Any) -> Any:
        """(B, T, window, units) embeddings as (B, T, window * units)."""
        if ops.ndim(part) != 3 + int(src.has_time) or ops.static_shape(part)[-2] not in (self.sparse_window, None):
            raise self.error(f"sparse_window {self.sparse_window} needs sparse sources with a trailing window axis "
                             f"of {self.sparse_window} labels")
        shape = ops.shape(part)
        return ops.reshape(part, (*shape[:-2], self.sparse_window * self.units))


class EmbeddingLayer(HiddenLayer):
    """``embedding``: ``hidden`` without the bias (RETURNN creates and ignores it; here it does not exist)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opts["with_bias"] = False


class SharedForwardLayer(HiddenLayer):
    """``hidden_shared``: ``hidden`` with the weights and bias of the ``hidden`` layer ``base`` (a layer name, or
    a list of one); ``n_out`` defaults to the base layer's."""

    options = HiddenLayer.options | {"base"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        base = self.opts.get("base")
        if isinstance(base, (list, tuple)) and len(base) == 1:
            base = base[0]
        if not isinstance(base, str) or not base:
            raise self.error(f"needs base, the name of the hidden layer whose parameters it uses, got {base!r}")
        self.base = base
        self.param_owner = self._owner_name(base)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The base layer's affine map on these sources."""
        if self.units is None:
            base = self.net.layers.get(self.base)
            units = getattr(base, "units", None)
            if units is None:
                raise self.error(f"base {self.base!r} must be a hidden layer with n_out (or give n_out here)")
            self.units = int(units)
        return super().call(sources, ctx)


class InputBaseLayer(Layer):
    """``input_base``: the weight rows of the first input of its source (a ``hidden``-like layer with ``W``) as a
    seq of those rows' count frames, the same for every seq (RETURNN's ``W_in[0]`` repeated over the batch); the
    gradient reaches those weights."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The source layer's first weight block, one row per frame."""
        ops = ctx.ops
        spec = self.net.description.layers.get(self.name[len(self.net.prefix):])
        refs = [s for s in spec.sources if isinstance(s, LayerRef)] if spec is not None else []
        if spec is None or len(spec.sources) != 1 or len(refs) != 1:
            raise self.error("needs exactly one source, a hidden layer whose first weights it gives")
        layer = self.net.layers[refs[0].name]
        w = self.net.root.params.get(f"{layer.param_owner}/W")
        layer_spec = self.net.description.layers[refs[0].name]
        if w is None or not layer_spec.sources:
            raise self.error(f"its source {refs[0].name!r} must be a hidden layer (one with weights W)")
        first = layer_spec.sources[0]
        name = first.name if isinstance(first, LayerRef) else ("data" if first.key == "data" else f"data:{first.key}")
        rows = self.feature_dim(ctx.get(name, layer=self.name))
        block = w[:rows]  # (rows, units)
        batch = ops.dynamic_dim(sources[0].tensor, 0)
        out = ops.expand_dims(block, 0) + ops.zeros([batch, 1, 1])
        units = int(ops.static_shape(block)[-1] or 0)
        return LayerOutput(out, ops.cast(ops.zeros([batch]), "int32") + rows, units)
