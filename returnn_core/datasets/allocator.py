"""Keep freed batch memory in the process heap, so each new padded batch does not page-fault afresh.

glibc serves blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and unmaps them on free: every padded
batch of a few MB then costs one page fault per 4 KiB, which measured slower than the copy itself. Raising
the mmap and trim thresholds makes glibc reuse heap memory instead. Set ``RETURNN_KEEP_MALLOC=1`` to skip.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def reuse_freed_memory(threshold: int = 256 << 20) -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True if applied."""
    global _done
    if _done:
        return True
    _done = True
    if not sys.platform.startswith("linux") or os.environ.get("RETURNN_KEEP_MALLOC"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    except (OSError, AttributeError):
        return False  # not glibc: nothing to tune
