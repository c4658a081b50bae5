"""The 2D LSTMs of RETURNN's Theano era (the manual's NetworkTwoDLayer): ``mdlstm`` (TwoDLSTMLayer) and
``deep_lstm`` (DeepLSTM).

RETURNN ran these as CUDA-only ops; here they are one scan over the anti-diagonals of the image (the cells on one
anti-diagonal only need the previous one), so they run on every backend. The cell at (y, x) gets the states of
(y-1, x) ("up") and (y, x-1) ("left"); per direction the parameters are RETURNN's ``W<d>`` (n_in, 5n), ``U<d>``
(n, 5n) on the left output, ``V<d>`` (n, 5n) on the up output and ``b<d>`` (5n) with the gate blocks
[input, forget, lambda, output, cell input]:

    c = i * tanh(z) + f * lambda * c_up + f * (1 - lambda) * c_left,   h = o * tanh(c)

Directions flip the padded image (as RETURNN's kernel); state and output are 0 outside each image, so every image
starts in its own corner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.twod import TwoDToOneDLayer, image, image_output

#: per direction, whether (width, height) are flipped; RETURNN's order of its 1, 2 (x flipped) and 4 directions
_FLIPS = {1: [(False, False)], 2: [(False, False), (True, False)],
          4: [(False, False), (False, True), (True, False), (True, True)]}
_FORGET_BIAS = 1.0  # RETURNN's initial forget gate bias (the lambda gate's is 0)


class TwoDLstmParams:
    """One direction's parameters ``W``, ``U`` (left), ``V`` (up) and ``b`` as RETURNN named them."""

    def __init__(self, layer: Layer, n_in: int, n: int, suffix: str) -> None:
        # RETURNN's Xavier variant counts the 5n columns four times: limit sqrt(6 / (rows + 20 n))
        self.w = layer.param(f"W{suffix}", (n_in, 5 * n), f"uniform:{math.sqrt(6.0 / (n_in + 20 * n))}")
        self.u = layer.param(f"U{suffix}", (n, 5 * n), f"uniform:{math.sqrt(6.0 / (21 * n))}")
        self.v = layer.param(f"V{suffix}", (n, 5 * n), f"uniform:{math.sqrt(6.0 / (21 * n))}")
        self.b = layer.param(f"b{suffix}", (5 * n,), _bias_init(n))


def _bias_init(n: int) -> np.ndarray:
    """Zeros with the forget gate block at RETURNN's 1.0."""
    value = np.zeros(5 * n, "float32")
    value[n:2 * n] = _FORGET_BIAS
    return value


