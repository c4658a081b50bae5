"""A Sprint child process with two pipes whose fds go on its command line; always reaped, never orphaned.

Children run in their own session (a Ctrl-C on the terminal reaches only ``returnn``, which stops them) and, on
Linux, with ``PR_SET_PDEATHSIG`` = SIGKILL, so they die with ``returnn`` even when it is SIGKILLed. That signal
fires when the *thread* that forked the child ends, so every child is forked by one long-lived spawner thread.
A SIGINT/SIGTERM to ``returnn`` kills every live child at once (:func:`returnn_core.engine.signals.on_stop`).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from returnn_core.engine import signals
from returnn_core.errors import ReturnnError
from returnn_sprint.pipe_protocol import PipeTimeout, ProtocolError, read_message, write_message

_LIVE: weakref.WeakSet[SprintChild] = weakref.WeakSet()
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class SprintChildError(ReturnnError):
    """The Sprint child died, hung or sent garbage; the message has its exit status and last output."""


def split_args(value: str | Sequence[str] | None) -> list[str]:
    """A command line given as a shell string or a list (``None`` -> empty)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def describe_status(returncode: int | None) -> str:
    """``exit status 3`` / ``killed by signal SIGKILL`` / ``still running``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: SIGKILL the child when its parent goes; exit at once if the parent is already gone."""

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Spawner:
    """One daemon thread that forks every child: ``PR_SET_PDEATHSIG`` fires when the forking thread ends."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen:
        """``subprocess.Popen(args, **kwargs)`` run on the spawner thread, with the parent-death signal."""
        kwargs["preexec_fn"] = _die_with_parent(os.getpid())
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="returnn-sprint-spawner", daemon=True)
                self._thread.start()
        done: Future = Future()
        self._requests.put((done, args, kwargs))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, args, kwargs = self._requests.get()
            try:
                done.set_result(subprocess.Popen(args, **kwargs))
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)


_SPAWNER = _Spawner()


def _single_line(text: str, max_lines: int = 4, max_chars: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()][-max_lines:]
    return " | ".join(line if len(line) <= max_chars else line[: max_chars - 3] + "..." for line in lines)


class SprintChild:
    """Starts ``build_args(c2p_fd, p2c_fd)`` with both pipe ends inherited; talks framed pickles over them.

    stdout and stderr of the child go to a temporary file so its last output can be quoted in errors.
    """

    def __init__(self, build_args: Callable[[int, int], list[str]], *, name: str = "Sprint", env: dict | None = None) -> None:
        self.name = name
        c2p_r, c2p_w = os.pipe()
        p2c_r, p2c_w = os.pipe()
        self._output = tempfile.TemporaryFile(prefix="returnn-sprint-child-")
        self.args = build_args(c2p_w, p2c_r)
        if not self.args:
            raise SprintChildError(f"{name}: empty Sprint command line")
        try:
            self.proc = _SPAWNER.popen(
                self.args,
                pass_fds=(c2p_w, p2c_r),
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (c2p_r, p2c_w):
                os.close(fd)
            self._output.close()
            raise SprintChildError(f"{name}: cannot start Sprint {self.args[0]!r}: {exc.strerror}") from None
        finally:
            # the child's ends: only the child may hold them, so that its death shows up as EOF here
            os.close(c2p_w)
            os.close(p2c_r)
        self._rfd: int | None = c2p_r
        self._wfd: int | None = p2c_w
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        """Process id of the child."""
        return self.proc.pid

    def last_output(self, max_chars: int = 2000) -> str:
        """The tail of what the child printed."""
        try:
            self._output.flush()
            size = self._output.seek(0, os.SEEK_END)
            self._output.seek(max(size - max_chars, 0))
            return self._output.read().decode("utf8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def error(self, what: str) -> SprintChildError:
        """A one-line error: ``what`` went wrong, with the child's status and its last output lines."""
        status = describe_status(self.proc.poll())
        out = _single_line(self.last_output()) or "(none)"
        return SprintChildError(f"{self.name} (pid {self.pid}, {' '.join(self.args[:2])} ...): {what}; {status}; last output: {out}")

    def send(self, obj: Any) -> None:
        """Send one message to the child."""
        if self._wfd is None:
            raise self.error("pipe to the child is closed")
        try:
            write_message(self._wfd, obj)
        except (BrokenPipeError, OSError) as exc:
            self.wait(timeout=2.0)
            raise self.error(f"cannot write to the child ({type(exc).__name__})") from None

    def recv(self, *, timeout: float | None = None, timeout_option: str = "reading_timeout") -> Any:
        """Receive one message; a clear :class:`SprintChildError` on EOF, garbage or timeout (named by its option)."""
        if self._rfd is None:
            raise self.error("pipe from the child is closed")
        try:
            return read_message(self._rfd, timeout=timeout)
        except EOFError:
            self.wait(timeout=5.0)
            raise self.error("the child closed its pipe (died?) before the expected message") from None
        except PipeTimeout:
            self.kill()
            raise self.error(f"no message from the child within {timeout:g} s ({timeout_option}; hung?); killed it") from None
        except ProtocolError as exc:
            self.kill()
            raise self.error(f"garbage on the pipe: {exc}; killed it") from None

    @property
    def read_fd(self) -> int | None:
        """The parent's read end (for select)."""
        return self._rfd

    def wait(self, timeout: float | None = None) -> int | None:
        """Reap the child if it exits within ``timeout``; its return code or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()

    def close_pipes(self) -> None:
        """Close the parent's pipe ends (the child sees EOF)."""
        with self._lock:
            for attr in ("_wfd", "_rfd"):
                fd = getattr(self, attr)
                if fd is not None:
                    setattr(self, attr, None)
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def stop(self, *, grace: float = 5.0, send: Any = None, join: Callable[[], None] | None = None) -> int:
        """Optionally send a last message, wait ``grace`` seconds for the child to exit, then kill; always reaps.

        ``join`` runs after the child is gone and before the read end is closed (to join a reader thread:
        closing an fd another thread still reads from could hand that thread a reused fd).
        """
        if send is not None and self._wfd is not None and self.proc.poll() is None:
            try:
                write_message(self._wfd, send)
            except OSError:
                pass
        with self._lock:
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
        if self.wait(timeout=grace) is None:
            self.kill()
        if join is not None:
            join()
        self.close_pipes()
        self._output.close()
        _LIVE.discard(self)
        return self.proc.returncode

    def __del__(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
                proc.wait()
            except OSError:
                pass


def _kill_all() -> None:
    """A stop signal: kill and reap every live child, so that nothing the run waits for can hang it."""
    for child in list(_LIVE):
        child.kill()


signals.on_stop(_kill_all)


@atexit.register
def _reap_all() -> None:
    for child in list(_LIVE):
        try:
            child.stop(grace=1.0)
        except Exception:  # interpreter shutdown: best effort only
            pass
