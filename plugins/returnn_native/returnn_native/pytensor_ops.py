"""PyTensor binding: NativeLstm as C ops (forward and gradient) linking the CPU kernel library, a rewrite that
runs independent pairs of them (a BLSTM's two directions) in one kernel call, and the input projection's GEMM op."""

from __future__ import annotations

import os
from typing import Any

import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.graph.traversal import ancestors
from pytensor.link.c.op import COp

from returnn_native.build_cache import source_path
from returnn_native.cpu_kernels import (
    build_cpu_kernels,
    lstm_bwd,
    lstm_bwd_pair,
    lstm_fwd,
    lstm_fwd_pair,
    matmul,
    native_matmul_preferred,
)
from returnn_native.errors import NativeOpError
from returnn_native.matmul_grad import matmul_gradients

# Shared C helpers: contiguous float32 views of the inputs and reusable C-contiguous outputs.
_SUPPORT_CODE = r"""
static int rn_alloc_output(PyArrayObject** out, int nd, const npy_intp* dims) {
  if (*out && PyArray_NDIM(*out) == nd && PyArray_TYPE(*out) == NPY_FLOAT32 && PyArray_IS_C_CONTIGUOUS(*out)) {
    int same = 1;
    for (int k = 0; k < nd; ++k) same &= PyArray_DIMS(*out)[k] == dims[k];
    if (same) return 0;
  }
  Py_XDECREF(*out);
  *out = (PyArrayObject*)PyArray_EMPTY(nd, (npy_intp*)dims, NPY_FLOAT32, 0);
  return *out ? 0 : -1;
}

static int rn_check_dims(PyArrayObject* a, int nd, const npy_intp* dims, const char* op, const char* what) {
  for (int k = 0; k < nd; ++k) {
    if (PyArray_DIMS(a)[k] != dims[k]) {
      PyErr_Format(PyExc_ValueError, "%s: input '%s' has a wrong shape in axis %d: %ld, expected %ld", op, what, k,
                   (long)PyArray_DIMS(a)[k], (long)dims[k]);
      return -1;
    }
  }
  return 0;
}
"""

# Contiguous inputs (new references in `in`, released by the caller), checked shapes, allocated outputs, and the
# kernel's arguments: d = (B, T, n), the input pointers ip and the output pointers op.
_PREPARE_CODE = r"""
static int rn_fwd_prepare(PyArrayObject** src, PyArrayObject** in, PyArrayObject*** out, int* d, const float** ip,
                          float** op) {
  for (int k = 0; k < 5; ++k)
    if (!(in[k] = (PyArrayObject*)PyArray_GETCONTIGUOUS(src[k]))) return -1;
  const npy_intp B = PyArray_DIMS(in[0])[0], T = PyArray_DIMS(in[0])[1], n = PyArray_DIMS(in[1])[0];
  const npy_intp d_z[3] = {B, T, 4 * n}, d_w[2] = {n, 4 * n}, d_m[2] = {B, T}, d_s[2] = {B, n};
  const npy_intp d_y[3] = {B, T, n};
  const char* names[5] = {"z", "w_re", "mask", "h0", "c0"};
  const npy_intp* dims[5] = {d_z, d_w, d_m, d_s, d_s};
  for (int k = 0; k < 5; ++k)
    if (rn_check_dims(in[k], PyArray_NDIM(in[k]), dims[k], "NativeLstm", names[k])) return -1;
  const npy_intp* out_dims[6] = {d_y, d_s, d_s, d_z, d_y, d_y};
  for (int k = 0; k < 6; ++k)
    if (rn_alloc_output(out[k], k == 1 || k == 2 ? 2 : 3, out_dims[k])) return -1;
  for (int k = 0; k < 5; ++k) ip[k] = (const float*)PyArray_DATA(in[k]);
  for (int k = 0; k < 6; ++k) op[k] = (float*)PyArray_DATA(*out[k]);
  d[0] = (int)B, d[1] = (int)T, d[2] = (int)n;
  return 0;
}

static int rn_bwd_prepare(PyArrayObject** src, PyArrayObject** in, PyArrayObject*** out, int* d, const float** ip,
                          float** op) {
  for (int k = 0; k < 10; ++k)
    if (!(in[k] = (PyArrayObject*)PyArray_GETCONTIGUOUS(src[k]))) return -1;
  const npy_intp B = PyArray_DIMS(in[4])[0], T = PyArray_DIMS(in[4])[1], n = PyArray_DIMS(in[0])[0];
  const npy_intp d_z[3] = {B, T, 4 * n}, d_w[2] = {n, 4 * n}, d_m[2] = {B, T}, d_s[2] = {B, n};
  const npy_intp d_y[3] = {B, T, n};
  const char* names[10] = {"w_re", "mask", "h0", "c0", "gates", "cells", "h_prev", "dy", "dh_final", "dc_final"};
  const npy_intp* dims[10] = {d_w, d_m, d_s, d_s, d_z, d_y, d_y, d_y, d_s, d_s};
  for (int k = 0; k < 10; ++k)
    if (rn_check_dims(in[k], PyArray_NDIM(in[k]), dims[k], "NativeLstmGrad", names[k])) return -1;
  const npy_intp* out_dims[4] = {d_z, d_w, d_s, d_s};
  for (int k = 0; k < 4; ++k)
    if (rn_alloc_output(out[k], k == 0 ? 3 : 2, out_dims[k])) return -1;
  for (int k = 0; k < 10; ++k) ip[k] = (const float*)PyArray_DATA(in[k]);
  for (int k = 0; k < 4; ++k) op[k] = (float*)PyArray_DATA(*out[k]);
  d[0] = (int)B, d[1] = (int)T, d[2] = (int)n;
  return 0;
}
"""


