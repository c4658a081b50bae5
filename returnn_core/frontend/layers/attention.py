"""Attention over an encoder output (``base``) from RETURNN's TF rec layers: ``dot_attention`` on the global
attention context base (``base``, ``base_ctx``) and ``gauss_window_attention``.

Written for one decoder step (the query has no time axis: (B, D) -> (B, n)); a query with a time axis attends
once per query frame ((B, Tq, D) -> (B, Tq, n), the query's seq lengths).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, FrameShape, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput


class AttentionBaseLayer(Layer):
    """An attention layer over ``base`` (a layer with time): its output has ``base``'s feature dim."""

    options = frozenset({"base"})

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """A weighted sum of ``base`` frames: the base's feature dim."""
        base = layer_shape(opts["base"]) if isinstance(opts.get("base"), str) else None
        return super().out_shape_from_opts(opts, sources, layer_shape) or (base[-1:] if base else None)

    def base_output(self, ctx: Context, key: str = "base") -> LayerOutput:
        """The layer named by option ``key``, which must have a time axis and dense features (B, T, D)."""
        name = self.opts.get(key)
        if not isinstance(name, str):
            raise self.error(f"needs {key!r}, the name of a layer with a time axis")
        out = ctx.get(name, layer=self.name)
        if not out.has_time or out.sparse or out.ndim != 3:
            raise self.error(f"{key} layer {name!r} must be dense (batch, time, feature)")
        return out

    def check_n_out(self, dim: int | None) -> None:
        """``n_out``, if given, must be the base's dim (the output is a weighted sum of base frames)."""
        if self.n_out is not None and dim is not None and self.n_out != dim:
            raise self.error(f"the attention output has the base's dim {dim}, but n_out is {self.n_out}")


class GlobalAttentionContextBaseLayer(AttentionBaseLayer):
    """Global attention that compares the query with ``base_ctx`` (B, T, D) to weight the frames of ``base``."""

    options = frozenset({"base", "base_ctx", "energy_factor"})

    def attend(self, ctx: Context, energy: Any, base: LayerOutput) -> Any:
        """Softmax of ``energy`` (B, [Tq,] T) over the base's present frames, then the weighted sum of ``base``;
        ``energy_factor`` scales the energies first (a softmax temperature, e.g. 1/sqrt(dim))."""
        ops = ctx.ops
        if self.opts.get("energy_factor") is not None:
            energy = energy * np.float32(self.float_opt("energy_factor", 1.0))
        mask = base.mask("bool")
        if ops.ndim(energy) == 3:
            mask = ops.expand_dims(mask, 1)
        # RETURNN 1.0's dot_attention took the softmax over padding frames too; the intent is attention over
        # each seq's own frames, so padding gets no weight here
        weights = ops.softmax(ops.where(mask, energy, np.float32(-1e30)), axis=-1)
        if ops.ndim(energy) == 2:
            return ops.reduce(ops.expand_dims(weights, -1) * base.tensor, "sum", 1)
        return ops.batch_matmul(weights, base.tensor)


class DotAttentionLayer(GlobalAttentionContextBaseLayer):
    """Classic global attention: the dot product of the query (the source) and ``base_ctx`` as energy."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Attend from the query to ``base``."""
        ops = ctx.ops
        query = self.single_source(sources)
        base, base_ctx = self.base_output(ctx), self.base_output(ctx, "base_ctx")
        self.check_n_out(base.dim)
        if query.sparse or query.ndim != 2 + int(query.has_time):
            raise self.error("the query (its source) must be dense (batch, feature) or (batch, time, feature)")
        if query.dim != base_ctx.dim:
            raise self.error(f"the query dim {query.dim} differs from the dim {base_ctx.dim} of base_ctx")
        if query.has_time:
            energy = ops.batch_matmul(query.tensor, ops.transpose(base_ctx.tensor, (0, 2, 1)))  # (B, Tq, T)
        else:
            energy = ops.reduce(ops.expand_dims(query.tensor, 1) * base_ctx.tensor, "sum", -1)  # (B, T)
        return LayerOutput(self.attend(ctx, energy, base), query.seq_lens, base.dim)


def gauss_window(ops: Ops, t: Any, base: LayerOutput, window_size: int, std: float,
                 offsets: np.ndarray | None) -> Any:
    """Frames ``round(t) - window_size // 2 + [0, window_size)`` of ``base`` (indices clipped into each seq),
    weighted by the Gauss density N(idx; t + offset, std) of their unclipped index; ``t`` (B, N) float32.

    Returns (B, N, n) without ``offsets``, else (B, N, len(offsets), n).
    """
    x = base.tensor
    batch, time = ops.dynamic_dim(x, 0), ops.dynamic_dim(x, 1)
    start = ops.cast(ops.round(t), "int32") - window_size // 2  # (B, N)
    idx = ops.expand_dims(start, -1) + ops.arange(window_size)  # (B, N, W)
    last = ops.reshape(ops.cast(base.seq_lens, "int32") - 1, [-1, 1, 1])
    clipped = ops.minimum(ops.minimum(ops.maximum(idx, 0), ops.cast(time, "int32") - 1), last)
    flat = ops.reshape(x, [-1, base.dim])
    rows = ops.reshape(ops.arange(batch) * time, [-1, 1, 1])
    frames = ops.gather(flat, clipped + rows, axis=0)  # (B, N, W, n)
    centre = ops.expand_dims(t, -1)  # (B, N, 1)
    pos = ops.cast(idx, "float32")
    if offsets is not None:
        centre = ops.expand_dims(centre, -1) + ops.constant(offsets)  # (B, N, 1, I)
        pos = ops.expand_dims(pos, -1)  # (B, N, W, 1)
    norm = np.float32(1.0 / (std * math.sqrt(2.0 * math.pi)))
    weights = ops.exp(-ops.square(centre - pos) / np.float32(2.0 * std * std)) * norm  # (B, N, W[, I])
    if offsets is None:
        return ops.reduce(ops.expand_dims(weights, -1) * frames, "sum", 2)
    return ops.batch_matmul(ops.transpose(weights, (0, 1, 3, 2)), frames)  # (B, N, I, n)


