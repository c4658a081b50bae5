"""PyTensor configured for RETURNN: compile cache under the RETURNN cache dir, float32, set before first import."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from types import ModuleType

from returnn_core.log import FRAMEWORK_LOG_VERBOSITY, run_verbosity
from returnn_core.paths import cache_dir

FLAGS_ENV = "PYTENSOR_FLAGS"


def _rc_files() -> list[str]:
    """The config files PyTensor reads (``PYTENSORRC`` or ``~/.pytensorrc``)."""
    return [os.path.expanduser(p) for p in os.environ.get("PYTENSORRC", "~/.pytensorrc").split(os.pathsep) if p]


def _user_sets(option: str, flags: str) -> bool:
    """Whether the user chose ``option`` in ``PYTENSOR_FLAGS`` or a PyTensor rc file."""
    names = {f.split("=", 1)[0].strip() for f in flags.split(",") if "=" in f}
    if option in names or option.replace("__", ".") in names:
        return True
    for path in _rc_files():
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if option.split("__")[-1] in text:
            return True
    return False


#: BLAS routines PyTensor's C ops call; scipy-openblas32 exports them with a ``scipy_`` prefix
_BLAS_SYMBOLS = ("sgemm", "dgemm", "sgemv", "dgemv", "sger", "dger", "sdot", "ddot", "saxpy", "daxpy", "sscal",
                 "dscal", "scopy", "dcopy", "sswap", "dswap")


def openblas_ldflags() -> str | None:
    """``blas__ldflags`` linking the OpenBLAS wheel ``scipy-openblas32`` (symbols renamed), if it is installed."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    if not os.path.isdir(lib_dir) or not any(f.startswith("libscipy_openblas") for f in os.listdir(lib_dir)):
        return None
    if any(c in lib_dir for c in ", ='\""):
        return None  # PYTENSOR_FLAGS cannot carry such a path
    renames = " ".join(f"-D{s}_=scipy_{s}_" for s in _BLAS_SYMBOLS)
    return f"-L{lib_dir} -lscipy_openblas {renames}"


def extra_flags(flags: str) -> list[str]:
    """The flags RETURNN adds to ``flags`` (never overriding what the user set)."""
    extra = []
    if not _user_sets("base_compiledir", flags) and not _user_sets("compiledir", flags):
        extra.append(f"base_compiledir={cache_dir('pytensor')}")
    # PyTensor 3 defaults to its Numba linker (slow to JIT); RETURNN uses the C VM linker unless told otherwise
    if not _user_sets("linker", flags) and not _user_sets("mode", flags):
        extra.append("linker=cvm")
    if not _user_sets("floatX", flags):
        extra.append("floatX=float32")
    # PyTensor's C BLAS ops (Gemm, Gemv) need a BLAS to link; without one its dots fall back to NumPy calls.
    # Setting the flags explicitly also skips PyTensor's BLAS probe (test compiles and a warning).
    if not _user_sets("blas__ldflags", flags):
        extra.append(f"blas__ldflags={openblas_ldflags() or ''}")
    return extra


def late_import_warning() -> str | None:
    """Why RETURNN's defaults could not be applied (PyTensor was imported before this plugin), else None."""
    if os.environ.get(FLAGS_ENV, "").find(cache_dir("pytensor")) >= 0:
        return None
    import pytensor

    if not str(pytensor.config.compiledir).startswith(cache_dir("pytensor")) and not _user_sets(
        "base_compiledir", os.environ.get(FLAGS_ENV, "")
    ):
        return (
            f"PyTensor was imported before returnn-theano could configure it; its compile cache stays in "
            f"{pytensor.config.compiledir} (import returnn_theano first, or set PYTENSOR_FLAGS=base_compiledir=...)"
        )
    return None


def configure() -> None:
    """Add RETURNN's defaults to ``PYTENSOR_FLAGS``; must run before ``pytensor`` is imported to take effect."""
    if "pytensor" in sys.modules:
        return
    flags = os.environ.get(FLAGS_ENV, "")
    extra = extra_flags(flags)
    if extra:
        os.environ[FLAGS_ENV] = ",".join([f for f in [flags.strip(","), *extra] if f])


def compile_mode() -> object:
    """The mode for ``pytensor.function``: the configured one, or C VM when PyTensor was left at "auto"."""
    import pytensor

    if pytensor.config.linker == "auto" and str(pytensor.config.mode) == "Mode":
        return pytensor.compile.mode.Mode(linker="cvm", optimizer="fast_run")
    return None


def quiet_pytensor() -> None:
    """PyTensor's own messages (logger ``pytensor``, which it sets up on import) only at ``log_verbosity`` 5."""
    quiet = run_verbosity() < FRAMEWORK_LOG_VERBOSITY
    logging.getLogger("pytensor").setLevel(logging.CRITICAL + 1 if quiet else logging.WARNING)


def import_pytensor() -> ModuleType:
    """``pytensor``, configured for RETURNN on first import."""
    configure()
    import pytensor

    quiet_pytensor()
    return pytensor
