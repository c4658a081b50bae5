"""What the native ops are built with: the C++ compiler, the host CPU, the CPU BLAS, the CUDA toolkit."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass

from returnn_native.errors import NativeOpError

CXX_ENV = "RETURNN_NATIVE_CXX"
NVCC_ENV = "RETURNN_NATIVE_NVCC"


@dataclass(frozen=True)
class Compiler:
    """A compiler executable and its version banner (part of every cache key)."""

    path: str
    version: str


@dataclass(frozen=True)
class Blas:
    """A CBLAS to link the CPU kernels against."""

    name: str
    include_dir: str
    lib_dir: str
    library: str
    symbol_prefix: str
    is_openblas: bool

    def compile_flags(self) -> list[str]:
        """Preprocessor flags the kernels need for this BLAS."""
        flags = [f"-DRETURNN_BLAS_PREFIX={self.symbol_prefix}"] if self.symbol_prefix else []
        if self.is_openblas:
            flags.append("-DRETURNN_BLAS_OPENBLAS")
        return flags

    def link_flags(self) -> list[str]:
        """Linker flags, with an rpath so the built library finds the BLAS without ``LD_LIBRARY_PATH``."""
        return [f"-L{self.lib_dir}", f"-l{self.library}", f"-Wl,-rpath,{self.lib_dir}"]


def _version_banner(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise NativeOpError(f"cannot run compiler {path!r}: {exc}") from exc
    return (out.stdout or out.stderr).strip()


@functools.cache
def _compiler_at(path: str) -> Compiler:
    return Compiler(path, _version_banner(path))


def find_cxx() -> Compiler:
    """The C++ compiler: ``$RETURNN_NATIVE_CXX``, else ``$CXX``, else ``g++`` / ``c++`` on the PATH."""
    for cand in (os.environ.get(CXX_ENV), os.environ.get("CXX"), "g++", "c++"):
        if not cand:
            continue
        path = shutil.which(cand) or (cand if os.path.isfile(cand) else None)
        if path:
            return _compiler_at(path)
        if cand in (os.environ.get(CXX_ENV), os.environ.get("CXX")):
            raise NativeOpError(f"C++ compiler {cand!r} (from ${CXX_ENV} or $CXX) not found; fix the variable")
    raise NativeOpError(
        "no C++ compiler found for native ops (tried $RETURNN_NATIVE_CXX, $CXX, g++, c++); install g++ or "
        "prebuild the ops with `returnn compile-native-op` on a machine that has one"
    )


def missing_compiler() -> str | None:
    """Why native ops cannot be built here (no usable C++ compiler), or None when they can."""
    try:
        find_cxx()
    except NativeOpError as exc:
        return str(exc)
    return None


def find_nvcc() -> Compiler | None:
    """The CUDA compiler, or None when no CUDA toolkit is installed."""
    for cand in (os.environ.get(NVCC_ENV), "nvcc", "/usr/local/cuda/bin/nvcc"):
        path = cand and (shutil.which(cand) or (cand if os.path.isfile(cand) else None))
        if path:
            return _compiler_at(path)
    return None


@functools.cache
def host_cpu_key() -> str:
    """The host's instruction-set flags, hashed: ``-march=native`` builds are only valid on a CPU like this."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:16]


@functools.cache
def find_blas() -> Blas:
    """The CPU BLAS: scipy-openblas32 (an optimized OpenBLAS whose symbols carry a ``scipy_`` prefix)."""
    try:
        import scipy_openblas32 as sob
    except ImportError as exc:
        raise NativeOpError(
            "native ops need a CPU BLAS: pip install scipy-openblas32 (a dependency of returnn-native)"
        ) from exc
    prefix = ""
    match = re.search(r"-DBLAS_SYMBOL_PREFIX=(\w+)", sob.get_pkg_config())
    if match:
        prefix = match.group(1)
    return Blas(
        name=f"scipy-openblas32 {getattr(sob, '__version__', '')}".strip(),
        include_dir=sob.get_include_dir(),
        lib_dir=sob.get_lib_dir(),
        library=sob.get_library(),
        symbol_prefix=prefix,
        is_openblas=True,
    )
