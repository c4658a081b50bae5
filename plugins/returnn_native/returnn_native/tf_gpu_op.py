"""TensorFlow GPU kernels of the NativeLstm ops: a C++ shim on TF's op API over the CUDA kernel library.

The CPU op library (``tf_ops``) registers the ops ``ReturnnNativeLstm`` / ``ReturnnNativeLstmGrad``; this library adds
their ``DEVICE_GPU`` kernels. TF then places NativeLstm on a visible GPU and keeps the CPU kernel everywhere else.
The CUDA kernels are compiled by nvcc (``cuda_kernels``); the shim is host code only and is compiled by the C++
compiler against TF's C++ headers and TF's bundled CUDA headers (``-DGOOGLE_CUDA=1``), both cached like the CPU op.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from typing import Any

from returnn_native.build_cache import BuildResult, BuildSpec, source_path
from returnn_native.cuda_kernels import (
    CUDA_ENV,
    CudaToolkit,
    build_cuda_kernels,
    build_with_toolkit,
    check_cuda_runtime,
    cuda_mode,
    find_cuda_toolkit,
    gpu_count,
)
from returnn_native.errors import NativeOpError
from returnn_native.toolchain import find_cxx

#: TF's C++ headers are full of deprecation warnings of TF's own helpers; the shim needs no optimisation.
SHIM_FLAGS = ("-O2", "-std=c++17", "-DGOOGLE_CUDA=1", "-Wno-deprecated-declarations", "-Wno-interference-size")

_lock = threading.Lock()


def _cuda_include_dir(tf_include: str, toolkit: CudaToolkit) -> str:
    """CUDA headers for Eigen's GPU device: the ones TF ships (its own CUDA version), else nvcc's."""
    bundled = os.path.join(tf_include, "third_party", "gpus", "cuda", "include")
    if os.path.isfile(os.path.join(bundled, "cuda_runtime.h")):
        return bundled
    return os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(toolkit.nvcc.path))), "include")


def tf_gpu_op_spec() -> BuildSpec:
    """How the TF GPU kernel library is built and keyed (TF version and flags, the CUDA kernel library it links)."""
    import tensorflow as tf

    toolkit = find_cuda_toolkit()
    if not tf.test.is_built_with_cuda():
        raise NativeOpError(
            f"TensorFlow {tf.__version__} is built without CUDA: NativeLstm has no GPU kernels for it "
            "(install a CUDA build, e.g. tensorflow[and-cuda])"
        )
    kernels = build_cuda_kernels().path
    kernel_dir, kernel_file = kernels.rsplit("/", 1)
    tf_include = tf.sysconfig.get_include()
    return BuildSpec(
        name="returnn_native_tf_gpu",
        sources=(source_path("tf_lstm_op_gpu.cc"),),
        compiler=find_cxx(),
        flags=(
            *SHIM_FLAGS,
            f"-I{source_path()}",
            *tf.sysconfig.get_compile_flags(),
            "-isystem",
            _cuda_include_dir(tf_include, toolkit),
        ),
        link_flags=(
            *tf.sysconfig.get_link_flags(),
            f"-L{kernel_dir}",
            f"-l:{kernel_file}",
            f"-Wl,-rpath,{kernel_dir}",
        ),
        depends=(source_path("lstm_cuda.h"),),
        key_extra=(
            f"tf={tf.__version__}",
            f"tf_cuda={tf.sysconfig.get_build_info().get('cuda_version')}",
            f"kernels={kernels}",
        ),
    )


@functools.cache
def build_tf_gpu_op() -> BuildResult:
    """Build (or find in the cache) the CUDA kernels and the TF GPU kernel library; needs nvcc, not a GPU."""
    return build_with_toolkit(tf_gpu_op_spec(), find_cuda_toolkit(), "the NativeLstm TensorFlow GPU kernels")


def load_tf_gpu_op_library() -> Any:
    """Build and load the TF GPU kernel library, with or without a GPU; call after the CPU op library is loaded."""
    import tensorflow as tf

    with _lock:
        path = build_tf_gpu_op().path
        try:
            return tf.load_op_library(path)
        except tf.errors.NotFoundError as exc:
            raise NativeOpError(f"cannot load the NativeLstm TensorFlow GPU kernels {path}: {exc}") from exc


@functools.cache
def load_tf_gpu_kernels() -> bool:
    """Register the GPU kernels of the NativeLstm ops when TF sees a GPU; False when NativeLstm stays on the CPU.

    Call after the CPU op library is loaded. ``$RETURNN_NATIVE_CUDA``: ``auto`` warns and keeps the CPU kernel when
    the GPU kernels cannot be built or loaded, ``1`` raises instead, ``0`` never tries.
    """
    import tensorflow as tf

    mode = cuda_mode()
    if mode == "off":
        return False
    # libcuda first: on a machine without an NVIDIA driver this costs nothing, unlike TF's device setup. Visible,
    # not physical, devices: the tf backend's device = "cpu" hides the GPUs from TF
    if gpu_count() == 0 or not tf.config.get_visible_devices("GPU"):
        if mode == "on":
            raise NativeOpError(
                f"${CUDA_ENV}=1 but TensorFlow has no visible GPU (tf.config.get_visible_devices('GPU') is empty)"
            )
        return False
    try:
        check_cuda_runtime()
        load_tf_gpu_op_library()
    except NativeOpError as exc:
        if mode == "on":
            raise
        warnings.warn(
            f"NativeLstm runs on the CPU: {exc}\n(set ${CUDA_ENV}=0 to not try the GPU, =1 to make this an error)",
            stacklevel=2,
        )
        return False
    return True


def registered_devices() -> dict[str, list[str]]:
    """Devices with a registered kernel, per NativeLstm op (e.g. ``{'ReturnnNativeLstm': ['CPU', 'GPU']}``)."""
    from tensorflow.python.framework import kernels

    return {
        op: sorted(k.device_type for k in kernels.get_registered_kernels_for_op(op).kernel)
        for op in ("ReturnnNativeLstm", "ReturnnNativeLstmGrad")
    }
