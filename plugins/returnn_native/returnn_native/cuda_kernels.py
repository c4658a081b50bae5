"""The CUDA kernel library (nvcc, cuBLAS when the nvidia wheel is installed): built only where a GPU can run it."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from typing import Any

from returnn_native.build_cache import BuildResult, BuildSpec, build_library, source_path
from returnn_native.cpu_kernels import declare_lstm_functions, run_bwd, run_fwd
from returnn_native.errors import NativeOpError
from returnn_native.toolchain import find_nvcc

NVCC_FLAGS = ("-O3", "-std=c++17", "--use_fast_math")


@functools.cache
def gpu_count() -> int:
    """CUDA devices the driver reports (0 without a driver or GPU); asks libcuda directly, no framework needed."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def cuda_build_enabled(backend: str) -> bool:
    """Whether CUDA kernels may be built for ``backend``: a toolkit, a GPU, and a backend that can use it.

    Never for a CPU-only TensorFlow build or for PyTensor (which has no CUDA backend), even with nvcc on the PATH.
    """
    if find_nvcc() is None or gpu_count() == 0:
        return False
    if backend == "tf":
        import tensorflow as tf

        return bool(tf.test.is_built_with_cuda())
    return backend == "cuda"  # the framework-free NumPy front end


def _cublas() -> tuple[list[str], list[str]]:
    """Compile and link flags for cuBLAS from the nvidia-cublas wheel, if installed."""
    spec = importlib.util.find_spec("nvidia.cublas")
    if spec is None or not spec.submodule_search_locations:
        return [], []
    root = list(spec.submodule_search_locations)[0]
    inc, lib = os.path.join(root, "include"), os.path.join(root, "lib")
    libs = sorted(f for f in os.listdir(lib) if f.startswith("libcublas.so")) if os.path.isdir(lib) else []
    if not os.path.exists(os.path.join(inc, "cublas_v2.h")) or not libs:
        return [], []
    return ["-DRETURNN_HAVE_CUBLAS", f"-I{inc}"], [f"-L{lib}", f"-l:{libs[0]}", f"-Xlinker=-rpath,{lib}"]


def cuda_kernel_spec() -> BuildSpec:
    """How the CUDA kernel library is built (keyed by nvcc's version and the cuBLAS used)."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise NativeOpError("CUDA kernels need nvcc (a CUDA toolkit); set $RETURNN_NATIVE_NVCC or put nvcc on PATH")
    cflags, lflags = _cublas()
    return BuildSpec(
        name="returnn_native_cuda",
        sources=(source_path("lstm_cuda.cu"),),
        compiler=nvcc,
        flags=(*NVCC_FLAGS, f"-I{source_path()}", *cflags),
        link_flags=tuple(lflags),
        depends=(source_path("lstm.h"),),
        shared_flags=("-shared", "-Xcompiler", "-fPIC"),
    )


@functools.cache
def build_cuda_kernels() -> BuildResult:
    """Build (or find in the cache) the CUDA kernel library; refuses without a GPU."""
    if not cuda_build_enabled("cuda"):
        raise NativeOpError("no CUDA GPU (or no nvcc) here: the NativeLstm CUDA kernels are not built")
    return build_library(cuda_kernel_spec())


@functools.cache
def _cdll() -> ctypes.CDLL:
    lib = ctypes.CDLL(build_cuda_kernels().path)
    declare_lstm_functions(lib, "returnn_lstm_fwd_cuda_host", "returnn_lstm_bwd_cuda_host")
    return lib


def lstm_fwd(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, direction: int = 1) -> tuple[Any, ...]:
    """NativeLstm forward on the GPU for NumPy arrays (copied in and out); same results as the CPU version."""
    return run_fwd(_cdll().returnn_lstm_fwd_cuda_host, z, w_re, mask, h0, c0, direction)


def lstm_bwd(*args: Any, direction: int = 1) -> tuple[Any, ...]:
    """NativeLstm backward on the GPU for NumPy arrays: (dz, dw_re, dh0, dc0)."""
    return run_bwd(_cdll().returnn_lstm_bwd_cuda_host, *args, direction=direction)
