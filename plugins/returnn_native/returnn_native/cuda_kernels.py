"""The CUDA kernel library (built with nvcc, cuBLAS opened at run time), its toolkit checks and a NumPy front end.

The library builds wherever nvcc is installed (no GPU needed); running it needs a GPU and an NVIDIA driver at least
as new as the nvcc it was built with. ``$RETURNN_NATIVE_CUDA`` switches the GPU paths: ``auto`` (default: the TF op
uses a visible GPU, PyTensor stays on the CPU), ``1`` (use the GPU on every backend, fail when that is impossible),
``0`` (never).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from returnn_native.build_cache import BuildResult, BuildSpec, build_library, source_path
from returnn_native.cpu_kernels import declare_lstm_functions, run_bwd, run_fwd
from returnn_native.errors import NativeCompileError, NativeOpError
from returnn_native.toolchain import NVCC_ENV, Compiler, find_nvcc

CUDA_ENV = "RETURNN_NATIVE_CUDA"
#: No --use_fast_math: it turns tanhf into an approximation that is off from the CPU kernel by more than 1e-4.
NVCC_FLAGS = ("-O3", "-std=c++17")
#: The CUDA runtime is linked statically; hiding its symbols keeps TF's exported cuda* stubs from replacing them.
NVCC_LINK_FLAGS = ("-Xlinker", "--exclude-libs,ALL")

_MODES = {
    "auto": "auto",
    **dict.fromkeys(("1", "on", "true", "yes"), "on"),
    **dict.fromkeys(("0", "off", "false", "no"), "off"),
}


def cuda_mode() -> str:
    """``$RETURNN_NATIVE_CUDA`` as one of ``auto``, ``on``, ``off``."""
    value = os.environ.get(CUDA_ENV, "auto").strip().lower() or "auto"
    if value not in _MODES:
        raise NativeOpError(f"${CUDA_ENV}={value!r} is not understood: use auto (default), 1 (GPU required) or 0 (off)")
    return _MODES[value]


@dataclass(frozen=True)
class CudaToolkit:
    """nvcc, the CUDA version it compiles for, and the cuBLAS of the same major version (None: tiled GEMM)."""

    nvcc: Compiler
    version: tuple[int, int]
    cublas: str | None

    def describe(self) -> str:
        """One line for error messages: where nvcc is and its CUDA version."""
        return f"nvcc {self.nvcc.path} (CUDA {self.version[0]}.{self.version[1]})"


def _libcuda() -> Any:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


@functools.cache
def gpu_count() -> int:
    """CUDA devices the driver reports (0 without a driver or GPU); asks libcuda directly, no framework needed."""
    libcuda = _libcuda()
    if libcuda is None:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


@functools.cache
def driver_cuda_version() -> tuple[int, int] | None:
    """The newest CUDA version the installed NVIDIA driver supports, None without a driver."""
    libcuda = _libcuda()
    version = ctypes.c_int(0)
    if libcuda is None or libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return version.value // 1000, version.value % 1000 // 10


@functools.cache
def gpu_architectures() -> tuple[str, ...]:
    """Compute capabilities of the visible GPUs as nvcc arch numbers (e.g. ``90``), sorted, without duplicates."""
    libcuda = _libcuda()
    if libcuda is None or gpu_count() == 0:
        return ()
    archs = set()
    for i in range(gpu_count()):
        dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        if libcuda.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76
        if libcuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) == 0:
            libcuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
            archs.add(f"{major.value}{minor.value}")
    return tuple(sorted(archs, key=int))


def _nvcc_version(nvcc: Compiler) -> tuple[int, int]:
    match = re.search(r"release (\d+)\.(\d+)", nvcc.version)
    if not match:
        raise NativeOpError(f"cannot read the CUDA version of {nvcc.path} from its --version output: {nvcc.version!r}")
    return int(match.group(1)), int(match.group(2))


def _find_cublas(nvcc_path: str, major: int) -> str | None:
    """libcublas of CUDA ``major``: next to nvcc's toolkit, else from an nvidia wheel (cu13 or cublas layout)."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc_path)))
    candidates = [os.path.join(root, sub, f"libcublas.so.{major}") for sub in ("lib64", "targets/x86_64-linux/lib")]
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        candidates += [os.path.join(base, f"cu{major}", "lib", f"libcublas.so.{major}")]
        candidates += [os.path.join(base, "cublas", "lib", f"libcublas.so.{major}")]
    return next((os.path.realpath(c) for c in candidates if os.path.isfile(c)), None)


