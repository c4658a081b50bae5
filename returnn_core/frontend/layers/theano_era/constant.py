"""The Theano era's form of ``constant`` (NetworkHiddenLayer.ConstantLayer): the value repeated over the frames."""

from __future__ import annotations

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput


def constant_over_time(layer: Layer, src: LayerOutput, ctx: Context) -> LayerOutput:
    """``value`` (a scalar or a vector of 1 or ``n_out`` entries) in every present frame of ``src`` as
    (B, T, n_out) of ``dtype`` (default float32); padded frames are 0."""
    ops = ctx.ops
    n_out = layer.require_n_out()
    dtype = str(layer.opts.get("dtype", "float32"))
    try:
        value = np.asarray(layer.opts.get("value", 0.0), dtype=dtype)
    except (TypeError, ValueError):
        raise layer.error(f"value {layer.opts.get('value')!r} is not a {dtype} scalar or vector") from None
    if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, n_out)):
        raise layer.error(f"value must be a scalar or a vector of 1 or n_out={n_out} entries, got shape {value.shape}")
    row = ops.constant(np.broadcast_to(value, (n_out,)).copy(), dtype)
    mask = ops.cast(ops.expand_dims(src.mask(), -1), dtype)
    return LayerOutput(mask * row, src.seq_lens, n_out)
