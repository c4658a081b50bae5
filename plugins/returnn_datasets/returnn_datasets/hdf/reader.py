""":class:`HDFDataset`: seqs from one or more RETURNN HDF files, read lazily within a ``cache_size`` budget."""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from returnn_core.datasets import Dataset, DatasetSeq, DataSpec
from returnn_core.errors import DatasetError
from returnn_datasets.hdf import layout as L
from returnn_datasets.hdf.extents import RowExtents, read_rows, row_extents

#: the most one read-ahead block may hold: big enough to amortise the per-call cost, small enough to
#: stay in the CPU cache until the seqs are batched (bigger blocks measured slower, for pread 16 MiB by 10%)
MAX_BLOCK_BYTES = 4 << 20
#: the same for blocks mapped from the page cache: nothing is copied that the CPU cache could hold, and
#: bigger blocks mean fewer mappings
MAX_MAPPED_BLOCK_BYTES = 16 << 20
#: delivered seqs kept for repeated access (get_data, get_seq_length) before they leave the cache
KEEP_DELIVERED = 16


def _split_rows(pieces: list[tuple[int, int, np.ndarray]], bounds: list[int]) -> list[np.ndarray]:
    """Rows ``bounds[i]:bounds[i + 1]`` for each ``i``, cut from ``(first_row, end_row, array)`` pieces that cover them."""
    if len(pieces) == 1:
        first, _, arr = pieces[0]
        return [arr[a - first : b - first] for a, b in zip(bounds, bounds[1:])]
    out, p = [], 0
    for a, b in zip(bounds, bounds[1:]):
        while p + 1 < len(pieces) and pieces[p][1] <= a and pieces[p][1] < b:
            p += 1
        first, last, arr = pieces[p]
        if b <= last:
            out.append(arr[a - first : b - first])
        else:  # the seq crosses from one stored run to the next: join its parts
            out.append(np.concatenate([x[max(a - f, 0) : min(b, e) - f] for f, e, x in pieces if f < b and e > a]))
    return out


