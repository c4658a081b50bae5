"""``returnn compile-native-op``: prebuild native ops into the cache, e.g. on a login node that has a compiler."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from returnn_core.errors import ReturnnError
from returnn_native.errors import NativeOpError
from returnn_native.op_spec import OPS

BACKENDS = ("cpu", "tf", "theano")


def _build_cpu() -> str:
    from returnn_native.cpu_kernels import build_cpu_kernels

    res = build_cpu_kernels()
    return f"{res.path} ({'compiled' if res.compiled else 'cached'})"


def _load_backend(backend: str) -> None:
    """Load the backend plugin as training does, so its framework settings (PyTensor's flags and compile cache,
    TF's logging) apply to the build; returnn-native itself never imports a backend plugin."""
    from returnn_core.plugin import get_plugin_manager

    manager = get_plugin_manager()
    if backend not in manager.loaded_backends():
        raise NativeOpError(f"no {backend} backend is installed, so no {backend} training would use this op: "
                            f"pip install returnn-{backend}")
    manager.backends.get(backend)


def _build_tf() -> str:
    _load_backend("tf")
    from returnn_native.tf_ops import build_tf_op, load_tf_op_library

    res = build_tf_op()
    load_tf_op_library()
    return f"{res.path} ({'compiled' if res.compiled else 'cached'})"


def _build_theano() -> str:
    """Compile the PyTensor C module of the forward and gradient ops into the compile cache theano training uses."""
    _load_backend("theano")  # sets PyTensor's flags (base_compiledir under $RETURNN_CACHE_DIR) before its import
    import numpy as np
    import pytensor
    import pytensor.tensor as pt

    from returnn_native.pytensor_ops import native_lstm

    z, w, m, s = (
        pt.tensor3(dtype="float32"),
        pt.matrix(dtype="float32"),
        pt.matrix(dtype="float32"),
        pt.matrix(dtype="float32"),
    )
    y, h, c = native_lstm(z, w, m, s, s)
    # no explicit mode: the configured one, as the theano backend compiles its steps
    f = pytensor.function([z, w, m, s], [y, *pytensor.grad(y.sum() + h.sum() + c.sum(), [z, w, s])])
    f(
        np.ones((1, 1, 4), np.float32),
        np.ones((1, 4), np.float32),
        np.ones((1, 1), np.float32),
        np.zeros((1, 1), np.float32),
    )
    return f"PyTensor compile cache {pytensor.config.compiledir}"


BUILDERS: dict[str, Callable[[], str]] = {"cpu": _build_cpu, "tf": _build_tf, "theano": _build_theano}


def _available_backends() -> list[str]:
    """``cpu`` plus each installed backend plugin this plugin binds to."""
    from returnn_core.plugin import get_plugin_manager

    installed = get_plugin_manager().loaded_backends()
    return ["cpu", *(b for b in BACKENDS[1:] if b in installed)]


def main(argv: list[str]) -> int:
    """Build the requested ops for the requested backends; print where each landed."""
    parser = argparse.ArgumentParser(
        prog="returnn compile-native-op",
        description="Compile native ops (NativeLstm) into the cache ($RETURNN_CACHE_DIR/native) ahead of use.",
        epilog="environment variables: RETURNN_CACHE_DIR (the cache root), RETURNN_NATIVE_CXX or CXX (the C++ "
        "compiler, default g++), RETURNN_NATIVE_NVCC (the CUDA compiler, default nvcc)",
    )
    parser.add_argument("ops", nargs="*", default=[], help=f"ops to build (default: all: {', '.join(OPS)})")
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="backend binding to build, into the cache its training uses (repeatable; default: cpu plus every "
        "installed backend plugin)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the CPU kernel library even when cached")
    parser.add_argument("--list", action="store_true", help="list the ops and their signatures, build nothing")
    args = parser.parse_args(argv)
    if args.list:
        for op in OPS.values():
            print(f"{op.describe()}\n    {op.doc}")
            if op.grad is not None:
                print(f"  gradient: {op.grad.describe()}")
        return 0
    unknown = [o for o in args.ops if o not in OPS]
    if unknown:
        print(f"returnn compile-native-op: unknown op {', '.join(unknown)}; known: {', '.join(OPS)}", file=sys.stderr)
        return 2
    backends = args.backend or _available_backends()
    if args.force:
        from returnn_native.build_cache import build_library
        from returnn_native.cpu_kernels import cpu_kernel_spec

        build_library(cpu_kernel_spec(), force=True)
    for op in args.ops or list(OPS):
        for backend in backends:
            start = time.perf_counter()
            try:
                where = BUILDERS[backend]()
            except ReturnnError as exc:
                print(f"returnn compile-native-op: {op} for {backend}: {exc}", file=sys.stderr)
                return 1
            except ImportError as exc:
                print(f"returnn compile-native-op: {op} for {backend} needs {exc.name}: {exc}", file=sys.stderr)
                return 1
            print(f"{op} [{backend}] {where} in {time.perf_counter() - start:.1f}s")
    return 0
