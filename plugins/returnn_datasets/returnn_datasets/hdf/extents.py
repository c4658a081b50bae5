"""Where a stream's rows lie in the file, so that uncompressed data is mapped from the page cache, not copied through HDF5.

HDF5 stores an unfiltered dataset's rows as plain bytes, either in one contiguous block or in chunks; a chunk
that spans whole rows holds a contiguous run of them. Mapping those bytes gives arrays that are views of the
page cache: batch building then makes the only copy, where reading through HDF5 makes two or three (into its
chunk cache, into the read buffer, into the batch).
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import mmap
import os
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


def read_rows(fd: int, ext: RowExtents, lo: int, hi: int) -> tuple[list[tuple[int, int, np.ndarray]], bool]:
    """Rows ``lo:hi`` as ``(first_row, end_row, array)``, one per run they cross: views of the file where it is
    in the page cache, else read with ``pread``; and whether any was read from the disk.

    Mapped views are copy-on-write (writing to one changes neither the file nor other readers) and keep their
    mapping alive; it is unmapped when the last view goes. Bytes on the disk are read instead: the kernel's
    sequential read-ahead then keeps the disk busy while the previous block is batched, where faulting mapped
    pages in one by one waits for each.
    """
    out = []
    from_disk = False
    for a, b, offset in ext.pieces(lo, hi):
        shape = (b - a, *ext.tail)
        start = offset - offset % _GRAIN
        m = mmap.mmap(fd, offset + (b - a) * ext.row_bytes - start, access=mmap.ACCESS_COPY, offset=start)
        if _resident(m):
            arr = np.frombuffer(m, dtype=ext.dtype, count=int(np.prod(shape)), offset=offset - start).reshape(shape)
        else:
            m.close()
            arr = np.empty(shape, dtype=ext.dtype)
            _pread_into(fd, arr, offset)
            from_disk = True
        out.append((a, b, arr))
    return out, from_disk


def _pread_into(fd: int, arr: np.ndarray, offset: int) -> None:
    view = memoryview(arr).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(f"unexpected end of file at byte {offset + done}")
        done += n


def _libc_mincore():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mincore = libc.mincore
    except (OSError, AttributeError):
        return None
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return mincore


_mincore = _libc_mincore() if hasattr(os, "preadv") else None


def _resident(m: mmap.mmap, samples: int = 8) -> bool:
    """Whether the mapping's pages are in the page cache, judged by ``samples`` pages spread over it and its
    last page (asking for all 4096 pages of a block measured 3x slower); True where it cannot be asked."""
    if _mincore is None or len(m) == 0:
        return True
    pages = -(-len(m) // mmap.PAGESIZE)
    anchor = ctypes.c_char.from_buffer(m)  # the mapping's address; ACCESS_COPY makes it a writable buffer
    try:
        addr = ctypes.addressof(anchor)
        vec = ctypes.c_ubyte()
        for page in (*range(0, pages - 1, max(pages // samples, 1)), pages - 1):
            if _mincore(addr + page * mmap.PAGESIZE, 1, ctypes.byref(vec)) == 0 and not vec.value & 1:
                return False
    finally:
        del anchor
    return True
