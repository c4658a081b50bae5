"""The CPU kernel library (plain C++ + BLAS, built with the host's instruction set) and a NumPy front end."""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Sequence
from typing import Any

from returnn_native.build_cache import BuildResult, BuildSpec, build_library, source_path
from returnn_native.errors import NativeOpError
from returnn_native.toolchain import find_blas, find_cxx, host_cpu_key

#: -ffast-math lets GCC vectorise expf through glibc's vector math library; the kernels clamp their inputs.
CPU_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-std=c++17")

_lock = threading.Lock()

# The kernels' OpenMP threads meet at one barrier per time step. Spinning there (libgomp's default) wastes the
# cores when the machine is shared; waiting passively costs only microseconds per step. Read when libgomp loads.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "passive"
# Likewise OpenBLAS's worker threads spin 2^28 cycles (~0.1 s) after each threaded call: after an input-projection
# dot (PyTensor's Dot22 runs on this OpenBLAS) they would hold a core while the LSTM kernel's threads want it.
# 2^16 cycles (tens of microseconds) keeps back-to-back calls warm. Read when the OpenBLAS library loads.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")


def cpu_kernel_spec() -> BuildSpec:
    """How the CPU kernel library is built (and keyed in the cache)."""
    blas = find_blas()
    return BuildSpec(
        name="returnn_native_cpu",
        sources=(source_path("lstm_cpu.cc"),),
        compiler=find_cxx(),
        flags=(*CPU_FLAGS, f"-I{source_path()}", *blas.compile_flags()),
        link_flags=tuple(blas.link_flags()),
        depends=(source_path("lstm.h"), source_path("amx_split_bf16.h")),
        key_extra=(f"cpu={host_cpu_key()}", f"blas={blas.name}:{blas.lib_dir}"),
    )


@functools.cache
def build_cpu_kernels() -> BuildResult:
    """Build (or find in the cache) the CPU kernel library."""
    return build_library(cpu_kernel_spec())


def cpu_kernel_library() -> str:
    """Path of the CPU kernel shared library."""
    return build_cpu_kernels().path


_F = ctypes.POINTER(ctypes.c_float)


@functools.cache
def _cdll() -> ctypes.CDLL:
    with _lock:
        lib = ctypes.CDLL(cpu_kernel_library())
    declare_lstm_functions(lib, "returnn_lstm_fwd_cpu", "returnn_lstm_bwd_cpu")
    declare_lstm_functions(lib, "returnn_lstm_fwd_pair_cpu", "returnn_lstm_bwd_pair_cpu", calls=2)
    lib.returnn_native_set_num_threads.argtypes = [ctypes.c_int]
    lib.returnn_native_get_num_threads.restype = ctypes.c_int
    lib.returnn_native_set_isa.argtypes = [ctypes.c_int]
    lib.returnn_native_set_isa.restype = ctypes.c_int
    lib.returnn_native_get_isa.restype = ctypes.c_int
    lib.returnn_matmul_cpu.argtypes = [ctypes.c_int] * 3 + [_F, ctypes.c_int, _F, ctypes.c_int, _F]
    lib.returnn_matmul_cpu.restype = ctypes.c_int
    return lib


def declare_lstm_functions(lib: ctypes.CDLL, fwd: str, bwd: str, calls: int = 1) -> None:
    """ctypes signatures of a forward and a backward function with ``calls`` of the ``lstm.h`` argument lists."""
    getattr(lib, fwd).argtypes = ([ctypes.c_int] * 4 + [_F] * 11) * calls
    getattr(lib, fwd).restype = ctypes.c_int
    getattr(lib, bwd).argtypes = ([ctypes.c_int] * 4 + [_F] * 14) * calls
    getattr(lib, bwd).restype = ctypes.c_int


def set_num_threads(num_threads: int) -> None:
    """Threads the kernels use (their own OpenMP threads, and the BLAS for the weight gradient)."""
    _cdll().returnn_native_set_num_threads(int(num_threads))


def get_num_threads() -> int:
    """Threads the kernels use."""
    return int(_cdll().returnn_native_get_num_threads())


#: Step GEMM implementations of the kernel library (``returnn_native_set_isa`` in ``kernels/lstm.h``).
ISAS = {"auto": 0, "generic": 1, "avx512": 2, "amx": 3}