def _kernel_call_code(
    calls: list[tuple[list[str], list[str], int]], prepare: str, kernel: str, pair_kernel: str, label: str, fail: str
) -> str:
    """C code running one kernel call, or two at once, from (input names, output names, direction) per call."""
    lines = ["{", "int ok_ = 1, rc_ = 0;"]
    args = []
    for c, (ins, outs, direction) in enumerate(calls):
        lines += [
            f"PyArrayObject* src{c}_[{len(ins)}] = {{{', '.join(ins)}}};",
            f"PyArrayObject* in{c}_[{len(ins)}] = {{NULL}};",
            f"PyArrayObject** out{c}_[{len(outs)}] = {{{', '.join('&' + o for o in outs)}}};",
            f"int d{c}_[3] = {{0, 0, 0}}; const float* i{c}_[{len(ins)}]; float* o{c}_[{len(outs)}];",
            f"ok_ = ok_ && {prepare}(src{c}_, in{c}_, out{c}_, d{c}_, i{c}_, o{c}_) == 0;",
        ]
        ptrs = [f"i{c}_[{k}]" for k in range(len(ins))] + [f"o{c}_[{k}]" for k in range(len(outs))]
        args.append(", ".join([f"d{c}_[0], d{c}_[1], d{c}_[2], {direction}", *ptrs]))
    # n = 0 leaves nothing to compute (and the kernels take it for a bad argument)
    if len(calls) == 1:
        lines.append(f"if (ok_ && d0_[2] > 0) rc_ = {kernel}({args[0]});")
    else:
        lines += [
            f"if (ok_ && d0_[2] > 0 && d1_[2] > 0) rc_ = {pair_kernel}({args[0]}, {args[1]});",
            f"else if (ok_) {{ if (d0_[2] > 0) rc_ = {kernel}({args[0]});",
            f"  if (!rc_ && d1_[2] > 0) rc_ = {kernel}({args[1]}); }}",
        ]
    lines.append(f'if (ok_ && rc_) {{ PyErr_Format(PyExc_RuntimeError, "{label} failed with code %d", rc_); ok_ = 0; }}')
    for c, (ins, _outs, _direction) in enumerate(calls):
        lines.append(f"for (int k = 0; k < {len(ins)}; ++k) Py_XDECREF(in{c}_[k]);")
    lines += [f"if (!ok_) {{ {fail} }}", "}"]
    return "\n".join(lines)


