"""Chunking of seqs and batch generation by ``batch_size`` (padded frames) and ``max_seqs``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from returnn_core.datasets.allocator import reuse_freed_memory
from returnn_core.datasets.spec import DataSpec
from returnn_core.errors import ConfigError


@dataclass(frozen=True)
class DatasetSeq:
    """One seq as a dataset delivers it: time-major arrays per data key."""

    seq_idx: int
    tag: str
    features: dict[str, np.ndarray]

    def length(self, key: str) -> int:
        """Number of frames (or labels) of ``key``."""
        return int(self.features[key].shape[0])


@dataclass(frozen=True)
class SeqSlice:
    """Frames ``start:end`` of a seq (keys of another length than the chunked ones are taken whole)."""

    seq: DatasetSeq
    start: int
    end: int
    chunked_keys: frozenset[str] = frozenset()

    def array(self, key: str) -> np.ndarray:
        """The slice's data for ``key``."""
        arr = self.seq.features[key]
        return arr[self.start : self.end] if key in self.chunked_keys else arr

    def length(self, key: str) -> int:
        """Frames of ``key`` in this slice."""
        return self.end - self.start if key in self.chunked_keys else self.seq.length(key)

    def max_length(self) -> int:
        """The longest stream in this slice (what padding costs in a batch)."""
        return max((self.length(k) for k in self.seq.features), default=0)


@dataclass
class BatchData:
    """A padded batch for a backend: ``data[key]`` is (B, T, D) float32 or (B, T) int32; ``seq_lens[key]`` (B,)."""

    data: dict[str, np.ndarray]
    seq_lens: dict[str, np.ndarray]
    tags: list[str]
    seq_idx: list[int]

    @property
    def num_seqs(self) -> int:
        """Number of seqs (or chunks) in the batch."""
        return len(self.tags)

    def num_frames(self, key: str) -> int:
        """Unpadded frames of ``key`` summed over the batch."""
        return int(self.seq_lens[key].sum())


@dataclass
class Batch:
    """Seq slices that go through the network together."""

    slices: list[SeqSlice] = field(default_factory=list)
    max_len: int = 0

    @property
    def num_seqs(self) -> int:
        """Number of slices."""
        return len(self.slices)

    def padded_frames(self) -> int:
        """``num_seqs * max_len``: what ``batch_size`` bounds."""
        return self.num_seqs * self.max_len

    def add(self, piece: SeqSlice) -> None:
        """Append one slice."""
        self.slices.append(piece)
        self.max_len = max(self.max_len, piece.max_length())

    def to_data(self, specs: Mapping[str, DataSpec], keys: Iterable[str] | None = None) -> BatchData:
        """Pad the slices into arrays, one per key (``keys`` default: all keys of ``specs`` present in the seqs)."""
        present = self.slices[0].seq.features.keys() if self.slices else ()
        keys = [k for k in (keys if keys is not None else specs) if k in present]
        data, lens = {}, {}
        n = len(self.slices)
        for key in keys:
            spec = specs[key]
            arrays = [s.array(key) for s in self.slices]
            seq_lens = np.array([a.shape[0] for a in arrays], dtype=np.int32)
            t_max = int(seq_lens.max()) if n else 0
            tail = arrays[0].shape[1:] if arrays else ()
            out = np.empty((n, t_max, *tail), dtype=spec.dtype)
            for i, a in enumerate(arrays):
                out[i, : a.shape[0]] = a
                out[i, a.shape[0] :] = 0  # only the padding needs zeros
            data[key], lens[key] = out, seq_lens
        return BatchData(data, lens, [s.seq.tag for s in self.slices], [s.seq.seq_idx for s in self.slices])


def parse_chunking(chunking: object) -> tuple[int, int] | None:
    """``"size:step"``, ``size`` or ``(size, step)`` -> ``(size, step)``; ``None``/0/"0" -> no chunking."""
    if chunking in (None, 0, "0", "", "none"):
        return None
    try:
        if isinstance(chunking, str):
            size_s, _, step_s = chunking.partition(":")
            size, step = int(size_s), int(step_s) if step_s else int(size_s)
        elif isinstance(chunking, int):
            size, step = chunking, chunking
        else:
            size, step = (int(x) for x in chunking)  # type: ignore[union-attr]
    except (ValueError, TypeError):
        raise ConfigError(f"chunking {chunking!r}: expected 'size:step'") from None
    if size <= 0 or step <= 0:
        raise ConfigError(f"chunking {chunking!r}: size and step must be positive")
    return size, step


def chunk_seq(seq: DatasetSeq, chunking: tuple[int, int] | None, *, key: str = "data", min_chunk_size: int = 0) -> Iterator[SeqSlice]:
    """Cut ``seq`` into windows of ``size`` frames every ``step`` frames (keys as long as ``key`` are cut)."""
    if key not in seq.features:
        key = next(iter(seq.features))
    length = seq.length(key)
    if chunking is None:
        yield SeqSlice(seq, 0, length, frozenset(seq.features))
        return
    size, step = chunking
    chunked = frozenset(k for k in seq.features if seq.length(k) == length)
    t = 0
    while t < length:
        yield SeqSlice(seq, t, min(t + size, length), chunked)
        t += step
        if length - t <= min_chunk_size:
            break


def generate_batches(
    seqs: Iterable[DatasetSeq],
    *,
    batch_size: int,
    max_seqs: int = -1,
    max_seq_length: int | Mapping[str, int] | None = None,
    chunking: object = None,
    min_chunk_size: int = 0,
) -> Iterator[Batch]:
    """Group (chunks of) seqs into batches of at most ``batch_size`` padded frames and ``max_seqs`` seqs.

    A single seq longer than ``batch_size`` still forms a batch of its own.
    """
    reuse_freed_memory()
    chunks = parse_chunking(chunking)
    max_seqs = max_seqs if max_seqs and max_seqs > 0 else 1 << 62
    batch_size = batch_size if batch_size and batch_size > 0 else 1 << 62
    batch = Batch()
    for seq in seqs:
        for piece in chunk_seq(seq, chunks, min_chunk_size=min_chunk_size):
            if _too_long(piece, max_seq_length):
                continue
            length = piece.max_length()
            new_n = batch.num_seqs + 1
            if batch.num_seqs and (max(batch.max_len, length) * new_n > batch_size or new_n > max_seqs):
                yield batch
                batch = Batch()
            batch.add(piece)
    if batch.num_seqs:
        yield batch


def _too_long(piece: SeqSlice, max_seq_length: int | Mapping[str, int] | None) -> bool:
    if not max_seq_length:
        return False
    if isinstance(max_seq_length, Mapping):
        return any(k in piece.seq.features and piece.length(k) > v for k, v in max_seq_length.items())
    return piece.max_length() > max_seq_length
