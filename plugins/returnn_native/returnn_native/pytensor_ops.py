"""PyTensor binding: NativeLstm as C ops (forward and gradient) linking the same CPU kernel library."""

from __future__ import annotations

import os
from typing import Any

import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from returnn_native.build_cache import source_path
from returnn_native.cpu_kernels import build_cpu_kernels, lstm_bwd, lstm_fwd
from returnn_native.errors import NativeOpError

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

_FWD_CODE = r"""
{
  PyArrayObject* src_[5] = {%(z)s, %(w_re)s, %(mask)s, %(h0)s, %(c0)s};
  PyArrayObject* in_[5] = {NULL, NULL, NULL, NULL, NULL};
  int ok_ = 1;
  for (int k = 0; k < 5 && ok_; ++k) {
    in_[k] = (PyArrayObject*)PyArray_GETCONTIGUOUS(src_[k]);
    if (!in_[k]) ok_ = 0;
  }
  if (ok_) {
    const npy_intp B = PyArray_DIMS(in_[0])[0], T = PyArray_DIMS(in_[0])[1], n = PyArray_DIMS(in_[1])[0];
    const npy_intp d_z[3] = {B, T, 4 * n}, d_w[2] = {n, 4 * n}, d_m[2] = {B, T}, d_s[2] = {B, n};
    const npy_intp d_y[3] = {B, T, n};
    ok_ = rn_check_dims(in_[0], 3, d_z, "NativeLstm", "z") == 0 && rn_check_dims(in_[1], 2, d_w, "NativeLstm", "w_re") == 0
       && rn_check_dims(in_[2], 2, d_m, "NativeLstm", "mask") == 0 && rn_check_dims(in_[3], 2, d_s, "NativeLstm", "h0") == 0
       && rn_check_dims(in_[4], 2, d_s, "NativeLstm", "c0") == 0;
    ok_ = ok_ && rn_alloc_output(&%(y)s, 3, d_y) == 0 && rn_alloc_output(&%(h_final)s, 2, d_s) == 0
       && rn_alloc_output(&%(c_final)s, 2, d_s) == 0 && rn_alloc_output(&%(gates)s, 3, d_z) == 0
       && rn_alloc_output(&%(cells)s, 3, d_y) == 0 && rn_alloc_output(&%(h_prev)s, 3, d_y) == 0;
    if (ok_ && n > 0) {
      int rc_ = returnn_lstm_fwd_cpu((int)B, (int)T, (int)n, %(direction)d,
          (const float*)PyArray_DATA(in_[0]), (const float*)PyArray_DATA(in_[1]), (const float*)PyArray_DATA(in_[2]),
          (const float*)PyArray_DATA(in_[3]), (const float*)PyArray_DATA(in_[4]),
          (float*)PyArray_DATA(%(y)s), (float*)PyArray_DATA(%(h_final)s), (float*)PyArray_DATA(%(c_final)s),
          (float*)PyArray_DATA(%(gates)s), (float*)PyArray_DATA(%(cells)s), (float*)PyArray_DATA(%(h_prev)s));
      if (rc_) {
        PyErr_Format(PyExc_RuntimeError, "NativeLstm forward kernel failed with code %%d", rc_);
        ok_ = 0;
      }
    }
  }
  for (int k = 0; k < 5; ++k) Py_XDECREF(in_[k]);
  if (!ok_) { %(fail)s }
}
"""

_BWD_CODE = r"""
{
  PyArrayObject* src_[10] = {%(w_re)s, %(mask)s, %(h0)s, %(c0)s, %(gates)s, %(cells)s, %(h_prev)s, %(dy)s,
                             %(dh_final)s, %(dc_final)s};
  PyArrayObject* in_[10] = {NULL};
  int ok_ = 1;
  for (int k = 0; k < 10 && ok_; ++k) {
    in_[k] = (PyArrayObject*)PyArray_GETCONTIGUOUS(src_[k]);
    if (!in_[k]) ok_ = 0;
  }
  if (ok_) {
    const npy_intp B = PyArray_DIMS(in_[4])[0], T = PyArray_DIMS(in_[4])[1], n = PyArray_DIMS(in_[0])[0];
    const npy_intp d_z[3] = {B, T, 4 * n}, d_w[2] = {n, 4 * n}, d_m[2] = {B, T}, d_s[2] = {B, n};
    const npy_intp d_y[3] = {B, T, n};
    const char* names_[10] = {"w_re", "mask", "h0", "c0", "gates", "cells", "h_prev", "dy", "dh_final", "dc_final"};
    const npy_intp* dims_[10] = {d_w, d_m, d_s, d_s, d_z, d_y, d_y, d_y, d_s, d_s};
    for (int k = 0; k < 10 && ok_; ++k)
      ok_ = rn_check_dims(in_[k], PyArray_NDIM(in_[k]), dims_[k], "NativeLstmGrad", names_[k]) == 0;
    ok_ = ok_ && rn_alloc_output(&%(dz)s, 3, d_z) == 0 && rn_alloc_output(&%(dw_re)s, 2, d_w) == 0
       && rn_alloc_output(&%(dh0)s, 2, d_s) == 0 && rn_alloc_output(&%(dc0)s, 2, d_s) == 0;
    if (ok_ && n > 0) {
      const float* p_[10];
      for (int k = 0; k < 10; ++k) p_[k] = (const float*)PyArray_DATA(in_[k]);
      int rc_ = returnn_lstm_bwd_cpu((int)B, (int)T, (int)n, %(direction)d, p_[0], p_[1], p_[2], p_[3], p_[4], p_[5],
          p_[6], p_[7], p_[8], p_[9], (float*)PyArray_DATA(%(dz)s), (float*)PyArray_DATA(%(dw_re)s),
          (float*)PyArray_DATA(%(dh0)s), (float*)PyArray_DATA(%(dc0)s));
      if (rc_) {
        PyErr_Format(PyExc_RuntimeError, "NativeLstmGrad kernel failed with code %%d", rc_);
        ok_ = 0;
      }
    }
  }
  for (int k = 0; k < 10; ++k) Py_XDECREF(in_[k]);
  if (!ok_) { %(fail)s }
}
"""


