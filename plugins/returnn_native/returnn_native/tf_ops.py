"""TensorFlow binding: the NativeLstm custom op (compiled on first use) with its registered gradient, and the input
projection's GEMM op NativeMatMul (three variants by transposed operand, each differentiable)."""

from __future__ import annotations

import functools
import threading
from typing import Any

from returnn_native.build_cache import BuildResult, BuildSpec, build_library, source_path
from returnn_native.cpu_kernels import build_cpu_kernels
from returnn_native.errors import NativeOpError
from returnn_native.matmul_grad import matmul_gradients
from returnn_native.toolchain import find_cxx

#: The binding shim only moves tensors around (TF C kernel API, C headers only: compiles in about a second).
SHIM_FLAGS = ("-O2", "-std=c++17")

_lock = threading.Lock()


def tf_op_spec() -> BuildSpec:
    """How the TensorFlow op library is built (and keyed: TF version, compile flags, kernel library).

    CPU kernels only: no CUDA code is compiled into it; the GPU kernels are a library of their own (``tf_gpu_op``).
    """
    import tensorflow as tf

    kernels = build_cpu_kernels().path
    kernel_dir, kernel_file = kernels.rsplit("/", 1)
    return BuildSpec(
        name="returnn_native_tf",
        sources=(source_path("tf_lstm_op.cc"),),
        compiler=find_cxx(),
        flags=(*SHIM_FLAGS, f"-I{source_path()}", *tf.sysconfig.get_compile_flags()),
        link_flags=(
            *tf.sysconfig.get_link_flags(),
            f"-L{kernel_dir}",
            f"-l:{kernel_file}",
            f"-Wl,-rpath,{kernel_dir}",
        ),
        depends=(source_path("lstm.h"),),
        key_extra=(f"tf={tf.__version__}", f"tf_cuda={tf.test.is_built_with_cuda()}", f"kernels={kernels}"),
    )


@functools.cache
def build_tf_op() -> BuildResult:
    """Build (or find in the cache) the TensorFlow op library."""
    return build_library(tf_op_spec())


@functools.cache
def load_tf_op_library() -> Any:
    """The loaded op module (``tf.load_op_library``), with the gradient registered once per process."""
    import tensorflow as tf

    with _lock:
        path = build_tf_op().path
        try:
            module = tf.load_op_library(path)
        except tf.errors.NotFoundError as exc:
            raise NativeOpError(f"cannot load the NativeLstm TensorFlow op {path}: {exc}") from exc
        _register_gradient(module)
    from returnn_native.tf_gpu_op import load_tf_gpu_kernels

    load_tf_gpu_kernels()  # adds GPU kernels to the ops when TF sees a GPU; nothing on CPU-only machines
    return module


def _register_gradient(module: Any) -> None:
    import tensorflow as tf

    def _grad(op: Any, dy: Any, dh_final: Any, dc_final: Any, *_workspace: Any) -> list[Any]:
        z, w_re, mask, h0, c0 = op.inputs
        y, h_final, c_final, gates, cells, h_prev = op.outputs
        dy = tf.zeros_like(y) if dy is None else dy
        dh_final = tf.zeros_like(h_final) if dh_final is None else dh_final
        dc_final = tf.zeros_like(c_final) if dc_final is None else dc_final
        dz, dw_re, dh0, dc0 = module.returnn_native_lstm_grad(
            w_re, mask, h0, c0, gates, cells, h_prev, dy, dh_final, dc_final, direction=op.get_attr("direction")
        )
        return [dz, dw_re, None, dh0, dc0]

    _register(tf, "ReturnnNativeLstm", _grad)
    for op_name, (ta, tb) in _MATMUL_OPS.items():
        _register(tf, op_name, functools.partial(_matmul_grad, module, ta, tb))


def _register(tf: Any, op_name: str, grad: Any) -> None:
    try:
        tf.RegisterGradient(op_name)(grad)
    except KeyError:  # already registered in this process (e.g. by an earlier load of the same op)
        pass


#: NativeMatMul's op per transposed operand (a, b); both transposed is never needed (see matmul_grad)
_MATMUL_OPS = {"ReturnnNativeMatMul": (False, False), "ReturnnNativeMatMulTA": (True, False),
               "ReturnnNativeMatMulTB": (False, True)}


def _matmul(module: Any, a: Any, b: Any, ta: bool, tb: bool) -> Any:
    if ta and tb:
        raise NativeOpError("NativeMatMul: transposing both operands is not supported; transpose the product")
    op = module.returnn_native_mat_mul_ta if ta else module.returnn_native_mat_mul_tb if tb else module.returnn_native_mat_mul
    return op(a, b)


def _matmul_grad(module: Any, ta: bool, tb: bool, op: Any, dc: Any) -> list[Any]:
    """Gradients of c = op(a) op(b) w.r.t. a and b, as products of the same ops."""
    operands = dict(zip(("a", "b"), op.inputs), dc=dc)
    return [_matmul(module, operands[x], operands[y], tx, ty) for x, y, tx, ty in matmul_gradients(ta, tb)]


def native_matmul(a: Any, b: Any, *, transpose_a: bool = False, transpose_b: bool = False) -> Any:
    """``op(a) @ op(b)`` of float32 TF matrices on the kernel library's GEMM (see ``cpu_kernels.matmul``)."""
    return _matmul(load_tf_op_library(), a, b, transpose_a, transpose_b)


def projection_matmul(n_in: int, n_out: int) -> Any:
    """The matmul for the input projection ``x W`` of a layer (n_in -> 4 n_out): NativeMatMul where the kernel library
    runs it faster than a float32 GEMM (see ``cpu_kernels.native_matmul_preferred``) and TF has no GPU to place it on
    (the op has CPU kernels only), else ``tf.matmul``."""
    import tensorflow as tf

    from returnn_native.cpu_kernels import native_matmul_preferred

    if native_matmul_preferred(n_in, n_out) and not tf.config.list_logical_devices("GPU"):
        return native_matmul
    return tf.matmul


def native_lstm(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, *, direction: int = 1) -> tuple[Any, Any, Any]:
    """NativeLstm on TF tensors: z (B, T, 4n), w_re (n, 4n), mask (B, T), h0/c0 (B, n) -> (y, h_final, c_final)."""
    if direction not in (1, -1):
        raise NativeOpError(f"NativeLstm: direction must be 1 or -1, got {direction!r}")
    module = load_tf_op_library()
    y, h_final, c_final, _gates, _cells, _h_prev = module.returnn_native_lstm(
        z, w_re, mask, h0, c0, direction=direction
    )
    return y, h_final, c_final