def two_d_lstm(ops: Ops, x: Any, widths: Any, heights: Any, params: Sequence[TwoDLstmParams],
               flips: Sequence[tuple[bool, bool]], n: int) -> list[Any]:
    """Each direction's 2D LSTM output (B, W, H, n) over the image batch ``x`` (B, W, H, C), 0 outside each image."""
    mask = image_output(ops, ops.ones_like(x[:, :, :, :1]), widths, heights, 1).tensor  # (B, W, H, 1)
    zs, masks = [], []
    for p, flip in zip(params, flips):
        zs.append(_flip(ops, ops.dot(x, p.w) + p.b, flip))
        masks.append(_flip(ops, mask, flip))
    k = len(params)
    width, height = ops.dynamic_dim(x, 1), ops.dynamic_dim(x, 2)
    # diagonal d holds the cells (y, d - y): gather them along the width axis
    diag = ops.expand_dims(ops.arange(width + height - 1), 1)  # (D, 1)
    col = diag - ops.expand_dims(ops.arange(height), 0)  # (D, H): x of the cell in row y of diagonal d
    inside = ops.cast(ops.less(col, ops.cast(width, "int32")), "float32") * ops.cast(ops.greater(col, -1), "float32")
    col = ops.minimum(ops.maximum(col, 0), ops.cast(width, "int32") - 1)
    z_diag = _gather_width(ops, ops.concat(zs, axis=3), col)  # (B, D, H, k*5n)
    m_diag = _gather_width(ops, ops.concat(masks, axis=3), col) * ops.expand_dims(ops.expand_dims(inside, 0), 3)

    batch = ops.dynamic_dim(x, 0)
    # the directions ride on a leading axis, so one step holds each gate op once: (D, k, B, H, ...)
    z_diag = ops.transpose(ops.reshape(z_diag, (batch, -1, height, k, 5 * n)), (1, 3, 0, 2, 4))
    m_diag = ops.expand_dims(ops.transpose(m_diag, (1, 3, 0, 2)), 4)

    def step(z_t: Any, m_t: Any, c: Any, h: Any, u: Any, v: Any) -> tuple[Any, tuple[Any, Any]]:
        # on the previous diagonal, row y holds the left neighbour (y, x-1) and row y-1 the upper one (y-1, x)
        c_up, h_up = _shift_down(ops, c), _shift_down(ops, h)
        rec = ops.batch_matmul(ops.reshape(h, (k, -1, n)), u) + ops.batch_matmul(ops.reshape(h_up, (k, -1, n)), v)
        zz = z_t + ops.reshape(rec, ops.shape(z_t))
        gates, cell_in = ops.sigmoid(zz[..., :4 * n]), ops.tanh(zz[..., 4 * n:])
        gate_i, forget, lam, gate_o = ops.split(gates, (n,) * 4, axis=-1)
        c_new = (gate_i * cell_in + forget * lam * c_up + forget * (1.0 - lam) * c) * m_t
        h_new = gate_o * ops.tanh(c_new) * m_t
        return h_new, (c_new, h_new)

    zero = ops.zeros([k, batch, height, n])
    ys, _ = ops.scan(step, [z_diag, m_diag], [zero, zero],
                     non_sequences=[ops.stack([p.u for p in params]), ops.stack([p.v for p in params])])
    ys = ops.reshape(ops.transpose(ys, (2, 0, 3, 1, 4)), (batch, -1, height, k * n))  # (B, D, H, k*n)
    cell_diag = ops.expand_dims(ops.arange(width), 1) + ops.expand_dims(ops.arange(height), 0)  # (W, H): x + y
    y = _gather_width(ops, ys, cell_diag)
    return [_flip(ops, y[:, :, :, i * n:(i + 1) * n], flip) for i, flip in enumerate(flips)]


def _gather_width(ops: Ops, x: Any, index: Any) -> Any:
    """``x`` (B, W, H, F) at width positions ``index`` (W', H) per row: (B, W', H, F)."""
    idx = ops.expand_dims(ops.expand_dims(index, 0), 3)
    shape = ops.shape(x)
    idx = idx + ops.cast(ops.zeros([shape[0], ops.dynamic_dim(index, 0), shape[2], shape[3]]), "int32")
    return ops.take_along_axis(x, idx, axis=1)


def _shift_down(ops: Ops, s: Any) -> Any:
    """(k, B, H, n) moved one row down (row y gets row y-1, row 0 zeros): each cell's upper neighbour."""
    return ops.concat([ops.zeros_like(s[:, :, :1]), s[:, :, :-1]], axis=2)


def _flip(ops: Ops, x: Any, flip: tuple[bool, bool]) -> Any:
    """(B, W, H, ...) with the padded width and/or height reversed."""
    for axis, on in ((1, flip[0]), (2, flip[1])):
        if on:
            size = ops.dynamic_dim(x, axis)
            x = ops.gather(x, ops.cast(size, "int32") - 1 - ops.arange(size), axis=axis)
    return x


def _directions(layer: Layer) -> int:
    value = layer.opts.get("directions", 4)
    if value not in (1, 2, 4) or isinstance(value, bool):
        raise layer.error(f"directions must be 1, 2 or 4, got {value!r}")
    return int(value)