class HDFFile:
    """One opened HDF file: its streams, per-stream seq offsets and (lazily) its tags."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            raise DatasetError(f"HDF file {path} does not exist")
        self._fds: dict[str, int] = {}  # key -> descriptor: one per stream keeps the kernel's read-ahead sequential
        self._extents: dict[str, RowExtents | None] = {}  # key -> row runs to map (None: read through HDF5)
        self.from_disk = False  # whether the last block read was (partly) not in the page cache, so it was copied
        try:
            self.h5: h5py.File | None = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"HDF file {path} cannot be opened (corrupt or not HDF5?): {exc}") from None
        try:
            self._parse()
        except KeyError as exc:
            self.h5.close()
            raise DatasetError(f"HDF file {path} is not in the RETURNN layout: {exc}") from None
        except DatasetError:
            self.h5.close()
            raise
        self._tags: list[str] | None = None

    def _parse(self) -> None:
        h5 = self.h5
        if L.SEQ_LENGTHS not in h5:
            raise DatasetError(f"HDF file {self.path} has no '{L.SEQ_LENGTHS}'; not a RETURNN HDF file")
        lengths = np.asarray(h5[L.SEQ_LENGTHS][...], dtype=np.int64)
        has_targets = "targets" in h5 and L.TARGETS_DATA in h5
        target_keys: list[str] = []
        if has_targets:
            # RETURNN numbers the seqLengths columns by every key the targets groups mention
            names = set(h5[L.TARGETS_DATA].keys())
            if L.TARGETS_LABELS in h5:
                names |= set(h5[L.TARGETS_LABELS].keys())
            if L.TARGETS_SIZE in h5:
                names |= set(h5[L.TARGETS_SIZE].attrs.keys())
            target_keys = sorted(names)
        if lengths.ndim == 1:  # old style: one length shared by all streams
            lengths = np.repeat(lengths[:, None], 1 + max(len(target_keys), 1), axis=1)
        if lengths.ndim != 2 or lengths.shape[1] < 1 + len(target_keys):
            raise DatasetError(
                f"HDF file {self.path}: '{L.SEQ_LENGTHS}' has shape {lengths.shape}, expected (num_seqs, "
                f"{1 + len(target_keys)}) for inputs + targets {target_keys}"
            )
        self.num_seqs = int(lengths.shape[0])
        self.datasets: dict[str, h5py.Dataset] = {}
        self._names: dict[str, str] = {}  # key -> path in the file, to reopen after unpickling
        self.specs: dict[str, DataSpec] = {}
        self.starts: dict[str, np.ndarray] = {}
        self.row_bytes: dict[str, int] = {}
        streams: list[tuple[str, int, h5py.Dataset]] = []
        if L.INPUTS in h5:
            streams.append((L.INPUT_KEY, 0, h5[L.INPUTS]))
        for col, key in enumerate(target_keys, start=1):
            if key in h5[L.TARGETS_DATA]:
                streams.append((key, col, h5[L.TARGETS_DATA][key]))
        for key, col, ds in streams:
            if ds.dtype.kind not in "biuf":
                continue  # strings and other non-numeric streams are not deliverable as arrays
            starts = np.zeros(self.num_seqs + 1, dtype=np.int64)
            np.cumsum(lengths[:, col], out=starts[1:])
            if starts[-1] != ds.shape[0]:
                where = L.INPUTS if key == L.INPUT_KEY else f"{L.TARGETS_DATA}/{key}"
                raise DatasetError(
                    f"HDF file {self.path} is corrupt: '{L.SEQ_LENGTHS}' column {col} sums to {starts[-1]} "
                    f"frames but '{where}' holds {ds.shape[0]}"
                )
            self.datasets[key] = ds
            self._names[key] = ds.name
            self.starts[key] = starts
            self.specs[key] = self._spec(key, ds)
            self.row_bytes[key] = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
        if not self.datasets:
            raise DatasetError(f"HDF file {self.path} holds no numeric data streams")
        self.default_key = L.INPUT_KEY if L.INPUT_KEY in self.datasets else next(iter(self.datasets))
        self._cum_bytes: dict[tuple[str, ...], np.ndarray] = {}

    def _spec(self, key: str, ds: h5py.Dataset) -> DataSpec:
        h5 = self.h5
        labels = self._labels(key)
        sparse = ds.ndim == 1 and ds.dtype.kind in "iub"
        if key == L.INPUT_KEY:
            dim = int(h5.attrs.get(L.ATTR_INPUT_DIM, 0)) if ds.ndim == 1 else int(ds.shape[-1])
        else:
            size = h5[L.TARGETS_SIZE].attrs.get(key) if L.TARGETS_SIZE in h5 else None
            if size is None:
                dim = int(ds.shape[-1]) if ds.ndim >= 2 else int(h5.attrs.get(L.ATTR_NUM_LABELS, 1))
            elif np.ndim(size) == 0:
                dim = int(size)
            else:
                dim, ndim = (int(v) for v in np.asarray(size).reshape(-1)[:2])
                sparse = ndim == 1 and ds.dtype.kind in "iub"
        if labels is not None and len(labels) != dim:
            labels = None  # RETURNN writes a "dummy-label" placeholder when there are none
        return DataSpec(dim, sparse=sparse, dtype=ds.dtype.name, labels=tuple(labels) if labels else None)

    def _labels(self, key: str) -> list[str] | None:
        h5 = self.h5
        labels = None
        if key != L.INPUT_KEY and L.TARGETS_LABELS in h5 and key in h5[L.TARGETS_LABELS]:
            labels = [L.decode_string(s) for s in h5[L.TARGETS_LABELS][key][...].tolist()]
        elif L.LABELS in h5 and h5[L.LABELS].shape and h5[L.LABELS].shape[0]:
            # root labels: of the inputs in newer files, of 'classes' in old ones; the dim check in _spec decides
            if key == L.INPUT_KEY or (key == "classes" and L.TARGETS_LABELS not in h5):
                labels = [L.decode_string(s) for s in h5[L.LABELS][...].tolist()]
        if labels == ["dummy-label"]:  # RETURNN's placeholder when a stream has no labels
            return None
        return labels

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deep-copy) without the open handle; the copy reopens the file on its first read."""
        return {**self.__dict__, "h5": None, "datasets": {}, "_fds": {}, "_extents": {}}

    def _open(self) -> h5py.File:
        if self.h5 is None:
            try:
                self.h5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise DatasetError(f"HDF file {self.path} cannot be reopened: {exc}") from None
            self.datasets = {key: self.h5[name] for key, name in self._names.items()}
        return self.h5

    def cum_bytes(self, keys: Sequence[str]) -> np.ndarray:
        """Bytes of the streams ``keys`` in seqs ``0:i``, for every ``i`` in ``0..num_seqs``."""
        names = tuple(keys)
        cum = self._cum_bytes.get(names)
        if cum is None:
            cum = self._cum_bytes[names] = sum(self.starts[k] * self.row_bytes[k] for k in names)
        return cum

    def seq_length(self, local_idx: int, key: str | None = None) -> int:
        """Frames of ``key`` (default: inputs) of one seq."""
        starts = self.starts[key or self.default_key]
        return int(starts[local_idx + 1] - starts[local_idx])

    def tags(self) -> list[str]:
        """All seq tags (read on first use)."""
        if self._tags is None:
            h5 = self._open()
            if L.SEQ_TAGS in h5:
                self._tags = L.decode_strings(h5[L.SEQ_TAGS][...].tolist())
            else:
                self._tags = [f"{os.path.basename(self.path)}/seq-{i}" for i in range(self.num_seqs)]
            if len(self._tags) != self.num_seqs:
                raise DatasetError(
                    f"HDF file {self.path} is corrupt: {len(self._tags)} seq tags for {self.num_seqs} seqs"
                )
        return self._tags

    def _row_extents(self, key: str) -> RowExtents | None:
        """The row runs of ``key`` if its bytes can be mapped and the mapping reads what HDF5 reads, else None."""
        if key in self._extents:
            return self._extents[key]
        self._extents[key] = None
        ds = self.datasets[key]
        ext = row_extents(ds)
        if ext is None:
            return None
        try:
            fd = self._fds.get(key)
            if fd is None:
                fd = self._fds[key] = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            if os.fstat(fd).st_size < ext.end_offset:
                return None  # truncated: HDF5's read reports it
            n = int(ds.shape[0])
            for row in (0, n - 1):  # the same file and the same bytes as HDF5 sees (a user block would shift them)
                (_, _, mapped), = read_rows(fd, ext, row, row + 1)[0]
                if not np.array_equal(mapped, ds[row : row + 1], equal_nan=ds.dtype.kind == "f"):
                    return None
        except OSError:
            return None  # a file system that cannot map: HDF5 reads it
        self._extents[key] = ext
        return ext

    def _read_rows(self, key: str, lo: int, hi: int) -> list[tuple[int, int, np.ndarray]]:
        """Rows ``lo:hi`` of ``key`` as ``(first_row, end_row, array)`` pieces: mapped where possible, else one read."""
        ext = self._row_extents(key) if hi > lo else None
        if ext is not None:
            try:
                pieces, from_disk = read_rows(self._fds[key], ext, lo, hi)
                self.from_disk |= from_disk
                return pieces
            except OSError:
                pass  # out of mappings (vm.max_map_count) or address space: HDF5 reads this block instead
        try:
            return [(lo, hi, self.datasets[key][lo:hi])]
        except (OSError, ValueError) as exc:
            raise DatasetError(f"HDF file {self.path}: cannot read {key!r} frames {lo}:{hi}: {exc}") from None

    def mapped(self, keys: Sequence[str]) -> bool:
        """Whether every stream of ``keys`` is mapped from the file rather than read through HDF5."""
        self._open()
        return all(self._row_extents(k) is not None for k in keys)

    def block_bytes(self, keys: Sequence[str]) -> int:
        """The most one read-ahead block of ``keys`` should hold: more when it is mapped, not copied."""
        return MAX_MAPPED_BLOCK_BYTES if not self.from_disk and self.mapped(keys) else MAX_BLOCK_BYTES

    def read(self, keys: Sequence[str], start: int, end: int) -> list[dict[str, np.ndarray]]:
        """Seqs ``start:end`` (local indices), each stream read (or mapped) as one range and split."""
        self._open()
        self.from_disk = False
        columns = []
        for key in keys:
            bounds = self.starts[key][start : end + 1].tolist()
            columns.append(_split_rows(self._read_rows(key, bounds[0], bounds[-1]), bounds))
        return [dict(zip(keys, arrays)) for arrays in zip(*columns)]

    def close(self) -> None:
        """Close the file (a later read reopens it)."""
        h5, self.h5, self.datasets = self.h5, None, {}
        fds, self._fds, self._extents = self._fds, {}, {}
        for fd in fds.values():
            os.close(fd)  # mapped arrays stay valid: a mapping outlives its descriptor
        if h5 is None:
            return
        try:
            h5.close()
        except Exception:  # noqa: BLE001 - closing at interpreter shutdown may fail harmlessly
            pass


