"""Theano-era layers that draw random numbers: corruption (additive noise), random_route (one source at random
in training, their mixture otherwise) and blur (a random 2-D kernel over time and features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput


class CorruptionLayer(Layer):
    """``corruption``: the (concatenated) sources plus noise, ``noise`` "gaussian" (std ``p``) or "binomial"
    (1 with probability ``p``), then clipped to [0, 1] with ``clip``. As in RETURNN the noise is drawn in every
    pass, also in evaluation and forwarding."""

    options = frozenset({"noise", "p", "clip"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Add noise."""
        ops = ctx.ops
        src = self.single_source(sources)
        x = src.dense()
        p = self.float_opt("p", 0.0)
        noise = self.opts.get("noise", "gaussian")
        if noise == "gaussian":
            out = x + ops.random_normal(ops.shape(x), stddev=p) if p else x
        elif noise == "binomial":
            out = x + ops.cast(ops.less(ops.random_uniform(ops.shape(x)), p), "float32")
        else:
            raise self.error(f"noise {noise!r}: use 'gaussian' or 'binomial'")
        if self.opts.get("clip"):
            out = ops.clip(out, 0.0, 1.0)
        return src.with_tensor(out, dim=src.dim)


class RandomRouteLayer(Layer):
    """``random_route``: in training one of the sources (of one dim), source k with probability ``p[k]`` (one
    draw per batch; default uniform; one entry fewer than sources: the last gets the rest); otherwise source
    ``test_route`` if >= 0, else the sources weighted by ``p``."""

    options = frozenset({"p", "test_route"})

    def probabilities(self, n: int) -> list[float]:
        """``p`` completed and checked for ``n`` sources."""
        p = self.opts.get("p")
        if p is None:
            return [1.0 / n] * n
        p = [p] if isinstance(p, (int, float)) and not isinstance(p, bool) else p
        if not isinstance(p, (list, tuple)) or not all(isinstance(v, (int, float)) for v in p):
            raise self.error(f"p must be a number or a list of numbers, got {p!r}")
        p = [float(v) for v in p]
        if len(p) == n - 1:
            p.append(1.0 - sum(p))
        if len(p) != n or any(v < 0 for v in p) or abs(sum(p) - 1.0) > 1e-6:
            raise self.error(f"p must give {n} probabilities (or {n - 1}) that sum to 1, got {self.opts['p']!r}")
        return p

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Pick or mix the sources."""
        ops = ctx.ops
        if len(sources) < 2:
            raise self.error("there is no route to select: needs at least two sources")
        if len({s.dim for s in sources}) != 1:
            raise self.error(f"needs sources of one dim, got dims {[s.dim for s in sources]}")
        p = self.probabilities(len(sources))
        xs = [s.dense() for s in sources]
        test_route = self.opts.get("test_route", -1)
        if isinstance(test_route, bool) or not isinstance(test_route, int) or test_route >= len(sources):
            raise self.error(f"test_route must be -1 or a source index below {len(sources)}, got {test_route!r}")
        if ctx.train:
            draw = ops.random_uniform([1])[0]
            out: Any = xs[0]
            bound = p[0]
            for x, pk in zip(xs[1:], p[1:]):
                take = ops.cast(ops.greater(draw, bound), "float32")
                out = x * take + out * (1.0 - take)
                bound += pk
        elif test_route >= 0:
            out = xs[test_route]
        else:
            out = xs[0] * np.float32(p[0])
            for x, pk in zip(xs[1:], p[1:]):
                out = out + x * np.float32(pk)
        return sources[0].with_tensor(out, dim=sources[0].dim)


class BlurLayer(Layer):
    """``blur``: each seq's (time, feature) plane convolved with a random ``ctx`` x ``ctx`` kernel of 0/1 entries
    (each 1 with probability ``p``, default 1.0: a box blur), divided by its number of ones (at least 1), zeros
    beyond the seq and the features; a new kernel in every pass (also evaluation), as RETURNN. ``ctx`` (default 5)
    must be odd (an even one gave RETURNN's output one frame and one feature too many)."""

    options = frozenset({"ctx", "p"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Blur with a random kernel."""
        ops = ctx.ops
        src = self.single_source(sources)
        if src.sparse or not src.has_time or src.feature_ndim != 1:
            raise self.error("needs a dense (batch, time, feature) input")
        size = self.opts.get("ctx", 5)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise self.error(f"ctx must be an odd positive integer, got {size!r}")
        p = self.float_opt("p", 1.0)
        kernel = ops.cast(ops.less(ops.random_uniform([size, size]), p), "float32")
        kernel = kernel / ops.maximum(ops.reduce(kernel, "sum"), np.float32(1.0))
        mask = ops.expand_dims(src.mask(), -1)
        image = ops.expand_dims(src.tensor * mask, -1)  # (B, T, D, 1)
        half = size // 2
        image = ops.pad(image, [(0, 0), (half, half), (half, half), (0, 0)])
        filters = ops.reshape(kernel[::-1, ::-1], (size, size, 1, 1))  # Theano's conv2d flips the kernel
        out = ops.conv(image, filters, strides=(1, 1), dilation=(1, 1), padding="VALID")[..., 0]
        return src.with_tensor(out * mask, dim=src.dim)