class _KernelLinking(COp):
    """C-linking parts of the ops calling the CPU kernel library."""

    def c_headers(self, **kwargs: Any) -> list[str]:
        return ["lstm.h"]

    def c_header_dirs(self, **kwargs: Any) -> list[str]:
        return [source_path()]

    def c_libraries(self, **kwargs: Any) -> list[str]:
        return [os.path.basename(build_cpu_kernels().path)[3:-3]]  # lib<name>.so -> <name>

    def c_lib_dirs(self, **kwargs: Any) -> list[str]:
        return [os.path.dirname(build_cpu_kernels().path)]

    def c_compile_args(self, **kwargs: Any) -> list[str]:
        return [f"-Wl,-rpath,{os.path.dirname(build_cpu_kernels().path)}"]

    def c_support_code(self, **kwargs: Any) -> str:
        return _SUPPORT_CODE + _PREPARE_CODE

    def c_code_cache_version(self) -> tuple[Any, ...]:
        # the kernel library's cache folder name carries the hash of its sources and toolchain
        return (2, os.path.basename(os.path.dirname(build_cpu_kernels().path)))


def _check_direction(direction: int) -> int:
    if direction not in (1, -1):
        raise NativeOpError(f"NativeLstm: direction must be 1 or -1, got {direction!r}")
    return int(direction)


class _NativeLstmCOp(_KernelLinking):
    """One kernel call: the forward or the gradient op of one direction."""

    __props__ = ("direction",)
    #: names of the inputs and outputs, the C function that prepares a call, the kernel, the pair kernel, the label
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    prepare = kernel = pair_kernel = label = ""

    def __init__(self, direction: int = 1) -> None:
        self.direction = _check_direction(direction)

    def c_code(self, node: Any, name: str, inp: list[str], out: list[str], sub: dict[str, str]) -> str:
        calls = [(list(inp), list(out), self.direction)]
        return _kernel_call_code(calls, self.prepare, self.kernel, self.pair_kernel, self.label, sub["fail"])


def _f32(v: Any, ndim: int, what: str) -> Any:
    v = pt.as_tensor_variable(v)
    if v.ndim != ndim:
        raise NativeOpError(f"NativeLstm: {what} must have {ndim} dims, got {v.ndim} ({v.type})")
    return pt.cast(v, "float32") if v.dtype != "float32" else v


class NativeLstmOp(_NativeLstmCOp):
    """Forward: (z, w_re, mask, h0, c0) -> (y, h_final, c_final, gates, cells, h_prev)."""

    input_names = ("z", "w_re", "mask", "h0", "c0")
    output_names = ("y", "h_final", "c_final", "gates", "cells", "h_prev")
    prepare, kernel, pair_kernel = "rn_fwd_prepare", "returnn_lstm_fwd_cpu", "returnn_lstm_fwd_pair_cpu"
    label = "NativeLstm forward kernel"
    mask_index = 2

    def make_node(self, z: Any, w_re: Any, mask: Any, h0: Any, c0: Any) -> Apply:
        ins = [_f32(z, 3, "z"), _f32(w_re, 2, "w_re"), _f32(mask, 2, "mask"), _f32(h0, 2, "h0"), _f32(c0, 2, "c0")]
        t3, t2 = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
        outs = [t3.type(), t2.type(), t2.type(), t3.type(), t3.type(), t3.type()]
        return Apply(self, ins, outs)

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        for storage, value in zip(output_storage, lstm_fwd(*inputs, direction=self.direction)):
            storage[0] = value

    def connection_pattern(self, node: Any) -> list[list[bool]]:
        # inputs x outputs: the mask is not differentiated; the workspace outputs carry no gradient
        row = [True, True, True, False, False, False]
        return [row, row, [False] * 6, row, row]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        z, w_re, mask, h0, c0 = inputs
        grads = []
        for out, g in zip(outputs[:3], cotangents[:3]):
            grads.append(out.zeros_like() if g is None or isinstance(g.type, DisconnectedType) else g)
        dz, dw_re, dh0, dc0 = NativeLstmGradOp(self.direction)(w_re, mask, h0, c0, *outputs[3:], *grads)
        return [dz, dw_re, disconnected_type(), dh0, dc0]


class NativeLstmGradOp(_NativeLstmCOp):
    """Gradient: (w_re, mask, h0, c0, gates, cells, h_prev, dy, dh_final, dc_final) -> (dz, dw_re, dh0, dc0)."""

    input_names = ("w_re", "mask", "h0", "c0", "gates", "cells", "h_prev", "dy", "dh_final", "dc_final")
    output_names = ("dz", "dw_re", "dh0", "dc0")
    prepare, kernel, pair_kernel = "rn_bwd_prepare", "returnn_lstm_bwd_cpu", "returnn_lstm_bwd_pair_cpu"
    label = "NativeLstmGrad kernel"
    mask_index = 1

    def make_node(self, *inputs: Any) -> Apply:
        ndims = (2, 2, 2, 2, 3, 3, 3, 3, 2, 2)
        ins = [_f32(v, d, w) for v, d, w in zip(inputs, ndims, self.input_names)]
        t3, t2 = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
        return Apply(self, ins, [t3.type(), t2.type(), t2.type(), t2.type()])

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        for storage, value in zip(output_storage, lstm_bwd(*inputs, direction=self.direction)):
            storage[0] = value


