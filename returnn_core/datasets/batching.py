"""Batch generation by ``batch_size`` and ``max_seqs``: one (chunk of a) seq per row, or frames joined (non-recurrent)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from returnn_core.datasets.allocator import reuse_freed_memory
from returnn_core.datasets.chunking import chunk_seq, parse_chunking, parse_context_window
from returnn_core.datasets.seqs import BatchSeqCopyPart, DatasetSeq, SeqSlice
from returnn_core.datasets.spec import DataSpec

__all__ = ["Batch", "BatchData", "DatasetSeq", "SeqSlice", "chunk_seq", "generate_batches", "parse_chunking"]


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
    """Seq slices that go through the network together: one row each, or all joined into one row (``joined``)."""

    slices: list[SeqSlice] = field(default_factory=list)
    max_len: int = 0
    joined: bool = False

    @property
    def num_seqs(self) -> int:
        """Number of slices."""
        return len(self.slices)

    @property
    def start_seq(self) -> int:
        """The first seq index in the batch (RETURNN's name)."""
        return min((s.seq.seq_idx for s in self.slices), default=0)

    @property
    def end_seq(self) -> int:
        """One past the last seq index in the batch (RETURNN's name)."""
        return max((s.seq.seq_idx + 1 for s in self.slices), default=0)

    @property
    def seqs(self) -> list[BatchSeqCopyPart]:
        """Each slice with its place in the batch, as RETURNN's ``Batch.seqs`` describes it."""
        out, offset = [], 0
        for row, piece in enumerate(self.slices):
            start, end = piece.frame_range(piece.seq.features)
            length = {k: end[k] - v for k, v in start.items()} if isinstance(start, dict) else end - start
            out.append(BatchSeqCopyPart(piece.seq.seq_idx, start, end, length, 0 if self.joined else row,
                                        offset if self.joined else 0))
            offset += piece.end - piece.start
        return out

    def padded_frames(self) -> int:
        """``num_seqs * max_len`` (the joined row's length if joined): what ``batch_size`` bounds."""
        return self.max_len if self.joined else self.num_seqs * self.max_len

    def add(self, piece: SeqSlice, length: int | None = None) -> None:
        """Append one slice (``length``: its ``max_length()`` if the caller has it)."""
        self.slices.append(piece)
        if self.joined:
            self.max_len += piece.end - piece.start
        else:
            self.max_len = max(self.max_len, piece.max_length() if length is None else length)

    def to_data(self, specs: Mapping[str, DataSpec], keys: Iterable[str] | None = None) -> BatchData:
        """Pad the slices into arrays, one per key (``keys`` default: all keys of ``specs`` present in the seqs)."""
        present = self.slices[0].seq.features.keys() if self.slices else ()
        keys = [k for k in (keys if keys is not None else specs) if k in present]
        data, lens = {}, {}
        n = len(self.slices)
        if self.joined and self.slices:
            for key in keys:
                row = np.concatenate([s.array(key) for s in self.slices]).astype(specs[key].dtype, copy=False)
                data[key], lens[key] = row[None], np.array([row.shape[0]], dtype=np.int32)
            tags = "+".join(dict.fromkeys(s.seq.tag for s in self.slices))
            return BatchData(data, lens, [tags], [self.slices[0].seq.seq_idx])
        slices = self.slices
        for key in keys:
            arrays = [s.array(key) for s in slices]
            sizes = [a.shape[0] for a in arrays]
            t_max = max(sizes, default=0)
            tail = arrays[0].shape[1:] if arrays else ()
            out = np.empty((n, t_max, *tail), dtype=specs[key].dtype)  # filled once: frames, then zeros behind them
            zeros = None
            for row, a, t in zip(out, arrays, sizes):
                row[:t] = a
                if t < t_max:
                    if zeros is None:  # copying zeros runs at memcpy speed; numpy fills a scalar element by element
                        zeros = np.zeros((t_max, *tail), dtype=out.dtype)
                    row[t:] = zeros[t:]
            data[key], lens[key] = out, np.array(sizes, dtype=np.int32)
        return BatchData(data, lens, [s.seq.tag for s in slices], [s.seq.seq_idx for s in slices])


def generate_batches(
    seqs: Iterable[DatasetSeq],
    *,
    batch_size: int,
    max_seqs: int = -1,
    max_seq_length: int | Mapping[str, int] | None = None,
    chunking: object = None,
    min_chunk_size: int = 0,
    context_window: object = None,
    recurrent_net: bool = True,
) -> Iterator[Batch]:
    """Group (chunks of) seqs into batches of at most ``batch_size`` padded frames and ``max_seqs`` seqs.

    A single seq longer than ``batch_size`` still forms a batch of its own. Without ``recurrent_net`` the
    frames of consecutive seqs are joined into one row of ``batch_size`` frames, as RETURNN batches
    non-recurrent networks (a seq may then be split over two batches; ``max_seq_length`` does not apply).
    """
    reuse_freed_memory()
    chunks = parse_chunking(chunking)
    context = parse_context_window(context_window)
    max_seqs = max_seqs if max_seqs and max_seqs > 0 else 1 << 62
    batch_size = batch_size if batch_size and batch_size > 0 else 1 << 62
    pieces = (p for seq in seqs for p in chunk_seq(seq, chunks, min_chunk_size=min_chunk_size, context=context))
    if not recurrent_net:
        yield from _joined_batches(pieces, batch_size, max_seqs)
        return
    sized = _whole_seqs(seqs) if chunks is None and not context else ((p, p.max_length()) for p in pieces)
    batch = Batch()
    for piece, length in sized:
        if max_seq_length and _too_long(piece, max_seq_length):
            continue
        n = len(batch.slices)
        if n and (max(batch.max_len, length) * (n + 1) > batch_size or n >= max_seqs):
            yield batch
            batch = Batch()
        batch.add(piece, length)
    if batch.num_seqs:
        yield batch


def _whole_seqs(seqs: Iterable[DatasetSeq]) -> Iterator[tuple[SeqSlice, int]]:
    """The one slice ``chunk_seq`` makes of each unchunked seq, and its longest stream; built directly, since
    batching pays this per seq (the generator path measured 3-4x the time)."""
    same_length_keys: dict[tuple[str, ...], frozenset[str]] = {}  # one frozenset per key set, not one per seq
    for seq in seqs:
        feats = seq.features
        lens = [len(a) for a in feats.values()]
        length = len(feats["data"]) if "data" in feats else lens[0] if lens else 0
        longest = max(lens, default=0)
        if longest == length and min(lens, default=0) == length:
            names = tuple(feats)
            chunked = same_length_keys.get(names)
            if chunked is None:
                chunked = same_length_keys[names] = frozenset(names)
        else:  # keys of another length (a target with an end symbol) stay whole
            chunked = frozenset(k for k, t in zip(feats, lens) if t == length)
        yield SeqSlice(seq, 0, length, chunked), longest


def _joined_batches(pieces: Iterable[SeqSlice], batch_size: int, max_seqs: int) -> Iterator[Batch]:
    """RETURNN's non-recurrent batches: fill one row with up to ``batch_size`` frames, seq after seq."""
    batch = Batch(joined=True)
    for piece in pieces:
        t = piece.start
        while t < piece.end:
            n = min(piece.end - t, batch_size - batch.max_len)
            batch.add(SeqSlice(piece.seq, t, t + n, piece.chunked_keys))
            t += n
            if batch.max_len >= batch_size or batch.num_seqs > max_seqs:
                yield batch
                batch = Batch(joined=True)
    if batch.num_seqs:
        yield batch


def _too_long(piece: SeqSlice, max_seq_length: int | Mapping[str, int] | None) -> bool:
    if not max_seq_length:
        return False
    if isinstance(max_seq_length, Mapping):
        return any(k in piece.seq.features and piece.length(k) > v for k, v in max_seq_length.items())
    return piece.max_length() > max_seq_length
