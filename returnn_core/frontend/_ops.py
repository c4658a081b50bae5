"""The tensor operations a backend supplies; layers, losses, units and optimizers are written against these only.

Tensors are the backend's own (``tf.Tensor``, PyTensor variables). They support Python's arithmetic and
comparison operators (``+ - * / ** -x``) and basic slicing (``x[:, 1:3]``); everything else goes through an
:class:`Ops` object. Axis order is batch-major: (B, T, ..., F) with a time axis, (B, ..., F) without.

A backend subclasses :class:`Ops` and implements the methods marked *primitive*; the others have default
implementations built from the primitives, which a backend may override with a faster kernel (a fast path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Tensor = Any
Shape = Sequence[Any]  # entries are Python ints or scalar int tensors

#: numerical floor inside logs of probabilities
LOG_EPS = 1e-8


class Ops:
    """Backend-neutral tensor operations (float32 unless a ``dtype`` is given)."""

    #: the backend's config name (``"tf"``, ``"theano"``)
    backend: str = ""

    # -- creation and meta (primitive) -------------------------------------------------------------------
    def constant(self, value: Any, dtype: str = "float32") -> Tensor:
        """A constant tensor from a Python or numpy value."""
        raise NotImplementedError

    def convert(self, x: Any) -> Tensor:
        """``x`` as a tensor of this backend (tensors pass through; Python/numpy values become float32 constants)."""
        raise NotImplementedError

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        """``x`` converted to ``dtype`` (``"float32"``, ``"int32"``, ``"int64"``, ``"bool"``)."""
        raise NotImplementedError

    def dtype(self, x: Tensor) -> str:
        """The dtype name of ``x`` (``"float32"``, ``"int32"``, ...)."""
        raise NotImplementedError

    def ndim(self, x: Tensor) -> int:
        """The (static) rank of ``x``."""
        raise NotImplementedError

    def static_shape(self, x: Tensor) -> tuple[int | None, ...]:
        """Static dims of ``x``; ``None`` where only known at run time."""
        raise NotImplementedError

    def dynamic_dim(self, x: Tensor, axis: int) -> Tensor:
        """The run-time size of ``axis`` as a scalar int tensor."""
        raise NotImplementedError

    def fill(self, shape: Shape, value: float, dtype: str = "float32") -> Tensor:
        """A tensor of ``shape`` filled with ``value``."""
        raise NotImplementedError

    def arange(self, n: Any, dtype: str = "int32") -> Tensor:
        """0, 1, ..., n-1 (``n`` a Python int or scalar tensor)."""
        raise NotImplementedError

    # -- elementwise (primitive) ------------------------------------------------------------------------
    def exp(self, x: Tensor) -> Tensor:
        """e**x."""
        raise NotImplementedError

    def log(self, x: Tensor) -> Tensor:
        """Natural log."""
        raise NotImplementedError

    def log1p(self, x: Tensor) -> Tensor:
        """log(1 + x)."""
        raise NotImplementedError

    def sqrt(self, x: Tensor) -> Tensor:
        """Square root."""
        raise NotImplementedError

    def abs(self, x: Tensor) -> Tensor:
        """Absolute value."""
        raise NotImplementedError

    def tanh(self, x: Tensor) -> Tensor:
        """Hyperbolic tangent."""
        raise NotImplementedError

    def sigmoid(self, x: Tensor) -> Tensor:
        """Logistic sigmoid."""
        raise NotImplementedError

    def sin(self, x: Tensor) -> Tensor:
        """Sine."""
        raise NotImplementedError

    def cos(self, x: Tensor) -> Tensor:
        """Cosine."""
        raise NotImplementedError

    def maximum(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise max (broadcasting)."""
        raise NotImplementedError

    def minimum(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise min (broadcasting)."""
        raise NotImplementedError

    def where(self, cond: Tensor, a: Any, b: Any) -> Tensor:
        """``a`` where ``cond`` (bool) holds, else ``b`` (broadcasting)."""
        raise NotImplementedError

    def equal(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a == b`` as bool."""
        raise NotImplementedError

    def not_equal(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a != b`` as bool."""
        raise NotImplementedError

    def stop_gradient(self, x: Tensor) -> Tensor:
        """``x`` without gradient flow."""
        raise NotImplementedError

    def clip_gradient(self, x: Tensor, low: float, high: float) -> Tensor:
        """``x`` unchanged forward; the gradient flowing back through it is limited to [low, high]."""
        raise NotImplementedError

    def filter_gradient(self, x: Tensor, threshold: float) -> Tensor:
        """``x`` unchanged forward; backward, each frame's gradient whose norm over the last axis exceeds
        ``threshold`` is dropped (RETURNN's ``grad_filter``)."""
        raise NotImplementedError

    # -- linear algebra and reductions (primitive) -------------------------------------------------------
    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """Matrix product of two 2-D tensors."""
        raise NotImplementedError

    def reduce(self, x: Tensor, mode: str, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Reduce over ``axis`` (all if ``None``): ``mode`` is sum, mean, max, min, prod or logsumexp."""
        raise NotImplementedError

    def argmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """int32 index of the maximum along ``axis``."""
        raise NotImplementedError

    def top_k(self, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` largest entries along the last axis, largest first, and their int32 indices (of equal entries
        the lower index first); gradients flow to the chosen entries."""
        raise NotImplementedError

    # -- shape (primitive) ------------------------------------------------------------------------------
    def reshape(self, x: Tensor, shape: Shape) -> Tensor:
        """``x`` reshaped (entries are ints or scalar tensors; one may be -1)."""
        raise NotImplementedError

    def transpose(self, x: Tensor, perm: Sequence[int]) -> Tensor:
        """Axes permuted."""
        raise NotImplementedError

    def expand_dims(self, x: Tensor, axis: int) -> Tensor:
        """A new axis of size 1 at ``axis``."""
        raise NotImplementedError

    def squeeze(self, x: Tensor, axis: int) -> Tensor:
        """Axis ``axis`` (of size 1) removed."""
        raise NotImplementedError

    def concat(self, xs: Sequence[Tensor], axis: int) -> Tensor:
        """Concatenation along ``axis``."""
        raise NotImplementedError

    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        """Stacking along a new ``axis``."""
        raise NotImplementedError

    def tile(self, x: Tensor, reps: Shape) -> Tensor:
        """``x`` repeated ``reps[i]`` times along each axis."""
        raise NotImplementedError

    def pad(self, x: Tensor, paddings: Sequence[tuple[int, int]], mode: str = "constant", value: float = 0.0) -> Tensor:
        """Pad each axis by (before, after); ``mode`` constant, reflect or symmetric."""
        raise NotImplementedError

    def gather(self, params: Tensor, indices: Tensor, axis: int = 0) -> Tensor:
        """``params`` indexed by int ``indices`` along ``axis`` (like ``np.take``)."""
        raise NotImplementedError

    def take_along_axis(self, x: Tensor, indices: Tensor, axis: int) -> Tensor:
        """Like ``np.take_along_axis``: ``indices`` has the rank of ``x``."""
        raise NotImplementedError

    # -- conv and pooling (primitive) -------------------------------------------------------------------
    def conv(self, x: Tensor, filters: Tensor, *, strides: Sequence[int], dilation: Sequence[int],
             padding: str) -> Tensor:
        """N-D convolution, channels last: ``x`` (B, *spatial, C_in), ``filters`` (*size, C_in, C_out);
        ``padding`` is ``"SAME"`` or ``"VALID"`` (TensorFlow's definition of both)."""
        raise NotImplementedError

    def pool(self, x: Tensor, *, mode: str, size: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
             padding: str) -> Tensor:
        """N-D max (``mode="max"``) or average (``"avg"``, padding not counted) pooling, channels last."""
        raise NotImplementedError

    # -- randomness and state (primitive) ---------------------------------------------------------------
    def random_uniform(self, shape: Shape) -> Tensor:
        """Uniform [0, 1) float32 of ``shape`` (a fresh draw every step)."""
        raise NotImplementedError

    def random_normal(self, shape: Shape, stddev: float = 1.0) -> Tensor:
        """Normal(0, ``stddev``) float32 of ``shape``."""
        raise NotImplementedError

    def assign(self, variable: Any, value: Tensor) -> None:
        """Set a (non-trainable) parameter to ``value`` as a side effect of the current train step."""
        raise NotImplementedError

    # -- recurrence (primitive) -------------------------------------------------------------------------
    def scan(
        self,
        step: Callable[..., tuple[Tensor, tuple[Tensor, ...]]],
        sequences: Sequence[Tensor],
        initial_states: Sequence[Tensor],
        *,
        non_sequences: Sequence[Tensor] = (),
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Loop over axis 0 of the time-major ``sequences``.

        ``step(*frames, *states, *non_sequences) -> (output, new_states)``; returns the stacked outputs
        (time-major) and the states after the last frame.
        """
        raise NotImplementedError

    # -- sequence losses (primitive) --------------------------------------------------------------------
    def ctc_loss(self, logits: Tensor, seq_lens: Tensor, labels: Tensor, label_lens: Tensor) -> Tensor:
        """Per seq -log p(labels | input) of batch-major unnormalised ``logits`` (B, T, C+1); blank = last class."""
        raise NotImplementedError

    def edit_distance(self, hyp: Tensor, hyp_lens: Tensor, ref: Tensor, ref_lens: Tensor) -> Tensor:
        """Summed (unnormalised) Levenshtein distance between int label seqs (B, L) with lengths (B,)."""
        raise NotImplementedError

    def ctc_greedy_decode(self, logits: Tensor, seq_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Best-path decoding (repeats merged, blanks = last class removed): labels (B, L) and lengths (B,)."""
        raise NotImplementedError

    # -- composites (defaults a backend may override) ----------------------------------------------------
    def zeros(self, shape: Shape, dtype: str = "float32") -> Tensor:
        """Zeros of ``shape``."""
        return self.fill(shape, 0.0, dtype)

    def ones(self, shape: Shape, dtype: str = "float32") -> Tensor:
        """Ones of ``shape``."""
        return self.fill(shape, 1.0, dtype)

    def shape(self, x: Tensor) -> list[Any]:
        """Dims of ``x``: Python ints where static, scalar tensors otherwise (usable in :meth:`reshape`)."""
        return [d if d is not None else self.dynamic_dim(x, i) for i, d in enumerate(self.static_shape(x))]

    def square(self, x: Tensor) -> Tensor:
        """x * x."""
        return x * x

    def rsqrt(self, x: Tensor) -> Tensor:
        """1 / sqrt(x)."""
        return 1.0 / self.sqrt(x)

    def clip(self, x: Tensor, low: float, high: float) -> Tensor:
        """``x`` limited to [low, high]."""
        return self.minimum(self.maximum(x, low), high)

    def relu(self, x: Tensor) -> Tensor:
        """max(x, 0)."""
        return self.maximum(x, 0.0)

    def softplus(self, x: Tensor) -> Tensor:
        """log(1 + e**x), computed stably."""
        return self.maximum(x, 0.0) + self.log1p(self.exp(-self.abs(x)))

    def softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """Normalised exponentials along ``axis``."""
        e = self.exp(x - self.stop_gradient(self.reduce(x, "max", axis, keepdims=True)))
        return e / self.reduce(e, "sum", axis, keepdims=True)

    def log_softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """log of :meth:`softmax`, computed stably."""
        return x - self.reduce(x, "logsumexp", axis, keepdims=True)

    def dot(self, x: Tensor, w: Tensor) -> Tensor:
        """The last axis of ``x`` (..., n) contracted with the first of ``w`` (n, m) as one 2-D product."""
        rank = self.ndim(x)
        if rank == 2:
            return self.matmul(x, w)
        shape = self.shape(x)
        flat = self.matmul(self.reshape(x, (-1, shape[-1])), w)
        return self.reshape(flat, (*shape[:-1], self.static_shape(w)[-1] or self.dynamic_dim(w, 1)))

    def one_hot(self, indices: Tensor, depth: int) -> Tensor:
        """float32 one-hot vectors of int ``indices`` on a new last axis."""
        return self.cast(self.equal(self.expand_dims(indices, -1), self.arange(depth)), "float32")

    def sequence_mask(self, seq_lens: Tensor, maxlen: Any, dtype: str = "float32") -> Tensor:
        """(B, maxlen): 1 where the frame index is below the seq length."""
        time = self.arange(maxlen)
        return self.cast(self.less(self.expand_dims(time, 0), self.expand_dims(seq_lens, 1)), dtype)

    def less(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a < b`` as bool."""
        return a < b

    def greater(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a > b`` as bool."""
        return a > b

    def split(self, x: Tensor, sizes: Sequence[int], axis: int = -1) -> list[Tensor]:
        """``x`` cut along ``axis`` into pieces of static ``sizes``."""
        axis = axis % self.ndim(x)
        out, start = [], 0
        for size in sizes:
            index = [slice(None)] * axis + [slice(start, start + size)]
            out.append(x[tuple(index)])
            start += size
        return out

    def masked_reduce(self, x: Tensor, mask: Tensor, mode: str, axis: int | Sequence[int], keepdims: bool = False) -> Tensor:
        """:meth:`reduce` counting only the entries where the broadcastable float ``mask`` is 1."""
        if mode == "sum":
            return self.reduce(x * mask, "sum", axis, keepdims)
        if mode == "mean":
            total = self.reduce(x * mask, "sum", axis, keepdims)
            count = self.reduce(mask * self.ones_like(x), "sum", axis, keepdims)
            return total / self.maximum(count, 1.0)
        if mode in ("max", "min", "logsumexp"):
            fill = -1e30 if mode != "min" else 1e30
            return self.reduce(self.where(mask > 0.5, x, fill), mode, axis, keepdims)
        if mode == "prod":
            return self.reduce(self.where(mask > 0.5, x, 1.0), "prod", axis, keepdims)
        raise ValueError(f"unknown reduce mode {mode!r}")

    def moments(self, x: Tensor, axis: int | Sequence[int], mask: Tensor | None = None,
                keepdims: bool = False) -> tuple[Tensor, Tensor]:
        """Mean and (biased) variance over ``axis``, counting only masked-in entries if ``mask`` is given."""
        if mask is None:
            mean = self.reduce(x, "mean", axis, keepdims=True)
            var = self.reduce(self.square(x - mean), "mean", axis, keepdims=keepdims)
        else:
            mean = self.masked_reduce(x, mask, "mean", axis, keepdims=True)
            var = self.masked_reduce(self.square(x - mean), mask, "mean", axis, keepdims=keepdims)
        return (mean if keepdims else self.squeeze_axes(mean, axis)), var

    def squeeze_axes(self, x: Tensor, axis: int | Sequence[int]) -> Tensor:
        """Remove several size-1 axes."""
        rank = self.ndim(x)
        axes = [axis] if isinstance(axis, int) else list(axis)
        for a in sorted((a % rank for a in axes), reverse=True):
            x = self.squeeze(x, a)
        return x

    def ones_like(self, x: Tensor) -> Tensor:
        """Ones shaped like ``x`` (float32)."""
        return self.ones(self.shape(x))

    def zeros_like(self, x: Tensor) -> Tensor:
        """Zeros shaped like ``x`` (float32)."""
        return self.zeros(self.shape(x))

    def dropout(self, x: Tensor, rate: float, noise_shape: Shape | None = None) -> Tensor:
        """Inverted dropout: zero each entry with probability ``rate``, scale the rest by 1/(1-rate); a
        ``noise_shape`` with 1s shares one mask along those axes."""
        if not rate:
            return x
        keep = 1.0 - float(rate)
        shape = self.shape(x) if noise_shape is None else noise_shape
        noise = self.cast(self.less(self.random_uniform(shape), keep), "float32")
        return x * noise * np.float32(1.0 / keep)

    def reverse_sequence(self, x: Tensor, seq_lens: Tensor) -> Tensor:
        """Reverse the first ``seq_lens[b]`` frames of each seq of batch-major ``x`` (B, T, ...)."""
        time = self.expand_dims(self.arange(self.dynamic_dim(x, 1)), 0)
        lens = self.expand_dims(self.cast(seq_lens, "int32"), 1)
        idx = self.where(self.less(time, lens), lens - 1 - time, time)
        for _ in range(self.ndim(x) - 2):
            idx = self.expand_dims(idx, -1)
        idx = idx + self.cast(self.zeros_like(x), "int32")
        return self.take_along_axis(x, idx, axis=1)

    def last_frame(self, x: Tensor, seq_lens: Tensor, initial: Tensor) -> Tensor:
        """``x[b, len_b - 1]`` of batch-major ``x`` (B, T, n); ``initial[b]`` for empty seqs."""
        idx = self.maximum(self.cast(seq_lens, "int32") - 1, 0)
        idx = self.expand_dims(self.expand_dims(idx, 1), 2) + self.cast(self.zeros_like(x[:, :1]), "int32")
        last = self.squeeze(self.take_along_axis(x, idx, axis=1), 1)
        return self.where(self.expand_dims(self.greater(seq_lens, 0), 1), last, initial)

    def lstm(self, x: Tensor, w: Tensor, b: Tensor, w_re: Tensor, mask: Tensor, h0: Tensor,
             c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """LSTM over time on ``x`` (B, T, n_in) with ``W`` (n_in, 4n), ``b`` (4n,), ``W_re`` (n, 4n) in the gate order
        [cell in, input, forget, output]; ``mask`` (B, T) float (frames are a prefix); returns y (B, T, n)
        (0 on padding) and the final h and c. A backend may run this in a fused kernel."""
        n = self.static_shape(w_re)[0]
        z = self.dot(x, w) + b

        def step(z_t: Tensor, m_t: Tensor, h: Tensor, c: Tensor, w: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            zz = z_t + self.matmul(h, w)
            cell_in, gate_in, gate_f, gate_o = self.split(zz, (n, n, n, n), axis=-1)
            c_new = self.sigmoid(gate_f) * c + self.sigmoid(gate_in) * self.tanh(cell_in)
            h_new = self.sigmoid(gate_o) * self.tanh(c_new)
            return h_new * m_t, (m_t * h_new + (1.0 - m_t) * h, m_t * c_new + (1.0 - m_t) * c)

        ys, (h, c) = self.scan(step, [self.transpose(z, (1, 0, 2)), self.expand_dims(self.transpose(mask, (1, 0)), 2)],
                               [h0, c0], non_sequences=[w_re])
        return self.transpose(ys, (1, 0, 2)), h, c

    def cross_entropy_sparse(self, log_probs: Tensor, labels: Tensor) -> Tensor:
        """-log_probs[..., label] for int ``labels`` of the leading shape of ``log_probs``."""
        picked = self.take_along_axis(log_probs, self.expand_dims(self.cast(labels, "int32"), -1), axis=-1)
        return -self.squeeze(picked, -1)

    # -- composites added for layers --
    def floordiv(self, a: Tensor, b: int) -> Tensor:
        """int32 floor of int tensor ``a`` divided by a positive Python int ``b`` (Python's ``//``)."""
        a = self.cast(a, "int32")
        quotient = self.cast(a / b, "int32")  # the cast truncates toward zero; step down for negative remainders
        return self.where(self.less(a, quotient * b), quotient - 1, quotient)

    def floor(self, x: Tensor) -> Tensor:
        """Largest integer not above ``x``, as float32."""
        truncated = self.cast(self.cast(x, "int32"), "float32")  # toward zero; step down where that went up
        return self.where(self.greater(truncated, x), truncated - 1.0, truncated)

    def round(self, x: Tensor) -> Tensor:
        """``x`` rounded to the nearest integer, halves to even (like ``tf.round`` and ``np.round``), as float32."""
        up = self.floor(x + 0.5)
        tie = self.cast(self.equal(up - x, 0.5), "float32")
        odd = self.cast(self.not_equal(up - 2.0 * self.floor(up * 0.5), 0.0), "float32")
        return up - tie * odd

    def batch_matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """Matrix product over the last two axes, ``(..., n, k) x (..., k, m) -> (..., n, m)``, leading axes
        broadcast."""
        return self.reduce(self.expand_dims(a, -1) * self.expand_dims(b, -3), "sum", -2)