class NativeLstmPairOp(_KernelLinking):
    """Two calls of a single op (forward or gradient) in one kernel call that runs them at the same time.

    Inputs and outputs are those of the first call followed by those of the second. Made by :class:`PairNativeLstms`
    from two nodes of a compiled graph (a BLSTM's two directions), so it needs no gradient of its own.
    """

    __props__ = ("single", "directions")

    def __init__(self, single: type[_NativeLstmCOp], directions: tuple[int, int]) -> None:
        self.single = single
        self.directions = tuple(_check_direction(d) for d in directions)

    def make_node(self, *inputs: Any) -> Apply:
        k = len(self.single.input_names)
        if len(inputs) != 2 * k:
            raise NativeOpError(f"{self.single.__name__} pair: expected {2 * k} inputs, got {len(inputs)}")
        first = self.single(self.directions[0]).make_node(*inputs[:k])
        second = self.single(self.directions[1]).make_node(*inputs[k:])
        outs = [o.type() for o in (*first.outputs, *second.outputs)]
        return Apply(self, [*first.inputs, *second.inputs], outs)

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        k = len(self.single.input_names)
        pair = lstm_fwd_pair if self.single is NativeLstmOp else lstm_bwd_pair
        first, second = pair(inputs[:k], inputs[k:], self.directions)
        for storage, value in zip(output_storage, (*first, *second)):
            storage[0] = value

    def c_code(self, node: Any, name: str, inp: list[str], out: list[str], sub: dict[str, str]) -> str:
        k, m = len(self.single.input_names), len(self.single.output_names)
        calls = [(list(inp[:k]), list(out[:m]), self.directions[0]), (list(inp[k:]), list(out[m:]), self.directions[1])]
        s = self.single
        return _kernel_call_code(calls, s.prepare, s.kernel, s.pair_kernel, f"{s.label} pair", sub["fail"])


def _depends_on(node: Apply, other: Apply) -> bool:
    """Whether ``node`` computes from an output of ``other``."""
    outs = set(other.outputs)
    return any(v in outs for v in ancestors(node.inputs))


class PairNativeLstms(GraphRewriter):
    """Merges NativeLstm nodes (forward, or gradient) that share a mask and do not depend on each other into pairs.

    A BLSTM's two directions read the same input and mask; as one :class:`NativeLstmPairOp` they run at the same
    time on the kernel's threads (as TF runs them), not one after the other. Layers code nothing for it.
    """

    def add_requirements(self, fgraph: Any) -> None:
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph: Any) -> None:
        for single in (NativeLstmOp, NativeLstmGradOp):
            nodes = [n for n in fgraph.toposort() if type(n.op) is single]  # not the CUDA subclasses
            paired: set[Apply] = set()
            for i, a in enumerate(nodes):
                for b in nodes[i + 1 :]:
                    if a in paired or b in paired or a.inputs[single.mask_index] is not b.inputs[single.mask_index]:
                        continue
                    # the graph as changed by earlier pairs, so no pair can close a cycle
                    if _depends_on(a, b) or _depends_on(b, a):
                        continue
                    pair = NativeLstmPairOp(single, (a.op.direction, b.op.direction))(*a.inputs, *b.inputs)
                    fgraph.replace_all_validate(
                        list(zip([*a.outputs, *b.outputs], pair)), reason="pair_native_lstms"
                    )
                    paired.update((a, b))


optdb.register("pair_native_lstms", PairNativeLstms(), "fast_run", position=49.2)


