"""SIGINT and SIGTERM during a run: stop at the next step boundary, end blocking work at once, exit 128 + signal.

The first signal only records itself; the driver checks at every step boundary and stops there, so the last
complete checkpoint stays the newest one. A watcher thread (woken through ``signal.set_wakeup_fd``, so it runs
even while the main thread is inside a framework's C++ step) calls the registered :func:`on_stop` callbacks at
once: plugins use them to stop child processes a step may be waiting for. A second signal stops immediately.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from returnn_core.errors import ReturnnError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_lock = threading.Lock()
_callbacks: list[Callable[[], None]] = []
_received: int | None = None
_count = 0


class RunStopped(ReturnnError):
    """The run was stopped by SIGINT or SIGTERM; the process exits with ``exit_status`` (128 + signal number)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` (from a watcher thread) as soon as a stop signal arrives; registering twice is a no-op."""
    with _lock:
        if callback not in _callbacks:
            _callbacks.append(callback)


def stop_signal() -> int | None:
    """The signal that asked the run to stop, or None."""
    return _received


def check() -> None:
    """At a step boundary: raise :class:`RunStopped` if a stop signal arrived."""
    if _received is not None:
        raise RunStopped(f"stopped by {signal_name(_received)}", _received)


def _note(signum: int) -> bool:
    """Record a stop signal; whether it is the first."""
    global _received
    with _lock:
        first = _received is None
        if first:
            _received = signum
        callbacks = list(_callbacks) if first else []
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one failing callback must not keep the others from stopping their work
            pass
    return first


def _handler(signum: int, frame: object) -> None:
    global _count
    _count += 1
    _note(signum)
    if _count >= 2:
        raise RunStopped(f"stopped by a second {signal_name(signum)}", signum)


def _watch(read_fd: int) -> None:
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data or 0 in data:
            return
        for signum in data:
            if signum in STOP_SIGNALS:
                _note(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM request a stop instead of killing the process (main thread only)."""
    global _received, _count
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_handlers = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read_fd,), name="returnn-signal-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for s, old in old_handlers.items():
            signal.signal(s, old)
        try:
            os.write(write_fd, b"\0")
        except BlockingIOError:  # a full pipe: the watcher is busy reading and sees the closed pipe next
            pass
        watcher.join(timeout=5.0)
        os.close(write_fd)
        os.close(read_fd)
        with _lock:
            _received, _count = None, 0
