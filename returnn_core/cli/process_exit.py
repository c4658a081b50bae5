"""A faster interpreter shutdown after a run that imported a large framework."""

from __future__ import annotations

import atexit
import gc

_registered = False


def _freeze_heap() -> None:
    gc.disable()
    gc.freeze()


def skip_final_collection() -> None:
    """At interpreter exit, after the other exit handlers, move all objects out of the garbage collector's reach.

    The final collections of a process that imported TensorFlow walk its millions of objects: 1-3 s after the
    run's last line, longer than a small model's epoch. Nothing of a run is left to finalize by then (the engine
    closes datasets, logs and writers itself; atexit and ``weakref.finalize`` handlers still run, and objects
    outside reference cycles are still freed); frozen cycles are simply left to the operating system.
    Registered first, so it runs last.
    """
    global _registered
    if not _registered:
        _registered = True
        atexit.register(_freeze_heap)
