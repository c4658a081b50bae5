"""``chunking_sublayer`` (NetworkHiddenLayer.ChunkingSublayer): a sub-layer applied to overlapping chunks of each
seq, its outputs overlap-added back with a window over each chunk."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.time import _int, _time_source

_HAMMING = 0.53836


def _chunk_weights(layer: Layer, ops: Ops, offset: Any, length: Any) -> Any:
    """The ``chunk_distribution`` weight of the frame ``offset`` frames into a chunk of ``length`` frames."""
    dist = layer.opts.get("chunk_distribution", "uniform")
    if dist == "uniform":
        return ops.ones_like(offset)
    if dist == "triangle":
        return ops.minimum(offset + 1.0, length - offset)
    span = ops.maximum(length - 1.0, 1.0)
    if dist == "hamming":
        return np.float32(_HAMMING) - np.float32(1.0 - _HAMMING) * ops.cos(np.float32(2 * np.pi) * offset / span)
    if isinstance(dist, str) and dist.startswith("gauss(") and dist.endswith(")"):
        sigma = float(dist[6:-1])
        return ops.exp(np.float32(-0.5) * ops.square((offset - span / 2.0) / (np.float32(sigma) * span / 2.0)))
    raise layer.error(f"chunk_distribution {dist!r}: use 'uniform', 'triangle', 'hamming' or 'gauss(sigma)'")


class ChunkingSublayer(Layer):
    """``chunking_sublayer``: ``sublayer`` (a layer dict or its JSON, ``n_out`` outputs) runs on chunks of
    ``chunk_size`` frames every ``chunk_step`` frames, each seen with ``add_left_context``/``add_right_context`` more
    frames of the seq (their outputs dropped); a frame's output is the sum over the chunks that hold it, weighted
    by ``chunk_distribution`` (uniform, triangle, hamming, gauss(sigma)) over the chunk, divided by the weights'
    sum with ``normalize_output`` (default). ``trainable`` (default False, as in RETURNN) trains the sub-layer's
    parameters (``<layer>/sublayer/...``).

    The chunks start at 0, step, ... until one reaches the end of the padded batch (RETURNN's last start stayed
    below T - chunk_size, leaving the tail frames without a chunk and out of its index); a chunk ends at the end
    of its seq. RETURNN divided by max(weight sum, 1), which equals the weight sum for uniform chunks; here the
    weight sum itself.
    """

    options = frozenset({"sublayer", "chunk_size", "chunk_step", "chunk_distribution", "add_left_context",
                         "add_right_context", "normalize_output"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trainable = bool(self.opts.get("trainable", False))
        spec = self.opts.get("sublayer")
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except ValueError:
                raise self.error(f"sublayer must be a layer dict (or its JSON), got {spec!r}") from None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("class"), str):
            raise self.error(f"needs sublayer, a layer dict with a 'class', got {spec!r}")
        n_out = self.require_n_out()
        if spec.get("n_out", n_out) != n_out:
            raise self.error(f"the sublayer's n_out {spec['n_out']} must be this layer's n_out {n_out}")
        opts = {k: v for k, v in spec.items() if k != "class"}
        opts.update(n_out=n_out, trainable=self.trainable)
        cls = self.net.manager.layers.get(spec["class"], backend=self.net.backend)
        self.sub = cls(f"{self.name}/sublayer", spec["class"], opts, self.net)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Chunks through the sub-layer, overlap-added back."""
        ops = ctx.ops
        src = _time_source(self, sources)
        if src.sparse or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        size, step = _int(self, "chunk_size", None, 1), _int(self, "chunk_step", None, 1)
        left, right = _int(self, "add_left_context", 0, 0), _int(self, "add_right_context", 0, 0)
        width = size + left + right
        x = src.tensor * ops.expand_dims(src.mask(), -1)
        dim = self.feature_dim(src)
        batch = ops.dynamic_dim(x, 0)
        time = ops.cast(ops.dynamic_dim(x, 1), "int32")
        lens = ops.cast(src.seq_lens, "int32")
        n_chunks = ops.floordiv(ops.maximum(time - size, 0) + (step - 1), step) + 1
        starts = ops.arange(n_chunks) * step  # (N,)
        first = ops.maximum(starts - left, 0)  # the chunk's first frame, context included
        end = ops.minimum(starts + (size + right), time)
        pos = ops.expand_dims(first, 1) + ops.expand_dims(ops.arange(width), 0)  # (N, W)
        idx = ops.reshape(ops.minimum(pos, time - 1), (-1,))
        chunks = ops.reshape(ops.gather(x, idx, axis=1), (batch * n_chunks, width, dim))  # chunk-major per seq
        chunk_lens = ops.minimum(ops.expand_dims(end, 0), ops.expand_dims(lens, 1)) - ops.expand_dims(first, 0)
        chunk_lens = ops.reshape(ops.minimum(ops.maximum(chunk_lens, 0), width), (-1,))
        y = self.sub([LayerOutput(chunks, chunk_lens, dim)], ctx)
        n_out = self.require_n_out()
        y = ops.reshape(y.dense(), (batch, -1, n_out))  # (B, N * W, n_out)
        # the weight of chunk c's position j for the output frame first_c + j: 0 in the context and past the seq
        length = ops.cast(ops.minimum(starts + size, time) - starts, "float32")
        offset = ops.cast(pos - ops.expand_dims(starts, 1), "float32")  # (N, W)
        inside = ops.cast(ops.greater(offset, -0.5), "float32") * ops.cast(
            ops.less(offset, ops.expand_dims(length, 1)), "float32")
        weight = _chunk_weights(self, ops, offset, ops.expand_dims(length, 1)) * inside  # (N, W)
        present = ops.sequence_mask(lens, time, "float32")  # (B, T)
        frame_present = ops.gather(present, ops.reshape(ops.minimum(pos, time - 1), (-1,)), axis=1)  # (B, N * W)
        weights = ops.reshape(weight, (1, -1)) * frame_present
        onehot = ops.cast(ops.equal(ops.expand_dims(ops.arange(time), 1), ops.reshape(pos, (1, -1))),
                          "float32")  # (T, N * W)
        scatter = ops.expand_dims(onehot, 0) * ops.expand_dims(weights, 1)  # (B, T, N * W)
        out = ops.batch_matmul(scatter, y)
        total = ops.reduce(scatter, "sum", -1, keepdims=True)
        if self.opts.get("normalize_output", True):
            out = out / ops.maximum(total, np.float32(1e-20)) * ops.cast(ops.greater(total, 0.0), "float32")
        return LayerOutput(out * ops.expand_dims(present, -1), src.seq_lens, n_out)
