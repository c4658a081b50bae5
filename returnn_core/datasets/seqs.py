"""A seq as a dataset delivers it (:class:`DatasetSeq`) and a frame range of it that goes into a batch (:class:`SeqSlice`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

#: the shared, read-only ``key_bounds`` of a slice that gives no key its own bounds
NO_KEY_BOUNDS: Mapping[str, tuple[int, int]] = MappingProxyType({})


# Both are immutable named tuples rather than frozen dataclasses: batching makes one of each per seq, and a
# frozen dataclass's __init__ (one object.__setattr__ per field) measured 3-5x the cost of a tuple.
class DatasetSeq(NamedTuple):
    """One seq as a dataset delivers it: time-major arrays per data key."""

    seq_idx: int
    tag: str
    features: dict[str, np.ndarray]

    def length(self, key: str) -> int:
        """Number of frames (or labels) of ``key``."""
        return int(self.features[key].shape[0])


class SeqSlice(NamedTuple):
    """Frames ``start:end`` of a seq, for the keys in ``chunked_keys``; other keys are taken whole.

    ``key_bounds`` gives a key its own ``(start, end)`` (per-key chunking, context windows); bounds beyond
    the seq are zero-padded, as RETURNN pads a context window at the borders.
    """

    seq: DatasetSeq
    start: int
    end: int
    chunked_keys: frozenset[str] = frozenset()
    key_bounds: Mapping[str, tuple[int, int]] = NO_KEY_BOUNDS

    def bounds(self, key: str) -> tuple[int, int]:
        """``(start, end)`` frames of ``key`` in this slice."""
        if key in self.key_bounds:
            return self.key_bounds[key]
        return (self.start, self.end) if key in self.chunked_keys else (0, self.seq.length(key))

    def frame_range(self, keys: Iterable[str]) -> tuple[int | dict[str, int], int | dict[str, int]]:
        """``(start, end)``: ints, or ``{key: frame}`` for ``keys`` when keys have bounds of their own (RETURNN's
        per-key frame positions)."""
        if not self.key_bounds:
            return self.start, self.end
        bounds = {k: self.bounds(k) for k in keys}
        return {k: b[0] for k, b in bounds.items()}, {k: b[1] for k, b in bounds.items()}

    def array(self, key: str) -> np.ndarray:
        """The slice's data for ``key``."""
        arr = self.seq.features[key]
        if key in self.key_bounds:
            start, end = self.key_bounds[key]
        elif key in self.chunked_keys:
            start, end = self.start, self.end
        else:
            return arr  # taken whole
        if 0 <= start and end <= arr.shape[0]:
            return arr if start == 0 and end == arr.shape[0] else arr[start:end]
        out = np.zeros((end - start, *arr.shape[1:]), dtype=arr.dtype)
        lo, hi = max(start, 0), min(end, arr.shape[0])
        if hi > lo:
            out[lo - start : hi - start] = arr[lo:hi]
        return out

    def length(self, key: str) -> int:
        """Frames of ``key`` in this slice."""
        start, end = self.bounds(key)
        return end - start

    def max_length(self) -> int:
        """The longest stream in this slice (what padding costs in a batch)."""
        return max((self.length(k) for k in self.seq.features), default=0)


class BatchSeqCopyPart(NamedTuple):
    """Where a slice sits in its batch, under RETURNN's names: frames ``seq_start_frame:seq_end_frame`` of seq
    ``seq_idx`` go to row ``batch_slice`` from frame ``batch_frame_offset``; the frames are ints, or
    ``{key: frame}`` when the keys have bounds of their own (per-key chunking, a context window)."""

    seq_idx: int
    seq_start_frame: int | dict[str, int]
    seq_end_frame: int | dict[str, int]
    frame_length: int | dict[str, int]
    batch_slice: int
    batch_frame_offset: int