def set_isa(name: str) -> None:
    """Choose the kernels' step GEMM: ``generic`` (BLAS per step), ``avx512`` (packed micro-kernel), ``amx``
    (split-bf16 on AMX tiles, for layers of 256 units or more; smaller ones run ``avx512``; it also moves the
    units' input projections onto :func:`matmul`, see :func:`native_matmul_preferred`) or ``auto``."""
    if name not in ISAS:
        raise NativeOpError(f"NativeLstm: unknown ISA {name!r}; choose one of {', '.join(ISAS)}")
    if _cdll().returnn_native_set_isa(ISAS[name]):
        raise NativeOpError(f"NativeLstm: ISA {name!r} is not available in the kernel library built for this CPU")


def available_isas() -> list[str]:
    """The ISAs (but ``auto``) the kernel library built for this host can run; the one in use stays chosen."""
    current, found = get_isa(), []
    for name in ISAS:
        if name != "auto" and not _cdll().returnn_native_set_isa(ISAS[name]):
            found.append(name)
    set_isa(current)
    return found


def get_isa() -> str:
    """The kernels' step GEMM in use; env ``RETURNN_NATIVE_ISA`` (one of ``ISAS``) chooses it where available."""
    code = int(_cdll().returnn_native_get_isa())
    return next(name for name, value in ISAS.items() if value == code)


#: the smallest input and unit counts whose projection fills the AMX tiles (K >= 32, N = 4n >= 128, as the kernel
#: library's own threshold for running a GEMM on them); smaller layers keep the framework's matmul
AMX_PROJECTION_MIN = (32, 32)


def native_matmul_preferred(n_in: int, n_out: int) -> bool:
    """Whether a layer's input projection (n_in -> 4 n_out) should use :func:`matmul`'s kernel: under ISA ``amx``,
    where it outruns a float32 sgemm (1.3-1.8x for 500 units on 2 cores), for layers big enough to fill the tiles."""
    return n_in >= AMX_PROJECTION_MIN[0] and n_out >= AMX_PROJECTION_MIN[1] and get_isa() == "amx"


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False) -> Any:
    """``op(a) @ op(b)`` for 2-D float32 arrays, ``op`` transposing where asked: the input projection's GEMM (on
    split-bf16 AMX tiles under ISA ``amx``, about 1e-5 relative error; else the BLAS)."""
    import numpy as np

    a, b = np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2:
        raise NativeOpError(f"NativeMatMul: a and b must be matrices, got shapes {a.shape} and {b.shape}")
    M, K = a.shape[::-1] if transpose_a else a.shape
    K2, N = b.shape[::-1] if transpose_b else b.shape
    if K != K2:
        raise NativeOpError(f"NativeMatMul: inner dimensions differ: op(a) is {(M, K)}, op(b) is {(K2, N)}")
    c = np.empty((M, N), np.float32)
    rc = _cdll().returnn_matmul_cpu(M, N, K, _p(a), int(bool(transpose_a)), _p(b), int(bool(transpose_b)), _p(c))
    if rc:
        raise NativeOpError(f"NativeMatMul kernel failed with code {rc} (M, N, K = {M}, {N}, {K})")
    return c


def _arr(a: Any, shape: tuple[int, ...], what: str) -> Any:
    import numpy as np

    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.shape != shape:
        raise NativeOpError(f"NativeLstm: {what} has shape {a.shape}, expected {shape}")
    return a


def _p(a: Any) -> Any:
    return a.ctypes.data_as(_F)


def lstm_fwd(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, direction: int = 1) -> tuple[Any, ...]:
    """NativeLstm forward on NumPy arrays: (y, h_final, c_final, gates, cells, h_prev); see ``kernels/lstm.h``."""
    return run_fwd(_cdll().returnn_lstm_fwd_cpu, z, w_re, mask, h0, c0, direction)


def run_fwd(fn: Any, z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, direction: int) -> tuple[Any, ...]:
    """Check and convert the arrays, allocate the outputs, call the C forward function ``fn``."""
    (outs,) = _call(fn, "forward kernel", [_fwd_args(z, w_re, mask, h0, c0, direction)])
    return outs


def lstm_fwd_pair(first: Sequence[Any], second: Sequence[Any], directions: tuple[int, int]) -> tuple[tuple, tuple]:
    """Two forward calls (each ``(z, w_re, mask, h0, c0)``) at the same time, sharing the threads; their outputs."""
    calls = [_fwd_args(*first, directions[0]), _fwd_args(*second, directions[1])]
    outs, outs2 = _call(_cdll().returnn_lstm_fwd_pair_cpu, "forward kernel pair", calls)
    return outs, outs2


