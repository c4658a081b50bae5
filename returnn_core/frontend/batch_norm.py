"""Batch normalisation as RETURNN's ``LayerBase.batch_norm``: the ``batch_norm`` layer and every layer's option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_core.frontend._output import LayerOutput

if TYPE_CHECKING:
    from returnn_core.frontend._layer import Context, Layer

#: the options of :func:`batch_norm` (the ``batch_norm`` layer's own options, or the keys of a layer's dict)
BATCH_NORM_OPTIONS = frozenset({"momentum", "epsilon", "use_shift", "use_std", "update_sample_only_in_training",
                                "masked_time"})
#: RETURNN's epsilon (the manual's ``batch_norm(..., epsilon=0.001)``)
DEFAULT_EPSILON = 1e-3
#: weight of the current batch in the moving averages (RETURNN's later default; see :func:`batch_norm`)
DEFAULT_MOMENTUM = 0.1


def batch_norm(layer: Layer, src: LayerOutput, ctx: Context, opts: Mapping[str, Any], *,
               param_prefix: str = "") -> LayerOutput:
    """``src`` normalised over all axes but the feature: batch statistics in training (padding left out unless
    ``masked_time=False``), the moving ``mean``/``variance`` otherwise; then ``gamma`` and ``beta``.

    The moving averages take ``momentum`` of each new batch. RETURNN 1.0 defaulted that weight to 0.99 (almost
    only the last batch, a bug RETURNN later fixed to 0.1); we use the fixed default.
    """
    unknown = sorted(set(opts) - BATCH_NORM_OPTIONS)
    if unknown:
        raise layer.error(f"unknown batch_norm option(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(BATCH_NORM_OPTIONS))}")
    ops = ctx.ops
    dim = layer.feature_dim(src)
    x = src.dense()
    mean_var = layer.param(f"{param_prefix}mean", (dim,), "zeros", trainable=False)
    var_var = layer.param(f"{param_prefix}variance", (dim,), "ones", trainable=False)
    if ctx.train:
        rank = ops.ndim(x)
        mask = None
        if src.has_time and opts.get("masked_time", True):
            mask = src.mask()
            for _ in range(rank - 2):
                mask = ops.expand_dims(mask, -1)
        mean, var = ops.moments(x, list(range(rank - 1)), mask)
        m = layer_float(layer, opts, "momentum", DEFAULT_MOMENTUM)
        keep, take = np.float32(1.0 - m), np.float32(m)
        ops.assign(mean_var, mean_var * keep + ops.stop_gradient(mean) * take)
        ops.assign(var_var, var_var * keep + ops.stop_gradient(var) * take)
    else:
        mean, var = mean_var, var_var
    out = (x - mean) * ops.rsqrt(var + np.float32(layer_float(layer, opts, "epsilon", DEFAULT_EPSILON)))
    if opts.get("use_std", True):
        out = out * layer.param(f"{param_prefix}gamma", (dim,), "ones")
    if opts.get("use_shift", True):
        out = out + layer.param(f"{param_prefix}beta", (dim,), "zeros")
    return LayerOutput(out, src.seq_lens, dim)


def layer_float(layer: Layer, opts: Mapping[str, Any], key: str, default: float) -> float:
    """A numeric batch-norm option; an error naming the layer if it is not a number."""
    value = opts.get(key, default)
    try:
        return float(default if value is None else value)
    except (TypeError, ValueError):
        raise layer.error(f"batch_norm option {key!r} must be a number, got {value!r}") from None