class NativeMatMulOp(_KernelLinking):
    """``op(a) @ op(b)`` of float32 matrices on the kernel library's GEMM, ``op`` transposing where the props say."""

    __props__ = ("transpose_a", "transpose_b")

    def __init__(self, transpose_a: bool = False, transpose_b: bool = False) -> None:
        self.transpose_a, self.transpose_b = bool(transpose_a), bool(transpose_b)

    def make_node(self, a: Any, b: Any) -> Apply:
        a, b = _f32(a, 2, "a"), _f32(b, 2, "b")
        rows = a.type.shape[1 if self.transpose_a else 0]
        cols = b.type.shape[0 if self.transpose_b else 1]
        return Apply(self, [a, b], [pt.tensor(dtype="float32", shape=(rows, cols))])

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        output_storage[0][0] = matmul(*inputs, self.transpose_a, self.transpose_b)

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        operands = dict(zip(("a", "b"), inputs), dc=cotangents[0])
        grads = matmul_gradients(self.transpose_a, self.transpose_b)
        return [NativeMatMulOp(tx, ty)(operands[x], operands[y]) for x, y, tx, ty in grads]

    def c_code(self, node: Any, name: str, inp: list[str], out: list[str], sub: dict[str, str]) -> str:
        (a, b), (c,) = inp, out
        ta, tb = int(self.transpose_a), int(self.transpose_b)
        return f"""{{
        PyArrayObject* a_ = (PyArrayObject*)PyArray_GETCONTIGUOUS({a});
        PyArrayObject* b_ = a_ ? (PyArrayObject*)PyArray_GETCONTIGUOUS({b}) : NULL;
        int ok_ = b_ != NULL;
        const npy_intp M = ok_ ? PyArray_DIMS(a_)[{1 if ta else 0}] : 0, K = ok_ ? PyArray_DIMS(a_)[{0 if ta else 1}] : 0;
        const npy_intp K2 = ok_ ? PyArray_DIMS(b_)[{1 if tb else 0}] : 0, N = ok_ ? PyArray_DIMS(b_)[{0 if tb else 1}] : 0;
        if (ok_ && K != K2) {{
          PyErr_Format(PyExc_ValueError, "NativeMatMul: inner dimensions differ: op(a) has %ld columns, op(b) %ld rows",
                       (long)K, (long)K2);
          ok_ = 0;
        }}
        const npy_intp dims_[2] = {{M, N}};
        if (ok_ && rn_alloc_output(&{c}, 2, dims_)) ok_ = 0;
        if (ok_) {{
          const int rc_ = returnn_matmul_cpu((int)M, (int)N, (int)K, (const float*)PyArray_DATA(a_), {ta},
                                             (const float*)PyArray_DATA(b_), {tb}, (float*)PyArray_DATA({c}));
          if (rc_) {{ PyErr_Format(PyExc_RuntimeError, "NativeMatMul kernel failed with code %d", rc_); ok_ = 0; }}
        }}
        Py_XDECREF(a_);
        Py_XDECREF(b_);
        if (!ok_) {{ {sub["fail"]} }}
        }}"""


def native_matmul(a: Any, b: Any, *, transpose_a: bool = False, transpose_b: bool = False) -> Any:
    """``op(a) @ op(b)`` of float32 PyTensor matrices on the kernel library's GEMM (see ``cpu_kernels.matmul``)."""
    return NativeMatMulOp(transpose_a, transpose_b)(a, b)


def projection_matmul(n_in: int, n_out: int) -> Any:
    """The matmul for the input projection ``x W`` of a layer (n_in -> 4 n_out): :func:`native_matmul` where the
    kernel library runs it faster than a float32 GEMM (see ``cpu_kernels.native_matmul_preferred``) and the CUDA op
    is not in use, else ``pt.dot``."""
    from returnn_native.cuda_kernels import cuda_mode

    if native_matmul_preferred(n_in, n_out) and cuda_mode() != "on":
        return native_matmul
    return pt.dot


def native_lstm_op(direction: int = 1) -> Any:
    """The forward op instance for one direction (outputs y, h_final, c_final and three workspace tensors)."""
    from returnn_native.pytensor_cuda_ops import cuda_op_for_pytensor

    return cuda_op_for_pytensor(direction) or NativeLstmOp(direction)  # the GPU one only with $RETURNN_NATIVE_CUDA=1


def native_lstm(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, *, direction: int = 1) -> tuple[Any, Any, Any]:
    """NativeLstm on PyTensor variables: z (B, T, 4n), w_re (n, 4n), mask (B, T), h0/c0 (B, n) -> (y, h, c)."""
    y, h_final, c_final, *_workspace = native_lstm_op(direction)(z, w_re, mask, h0, c0)
    return y, h_final, c_final