def _call(fn: Any, what: str, calls: list[tuple[list[Any], tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """Call the C function ``fn`` with the arguments of each of ``calls`` in turn; each call's outputs."""
    rc = fn(*(arg for args, _ in calls for arg in args))
    if rc:
        raise NativeOpError(f"NativeLstm {what} failed with code {rc} (B, T, n = {calls[0][0][:3]})")
    return [outs for _, outs in calls]


def _fwd_args(z: Any, w_re: Any, mask: Any, h0: Any, c0: Any, direction: int) -> tuple[list[Any], tuple[Any, ...]]:
    """The checked C arguments of a forward call (the pointers keep their arrays alive) and its outputs."""
    import numpy as np

    if direction not in (1, -1):
        raise NativeOpError(f"NativeLstm: direction must be 1 or -1, got {direction!r}")
    z = np.asarray(z)
    if z.ndim != 3 or z.shape[2] % 4:
        raise NativeOpError(f"NativeLstm: z must be (B, T, 4n), got shape {z.shape}")
    B, T, n4 = z.shape
    n = n4 // 4
    ins = (
        _arr(z, (B, T, n4), "z"),
        _arr(w_re, (n, n4), "w_re"),
        _arr(mask, (B, T), "mask"),
        _arr(h0, (B, n), "h0"),
        _arr(c0, (B, n), "c0"),
    )
    outs = tuple(np.empty(shape, np.float32) for shape in ((B, T, n), (B, n), (B, n), (B, T, n4), (B, T, n), (B, T, n)))
    return [B, T, n, direction, *map(_p, (*ins, *outs))], outs


def lstm_bwd(
    w_re: Any,
    mask: Any,
    h0: Any,
    c0: Any,
    gates: Any,
    cells: Any,
    h_prev: Any,
    dy: Any,
    dh_final: Any,
    dc_final: Any,
    direction: int = 1,
) -> tuple[Any, ...]:
    """NativeLstm backward on NumPy arrays: (dz, dw_re, dh0, dc0)."""
    args = (w_re, mask, h0, c0, gates, cells, h_prev, dy, dh_final, dc_final)
    return run_bwd(_cdll().returnn_lstm_bwd_cpu, *args, direction=direction)


def run_bwd(fn: Any, *arrays: Any, direction: int = 1) -> tuple[Any, ...]:
    """Check and convert the arrays (the inputs of :func:`lstm_bwd`, in its order), allocate the outputs, call the C
    backward function ``fn``."""
    (outs,) = _call(fn, "backward kernel", [_bwd_args(*arrays, direction)])
    return outs


def lstm_bwd_pair(first: Sequence[Any], second: Sequence[Any], directions: tuple[int, int]) -> tuple[tuple, tuple]:
    """Two backward calls (each the inputs of :func:`lstm_bwd`) at the same time, sharing the threads; their outputs."""
    calls = [_bwd_args(*first, directions[0]), _bwd_args(*second, directions[1])]
    outs, outs2 = _call(_cdll().returnn_lstm_bwd_pair_cpu, "backward kernel pair", calls)
    return outs, outs2


def _bwd_args(
    w_re: Any,
    mask: Any,
    h0: Any,
    c0: Any,
    gates: Any,
    cells: Any,
    h_prev: Any,
    dy: Any,
    dh_final: Any,
    dc_final: Any,
    direction: int,
) -> tuple[list[Any], tuple[Any, ...]]:
    """The checked C arguments of a backward call and its outputs."""
    import numpy as np

    gates = np.asarray(gates)
    B, T, n4 = gates.shape
    n = n4 // 4
    ins = (
        _arr(w_re, (n, n4), "w_re"),
        _arr(mask, (B, T), "mask"),
        _arr(h0, (B, n), "h0"),
        _arr(c0, (B, n), "c0"),
        _arr(gates, (B, T, n4), "gates"),
        _arr(cells, (B, T, n), "cells"),
        _arr(h_prev, (B, T, n), "h_prev"),
        _arr(dy, (B, T, n), "dy"),
        _arr(dh_final, (B, n), "dh_final"),
        _arr(dc_final, (B, n), "dc_final"),
    )
    outs = tuple(np.empty(shape, np.float32) for shape in ((B, T, n4), (n, n4), (B, n), (B, n)))
    return [B, T, n, direction, *map(_p, (*ins, *outs))], outs
