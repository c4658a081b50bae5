"""The core frontend's :class:`~returnn_core.frontend.Ops` on PyTensor: every layer, loss and optimizer runs on these.

One :class:`PyTensorOps` per built graph holds that graph's :class:`RandomSource` and the updates of its
:meth:`~PyTensorOps.assign` calls; a stateless instance is registered for dispatch on PyTensor tensors (it
cannot draw random numbers or assign, which only the graph's own ops do).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend import Ops, register_ops
from returnn_theano._pt import TensorConstant, TensorSharedVariable, TensorVariable, floatX, pt, pytensor, scan
from returnn_theano.ctc import ctc_log_likelihood, edit_distance, greedy_decode

Tensor = Any
Shape = Sequence[Any]


class RandomSource:
    """One shared generator threaded through the random draws of a graph; :meth:`updates` advances it per call."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared
        self.current = shared

    def uniform(self, shape: Any) -> Any:
        """Uniform [0, 1) float32 of ``shape``."""
        self.current, x = self.current.uniform(0.0, 1.0, size=shape)
        return x.astype(floatX)

    def normal(self, std: float, shape: Any) -> Any:
        """Normal(0, ``std``) float32 of ``shape``."""
        self.current, x = self.current.normal(0.0, std, size=shape)
        return x.astype(floatX)

    def updates(self) -> list[tuple[Any, Any]]:
        """The update that moves the shared generator past this graph's draws."""
        return [] if self.current is self.shared else [(self.shared, self.current)]