class _TwoDLstmBase(Layer):
    """A layer running the 2D LSTM: ``n_out`` counts its cells, the output dim follows from how it combines them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # n_out counts the cells; the output dim grows with concat and pad_N, as RETURNN's n_out attribute did
        self.cells, self.n_out = self.n_out, None

    def run_directions(self, ops: Ops, x: Any, widths: Any, heights: Any, n_in: int, n_dirs: int) -> tuple[list[Any], int]:
        """The 2D LSTM over the images ``x`` from the first ``n_dirs`` corners (parameters per direction); the
        outputs per direction and the cell count."""
        if self.cells is None:
            raise self.error("needs 'n_out'")
        n = int(self.cells)
        params = [TwoDLstmParams(self, n_in, n, str(d + 1)) for d in range(n_dirs)]
        return two_d_lstm(ops, x, widths, heights, params, _FLIPS[n_dirs], n), n


class TwoDLstmLayer(_TwoDLstmBase):
    """``mdlstm``: the 2D LSTM of ``n_out`` cells over an image (e.g. from ``1Dto2D``) from ``directions`` (4: each
    corner, 2: top-left and top-right, 1: top-left) combined by ``projection`` "average" or "concat" (per cell its
    directions, n_out * directions); ``collapse_output`` (False) reduces the rows as ``2Dto1D``'s ``collapse``
    ("mean", "sum"/True, "flatten", "pad_N")."""

    options = frozenset({"collapse_output", "directions", "projection", "base"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n_dirs = _directions(self)
        self.projection = self.opts.get("projection", "average")
        if self.projection not in ("average", "concat"):
            raise self.error(f"projection must be 'average' or 'concat', got {self.projection!r}")
        if self.opts.get("base"):
            raise self.error("base (sharing another mdlstm's weights) is not supported; use reuse_params")
        collapse = self.opts.get("collapse_output", False)
        if collapse == "conv":
            raise self.error("collapse_output 'conv' is not supported; use 'mean', 'sum', 'flatten' or 'pad_N'")
        self.collapse = TwoDToOneDLayer(self.name, self.layer_class, {"collapse": collapse}, self.net) \
            if collapse is not False else None

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[Any], layer_shape: Any) -> Any:
        """The feature dim when collapsed to frames (the image's frames are (height, dim): unknown here)."""
        return None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The 2D LSTM over each image from each direction, combined."""
        ops = ctx.ops
        src = self.single_source(sources)
        x, widths, heights = image(src, ops, self)
        ys, n = self.run_directions(ops, x, widths, heights, self.feature_dim(src), self.n_dirs)
        if self.projection == "average":
            y, dim = ys[0] if len(ys) == 1 else sum(ys[1:], ys[0]) * (1.0 / len(ys)), n
        else:  # RETURNN stacks the directions on a new last axis: feature c * directions + d
            y, dim = ops.stack(ys, axis=4), n * len(ys)
            y = ops.reshape(y, (*ops.shape(y)[:3], dim))
        out = image_output(ops, y, widths, heights, dim)
        return self.collapse.call([out], ctx) if self.collapse is not None else out


class DeepLstmLayer(_TwoDLstmBase):
    """``deep_lstm``: each frame of the (concatenated) sources repeated ``depth`` times as the rows of an image, a
    2D LSTM of ``n_out`` cells from the top-left and the top-right corner over it, its last row as the output:
    both directions' outputs concatenated (n_out * 2)."""

    options = frozenset({"depth"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        depth = self.opts.get("depth")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise self.error(f"needs depth, a positive integer, got {depth!r}")
        self.depth = depth

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[Any], layer_shape: Any) -> Any:
        """Both directions' cells."""
        n_out = opts.get("n_out")
        return (2 * n_out,) if isinstance(n_out, int) and not isinstance(n_out, bool) else None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The 2D LSTM over the frames stacked ``depth`` high."""
        ops = ctx.ops
        src = self.single_source(sources)
        if not src.has_time or src.feature_ndim != 1:
            raise self.error("needs (batch, time, feature) input")
        x = ops.tile(ops.expand_dims(src.dense(), 2), (1, 1, self.depth, 1))
        widths = ops.cast(src.seq_lens, "int32")
        heights = ops.cast(ops.zeros_like(x[:, 0, 0, 0]), "int32") + self.depth
        ys, n = self.run_directions(ops, x, widths, heights, self.feature_dim(src), 2)
        return LayerOutput(ops.concat([y[:, :, self.depth - 1] for y in ys], axis=2), widths, 2 * n)
