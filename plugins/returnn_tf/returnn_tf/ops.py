"""The TensorFlow :class:`~returnn_core.frontend.Ops`: the core's layers, losses, units and optimizers on TF tensors.

Everything works eagerly (the build pass on the dummy batch) and inside ``tf.function`` with unknown batch and
time dims. Composites with a faster TF kernel are overridden: softmax, one-hot, sequence masks, reverse_sequence,
the LSTM (``BlockLSTM``), CTC (``tf.nn.ctc_loss``) and edit distance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.frontend import Ops, register_ops

Tensor = Any

_REDUCE: dict[str, Callable[..., tf.Tensor]] = {
    "sum": tf.reduce_sum,
    "mean": tf.reduce_mean,
    "max": tf.reduce_max,
    "min": tf.reduce_min,
    "prod": tf.reduce_prod,
    "logsumexp": tf.reduce_logsumexp,
}
#: the types of TF values these ops serve: eager and symbolic tensors, and every kind of variable
TENSOR_TYPES: tuple[type, ...] = (tf.Tensor, tf.Variable)


def _is_tensor(x: Any) -> bool:
    return isinstance(x, TENSOR_TYPES)


def _dims(shape: Any) -> Any:
    """A shape of Python ints and scalar tensors as something TF ops take (ints stay static)."""
    if _is_tensor(shape) or isinstance(shape, np.ndarray):
        return shape
    dims = list(shape)
    if all(isinstance(d, (int, np.integer)) for d in dims):
        return [int(d) for d in dims]
    return tf.stack([tf.cast(d, tf.int32) if _is_tensor(d) else tf.constant(int(d), tf.int32) for d in dims])


def _like(value: Any, ref: Any) -> Any:
    """``value`` as a tensor of ``ref``'s dtype when it is a Python/numpy number (TF does not promote)."""
    if _is_tensor(value) or not _is_tensor(ref):
        return value
    return _const(value, ref.dtype)


def _const(value: Any, dtype: Any) -> tf.Tensor:
    """A constant of ``dtype`` (numpy casts where ``tf.constant`` refuses, e.g. 0.0 as int32)."""
    return tf.constant(np.asarray(value, dtype=tf.as_dtype(dtype).as_numpy_dtype))


def _relaxed(shape: tf.TensorShape) -> tf.TensorShape:
    """``shape`` with its first (batch) axis unknown, as a while-loop shape invariant."""
    if shape.rank is None or shape.rank == 0:
        return shape
    return tf.TensorShape([None]).concatenate(shape[1:])


def dense_to_sparse(labels: tf.Tensor, lengths: tf.Tensor) -> tf.SparseTensor:
    """(B, L) labels with lengths (B,) as a SparseTensor (label 0 is kept, unlike ``tf.sparse.from_dense``)."""
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(labels)[1])
    idx = tf.where(mask)
    vals = tf.gather_nd(labels, idx)
    return tf.SparseTensor(idx, tf.cast(vals, tf.int32), tf.cast(tf.shape(labels), tf.int64))