def _fix_inc_subtensor1_broadcast_check() -> None:
    """Make ``AdvancedIncSubtensor1``'s runtime broadcast check compare ``y`` with ``x[idx]``, not with ``x``.

    ``x[idx] += y`` (the gradient of every row gather: an embedding lookup, ``gather`` in a rec loop) needs ``y``
    of the shape of ``x[idx]``, ``(len(idx),) + x.shape[1:]``. PyTensor 3's check aligns ``y``'s trailing axes
    with ``x``'s own shape instead, so ``y``'s leading axis (one row per index) is compared with the number of
    rows of ``x``: with exactly one index (a batch of one seq in a rec step, or of one frame) and a table of more
    than one row, a correct update is refused as "Runtime broadcasting not allowed". Only the Python
    implementation (``perform``, used for all but 1-D ``x``) and the JAX/PyTorch dispatchers call this check.
    Installed only where the installed PyTensor shows the wrong refusal; real runtime broadcasting of ``y``
    (a length-1 axis not marked broadcastable, where ``x[idx]`` has another length) is still refused.
    """
    from pytensor.tensor.subtensor import AdvancedIncSubtensor1, advanced_inc_subtensor1

    node = advanced_inc_subtensor1(pt.matrix(dtype=floatX), pt.matrix(dtype=floatX), pt.lvector()).owner
    try:
        node.op._check_runtime_broadcasting(node, np.zeros((3, 2), floatX), np.zeros((1, 2), floatX),
                                            np.zeros(1, "int64"))
    except ValueError:
        pass
    else:
        return  # this PyTensor checks correctly

    def _check_runtime_broadcasting(self: Any, node: Any, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> None:
        if y.ndim == 0:
            return
        n = int(np.count_nonzero(idx)) if idx.dtype == bool else idx.shape[0]
        target = (n, *x.shape[idx.ndim:])  # the shape of x[idx]
        if any(not bcast and y_dim == 1 and y_dim != t_dim
               for bcast, y_dim, t_dim in zip(reversed(node.inputs[1].broadcastable), reversed(y.shape),
                                              reversed(target), strict=False)):
            raise ValueError(self._runtime_broadcast_error_msg)

    AdvancedIncSubtensor1._check_runtime_broadcasting = _check_runtime_broadcasting


_fix_inc_subtensor1_broadcast_check()


def _is_float(dtype: str) -> bool:
    return str(dtype).startswith("float")


def _shape_arg(shape: Shape) -> list[Any]:
    return [int(d) if isinstance(d, (int, np.integer)) else d for d in shape]


class PyTensorOps(Ops):
    """:class:`Ops` as PyTensor symbolic expressions (float32; dtypes named as strings)."""

    backend = "theano"

    def __init__(self, random: RandomSource | None = None) -> None:
        self.random = random
        #: ``(shared variable, new value)`` pairs from :meth:`assign`, for the train function's updates
        self.updates: list[tuple[Any, Any]] = []

    # -- helpers --------------------------------------------------------------------------------------------
    def _operand(self, value: Any, like: Any = None) -> Any:
        """``value`` as a tensor; Python numbers take the dtype of ``like`` (float32 for floats otherwise)."""
        if isinstance(value, pytensor.graph.basic.Variable):
            return value
        if isinstance(value, (bool, np.bool_)):
            return pt.constant(np.asarray(value, dtype="bool"))
        if isinstance(value, (int, float, np.number)) and like is not None:
            dtype = str(like.dtype)
            if not _is_float(dtype) and not float(value).is_integer():
                dtype = floatX
            return pt.constant(np.asarray(value, dtype=dtype))
        value = np.asarray(value)
        if value.dtype.kind == "f":  # float64 NumPy values must not upcast float32 graphs
            value = value.astype(like.dtype if like is not None and _is_float(like.dtype) else floatX)
        return pt.constant(value)

    def _random(self) -> RandomSource:
        if self.random is None:
            raise NetworkError("random draws need the ops of a graph being built (PyTensorOps with a RandomSource)")
        return self.random

    # -- creation and meta ----------------------------------------------------------------------------------
    def constant(self, value: Any, dtype: str = "float32") -> Tensor:
        """A constant tensor from a Python or numpy value."""
        return pt.constant(np.asarray(value, dtype=dtype))

    def convert(self, x: Any) -> Tensor:
        """``x`` as a PyTensor tensor (Python/numpy values become float32 constants)."""
        if isinstance(x, pytensor.graph.basic.Variable):
            return x
        return pt.constant(np.asarray(x, dtype=floatX))

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        """``x`` converted to ``dtype``."""
        x = self._operand(x)
        return x if str(x.dtype) == dtype else pt.cast(x, dtype)

    def dtype(self, x: Tensor) -> str:
        """The dtype name of ``x``."""
        return str(x.dtype)

    def ndim(self, x: Tensor) -> int:
        """The static rank of ``x``."""
        return int(x.ndim)

    def static_shape(self, x: Tensor) -> tuple[int | None, ...]:
        """Static dims of ``x``."""
        return tuple(None if d is None else int(d) for d in x.type.shape)

    def dynamic_dim(self, x: Tensor, axis: int) -> Tensor:
        """The run-time size of ``axis``."""
        return x.shape[axis]

    def fill(self, shape: Shape, value: float, dtype: str = "float32") -> Tensor:
        """A tensor of ``shape`` filled with ``value``."""
        return pt.alloc(np.asarray(value, dtype=dtype), *_shape_arg(shape))

    def arange(self, n: Any, dtype: str = "int32") -> Tensor:
        """0, 1, ..., n-1."""
        return pt.arange(n, dtype=dtype)

    # -- elementwise ----------------------------------------------------------------------------------------
    def exp(self, x: Tensor) -> Tensor:
        """e**x."""
        return pt.exp(x)

    def log(self, x: Tensor) -> Tensor:
        """Natural log."""
        return pt.log(x)

    def log1p(self, x: Tensor) -> Tensor:
        """log(1 + x)."""
        return pt.log1p(x)

    def sqrt(self, x: Tensor) -> Tensor:
        """Square root."""
        return pt.sqrt(x)

    def abs(self, x: Tensor) -> Tensor:
        """Absolute value."""
        return pt.abs(x)

    def tanh(self, x: Tensor) -> Tensor:
        """Hyperbolic tangent."""
        return pt.tanh(x)

    def sigmoid(self, x: Tensor) -> Tensor:
        """Logistic sigmoid."""
        return pt.sigmoid(x)

    def sin(self, x: Tensor) -> Tensor:
        """Sine."""
        return pt.sin(x)

    def cos(self, x: Tensor) -> Tensor:
        """Cosine."""
        return pt.cos(x)

    def maximum(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise max."""
        a = self._operand(a, b if isinstance(b, pytensor.graph.basic.Variable) else None)
        return pt.maximum(a, self._operand(b, a))

    def minimum(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise min."""
        a = self._operand(a, b if isinstance(b, pytensor.graph.basic.Variable) else None)
        return pt.minimum(a, self._operand(b, a))

    def where(self, cond: Tensor, a: Any, b: Any) -> Tensor:
        """``a`` where ``cond`` holds, else ``b``."""
        if isinstance(a, pytensor.graph.basic.Variable):
            b = self._operand(b, a)
        elif isinstance(b, pytensor.graph.basic.Variable):
            a = self._operand(a, b)
        else:
            a, b = self._operand(a), self._operand(b)
        return pt.switch(cond, a, b)

    def equal(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a == b``."""
        return pt.eq(a, self._operand(b, self._operand(a)))

    def not_equal(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a != b``."""
        return pt.neq(a, self._operand(b, self._operand(a)))

    def less(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a < b``."""
        return pt.lt(a, self._operand(b, self._operand(a)))

    def greater(self, a: Tensor, b: Any) -> Tensor:
        """Elementwise ``a > b``."""
        return pt.gt(a, self._operand(b, self._operand(a)))

    def stop_gradient(self, x: Tensor) -> Tensor:
        """``x`` with a zero gradient."""
        return pytensor.gradient.zero_grad(x)

    def clip_gradient(self, x: Tensor, low: float, high: float) -> Tensor:
        """``x`` with its backward gradient clipped elementwise (Theano's ``grad_clip``)."""
        return pytensor.gradient.grad_clip(x, np.float32(low), np.float32(high))

    def filter_gradient(self, x: Tensor, threshold: float) -> Tensor:
        """``x`` with frames of too large a backward gradient norm dropped (an OpFromGraph with its own gradient)."""
        # imported here: returnn_theano._pt must configure PyTensor before any of its modules load
        from pytensor.compile.builders import OpFromGraph

        v = x.type()

        def grad(inputs: list[Tensor], outputs: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
            dy = grads[0]
            norm = pt.sqrt(pt.sum(pt.sqr(dy), axis=-1, keepdims=True))
            return [pt.switch(norm <= np.float32(threshold), dy, pt.zeros_like(dy))]

        # PyTensor 3 names the override "pullback" (and deprecates "lop_overrides"); 2.x knows only the latter
        override = "pullback" if "pullback" in inspect.signature(OpFromGraph).parameters else "lop_overrides"
        return OpFromGraph([v], [pt.identity(v)], inline=True, **{override: grad})(x)

    # -- linear algebra and reductions ----------------------------------------------------------------------
    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """Matrix product of two 2-D tensors."""
        return pt.dot(a, b)

    def batch_matmul(self, a: Tensor, b: Tensor) -> Tensor:
        """Matrix product over the last two axes (batched ``dot``)."""
        return pt.matmul(a, b)

    def reduce(self, x: Tensor, mode: str, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Reduce over ``axis``: sum, mean, max, min, prod or logsumexp."""
        if axis is not None and not isinstance(axis, int):
            axis = sorted(int(a) % x.ndim for a in axis)
        if mode == "sum":
            return pt.sum(x, axis=axis, keepdims=keepdims)
        if mode == "mean":
            return pt.mean(x, axis=axis, keepdims=keepdims)
        if mode == "max":
            return pt.max(x, axis=axis, keepdims=keepdims)
        if mode == "min":
            return pt.min(x, axis=axis, keepdims=keepdims)
        if mode == "prod":
            return pt.prod(x, axis=axis, keepdims=keepdims)
        if mode == "logsumexp":
            top = pytensor.gradient.zero_grad(pt.max(x, axis=axis, keepdims=True))
            top = pt.switch(pt.isinf(top), pt.zeros_like(top), top)  # all -inf: log(0), not NaN
            out = pt.log(pt.sum(pt.exp(x - top), axis=axis, keepdims=True)) + top
            if keepdims:
                return out
            axes = range(x.ndim) if axis is None else [axis] if isinstance(axis, int) else axis
            return pt.squeeze(out, axis=tuple(a % x.ndim for a in axes))
        raise ValueError(f"unknown reduce mode {mode!r}")

    def argmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """int32 index of the maximum along ``axis``."""
        return pt.cast(pt.argmax(x, axis=axis), "int32")

    def top_k(self, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Indices by a partial sort on the host (:class:`TopKIndicesOp`), values gathered so gradients flow."""
        indices = TopKIndicesOp(int(k))(x)
        return self.take_along_axis(x, indices, axis=-1), indices

    # -- shape ----------------------------------------------------------------------------------------------
    def reshape(self, x: Tensor, shape: Shape) -> Tensor:
        """``x`` reshaped."""
        shape = _shape_arg(shape)
        return pt.reshape(x, shape, ndim=len(shape))

    def transpose(self, x: Tensor, perm: Sequence[int]) -> Tensor:
        """Axes permuted."""
        return x.dimshuffle(*[int(p) for p in perm])

    def expand_dims(self, x: Tensor, axis: int) -> Tensor:
        """A new axis of size 1 at ``axis``."""
        return pt.expand_dims(x, axis)

    def squeeze(self, x: Tensor, axis: int) -> Tensor:
        """Axis ``axis`` removed."""
        return pt.squeeze(x, axis=axis % x.ndim)

    def concat(self, xs: Sequence[Tensor], axis: int) -> Tensor:
        """Concatenation along ``axis``."""
        xs = list(xs)
        return xs[0] if len(xs) == 1 else pt.concatenate(xs, axis=axis)

    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        """Stacking along a new ``axis``."""
        return pt.stack(list(xs), axis=axis)

    def tile(self, x: Tensor, reps: Shape) -> Tensor:
        """``x`` repeated ``reps[i]`` times along each axis."""
        return pt.tile(x, _shape_arg(reps))

    def pad(self, x: Tensor, paddings: Sequence[tuple[int, int]], mode: str = "constant", value: float = 0.0) -> Tensor:
        """Pad each axis by (before, after); constant, reflect or symmetric (TensorFlow's and NumPy's meaning)."""
        mode = mode.lower()
        pads = [(int(a), int(b)) for a, b in paddings]
        if mode == "constant":
            shape = [x.shape[i] + a + b if a or b else x.shape[i] for i, (a, b) in enumerate(pads)]
            index = tuple(slice(a, a + x.shape[i]) if a or b else slice(None) for i, (a, b) in enumerate(pads))
            padded = pt.alloc(np.asarray(value, dtype=str(x.dtype)), *shape)
            static = [None if d is None else d + a + b for d, (a, b) in zip(x.type.shape, pads)]
            return pt.specify_shape(pt.set_subtensor(padded[index], x), static)
        if mode in ("reflect", "symmetric"):
            return pt.pad(x, pads, mode=mode)
        raise ValueError(f"unknown pad mode {mode!r}; known: constant, reflect, symmetric")

    def gather(self, params: Tensor, indices: Tensor, axis: int = 0) -> Tensor:
        """``params`` indexed by int ``indices`` along ``axis``."""
        return pt.take(params, indices, axis=axis)

    def take_along_axis(self, x: Tensor, indices: Tensor, axis: int) -> Tensor:
        """Like ``np.take_along_axis``."""
        axis = axis % x.ndim
        index = []
        for i in range(x.ndim):
            if i == axis:
                index.append(indices)
            else:
                pattern = ["x"] * x.ndim
                pattern[i] = 0
                index.append(pt.arange(x.shape[i]).dimshuffle(*pattern))
        return x[tuple(index)]

    # -- conv and pooling -----------------------------------------------------------------------------------
    def conv(self, x: Tensor, filters: Tensor, *, strides: Sequence[int], dilation: Sequence[int],
             padding: str) -> Tensor:
        """N-D convolution, channels last, as the sum over filter offsets of shifted inputs times their weights."""
        n = x.ndim - 2
        sizes = tuple(filters.type.shape[:n])
        if None in sizes:
            raise NetworkError(f"conv needs filters of static spatial size, got shape {filters.type.shape}")
        geom = _Geometry(sizes, strides, dilation, padding)
        out = None
        for offset, view in geom.views(x, 0.0):
            term = self.dot(view, filters[offset])
            out = term if out is None else out + term
        return pt.specify_shape(out, [*geom.static_out_shape(x), filters.type.shape[-1]])

    def pool(self, x: Tensor, *, mode: str, size: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
             padding: str) -> Tensor:
        """N-D max or average pooling (padding not counted), channels last."""
        geom = _Geometry(tuple(int(s) for s in size), strides, dilation, padding)
        if mode == "max":
            views = [v for _, v in geom.views(x, -np.inf)]
            out = views[0]
            for view in views[1:]:
                out = pt.maximum(out, view)
        elif mode in ("avg", "average", "mean"):
            total = sum(v for _, v in geom.views(x, 0.0))
            ones = pt.ones_like(x[..., :1], dtype=str(x.dtype))
            count = sum(v for _, v in geom.views(ones, 0.0))
            out = total / pt.maximum(count, np.asarray(1.0, dtype=str(x.dtype)))
        else:
            raise ValueError(f"unknown pool mode {mode!r}; known: max, avg")
        return pt.specify_shape(out, [*geom.static_out_shape(x), x.type.shape[-1]])

    # -- randomness and state -------------------------------------------------------------------------------
    def random_uniform(self, shape: Shape) -> Tensor:
        """Uniform [0, 1) float32, advancing this graph's generator."""
        return self._random().uniform(_shape_arg(shape))

    def random_normal(self, shape: Shape, stddev: float = 1.0) -> Tensor:
        """Normal(0, ``stddev``) float32, advancing this graph's generator."""
        return self._random().normal(float(stddev), _shape_arg(shape))

    def assign(self, variable: Any, value: Tensor) -> None:
        """Record ``(variable, value)`` for the updates of the function compiled from this graph."""
        value = pt.cast(self._operand(value), variable.dtype)
        self.updates.append((variable, variable.type.filter_variable(value, allow_convert=True)))

    # -- recurrence -----------------------------------------------------------------------------------------
    def scan(
        self,
        step: Callable[..., tuple[Tensor, tuple[Tensor, ...]]],
        sequences: Sequence[Tensor],
        initial_states: Sequence[Tensor],
        *,
        non_sequences: Sequence[Tensor] = (),
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``pytensor.scan`` over axis 0; the output comes first in scan's outputs, then the states."""
        inits = [self._operand(s) for s in initial_states]
        n_seq, n_states = len(sequences), len(inits)

        def inner(*args: Any) -> list[Any]:
            frames, states = args[:n_seq], args[n_seq : n_seq + n_states]
            output, new_states = step(*frames, *states, *args[n_seq + n_states :])
            new_states = tuple(new_states)
            if len(new_states) != n_states:
                raise ValueError(f"scan step returned {len(new_states)} states for {n_states} initial states")
            # scan needs each new state of exactly its initial state's type
            fixed = [init.type.filter_variable(pt.cast(new, init.dtype), allow_convert=True)
                     for init, new in zip(states, new_states)]
            return [output, *fixed]

        results = scan(inner, sequences=list(sequences), outputs_info=[None, *inits],
                       non_sequences=list(non_sequences), return_list=True, return_updates=False)
        outputs, *states = results
        return outputs, tuple(s[-1] for s in states)

    # -- sequence losses ------------------------------------------------------------------------------------
    def ctc_loss(self, logits: Tensor, seq_lens: Tensor, labels: Tensor, label_lens: Tensor) -> Tensor:
        """Per seq -log p(labels | input) by the forward algorithm on ``scan`` (blank = last class)."""
        logp = self.log_softmax(logits)
        loglik = ctc_log_likelihood(logp, pt.cast(seq_lens, "int32"), pt.cast(labels, "int32"),
                                    pt.cast(label_lens, "int32"), _blank(logits))
        return -loglik

    def edit_distance(self, hyp: Tensor, hyp_lens: Tensor, ref: Tensor, ref_lens: Tensor) -> Tensor:
        """Summed Levenshtein distance (float32 scalar), computed on the host."""
        return EditDistanceOp()(pt.cast(hyp, "int32"), pt.cast(hyp_lens, "int32"), pt.cast(ref, "int32"),
                                pt.cast(ref_lens, "int32"))

    def ctc_greedy_decode(self, logits: Tensor, seq_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Best path (argmax per frame), repeats merged and blanks removed on the host."""
        best = self.argmax(logits, axis=-1)
        labels, lens = CtcCollapseOp()(best, pt.cast(seq_lens, "int32"), pt.cast(_blank(logits), "int32"))
        return labels, lens

    # -- fast paths -----------------------------------------------------------------------------------------
    def square(self, x: Tensor) -> Tensor:
        """x * x."""
        return pt.sqr(x)

    def clip(self, x: Tensor, low: float, high: float) -> Tensor:
        """``x`` limited to [low, high]."""
        return pt.clip(x, self._operand(low, x), self._operand(high, x))

    def relu(self, x: Tensor) -> Tensor:
        """max(x, 0)."""
        return pt.maximum(x, self._operand(0.0, x))

    def softplus(self, x: Tensor) -> Tensor:
        """log(1 + e**x) (PyTensor's stable kernel)."""
        return pt.softplus(x)

    def softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """PyTensor's softmax (fused kernel and rewrites)."""
        return pt.special.softmax(x, axis=axis)

    def log_softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """PyTensor's log-softmax."""
        return pt.special.log_softmax(x, axis=axis)

    def one_hot(self, indices: Tensor, depth: int) -> Tensor:
        """float32 one-hot vectors on a new last axis."""
        return pt.cast(pt.eq(pt.shape_padright(indices), pt.arange(int(depth))), floatX)

    def reverse_sequence(self, x: Tensor, seq_lens: Tensor) -> Tensor:
        """Reverse each seq within its first ``seq_lens[b]`` frames (one advanced index)."""
        time = pt.arange(x.shape[1])[None, :]
        lens = pt.cast(seq_lens, "int64")[:, None]
        idx = pt.switch(pt.lt(time, lens), lens - 1 - time, time)
        return x[pt.arange(x.shape[0])[:, None], idx]


def _blank(logits: Any) -> Any:
    """The blank index: the last class, static where the class dim is."""
    dim = logits.type.shape[-1]
    return int(dim) - 1 if dim is not None else logits.shape[-1] - 1


class _Geometry:
    """TensorFlow's SAME/VALID window geometry over the spatial axes of a (B, *spatial, C) tensor."""

    def __init__(self, sizes: tuple[int, ...], strides: Sequence[int], dilation: Sequence[int], padding: str) -> None:
        self.sizes = sizes
        self.strides = tuple(int(s) for s in strides)
        self.dilation = tuple(int(d) for d in dilation)
        self.padding = padding.upper()
        if self.padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
        if not len(self.sizes) == len(self.strides) == len(self.dilation):
            raise ValueError(f"window {sizes}, strides {tuple(strides)} and dilation {tuple(dilation)} differ in rank")

    def static_out_shape(self, x: Any) -> list[int | None]:
        """Batch and spatial output dims as far as they are known statically."""
        shape: list[int | None] = [x.type.shape[0]]
        for i, (k, s, d) in enumerate(zip(self.sizes, self.strides, self.dilation)):
            length = x.type.shape[1 + i]
            if length is None:
                shape.append(None)
            elif self.padding == "SAME":
                shape.append((length + s - 1) // s)
            else:
                shape.append(max((length - (k - 1) * d - 1) // s + 1, 0))
        return shape

    def views(self, x: Any, pad_value: float) -> list[tuple[tuple[int, ...], Any]]:
        """Pad the spatial axes as TensorFlow does; one strided view of the padded input per window offset."""
        n = len(self.sizes)
        out_lens, pads = [], []
        for i in range(n):
            length = x.shape[1 + i]
            eff = (self.sizes[i] - 1) * self.dilation[i] + 1
            if self.padding == "SAME":
                out_len = (length + self.strides[i] - 1) // self.strides[i]
                total = pt.maximum((out_len - 1) * self.strides[i] + eff - length, 0)
                pads.append((total // 2, total - total // 2))
            else:
                out_len = pt.maximum((length - eff) // self.strides[i] + 1, 0)
                pads.append((0, 0))
            out_lens.append(out_len)
        if self.padding == "SAME":
            shape = [x.shape[0]] + [x.shape[1 + i] + pads[i][0] + pads[i][1] for i in range(n)] + [x.shape[-1]]
            padded = pt.alloc(np.asarray(pad_value, dtype=str(x.dtype)), *shape)
            index = [slice(None)] + [slice(pads[i][0], pads[i][0] + x.shape[1 + i]) for i in range(n)] + [slice(None)]
            x = pt.set_subtensor(padded[tuple(index)], x)
        views = []
        for offset in itertools.product(*[range(k) for k in self.sizes]):
            index = [slice(None)]
            for i, k in enumerate(offset):
                start = k * self.dilation[i]
                index.append(slice(start, start + (out_lens[i] - 1) * self.strides[i] + 1, self.strides[i]))
            index.append(slice(None))
            views.append((offset, x[tuple(index)]))
        return views


class _HostOp(pytensor.graph.op.Op):
    """A NumPy op without gradient (its inputs are integer labels)."""

    __props__ = ()

    def connection_pattern(self, node: Any) -> list[list[bool]]:
        """No output depends differentiably on any input."""
        return [[False] * len(node.outputs) for _ in node.inputs]

    def grad(self, inputs: Sequence[Any], output_grads: Sequence[Any]) -> list[Any]:
        """Disconnected from every input."""
        return [pytensor.gradient.disconnected_type() for _ in inputs]


class EditDistanceOp(_HostOp):
    """Summed Levenshtein distance of int label seqs ``hyp`` (B, L1) and ``ref`` (B, L2) with their lengths."""

    def make_node(self, hyp: Any, hyp_lens: Any, ref: Any, ref_lens: Any) -> Any:
        """Four int inputs, one float32 scalar."""
        inputs = [pt.as_tensor_variable(v) for v in (hyp, hyp_lens, ref, ref_lens)]
        return pytensor.graph.basic.Apply(self, inputs, [pt.scalar(dtype=floatX)])

    def perform(self, node: Any, inputs: Sequence[np.ndarray], output_storage: list[list[Any]]) -> None:
        """Sum of the per-seq distances."""
        hyp, hyp_lens, ref, ref_lens = inputs
        total = sum(edit_distance([int(v) for v in hyp[b, : hyp_lens[b]]], [int(v) for v in ref[b, : ref_lens[b]]])
                    for b in range(hyp.shape[0]))
        output_storage[0][0] = np.asarray(total, dtype=floatX)

    def infer_shape(self, fgraph: Any, node: Any, shapes: Any) -> list[tuple[()]]:
        """A scalar."""
        return [()]


class TopKIndicesOp(_HostOp):
    """int32 indices of the ``k`` largest entries along the last axis, largest first, of equal entries the lower
    index first (as tf.math.top_k): a partial sort, O(n) per row where a stable full argsort is O(n log n) (for a
    beam of 12 over 32 x 12000 scores the argsort took 100 ms, this 3 ms)."""

    __props__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k

    def make_node(self, x: Any) -> Any:
        """One float input, int32 indices of the same rank."""
        x = pt.as_tensor_variable(x)
        return pytensor.graph.basic.Apply(self, [x], [pt.tensor(dtype="int32", shape=(None,) * x.ndim)])

    def perform(self, node: Any, inputs: Sequence[np.ndarray], output_storage: list[list[Any]]) -> None:
        """``np.argpartition``, then ordered by value and index; a row whose k-th value has equal entries left
        out takes the first of them instead."""
        (x,) = inputs
        rows = x.reshape(-1, x.shape[-1])
        k = self.k
        if k > rows.shape[1]:
            raise ValueError(f"top_k: k={k} is more than the {rows.shape[1]} entries of the last axis")
        idx = np.argpartition(-rows, k - 1, axis=-1)[:, :k]
        vals = np.take_along_axis(rows, idx, axis=-1)
        kth = vals.min(axis=-1, keepdims=True)
        for r in np.nonzero((rows == kth).sum(-1) > (vals == kth).sum(-1))[0]:
            above = np.nonzero(rows[r] > kth[r])[0]
            idx[r] = np.concatenate([above, np.nonzero(rows[r] == kth[r])[0][: k - len(above)]])
            vals[r] = rows[r, idx[r]]
        order = np.lexsort((idx, -vals), axis=-1)
        output_storage[0][0] = np.take_along_axis(idx, order, axis=-1).astype("int32").reshape(*x.shape[:-1], k)

    def infer_shape(self, fgraph: Any, node: Any, shapes: Any) -> list[tuple[Any, ...]]:
        """The input's shape with ``k`` on the last axis."""
        return [(*shapes[0][:-1], self.k)]


class CtcCollapseOp(_HostOp):
    """Best-path frame labels (B, T) with seq lengths and the blank index -> labels (B, L) and lengths (B,)."""

    def make_node(self, best: Any, seq_lens: Any, blank: Any) -> Any:
        """int32 labels (B, L) and lengths (B,)."""
        inputs = [pt.as_tensor_variable(v) for v in (best, seq_lens, blank)]
        return pytensor.graph.basic.Apply(self, inputs, [pt.matrix(dtype="int32"), pt.vector(dtype="int32")])

    def perform(self, node: Any, inputs: Sequence[np.ndarray], output_storage: list[list[Any]]) -> None:
        """Collapse repeats, drop blanks, pad with zeros."""
        best, seq_lens, blank = inputs
        seqs = [greedy_decode(best[b], int(seq_lens[b]), int(blank)) for b in range(best.shape[0])]
        labels = np.zeros((len(seqs), max((len(s) for s in seqs), default=0)), dtype="int32")
        for b, seq in enumerate(seqs):
            labels[b, : len(seq)] = seq
        output_storage[0][0] = labels
        output_storage[1][0] = np.asarray([len(s) for s in seqs], dtype="int32")


class _DispatchOps(PyTensorOps):
    """The stateless ops found by tensor type: no graph to draw random numbers in or to collect updates for."""

    def assign(self, variable: Any, value: Tensor) -> None:
        """Refused: only a graph's own ops collect updates."""
        raise NetworkError("assign needs the ops of a graph being built (a PyTensorOps of the backend)")


#: the instance :func:`returnn_core.frontend.ops_for` returns for PyTensor tensors (no random draws, no assign)
OPS = _DispatchOps()
# shared variables and constants are TensorVariable subclasses; named for clarity
register_ops((TensorVariable, TensorSharedVariable, TensorConstant), OPS)
