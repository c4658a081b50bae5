"""Names and small conventions of the RETURNN HDF layout, shared by reader and writer."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from returnn_core.errors import ConfigError

INPUTS = "inputs"
SEQ_TAGS = "seqTags"
SEQ_LENGTHS = "seqLengths"
LABELS = "labels"
TARGETS_DATA = "targets/data"
TARGETS_SIZE = "targets/size"
TARGETS_LABELS = "targets/labels"
ATTR_INPUT_DIM = "inputPattSize"
ATTR_NUM_SEQS = "numSeqs"
ATTR_NUM_FRAMES = "numTimesteps"
ATTR_NUM_LABELS = "numLabels"
ATTR_NUM_DIMS = "numDims"

#: the data key under which ``inputs`` is delivered
INPUT_KEY = "data"


def decode_string(value: Any) -> str:
    """A string as h5py returns it (bytes of fixed or variable length, or str), cut at the first NUL."""
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", errors="replace")
    return str(value).split("\0", 1)[0]


def decode_strings(values: list[Any]) -> list[str]:
    """:func:`decode_string` of each value; byte strings are decoded in one go (seq tags: one per seq)."""
    if values and all(isinstance(v, bytes) for v in values):
        joined = b"\0".join(values)
        if joined.count(b"\0") == len(values) - 1:  # no value has a NUL of its own to cut at
            return joined.decode("utf-8", errors="replace").split("\0")
    return [decode_string(v) for v in values]


def encode_strings(items: Iterable[str]) -> np.ndarray:
    """Fixed-length UTF-8 byte strings (``S<n>``), the way RETURNN stores label lists."""
    data = [s.encode("utf-8") for s in items]
    width = max((len(s) for s in data), default=1) or 1
    return np.array(data, dtype=f"S{width}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_byte_size(value: int | float | str | None, *, what: str = "cache_size") -> int:
    """``1073741824``, ``"1G"``, ``"512MB"``, ``"64k"`` -> bytes (powers of 1024)."""
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        size = int(value)
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise ConfigError(f"{what} {value!r}: expected bytes or a size like '512M' or '2G'")
        size = int(float(m.group(1)) * 1024 ** " kmgt".index((m.group(2) or " ").lower()))
    if size < 0:
        raise ConfigError(f"{what} must be >= 0, got {value!r}")
    return size
