"""Small Theano-era layers on the feature axis and the gradient: add_zero_rows, remove_rows, bin_op, idx_to_vec,
scale_grad, sum, tanh_to_sigmoid, sigmoid_to_tanh, interp, and ``reverse`` on the time axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.activations import get_activation


def _row_range(layer: Layer, dim: int, *, removing: bool) -> tuple[int, int]:
    """``row_index`` and ``number`` checked against the feature dim ``dim``."""
    row, number = layer.opts.get("row_index"), layer.opts.get("number", 1)
    if not isinstance(row, int) or isinstance(row, bool) or not isinstance(number, int) or number < 0:
        raise layer.error(f"row_index and number must be integers, got {row!r} and {number!r}")
    end = row + number if removing else row
    if not 0 <= row <= end <= dim:
        raise layer.error(f"row_index {row} (number {number}) does not fit the feature dim {dim}")
    return row, number


class AddZeroRowsLayer(Layer):
    """``add_zero_rows``: ``number`` zero features inserted before feature ``row_index``."""

    options = frozenset({"row_index", "number"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Insert zero features."""
        ops = ctx.ops
        src = self.single_source(sources)
        x, dim = src.dense(), self.feature_dim(src)
        row, number = _row_range(self, dim, removing=False)
        zeros = ops.zeros([*ops.shape(x)[:-1], number])
        return src.with_tensor(ops.concat([x[..., :row], zeros, x[..., row:]], axis=-1), dim=dim + number)