@functools.cache
def find_cuda_toolkit() -> CudaToolkit:
    """nvcc (``$RETURNN_NATIVE_NVCC``, ``nvcc`` on the PATH, ``/usr/local/cuda/bin/nvcc``) with its version."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise NativeOpError(
            f"the NativeLstm GPU kernels need nvcc (a CUDA toolkit): install one, put nvcc on PATH or set ${NVCC_ENV}"
        )
    version = _nvcc_version(nvcc)
    return CudaToolkit(nvcc, version, _find_cublas(nvcc.path, version[0]))


def cuda_build_enabled(backend: str) -> bool:
    """Whether CUDA kernels are built for ``backend`` here: nvcc, a GPU, a backend that can use it, the switch.

    Never for a CPU-only TensorFlow build, and for PyTensor (no GPU backend) only with ``$RETURNN_NATIVE_CUDA=1``.
    """
    mode = cuda_mode()
    if mode == "off" or find_nvcc() is None or gpu_count() == 0:
        return False
    if backend == "tf":
        import tensorflow as tf

        return bool(tf.test.is_built_with_cuda())
    if backend == "theano":
        return mode == "on"
    return backend == "cuda"  # the framework-free NumPy front end


def check_cuda_runtime(toolkit: CudaToolkit | None = None) -> None:
    """Raise a clear error when kernels built by this toolkit cannot run here (no GPU, driver too old)."""
    toolkit = toolkit or find_cuda_toolkit()
    driver = driver_cuda_version()
    if driver is None or gpu_count() == 0:
        raise NativeOpError("no CUDA GPU here (no NVIDIA driver or no device): the NativeLstm GPU kernels cannot run")
    if driver < toolkit.version:
        raise NativeOpError(
            f"the NVIDIA driver supports CUDA up to {driver[0]}.{driver[1]}, but the NativeLstm GPU kernels are built "
            f"with {toolkit.describe()}: update the driver or set ${NVCC_ENV} to the nvcc of a CUDA <= "
            f"{driver[0]}.{driver[1]} toolkit"
        )


@functools.cache
def nvcc_architectures(nvcc_path: str) -> tuple[int, ...]:
    """The virtual architectures nvcc compiles for (``--list-gpu-arch``), e.g. ``(75, 80, ..., 120)``."""
    try:
        out = subprocess.run([nvcc_path, "--list-gpu-arch"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return ()
    return tuple(sorted({int(a) for a in re.findall(r"compute_(\d+)", out.stdout)}))


def arch_flags(gpu_archs: tuple[str, ...], supported: tuple[int, ...], toolkit: CudaToolkit) -> list[str]:
    """nvcc -gencode flags: machine code for each GPU nvcc knows, else PTX of the newest older architecture it knows
    (the driver compiles that for the GPU); a GPU older than every architecture of this nvcc is an error."""
    flags: list[str] = []
    for arch in dict.fromkeys(int(a) for a in gpu_archs):
        if not supported or arch in supported:
            gencode = f"arch=compute_{arch},code=[sm_{arch},compute_{arch}]"
        else:
            older = [a for a in supported if a < arch]
            if not older:
                raise NativeOpError(
                    f"the GPU's architecture sm_{arch} is older than any {toolkit.describe()} compiles for (from "
                    f"sm_{supported[0]}): set ${NVCC_ENV} to the nvcc of an older CUDA toolkit"
                )
            gencode = f"arch=compute_{older[-1]},code=compute_{older[-1]}"
        if gencode not in flags:
            flags += ["-gencode", gencode]
    return flags


def cuda_kernel_spec(toolkit: CudaToolkit | None = None) -> BuildSpec:
    """How the CUDA kernel library is built: for the visible GPUs' architectures (nvcc's default without a GPU)."""
    toolkit = toolkit or find_cuda_toolkit()
    archs = gpu_architectures()
    flags = arch_flags(archs, nvcc_architectures(toolkit.nvcc.path) if archs else (), toolkit)
    cublas = [f'-DRETURNN_CUBLAS_LIBRARY="{toolkit.cublas}"'] if toolkit.cublas else []
    return BuildSpec(
        name="returnn_native_cuda",
        sources=(source_path("lstm_cuda.cu"),),
        compiler=toolkit.nvcc,
        flags=(*NVCC_FLAGS, *flags, f"-I{source_path()}", *cublas),
        link_flags=NVCC_LINK_FLAGS,
        depends=(source_path("lstm_cuda.h"),),
        shared_flags=("-shared", "-Xcompiler", "-fPIC"),
    )


def build_with_toolkit(spec: BuildSpec, toolkit: CudaToolkit, what: str) -> BuildResult:
    """``build_library(spec)``; a failure names nvcc, its CUDA version and the installed TF's CUDA."""
    try:
        return build_library(spec)
    except NativeCompileError as exc:
        raise NativeCompileError(f"{what}: build with {toolkit.describe()}{_tf_cuda_note()} failed.\n{exc}") from exc