class TFOps(Ops):
    """:class:`Ops` on TensorFlow 2 tensors (float32 unless a dtype is given)."""

    backend = "tf"
    #: what failing TF ops raise, reported as a clear error naming the layer while the network is built
    error_types: tuple[type[BaseException], ...] = (tf.errors.OpError,)
    #: whether :meth:`lstm` runs TF's fused ``BlockLSTM`` kernel (else the generic step loop; tests compare both)
    fused_lstm: bool = True

    # -- creation and meta -------------------------------------------------------------------------------
    def constant(self, value: Any, dtype: str = "float32") -> Tensor:
        """A constant tensor from a Python or numpy value."""
        return tf.constant(value, dtype=tf.as_dtype(dtype))

    def convert(self, x: Any) -> Tensor:
        """Tensors pass through; Python/numpy values become float32 constants."""
        if _is_tensor(x):
            return x
        return tf.constant(x, dtype=tf.float32)

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        """``x`` converted to ``dtype``."""
        return tf.cast(x, tf.as_dtype(dtype))

    def dtype(self, x: Tensor) -> str:
        """The dtype name of ``x``."""
        return tf.as_dtype(x.dtype).name

    def ndim(self, x: Tensor) -> int:
        """The static rank of ``x``."""
        return int(tf.TensorShape(x.shape).rank)

    def static_shape(self, x: Tensor) -> tuple[int | None, ...]:
        """Static dims of ``x`` (``None`` where unknown)."""
        return tuple(tf.TensorShape(x.shape).as_list())

    def dynamic_dim(self, x: Tensor, axis: int) -> Tensor:
        """The run-time size of ``axis`` (int32 scalar)."""
        return tf.shape(x)[axis]

    def fill(self, shape: Any, value: float, dtype: str = "float32") -> Tensor:
        """A tensor of ``shape`` filled with ``value``."""
        return tf.fill(_dims(shape), _const(value, dtype))

    def zeros(self, shape: Any, dtype: str = "float32") -> Tensor:
        """Zeros of ``shape``."""
        return tf.zeros(_dims(shape), tf.as_dtype(dtype))

    def ones(self, shape: Any, dtype: str = "float32") -> Tensor:
        """Ones of ``shape``."""
        return tf.ones(_dims(shape), tf.as_dtype(dtype))

    def zeros_like(self, x: Tensor) -> Tensor:
        """float32 zeros shaped like ``x``."""
        return tf.zeros_like(x, dtype=tf.float32)

    def ones_like(self, x: Tensor) -> Tensor:
        """float32 ones shaped like ``x``."""
        return tf.ones_like(x, dtype=tf.float32)

    def arange(self, n: Any, dtype: str = "int32") -> Tensor:
        """0, 1, ..., n-1."""
        return tf.range(n, dtype=tf.as_dtype(dtype))

    # -- elementwise -------------------------------------------------------------------------------------
    def exp(self, x: Tensor) -> Tensor:
        """e**x."""
        return tf.exp(x)

    def log(self, x: Tensor) -> Tensor:
        """Natural log."""
        return tf.math.log(x)

    def log1p(self, x: Tensor) -> Tensor:
        """log(1 + x)."""
        return tf.math.log1p(x)

    def sqrt(self, x: Tensor) -> Tensor:
        """Square root."""
        return tf.sqrt(x)

    def rsqrt(self, x: Tensor) -> Tensor:
        """1 / sqrt(x)."""
        return tf.math.rsqrt(x)

    def square(self, x: Tensor) -> Tensor:
        """x * x."""
        return tf.square(x)

    def abs(self, x: Tensor) -> Tensor:
        """Absolute value."""
        return tf.abs(x)

    def tanh(self, x: Tensor) -> Tensor:
        """Hyperbolic tangent."""
        return tf.tanh(x)

    def sigmoid(self, x: Tensor) -> Tensor:
        """Logistic sigmoid."""
        return tf.sigmoid(x)

    def relu(self, x: Tensor) -> Tensor:
        """max(x, 0)."""
        return tf.nn.relu(x)

    def softplus(self, x: Tensor) -> Tensor:
        """log(1 + e**x)."""
        return tf.nn.softplus(x)

    def sin(self, x: Tensor) -> Tensor:
        """Sine."""
        return tf.sin(x)

    def cos(self, x: Tensor) -> Tensor:
        """Cosine."""
        return tf.cos(x)

    def maximum(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise max."""
        return tf.maximum(a, _like(b, a))

    def minimum(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise min."""
        return tf.minimum(a, _like(b, a))

    def clip(self, x: Tensor, low: float, high: float) -> Tensor:
        """``x`` limited to [low, high]."""
        return tf.clip_by_value(x, _like(low, x), _like(high, x))

    def where(self, cond: Tensor, a: Any, b: Any) -> Tensor:
        """``a`` where ``cond`` holds, else ``b``."""
        return tf.where(cond, _like(a, b), _like(b, a))

    def equal(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a == b``."""
        return tf.equal(a, _like(b, a))

    def not_equal(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a != b``."""
        return tf.not_equal(a, _like(b, a))

    def less(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a < b``."""
        return tf.less(a, _like(b, a))

    def greater(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a > b``."""
        return tf.greater(a, _like(b, a))

    def floordiv(self, a: Tensor, b: int) -> Tensor:
        """int32 floor of ``a`` divided by the positive Python int ``b``."""
        return tf.math.floordiv(tf.cast(a, tf.int32), int(b))

    def stop_gradient(self, x: Tensor) -> Tensor:
        """``x`` without gradient flow."""
        return tf.stop_gradient(x)

    def clip_gradient(self, x: Tensor, low: float, high: float) -> Tensor:
        """``x`` with its backward gradient clipped elementwise (``tf.custom_gradient``)."""

        @tf.custom_gradient
        def _clip(v: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
            return tf.identity(v), lambda dy: tf.clip_by_value(dy, low, high)

        return _clip(x)

    def filter_gradient(self, x: Tensor, threshold: float) -> Tensor:
        """``x`` with frames of too large a backward gradient norm dropped (``tf.custom_gradient``)."""

        @tf.custom_gradient
        def _filter(v: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
            def grad(dy: Tensor) -> Tensor:
                norm = tf.sqrt(tf.reduce_sum(tf.square(dy), axis=-1, keepdims=True))
                return tf.where(norm <= threshold, dy, tf.zeros_like(dy))

            return tf.identity(v), grad

        return _filter(x)

    # -- linear algebra and reductions -------------------------------------------------------------------
    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """Matrix product of two 2-D tensors."""
        return tf.matmul(a, b)

    def batch_matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """Matrix product over the last two axes in one batched kernel."""
        return tf.linalg.matmul(a, b)

    def dot(self, x: Tensor, w: Tensor) -> Tensor:
        """The last axis of ``x`` contracted with the first of ``w`` as one 2-D product."""
        if self.ndim(x) == 2:
            return tf.matmul(x, w)
        shape = self.shape(x)
        flat = tf.matmul(tf.reshape(x, _dims([-1, shape[-1]])), w)
        return tf.reshape(flat, _dims([*shape[:-1], self.shape(w)[-1]]))

    def reduce(self, x: Tensor, mode: str, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Reduce over ``axis`` with ``mode`` (sum, mean, max, min, prod, logsumexp)."""
        fn = _REDUCE.get(mode)
        if fn is None:
            raise ValueError(f"unknown reduce mode {mode!r}; known: {', '.join(_REDUCE)}")
        return fn(x, axis=list(axis) if isinstance(axis, (list, tuple)) else axis, keepdims=keepdims)

    def argmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """int32 index of the maximum along ``axis``."""
        return tf.argmax(x, axis=axis, output_type=tf.int32)

    def top_k(self, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """``tf.math.top_k`` (sorted; of equal entries the lower index first) with int32 indices."""
        values, indices = tf.math.top_k(x, k=k, sorted=True)
        return values, tf.cast(indices, tf.int32)

    def softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """Normalised exponentials along ``axis``."""
        return tf.nn.softmax(x, axis=axis)

    def log_softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """log of :meth:`softmax`."""
        return tf.nn.log_softmax(x, axis=axis)

    def moments(self, x: Tensor, axis: int | Sequence[int], mask: Tensor | None = None,
                keepdims: bool = False) -> tuple[Tensor, Tensor]:
        """Mean and biased variance over ``axis`` (``tf.nn.moments`` without a mask)."""
        if mask is not None:
            return super().moments(x, axis, mask, keepdims)
        axes = [axis] if isinstance(axis, int) else list(axis)
        return tf.nn.moments(x, axes=axes, keepdims=keepdims)

    # -- shape -------------------------------------------------------------------------------------------
    def reshape(self, x: Tensor, shape: Any) -> Tensor:
        """``x`` reshaped."""
        return tf.reshape(x, _dims(shape))

    def transpose(self, x: Tensor, perm: Sequence[int]) -> Tensor:
        """Axes permuted."""
        return tf.transpose(x, list(perm))

    def expand_dims(self, x: Tensor, axis: int) -> Tensor:
        """A new axis of size 1 at ``axis``."""
        return tf.expand_dims(x, axis)

    def squeeze(self, x: Tensor, axis: int) -> Tensor:
        """Axis ``axis`` (of size 1) removed."""
        return tf.squeeze(x, axis=[axis])

    def concat(self, xs: Sequence[Tensor], axis: int) -> Tensor:
        """Concatenation along ``axis``."""
        return tf.concat(list(xs), axis=axis)

    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        """Stacking along a new ``axis``."""
        return tf.stack(list(xs), axis=axis)

    def tile(self, x: Tensor, reps: Any) -> Tensor:
        """``x`` repeated along each axis."""
        return tf.tile(x, _dims(reps))

    def pad(self, x: Tensor, paddings: Sequence[tuple[int, int]], mode: str = "constant", value: float = 0.0) -> Tensor:
        """Pad each axis by (before, after)."""
        mode = mode.upper()
        if mode not in ("CONSTANT", "REFLECT", "SYMMETRIC"):
            raise ValueError(f"unknown padding mode {mode.lower()!r}; known: constant, reflect, symmetric")
        pads = [[int(a), int(b)] for a, b in paddings]
        if mode != "CONSTANT":
            return tf.pad(x, pads, mode=mode)
        return tf.pad(x, pads, constant_values=_const(value, x.dtype))

    def split(self, x: Tensor, sizes: Sequence[int], axis: int = -1) -> list[Tensor]:
        """``x`` cut into pieces of static ``sizes``."""
        return tf.split(x, [int(s) for s in sizes], axis=axis)

    def gather(self, params: Tensor, indices: Tensor, axis: int = 0) -> Tensor:
        """``params`` indexed by ``indices`` along ``axis``."""
        return tf.gather(params, indices, axis=axis)

    def take_along_axis(self, x: Tensor, indices: Tensor, axis: int) -> Tensor:
        """Like ``np.take_along_axis`` (``indices`` broadcast to ``x`` on the other axes)."""
        rank = int(x.shape.rank)
        axis %= rank
        perm = [a for a in range(rank) if a != axis] + [axis]
        moved = axis != rank - 1
        xt = tf.transpose(x, perm) if moved else x
        it = tf.transpose(indices, perm) if moved else indices
        it = tf.broadcast_to(it, tf.concat([tf.shape(xt)[:-1], tf.shape(it)[-1:]], axis=0))
        out = tf.gather(xt, it, batch_dims=rank - 1)
        return tf.transpose(out, np.argsort(perm).tolist()) if moved else out

    def one_hot(self, indices: Tensor, depth: int) -> Tensor:
        """float32 one-hot vectors on a new last axis."""
        return tf.one_hot(indices, int(depth), dtype=tf.float32)

    def sequence_mask(self, seq_lens: Tensor, maxlen: Any, dtype: str = "float32") -> Tensor:
        """(B, maxlen): 1 where the frame index is below the seq length."""
        return tf.sequence_mask(seq_lens, maxlen=maxlen, dtype=tf.as_dtype(dtype))

    def reverse_sequence(self, x: Tensor, seq_lens: Tensor) -> Tensor:
        """Reverse the first ``seq_lens[b]`` frames of each seq (batch-major)."""
        return tf.reverse_sequence(x, tf.cast(seq_lens, tf.int32), seq_axis=1, batch_axis=0)

    def last_frame(self, x: Tensor, seq_lens: Tensor, initial: Tensor) -> Tensor:
        """``x[b, len_b - 1]`` of batch-major ``x``; ``initial[b]`` for empty seqs."""
        seq_lens = tf.cast(seq_lens, tf.int32)
        last = tf.gather(x, tf.maximum(seq_lens - 1, 0), axis=1, batch_dims=1)
        return tf.where((seq_lens > 0)[:, None], last, initial)

    def cross_entropy_sparse(self, log_probs: Tensor, labels: Tensor) -> Tensor:
        """-log_probs[..., label]."""
        labels = tf.cast(labels, tf.int32)
        return -tf.gather(log_probs, labels, batch_dims=int(labels.shape.rank))

    # -- conv and pooling --------------------------------------------------------------------------------
    def conv(self, x: Tensor, filters: Tensor, *, strides: Sequence[int], dilation: Sequence[int],
             padding: str) -> Tensor:
        """N-D convolution, channels last."""
        return tf.nn.convolution(x, filters, strides=[int(s) for s in strides], padding=padding.upper(),
                                 dilations=[int(d) for d in dilation])

    def pool(self, x: Tensor, *, mode: str, size: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
             padding: str) -> Tensor:
        """N-D max or average pooling (TF's AVG with SAME already leaves the padding out of the count)."""
        kinds = {"max": "MAX", "avg": "AVG", "average": "AVG", "mean": "AVG"}
        if mode not in kinds:
            raise ValueError(f"unknown pooling mode {mode!r}; known: max, avg")
        return tf.nn.pool(x, window_shape=[int(s) for s in size], pooling_type=kinds[mode], padding=padding.upper(),
                          strides=[int(s) for s in strides], dilations=[int(d) for d in dilation])

    # -- randomness and state ----------------------------------------------------------------------------
    def random_uniform(self, shape: Any) -> Tensor:
        """Uniform [0, 1) float32 (stateful: seeded by ``tf.random.set_seed``)."""
        return tf.random.uniform(_dims(shape), dtype=tf.float32)

    def random_normal(self, shape: Any, stddev: float = 1.0) -> Tensor:
        """Normal(0, ``stddev``) float32."""
        return tf.random.normal(_dims(shape), stddev=float(stddev), dtype=tf.float32)

    def dropout(self, x: Tensor, rate: float, noise_shape: Any = None) -> Tensor:
        """Inverted dropout with TF's fused kernel."""
        if not rate:
            return x
        return tf.nn.dropout(x, rate=float(rate), noise_shape=None if noise_shape is None else _dims(noise_shape))

    def assign(self, variable: Any, value: Tensor) -> None:
        """Set ``variable`` to ``value`` (automatic control dependencies run it inside the step)."""
        variable.assign(tf.cast(value, variable.dtype))

    # -- recurrence --------------------------------------------------------------------------------------
    def scan(
        self,
        step: Callable[..., tuple[Tensor, tuple[Tensor, ...]]],
        sequences: Sequence[Tensor],
        initial_states: Sequence[Tensor],
        *,
        non_sequences: Sequence[Tensor] = (),
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Loop over axis 0 of the time-major ``sequences`` with ``tf.while_loop``."""
        seqs = [self.convert(s) for s in sequences]
        if not seqs:
            raise ValueError("scan needs at least one sequence")
        states = tuple(self.convert(s) for s in initial_states)
        extra = list(non_sequences)
        num_steps = tf.shape(seqs[0])[0]
        frames = [tf.TensorArray(s.dtype, size=num_steps, element_shape=s.shape[1:]).unstack(s) for s in seqs]
        spec = _output_spec(step, seqs, states, extra)
        outputs = tf.TensorArray(spec.dtype, size=num_steps, element_shape=spec.shape)

        def body(t: tf.Tensor, out: tf.TensorArray, *prev: tf.Tensor) -> tuple[Any, ...]:
            y, new = step(*[f.read(t) for f in frames], *prev, *extra)
            new = tuple(new)
            if len(new) != len(prev):
                raise ValueError(f"scan step returned {len(new)} states, expected {len(prev)}")
            return (t + 1, out.write(t, tf.convert_to_tensor(y)),
                    *(tf.cast(n, p.dtype) for n, p in zip(new, prev)))

        invariants = (tf.TensorShape([]), tf.TensorShape(None), *(_relaxed(s.shape) for s in states))
        result = tf.while_loop(lambda t, *_: t < num_steps, body, (tf.constant(0), outputs, *states),
                               shape_invariants=invariants)
        return result[1].stack(), tuple(result[2:])

    def lstm(self, x: Tensor, w: Tensor, b: Tensor, w_re: Tensor, mask: Tensor, h0: Tensor,
             c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """LSTM over time in TF's fused ``BlockLSTM`` kernel (which has a registered gradient)."""
        if not self.fused_lstm:
            return super().lstm(x, w, b, w_re, mask, h0, c0)
        n = int(w_re.shape[0])
        # BlockLSTM wants blocks [input, cell in, forget, output]; ours start with cell in (slices, not a gather:
        # a gather's gradient would be IndexedSlices)
        def perm(t: Tensor) -> Tensor:
            return tf.concat([t[..., n : 2 * n], t[..., :n], t[..., 2 * n :]], axis=-1)

        w_cat = perm(tf.concat([w, w_re], axis=0))
        xs = tf.transpose(x, (1, 0, 2))
        zeros = tf.zeros((n,), tf.float32)
        h0 = tf.convert_to_tensor(h0, tf.float32)
        c0 = tf.convert_to_tensor(c0, tf.float32)
        res = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(xs)[0], tf.int64), x=xs, cs_prev=c0, h_prev=h0, w=w_cat,
            wci=zeros, wcf=zeros, wco=zeros, b=perm(tf.convert_to_tensor(b)), forget_bias=0.0, cell_clip=-1.0,
            use_peephole=False,
        )
        mask = tf.cast(mask, tf.float32)
        # BlockLSTM runs on past each seq's end: outputs there are zeroed, the final state is the last present frame
        y = tf.transpose(res.h, (1, 0, 2)) * mask[:, :, None]
        seq_lens = tf.cast(tf.reduce_sum(mask, axis=1) + 0.5, tf.int32)
        h = self.last_frame(tf.transpose(res.h, (1, 0, 2)), seq_lens, h0)
        c = self.last_frame(tf.transpose(res.cs, (1, 0, 2)), seq_lens, c0)
        return y, h, c

    # -- sequence losses ---------------------------------------------------------------------------------
    def ctc_loss(self, logits: Tensor, seq_lens: Tensor, labels: Tensor, label_lens: Tensor) -> Tensor:
        """Per seq CTC loss of batch-major ``logits`` (blank = last class)."""
        sparse = dense_to_sparse(labels, label_lens)
        return tf.nn.ctc_loss(labels=sparse, logits=logits, label_length=None,
                              logit_length=tf.cast(seq_lens, tf.int32), logits_time_major=False, blank_index=-1)

    def ctc_greedy_decode(self, logits: Tensor, seq_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Best-path decoding: int32 labels (B, L) (0-padded) and lengths (B,)."""
        decoded, _ = tf.nn.ctc_greedy_decoder(tf.transpose(logits, (1, 0, 2)), tf.cast(seq_lens, tf.int32))
        best = decoded[0]
        labels = tf.cast(tf.sparse.to_dense(best, default_value=0), tf.int32)
        rows = tf.cast(best.indices[:, 0], tf.int32)
        lens = tf.math.unsorted_segment_sum(tf.ones_like(rows), rows, tf.shape(logits)[0])
        return labels, lens

    def edit_distance(self, hyp: Tensor, hyp_lens: Tensor, ref: Tensor, ref_lens: Tensor) -> Tensor:
        """Summed (unnormalised) Levenshtein distance (float32)."""
        dist = tf.edit_distance(tf.cast(dense_to_sparse(hyp, hyp_lens), tf.int64),
                                tf.cast(dense_to_sparse(ref, ref_lens), tf.int64), normalize=False)
        return tf.reduce_sum(tf.cast(dist, tf.float32))




def _output_spec(step: Callable[..., Any], seqs: list[tf.Tensor], states: tuple[tf.Tensor, ...],
                 extra: list[Any]) -> tf.TensorSpec:
    """dtype and static shape of one output frame of ``step``, from tracing it once (never run).

    The output accumulator must be created before the loop; its element shape keeps the feature dims static.
    """
    specs = [tf.TensorSpec(s.shape[1:], s.dtype) for s in seqs] + [tf.TensorSpec(_relaxed(s.shape), s.dtype)
                                                                    for s in states]

    def first_output(*args: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(step(*args, *extra)[0])

    out = tf.function(first_output, autograph=False).get_concrete_function(*specs).structured_outputs
    return tf.TensorSpec(out.shape, out.dtype)


#: the ops of every TF tensor
TF_OPS = TFOps()
register_ops(TENSOR_TYPES, TF_OPS)
