"""Where a stream's rows lie in the file, so that uncompressed data is mapped from the page cache, not copied through HDF5.

HDF5 stores an unfiltered dataset's rows as plain bytes, either in one contiguous block or in chunks; a chunk
that spans whole rows holds a contiguous run of them. Mapping those bytes gives arrays that are views of the
page cache: batch building then makes the only copy, where reading through HDF5 makes two or three (into its
chunk cache, into the read buffer, into the batch).
"""

from __future__ import annotations

import bisect
import mmap
from dataclasses import dataclass

import h5py
import numpy as np

#: mapping granularity (mmap offsets must be multiples of it)
_GRAIN = mmap.ALLOCATIONGRANULARITY


@dataclass(frozen=True)
class RowExtents:
    """Runs of rows stored back to back: rows ``rows[i]:rows[i + 1]`` start at byte ``offsets[i]`` of the file."""

    rows: list[int]
    offsets: list[int]
    dtype: np.dtype
    tail: tuple[int, ...]
    row_bytes: int

    @property
    def end_offset(self) -> int:
        """One past the last byte any run covers."""
        return max(o + (b - a) * self.row_bytes for a, b, o in zip(self.rows, self.rows[1:], self.offsets))

    def pieces(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """``(first_row, end_row, byte_offset)`` of the runs that cover rows ``lo:hi``, cut to that range."""
        out = []
        i = bisect.bisect_right(self.rows, lo) - 1
        while lo < hi:
            end = min(self.rows[i + 1], hi)
            out.append((lo, end, self.offsets[i] + (lo - self.rows[i]) * self.row_bytes))
            lo, i = end, i + 1
        return out


def row_extents(ds: h5py.Dataset) -> RowExtents | None:
    """The row runs of ``ds``, or None where its bytes are not plain rows in the file (filters, external or
    virtual storage, chunks that split a row, unallocated chunks, a byte order to convert)."""
    if ds.ndim < 1 or ds.shape[0] == 0 or not ds.dtype.isnative or ds.dtype.kind not in "biuf":
        return None
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if plist.get_nfilters() or plist.get_external_count():
        return None
    tail = tuple(int(d) for d in ds.shape[1:])
    row_bytes = int(np.prod(tail, dtype=np.int64)) * ds.dtype.itemsize
    n = int(ds.shape[0])
    if row_bytes == 0:
        return None
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        return None if offset is None else RowExtents([0, n], [int(offset)], ds.dtype, tail, row_bytes)
    if layout != h5py.h5d.CHUNKED or tuple(ds.chunks[1:]) != tail:
        return None
    chunk_rows = int(ds.chunks[0])
    infos: list = []
    if hasattr(ds.id, "chunk_iter"):
        ds.id.chunk_iter(infos.append)
    else:
        infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    if len(infos) != -(-n // chunk_rows):
        return None  # some chunks were never written: HDF5 fills them in, the file does not hold them
    rows, offsets = [], []
    for info in sorted(infos, key=lambda s: s.chunk_offset[0]):
        first = int(info.chunk_offset[0])
        if info.byte_offset is None or info.filter_mask or info.size != chunk_rows * row_bytes:
            return None
        if rows and first == rows[-1] and offsets[-1] + (first - rows[-2]) * row_bytes == info.byte_offset:
            rows[-1] = min(first + chunk_rows, n)  # the next chunk lies right behind: one run
            continue
        if rows and first != rows[-1]:
            return None
        if not rows:
            rows.append(first)
        offsets.append(int(info.byte_offset))
        rows.append(min(first + chunk_rows, n))
    if not rows or rows[0] != 0 or rows[-1] != n:
        return None
    return RowExtents(rows, offsets, ds.dtype, tail, row_bytes)


def map_rows(fd: int, ext: RowExtents, lo: int, hi: int) -> list[tuple[int, int, np.ndarray]]:
    """Rows ``lo:hi`` as ``(first_row, end_row, array)`` views of the file, one per run they cross.

    The views are copy-on-write (writing to one changes neither the file nor other readers) and keep their
    mapping alive; it is unmapped when the last view goes.
    """
    out = []
    for a, b, offset in ext.pieces(lo, hi):
        start = offset - offset % _GRAIN
        length = offset + (b - a) * ext.row_bytes - start
        m = mmap.mmap(fd, length, access=mmap.ACCESS_COPY, offset=start)
        if hasattr(m, "madvise"):
            m.madvise(mmap.MADV_WILLNEED)  # one read-ahead for the whole range when it is not in RAM
        arr = np.frombuffer(m, dtype=ext.dtype, count=(b - a) * int(np.prod(ext.tail, dtype=np.int64)),
                            offset=offset - start)
        out.append((a, b, arr.reshape(b - a, *ext.tail)))
    return out
