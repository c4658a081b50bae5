"""Messages over the Sprint pipes: each one an int32 little-endian byte count, then a pickle.

Pickle protocol 5 stores NumPy arrays as their raw buffers, so features travel as bytes, not as Python lists.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import time
from typing import Any, BinaryIO

MAX_MESSAGE = (1 << 31) - 1


class ProtocolError(Exception):
    """The other side sent something that is not a framed pickle (garbage, truncation)."""


class PipeTimeout(Exception):
    """No complete message arrived in time."""


def encode_message(obj: Any) -> bytes:
    """Frame one object: size prefix + pickle."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("<i", len(data)) + data


def write_message(f: BinaryIO | int, obj: Any) -> None:
    """Send one object over a pipe (file object or raw fd)."""
    data = encode_message(obj)
    if isinstance(f, int):
        view = memoryview(data)
        while view:
            n = os.write(f, view)
            view = view[n:]
    else:
        f.write(data)
        f.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """``n`` bytes from ``fd``; b"" on EOF before the first byte; ProtocolError on EOF in between."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0.0))[0] if left > 0 else []
            if not ready:
                raise PipeTimeout(f"timed out waiting for {n - got} more bytes")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return b""
            raise ProtocolError(f"pipe closed in the middle of a message ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(f: BinaryIO | int, *, timeout: float | None = None) -> Any:
    """Receive one object; EOFError if the pipe is closed between messages."""
    fd = f if isinstance(f, int) else f.fileno()
    deadline = None if timeout is None else time.monotonic() + timeout
    head = _read_exact(fd, 4, deadline)
    if not head:
        raise EOFError("pipe closed")
    (size,) = struct.unpack("<i", head)
    if size <= 0 or size > MAX_MESSAGE:
        raise ProtocolError(f"bad message size {size} (header bytes {head!r}): not a framed pickle")
    data = _read_exact(fd, size, deadline)
    if not data:
        raise ProtocolError(f"pipe closed after the size header of a {size}-byte message")
    try:
        return pickle.loads(data)
    except Exception as exc:  # any unpickling failure means garbage on the pipe
        raise ProtocolError(f"cannot unpickle a {size}-byte message ({type(exc).__name__}: {exc}): {data[:40]!r}") from None


def parse_config_str(config: str) -> dict[str, str]:
    """Sprint's ``--*.pymod-config`` string ``key:value,key:value`` as a dict."""
    out = {}
    for item in config.split(","):
        if not item:
            continue
        key, sep, value = item.partition(":")
        if not sep:
            raise ValueError(f"pymod-config item {item!r} has no ':' (expected key:value)")
        out[key] = value
    return out


def format_config_str(config: dict[str, Any]) -> str:
    """Inverse of :func:`parse_config_str` (values must not contain commas)."""
    for key, value in config.items():
        if "," in str(value) or "," in key:
            raise ValueError(f"pymod-config {key}={value!r}: commas are not allowed")
    return ",".join(f"{k}:{v}" for k, v in config.items())
