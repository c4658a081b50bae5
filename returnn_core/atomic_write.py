"""Atomic file replacement: write beside the target, fsync, rename; readers never see half a file."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import tempfile

from returnn_core.errors import ReturnnError


class DiskFullError(ReturnnError):
    """Writing a file ran out of space; the file it was to replace is untouched."""


def free_space(path: str) -> str:
    """The free space of the file system holding ``path``, in words (``"12.0 MiB free"``)."""
    probe = os.path.dirname(os.path.abspath(path))
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.1f} {unit} free" if unit != "B" else f"{free} B free"
        free /= 1024
    return f"{free:.1f} TiB free"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or a framework error carrying its text) says the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def disk_full(path: str, kept: str) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``; ``kept`` says what is still intact."""
    return DiskFullError(f"disk full while writing {path} ({free_space(path)}); {kept}; free some space and run again")


def temp_leftovers(path: str) -> list[str]:
    """Temp files :func:`atomic_write_text` of ``path`` left behind when its process was killed."""
    return glob.glob(glob.escape(path) + ".*.tmp")


def atomic_write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one step."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise disk_full(path, f"the previous {os.path.basename(path)} is kept") from None
        raise
