"""One training run per model: a lock file next to the ``model`` prefix, held for the whole run.

The lock is an OS file lock (``filelock``), so it dies with its process: a lock left by a killed run is simply
taken over by the next one. The holder writes its pid and host into the file for the message a second run gets.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from filelock import FileLock, Timeout

from returnn_core.atomic_write import temp_leftovers
from returnn_core.engine.checkpoints import checkpoint_leftovers, remove_leftovers
from returnn_core.errors import ReturnnError

#: set by a launcher (``returnn tf-distributed``) for the non-chief workers of one run: they write no checkpoint,
#: so only the chief takes the lock
SHARED_RUN_ENV = "RETURNN_SHARED_RUN"


class ModelLocked(ReturnnError):
    """Another live run holds the lock of this model."""


def lock_path(model: str) -> str:
    """``<model>.lock``."""
    return model + ".lock"


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def hold_run_lock(model: str) -> Iterator[None]:
    """Hold ``<model>.lock`` while the block runs; raise :class:`ModelLocked` naming the holder if it is taken."""
    path = lock_path(model)
    lock = FileLock(path, timeout=0)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        lock.acquire()
    except Timeout:  # before OSError: filelock's Timeout is a TimeoutError
        raise ModelLocked(
            f"model {model} is being trained by {_holder(path)} (lock {path}); wait for that run to end, or give "
            "this one another 'model'"
        ) from None
    except OSError as exc:
        raise ReturnnError(f"cannot create the run lock {path} of model {model}: {exc.strerror or exc}") from None
    try:
        with open(path, "w", encoding="utf-8") as f:  # the file is ours now; this is only the note for others
            f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        yield
    finally:
        lock.release()


@contextmanager
def _training_lock(model: str, learning_rate_file: str | None, log: Any) -> Iterator[None]:
    with hold_run_lock(model):
        leftovers = checkpoint_leftovers(model) + (temp_leftovers(learning_rate_file) if learning_rate_file else [])
        if leftovers:
            remove_leftovers(leftovers)
            if log is not None:
                log.v2(f"removed {len(leftovers)} temp file(s) a killed run left: {', '.join(sorted(leftovers))}")
        yield


def training_guard(config: Any, log: Any = None) -> Any:
    """For task train with a ``model``: hold its run lock and clear a killed run's temp files; else nothing."""
    model = config.value("model", None)
    if config.value("task", "train") != "train" or not model or os.environ.get(SHARED_RUN_ENV):
        return nullcontext()
    return _training_lock(model, config.value("learning_rate_file", None), log)