class GaussWindowAttentionLayer(AttentionBaseLayer):
    """A Gauss window (``window_size`` frames, ``std``) over ``base`` around the location given by the source,
    (B, 1) or (B, T, 1) float; with ``inner_size``, one window per shifted location ``t + (i - (inner_size - 1) / 2)
    * inner_size_step``, on an extra axis before the feature."""

    options = frozenset({"base", "window_size", "std", "inner_size", "inner_size_step"})

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The base's feature dim, after an ``inner_size`` axis if there is one."""
        shape = super().out_shape_from_opts(opts, sources, layer_shape)
        inner = opts.get("inner_size")
        if shape is None or isinstance(inner, bool) or not isinstance(inner, int):
            return shape
        return (inner, shape[-1])

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Weighted sum of the base frames in the window."""
        ops = ctx.ops
        loc = self.single_source(sources)
        base = self.base_output(ctx)
        window = self.opts.get("window_size")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise self.error(f"needs window_size, a positive int, got {window!r}")
        std = self.float_opt("std", 1.0)
        if std <= 0:
            raise self.error(f"std must be positive, got {std}")
        inner = self.opts.get("inner_size")
        offsets = None
        if inner is not None:
            if isinstance(inner, bool) or not isinstance(inner, int) or inner < 1:
                raise self.error(f"inner_size must be a positive int, got {inner!r}")
            step = self.float_opt("inner_size_step", 0.5)
            # RETURNN 1.0 computed the shifts as i * step - inner_size / 2, which is not centred and contradicts its
            # own example ([t-1, t-0.5, t, t+0.5, t+1] for inner_size 5, step 0.5); this follows the example
            offsets = ((np.arange(inner) - (inner - 1) / 2.0) * step).astype(np.float32)
        if loc.sparse or loc.dim != 1 or loc.ndim != 2 + int(loc.has_time):
            raise self.error("its source must be the location, (batch, 1) or (batch, time, 1) float")
        t = loc.tensor[..., 0] if loc.has_time else loc.tensor  # (B, N) with N = Tq or 1
        out = gauss_window(ops, ops.cast(t, "float32"), base, window, std, offsets)
        if not loc.has_time:
            out = ops.squeeze(out, 1)
        return LayerOutput(out, loc.seq_lens, base.dim)


class SoftmaxOverSpatialLayer(Layer):
    """RETURNN's ``softmax_over_spatial``: softmax of its source over the time axis, each seq's padding excluded
    (weight 0); ``energy_factor`` scales the energies first. Typically attention weights (B, T, 1) in a rec loop."""

    options = frozenset({"energy_factor"})

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The source's shape."""
        own = super().out_shape_from_opts(opts, sources, layer_shape)
        return own or (sources[0] if len(sources) == 1 else None)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Masked softmax over axis 1."""
        ops = ctx.ops
        src = self.single_source(sources)
        if src.sparse or not src.has_time:
            raise self.error("needs a dense input with a time axis (the axis the softmax runs over)")
        energy = src.tensor
        if "energy_factor" in self.opts:
            energy = energy * np.float32(self.float_opt("energy_factor", 1.0))
        mask = src.mask("bool")
        for _ in range(ops.ndim(energy) - 2):
            mask = ops.expand_dims(mask, -1)
        weights = ops.softmax(ops.where(mask, energy, np.float32(-1e30)), axis=1)
        return LayerOutput(ops.where(mask, weights, np.float32(0.0)), src.seq_lens, src.dim)


class GenericAttentionLayer(AttentionBaseLayer):
    """RETURNN's ``generic_attention``: ``base`` (B, T, ..., D) summed over time, weighted by the layer
    ``weights`` (B, T) or (B, T, 1) (a trailing 1 is squeezed away, ``auto_squeeze``): (B, ..., D)."""

    options = frozenset({"base", "weights", "auto_squeeze"})

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The base's frame shape without its time axis."""
        own = Layer.out_shape_from_opts(opts, sources, layer_shape)
        base = layer_shape(opts["base"]) if isinstance(opts.get("base"), str) else None
        return own or (tuple(base[1:]) if base and len(base) > 1 else None)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The weighted sum over the base's time axis."""
        ops = ctx.ops
        name = self.opts.get("weights")
        if not isinstance(name, str):
            raise self.error("needs 'weights', the name of a layer of attention weights (batch, time[, 1])")
        weights = ctx.get(name, layer=self.name)
        base_name = self.opts.get("base")
        if not isinstance(base_name, str):
            raise self.error("needs 'base', the name of a layer with a time axis")
        base = ctx.get(base_name, layer=self.name)
        if not base.has_time or base.sparse or not weights.has_time or weights.sparse:
            raise self.error(f"weights {name!r} and base {base_name!r} must be dense with a time axis")
        w = weights.tensor
        if self.opts.get("auto_squeeze", True) and ops.ndim(w) == 3 and weights.dim == 1:
            w = w[..., 0]
        if ops.ndim(w) != 2:
            raise self.error(f"weights {name!r} must be (batch, time) or (batch, time, 1)")
        for _ in range(ops.ndim(base.tensor) - 2):
            w = ops.expand_dims(w, -1)
        # no masking, as RETURNN: softmax_over_spatial already gives padding frames weight 0
        out = ops.reduce(w * base.tensor, "sum", 1)
        return LayerOutput(out, None, base.dim)
