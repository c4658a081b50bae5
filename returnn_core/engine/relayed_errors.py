"""Errors raised by plugin code that a backend runs inside a compiled step, kept for the run to report.

A framework wraps an exception from a Python callback inside its step (e.g. TensorFlow's ``numpy_function``) into
its own error whose message is a traceback. Plugin code records the clear :class:`ReturnnError` here before
raising; the run then reports that one instead of the wrapper.
"""

from __future__ import annotations

import threading

from returnn_core.errors import ReturnnError

_lock = threading.Lock()
_first: ReturnnError | None = None


def relay(error: ReturnnError) -> None:
    """Keep ``error`` (the first one of a step wins: later ones are usually its consequences)."""
    global _first
    with _lock:
        if _first is None:
            _first = error


def take() -> ReturnnError | None:
    """The kept error, forgotten once taken."""
    global _first
    with _lock:
        error, _first = _first, None
    return error
