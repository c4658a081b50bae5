"""Compiling native sources into shared libraries, cached by content and toolchain, guarded by a file lock."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from returnn_core.paths import cache_dir
from returnn_native.errors import NativeCompileError
from returnn_native.toolchain import Compiler

#: Compiler output kept in an error message (the full log stays in the build folder).
_LOG_TAIL_CHARS = 6000


@dataclass(frozen=True)
class BuildSpec:
    """One shared library to build: sources, the files they include, flags, and extra cache-key parts."""

    name: str
    sources: tuple[str, ...]
    compiler: Compiler
    flags: tuple[str, ...] = ()
    link_flags: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    key_extra: tuple[str, ...] = ()
    #: flags that make a shared library (nvcc passes -fPIC through to its host compiler)
    shared_flags: tuple[str, ...] = ("-shared", "-fPIC")

    def key(self) -> str:
        """Hash of everything that changes the binary: sources, headers, compiler, flags, extra parts."""
        h = hashlib.sha256()
        for path in (*self.sources, *self.depends):
            with open(path, "rb") as f:
                h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
        for part in (
            self.compiler.path,
            self.compiler.version,
            *self.flags,
            "|",
            *self.link_flags,
            "|",
            *self.key_extra,
            "|",
            *self.shared_flags,
        ):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:20]


@dataclass
class BuildResult:
    """Where the library is and whether this call compiled it (False: taken from the cache)."""

    path: str
    compiled: bool
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)


def build_dir_for(spec: BuildSpec, root: str | None = None) -> str:
    """The cache folder of one build: ``<cache>/native/<name>-<key>``."""
    return os.path.join(root or cache_dir("native"), f"{spec.name}-{spec.key()}")


def build_library(spec: BuildSpec, *, root: str | None = None, force: bool = False) -> BuildResult:
    """Build ``spec`` into the cache (once across processes, under a file lock) and return the library path."""
    from filelock import FileLock

    out_dir = build_dir_for(spec, root)
    lib_path = os.path.join(out_dir, f"lib{spec.name}.so")
    if not force and os.path.exists(lib_path):
        return BuildResult(lib_path, compiled=False)
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    with FileLock(out_dir + ".lock"):
        if not force and os.path.exists(lib_path):  # another process built it while we waited
            return BuildResult(lib_path, compiled=False)
        os.makedirs(out_dir, exist_ok=True)
        tmp_path = f"{lib_path}.tmp{os.getpid()}"
        cmd = [spec.compiler.path, *spec.flags, *spec.shared_flags, *spec.sources, "-o", tmp_path, *spec.link_flags]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise NativeCompileError(
                f"native op {spec.name}: cannot run compiler {spec.compiler.path!r}: {exc}"
            ) from exc
        seconds = time.perf_counter() - start
        log = (proc.stdout or "") + (proc.stderr or "")
        with open(os.path.join(out_dir, "build.log"), "w", encoding="utf-8") as f:
            f.write(" ".join(cmd) + "\n\n" + log)
        if proc.returncode != 0 or not os.path.exists(tmp_path):
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
            tail = log[-_LOG_TAIL_CHARS:]
            raise NativeCompileError(
                f"native op {spec.name}: compiling failed (exit code {proc.returncode}) with {spec.compiler.path}; "
                f"command: {' '.join(cmd)}\ncompiler log (full log in {out_dir}/build.log):\n{tail}"
            )
        with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(
                {
                    "name": spec.name,
                    "command": cmd,
                    "seconds": seconds,
                    "compiler": spec.compiler.version,
                    "key_extra": list(spec.key_extra),
                    "pid": os.getpid(),
                },
                f,
                indent=1,
            )
        os.replace(tmp_path, lib_path)
    return BuildResult(lib_path, compiled=True, seconds=seconds, command=cmd)


def source_path(*parts: str) -> str:
    """A kernel source shipped with this package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", *parts)