def _tf_cuda_note() -> str:
    try:
        import tensorflow as tf
    except ImportError:
        return ""
    version = tf.sysconfig.get_build_info().get("cuda_version")
    return f", TensorFlow {tf.__version__} built with CUDA {version}" if version else ""


@functools.cache
def build_cuda_kernels() -> BuildResult:
    """Build (or find in the cache) the CUDA kernel library; needs nvcc, not a GPU."""
    toolkit = find_cuda_toolkit()
    return build_with_toolkit(cuda_kernel_spec(toolkit), toolkit, "the NativeLstm CUDA kernel library")


@functools.cache
def cuda_library() -> ctypes.CDLL:
    """The loaded CUDA kernel library (built on first use), with its C signatures declared."""
    lib = ctypes.CDLL(build_cuda_kernels().path)
    declare_lstm_functions(lib, "returnn_lstm_fwd_cuda_host", "returnn_lstm_bwd_cuda_host")
    for name in ("returnn_cuda_last_error", "returnn_cuda_gemm_backend"):
        getattr(lib, name).restype = ctypes.c_char_p
    return lib


def gemm_backend() -> str:
    """Which GEMM the CUDA kernels use: cuBLAS and its path, or the tiled fallback and why."""
    return cuda_library().returnn_cuda_gemm_backend().decode()


def _on_gpu(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        return fn(*args, **kwargs)
    except NativeOpError as exc:
        detail = cuda_library().returnn_cuda_last_error().decode()
        raise NativeOpError(f"{exc} on the GPU: {detail}" if detail else str(exc)) from None


def lstm_fwd(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, direction: int = 1) -> tuple[Any, ...]:
    """NativeLstm forward on the GPU for NumPy arrays (copied in and out); same results as the CPU version."""
    return _on_gpu(run_fwd, cuda_library().returnn_lstm_fwd_cuda_host, z, w_re, mask, h0, c0, direction)


def lstm_bwd(*args: Any, direction: int = 1) -> tuple[Any, ...]:
    """NativeLstm backward on the GPU for NumPy arrays: (dz, dw_re, dh0, dc0)."""
    return _on_gpu(run_bwd, cuda_library().returnn_lstm_bwd_cuda_host, *args, direction=direction)