class RemoveRowsLayer(Layer):
    """``remove_rows``: ``number`` features removed from feature ``row_index`` on."""

    options = frozenset({"row_index", "number"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Drop features."""
        src = self.single_source(sources)
        x, dim = src.dense(), self.feature_dim(src)
        row, number = _row_range(self, dim, removing=True)
        return src.with_tensor(ctx.ops.concat([x[..., :row], x[..., row + number :]], axis=-1), dim=dim - number)


class BinOpLayer(Layer):
    """``bin_op``: ``op`` ("+", "-", "*", "/" or add, sub, mul, div, maximum, minimum) of exactly two sources of
    one dim, optionally followed by an activation as ``"op:activation"``."""

    options = frozenset({"op"})
    OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Combine the two sources."""
        ops = ctx.ops
        spec = self.opts.get("op")
        if not isinstance(spec, str) or not spec:
            raise self.error("needs 'op', e.g. '+' or 'mul:tanh'")
        op, _, act = spec.partition(":")
        op = self.OPS.get(op, op)
        fns = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
               "div": lambda a, b: a / b, "true_div": lambda a, b: a / b, "maximum": ops.maximum,
               "minimum": ops.minimum}
        if op not in fns:
            raise self.error(f"unknown op {op!r}; known: {', '.join([*self.OPS, *fns])}")
        if len(sources) != 2 or sources[0].dim != sources[1].dim:
            raise self.error(f"needs two sources of one dim, got dims {[s.dim for s in sources]}")
        out = fns[op](sources[0].dense(), sources[1].dense())
        fn = get_activation(act or None, layer=self.name)
        return sources[0].with_tensor(fn(ops, out) if fn else out, dim=sources[0].dim)


class IndexToVecLayer(Layer):
    """``idx_to_vec``: sparse class indices as one-hot vectors of ``n_out``."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """One-hot encode."""
        n_out = self.require_n_out()
        src = self.single_source(sources)
        if not src.sparse:
            raise self.error("needs a sparse source (class indices)")
        return src.with_tensor(ctx.ops.one_hot(src.tensor, n_out), dim=n_out)


class ScaleGradLayer(Layer):
    """``scale_grad``: the identity whose gradient is multiplied by ``scale`` (default 1), or cut off with
    ``disconnect``."""

    options = frozenset({"scale", "disconnect"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Identity forward, scaled gradient backward."""
        ops = ctx.ops
        src = self.single_source(sources)
        x = src.dense()
        if self.opts.get("disconnect"):
            out: Any = ops.stop_gradient(x)
        else:
            scale = np.float32(self.float_opt("scale", 1.0))
            out = x * scale + ops.stop_gradient(x * (np.float32(1.0) - scale))
        return src.with_tensor(out, dim=src.dim)


class ReverseLayer(Layer):
    """``reverse``: each seq's frames in reverse order (RETURNN reverses the padded time axis, which only equals
    this for seqs of the longest length)."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Reverse time per seq."""
        src = self.single_source(sources)
        if not src.has_time:
            raise self.error("needs an input with a time axis")
        return src.with_tensor(ctx.ops.reverse_sequence(src.tensor, src.seq_lens), dim=src.dim, sparse=src.sparse)


class SumLayer(Layer):
    """``sum``: the elementwise sum of all sources (of one dim)."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Add the sources."""
        if not sources or len({s.dim for s in sources}) != 1:
            raise self.error(f"needs sources of one dim, got dims {[s.dim for s in sources]}")
        out = sources[0].dense()
        for src in sources[1:]:
            out = out + src.dense()
        return sources[0].with_tensor(out, dim=sources[0].dim)


class TanhToSigmoidLayer(Layer):
    """``tanh_to_sigmoid``: ``(x + 1) / 2`` of the concatenated sources, from the tanh range to the sigmoid one."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Map [-1, 1] to [0, 1]."""
        src = self.single_source(sources)
        return src.with_tensor((src.dense() + np.float32(1.0)) * np.float32(0.5), dim=src.dim)


class SigmoidToTanhLayer(Layer):
    """``sigmoid_to_tanh``: ``2 x - 1`` of the concatenated sources, from the sigmoid range to the tanh one."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Map [0, 1] to [-1, 1]."""
        src = self.single_source(sources)
        return src.with_tensor(src.dense() * np.float32(2.0) - np.float32(1.0), dim=src.dim)


#: RETURNN draws the feature permutations of polynomial_expansion and random_selection from this fixed seed
PERMUTATION_SEED = 1234


class RbfLayer(Layer):
    """``rbf``: radial basis functions, ``exp(-sigmoid(b) * |x - W[:, j]|^2)`` for each of ``n_out`` centres
    ``W`` (n_in, n_out) with a trained width ``b`` (init 0)."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Distances to the centres, through the Gaussian."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.single_source(sources)
        x = src.dense()
        w = self.param("W", (self.feature_dim(src), n_out), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (n_out,), "zeros")
        # |x|^2 + |W_j|^2 - 2 x W_j, without the (frames, n_in, n_out) difference tensor
        dist = (ops.reduce(ops.square(x), "sum", -1, keepdims=True) + ops.reduce(ops.square(w), "sum", 0)
                - np.float32(2.0) * ops.dot(x, w))
        return src.with_tensor(ops.exp(-ops.sigmoid(b) * dist), dim=n_out)


class LinearCombLayer(Layer):
    """``linear_comb``: each group of ``n_comb`` consecutive features combined linearly, ``W`` (n_out, n_comb),
    plus ``b``; ``n_out`` must be the input dim / ``n_comb``; ``activation`` optional (none by default)."""

    options = frozenset({"n_comb"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Weighted sums of feature groups."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.single_source(sources)
        n_in = self.feature_dim(src)
        comb = self.opts.get("n_comb")
        if isinstance(comb, bool) or not isinstance(comb, int) or comb < 1 or n_in != n_out * comb:
            raise self.error(f"needs n_comb with input dim ({n_in}) = n_out ({n_out}) * n_comb, got n_comb={comb!r}")
        w = self.param("W", (n_out, comb), self.opts.get("forward_weights_init", "glorot_uniform"))
        b = self.param("b", (n_out,), "zeros")
        x = src.dense()
        grouped = ops.reshape(x, (*ops.shape(x)[:-1], n_out, comb))
        return src.with_tensor(ops.reduce(grouped * w, "sum", -1) + b, dim=n_out)


class PolynomialExpansionLayer(Layer):
    """``polynomial_expansion``: [x, p1(x) * x, p2(p1(x) * x) * x, ...] up to degree ``n_degree``, each p a fixed
    permutation of the features (RETURNN's seed); ``n_out`` is ``n_degree`` times the input dim."""

    options = frozenset({"n_degree"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Products of permuted features."""
        ops = ctx.ops
        src = self.single_source(sources)
        n_in = self.feature_dim(src)
        degree = self.opts.get("n_degree")
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            raise self.error(f"needs n_degree, a positive integer, got {degree!r}")
        rng = np.random.RandomState(PERMUTATION_SEED)
        x = src.dense()
        terms = [x]
        for _ in range(1, degree):
            perm = ops.constant(rng.permutation(n_in).astype("int32"), "int32")
            terms.append(ops.gather(terms[-1], perm, axis=ops.ndim(x) - 1) * x)
        return src.with_tensor(ops.concat(terms, axis=-1), dim=n_in * degree)


class RandomSelectionLayer(Layer):
    """``random_selection``: ``n_out`` of the input features, chosen by a fixed permutation (RETURNN's seed)."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pick features."""
        ops = ctx.ops
        n_out = self.require_n_out()
        src = self.single_source(sources)
        n_in = self.feature_dim(src)
        if n_out > n_in:
            raise self.error(f"n_out ({n_out}) must not exceed the input dim ({n_in})")
        perm = np.random.RandomState(PERMUTATION_SEED).permutation(n_in)[:n_out].astype("int32")
        x = src.dense()
        return src.with_tensor(ops.gather(x, ops.constant(perm, "int32"), axis=ops.ndim(x) - 1), dim=n_out)


class InterpolationLayer(Layer):
    """``interp``: the weighted sum of the first sources (each of dim ``n_out``) with per-frame weights from the last
    source (one weight per other source); a last source of one frame weights every frame."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Combine the sources by the last one's weights."""
        n_out = self.require_n_out()
        if len(sources) < 2:
            raise self.error("needs the sources to combine and, last, their weights")
        *parts, weights = sources
        if any(s.sparse or s.dim != n_out for s in parts):
            raise self.error(f"the sources to combine must be dense of dim n_out={n_out}, got {[s.dim for s in parts]}")
        if weights.sparse or weights.dim != len(parts):
            raise self.error(f"the last source gives the weights: needs dim {len(parts)} (one per other source), "
                             f"got {weights.dim}")
        w = weights.tensor
        out = parts[0].tensor * w[..., :1]
        for k, src in enumerate(parts[1:], 1):
            out = out + src.tensor * w[..., k : k + 1]
        return parts[0].with_tensor(out, dim=n_out)