class _NativeLstmCOp(COp):
    """Common C-linking parts of the forward and gradient ops."""

    __props__ = ("direction",)

    def __init__(self, direction: int = 1) -> None:
        if direction not in (1, -1):
            raise NativeOpError(f"NativeLstm: direction must be 1 or -1, got {direction!r}")
        self.direction = int(direction)

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
        return _SUPPORT_CODE

    def c_code_cache_version(self) -> tuple[Any, ...]:
        # the kernel library's cache folder name carries the hash of its sources and toolchain
        return (1, os.path.basename(os.path.dirname(build_cpu_kernels().path)))


def _f32(v: Any, ndim: int, what: str) -> Any:
    v = pt.as_tensor_variable(v)
    if v.ndim != ndim:
        raise NativeOpError(f"NativeLstm: {what} must have {ndim} dims, got {v.ndim} ({v.type})")
    return pt.cast(v, "float32") if v.dtype != "float32" else v


class NativeLstmOp(_NativeLstmCOp):
    """Forward: (z, w_re, mask, h0, c0) -> (y, h_final, c_final, gates, cells, h_prev)."""

    def make_node(self, z: Any, w_re: Any, mask: Any, h0: Any, c0: Any) -> Apply:
        ins = [_f32(z, 3, "z"), _f32(w_re, 2, "w_re"), _f32(mask, 2, "mask"), _f32(h0, 2, "h0"), _f32(c0, 2, "c0")]
        t3, t2 = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
        outs = [t3.type(), t2.type(), t2.type(), t3.type(), t3.type(), t3.type()]
        return Apply(self, ins, outs)

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        for storage, value in zip(output_storage, lstm_fwd(*inputs, direction=self.direction)):
            storage[0] = value

    def c_code(self, node: Any, name: str, inp: list[str], out: list[str], sub: dict[str, str]) -> str:
        names = dict(zip(("z", "w_re", "mask", "h0", "c0"), inp))
        names.update(zip(("y", "h_final", "c_final", "gates", "cells", "h_prev"), out))
        return _FWD_CODE % {**names, "direction": self.direction, "fail": sub["fail"]}

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

    def make_node(self, *inputs: Any) -> Apply:
        ndims = (2, 2, 2, 2, 3, 3, 3, 3, 2, 2)
        names = ("w_re", "mask", "h0", "c0", "gates", "cells", "h_prev", "dy", "dh_final", "dc_final")
        ins = [_f32(v, d, w) for v, d, w in zip(inputs, ndims, names)]
        t3, t2 = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
        return Apply(self, ins, [t3.type(), t2.type(), t2.type(), t2.type()])

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        for storage, value in zip(output_storage, lstm_bwd(*inputs, direction=self.direction)):
            storage[0] = value

    def c_code(self, node: Any, name: str, inp: list[str], out: list[str], sub: dict[str, str]) -> str:
        names = dict(zip(("w_re", "mask", "h0", "c0", "gates", "cells", "h_prev", "dy", "dh_final", "dc_final"), inp))
        names.update(zip(("dz", "dw_re", "dh0", "dc0"), out))
        return _BWD_CODE % {**names, "direction": self.direction, "fail": sub["fail"]}


def native_lstm_op(direction: int = 1) -> Any:
    """The forward op instance for one direction (outputs y, h_final, c_final and three workspace tensors)."""
    from returnn_native.pytensor_cuda_ops import cuda_op_for_pytensor

    return cuda_op_for_pytensor(direction) or NativeLstmOp(direction)  # the GPU one only with $RETURNN_NATIVE_CUDA=1


def native_lstm(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, *, direction: int = 1) -> tuple[Any, Any, Any]:
    """NativeLstm on PyTensor variables: z (B, T, 4n), w_re (n, 4n), mask (B, T), h0/c0 (B, n) -> (y, h, c)."""
    y, h_final, c_final, *_workspace = native_lstm_op(direction)(z, w_re, mask, h0, c0)
    return y, h_final, c_final