class HDFDataset(Dataset):
    """Seqs of RETURNN HDF files (``inputs`` as ``data``, each ``targets/data/KEY`` as ``KEY``).

    Frames are read on demand. When the epoch order visits consecutive seqs of a file, they are read
    ahead in one block per stream; everything read is kept in an LRU cache of at most ``cache_size``
    bytes (``"512M"``, ``"2G"`` or an int; 0 reads every seq on its own and keeps nothing).
    Uncompressed streams are mapped from the file rather than copied through HDF5, so the padded batch
    is the one copy of the frames; replace a file that is being read by renaming a new one over it, not
    by rewriting it in place (a mapped file that shrinks under a reader ends it with SIGBUS).
    """

    def __init__(
        self,
        files: Sequence[str] | str | None = None,
        cache_size: int | str | None = "256M",
        cache_byte_size: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(files, str):
            files = [f for f in files.split(",") if f]
        if not files:
            raise DatasetError(f"{self.name}: no HDF files given ('files' is empty)")
        self.cache_size = L.parse_byte_size(cache_byte_size if cache_byte_size is not None else cache_size)
        self.files: list[HDFFile] = []
        try:
            for path in files:
                self._add_file(os.fspath(path))
        except BaseException:
            self.close()
            raise
        self._file_start = [0]
        for f in self.files:
            self._file_start.append(self._file_start[-1] + f.num_seqs)
        if self._file_start[-1] == 0:
            raise DatasetError(f"{self.name}: the HDF files {', '.join(f.path for f in self.files)} hold no seqs")
        keys = set(self.files[0].specs)
        for f in self.files[1:]:
            keys &= set(f.specs)
        self._specs = {k: self.files[0].specs[k] for k in sorted(keys)}
        self._cache: OrderedDict[int, tuple[dict[str, np.ndarray], int]] = OrderedDict()  # seq -> (arrays, bytes)
        self._cache_bytes = 0
        self._cursor = -1
        self._delivered: deque[int] = deque()
        self._tag_index: dict[str, int] | None = None
        self._all_tags: list[str] | None = None  # every file's tags in corpus order, read on first use

    def _add_file(self, path: str) -> None:
        new = HDFFile(path)
        if self.files:
            first = self.files[0]
            shared = set(first.specs) & set(new.specs)
            if not shared:
                new.close()
                raise DatasetError(
                    f"{self.name}: HDF file {path} has streams {sorted(new.specs)}, none in common with "
                    f"{first.path} ({sorted(first.specs)})"
                )
            for key in sorted(shared):
                a, b = first.specs[key], new.specs[key]
                if (a.dim, a.sparse) != (b.dim, b.sparse):
                    new.close()
                    raise DatasetError(
                        f"{self.name}: HDF file {path} has {key!r} with dim {b.dim} ({'sparse' if b.sparse else 'dense'}), "
                        f"but {first.path} has dim {a.dim} ({'sparse' if a.sparse else 'dense'})"
                    )
        self.files.append(new)

    # -- Dataset API ------------------------------------------------------------------------------
    def data_specs(self) -> dict[str, DataSpec]:
        """Streams present in every file."""
        return dict(self._specs)

    def _num_total_seqs(self) -> int:
        return self._file_start[-1]

    def _locate(self, corpus_idx: int) -> tuple[HDFFile, int]:
        fi = bisect.bisect_right(self._file_start, corpus_idx) - 1
        return self.files[fi], corpus_idx - self._file_start[fi]

    def _seq_length(self, corpus_idx: int) -> int:
        f, local = self._locate(corpus_idx)
        return f.seq_length(local)

    def _seq_tag(self, corpus_idx: int) -> str:
        return self._tags()[corpus_idx]

    def _tags(self) -> list[str]:
        """Every file's tags in corpus order, read once (looked up per seq)."""
        if self._all_tags is None:
            self._all_tags = [t for f in self.files for t in f.tags()]
        return self._all_tags

    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """As the base, but looks tags up through one index over all files."""
        if seq_list is not None:
            index = self._tags_to_index()
            missing = [t for t in seq_list if t not in index]
            if missing:
                raise DatasetError(
                    f"{self.name}: seq tag(s) not in {', '.join(f.path for f in self.files)}: {', '.join(missing[:5])}"
                )
            self.epoch = epoch
            self._order = [index[t] for t in seq_list]
        else:
            super().init_seq_order(epoch)
        self._cursor = -1

    def _tags_to_index(self) -> dict[str, int]:
        if self._tag_index is None:
            index: dict[str, int] = {}
            for fi, f in enumerate(self.files):
                for local, tag in enumerate(f.tags()):
                    index.setdefault(tag, self._file_start[fi] + local)
            self._tag_index = index
        return self._tag_index

    def get_seq(self, seq_idx: int) -> DatasetSeq:
        """The ``seq_idx``-th seq of the epoch (its position steers the read-ahead)."""
        self._cursor = seq_idx
        seq = super().get_seq(seq_idx)
        self._forget_delivered(self.epoch_order()[seq_idx])
        return seq

    def _forget_delivered(self, corpus_idx: int) -> None:
        """Drop seqs delivered a while ago: read-ahead is what the cache is for, and reusing freed memory
        soon keeps reads fast (no fresh pages, data still in the CPU cache when batched)."""
        if self.cache_size <= 0:
            return
        if self._delivered and self._delivered[-1] == corpus_idx:
            return
        self._delivered.append(corpus_idx)
        if len(self._delivered) > KEEP_DELIVERED:
            old = self._cache.pop(self._delivered.popleft(), None)
            if old is not None:
                self._cache_bytes -= old[1]

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        cache = self._cache
        cached = cache.get(corpus_idx)
        if cached is not None:
            cache.move_to_end(corpus_idx)
            return cached[0]
        f, local = self._locate(corpus_idx)
        keys = list(self._specs)
        if self.cache_size <= 0:
            return f.read(keys, local, local + 1)[0]
        end = self._read_ahead_end(f, local, corpus_idx, keys)
        seqs = f.read(keys, local, end)
        cum = f.cum_bytes(keys)[local : end + 1].tolist()
        for i, feats in enumerate(seqs):
            size = cum[i + 1] - cum[i]
            old = cache.pop(corpus_idx + i, None)
            cache[corpus_idx + i] = (feats, size)
            self._cache_bytes += size - (old[1] if old is not None else 0)
        cache.move_to_end(corpus_idx)
        self._evict(keep=corpus_idx)
        return seqs[0]

    def _read_ahead_end(self, f: HDFFile, local: int, corpus_idx: int, keys: list[str]) -> int:
        """End of the run of seqs that the epoch order visits next, consecutively in this file, within a block."""
        order, pos = self.epoch_order(), self._cursor
        if not (0 <= pos < len(order)) or order[pos] != corpus_idx:
            return local + 1
        budget = min(self.cache_size // 2, f.block_bytes(keys))
        cum = f.cum_bytes(keys)
        fits = int(np.searchsorted(cum, cum[local] + budget, side="right")) - 1 - local  # the first seq always
        run = order[pos : pos + max(fits, 1)]
        if run != list(range(corpus_idx, corpus_idx + len(run))):
            n = 1
            while run[n] == corpus_idx + n:
                n += 1
            run = run[:n]
        return local + len(run)

    def _evict(self, keep: int) -> None:
        while self._cache_bytes > self.cache_size and len(self._cache) > 1:
            idx, _ = next(iter(self._cache.items()))
            if idx == keep:
                self._cache.move_to_end(idx)
                continue
            self._cache_bytes -= self._cache.pop(idx)[1]

    @property
    def cached_bytes(self) -> int:
        """Bytes of seq data held in the cache now."""
        return self._cache_bytes

    def get_all_tags(self) -> list[str]:
        """Tags of every seq of every file, in corpus order."""
        return list(self._tags())

    def close(self) -> None:
        """Close all files and drop the cache."""
        for f in self.files:
            f.close()
        self._cache = OrderedDict()
        self._cache_bytes = 0
        self._delivered = deque()

    def __del__(self) -> None:
        for f in getattr(self, "files", ()):
            f.close()
