""":class:`HDFWriter`: writes seqs in the RETURNN HDF layout to a temporary file, renamed into place on close."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError
from returnn_datasets.hdf import layout as L

#: buffered bytes per stream before they go to the file in one resize + write
FLUSH_BYTES = 16 << 20
#: target size of one HDF5 chunk (contiguous reads of many seqs touch few chunks)
CHUNK_BYTES = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Stream:
    """One growing dataset (``inputs`` or ``targets/data/KEY``) with an in-memory append buffer."""

    def __init__(self, group: h5py.Group, name: str, spec: DataSpec, where: str) -> None:
        self.spec = spec
        self.where = where
        self.tail: tuple[int, ...] = () if spec.sparse else (int(spec.dim or 0),)
        self.dtype = np.dtype(spec.dtype)
        if name in group:  # extending a file: append to what is there
            self.ds = group[name]
            if self.ds.shape[1:] != self.tail or self.ds.maxshape[0] is not None:
                raise DatasetError(
                    f"HDF writer: cannot extend {where} of shape {self.ds.shape} (max {self.ds.maxshape}) "
                    f"with frames of shape {self.tail or '()'}"
                )
            self.dtype = self.ds.dtype
        else:
            row_bytes = max(int(np.prod(self.tail, dtype=np.int64)) * self.dtype.itemsize, 1)
            chunk_rows = max(CHUNK_BYTES // row_bytes, 1)
            self.ds = group.create_dataset(
                name, shape=(0, *self.tail), maxshape=(None, *self.tail), dtype=self.dtype,
                chunks=(chunk_rows, *self.tail),
            )
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.frames = int(self.ds.shape[0])

    def append(self, array: np.ndarray) -> int:
        """Queue one seq's frames; returns its length."""
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[1:] != self.tail:
            raise DatasetError(
                f"HDF writer: {self.where} expects frames of shape {self.tail or '()'}, got an array of shape {array.shape}"
            )
        self.buffer.append(array.astype(self.dtype, copy=False))
        self.buffered += array.nbytes
        self.frames += array.shape[0]
        if self.buffered >= FLUSH_BYTES:
            self.flush()
        return int(array.shape[0])

    def flush(self) -> None:
        """Write the buffer to the file."""
        if not self.buffer:
            return
        block = np.concatenate(self.buffer, axis=0) if len(self.buffer) > 1 else self.buffer[0]
        old = self.ds.shape[0]
        self.ds.resize(old + block.shape[0], axis=0)
        self.ds[old:] = block
        self.buffer, self.buffered = [], 0


class HDFWriter:
    """Writes seqs as a RETURNN HDF file that RETURNN's ``HDFDataset`` (and ours) reads.

    ``dim``/``sparse``/``labels`` describe ``inputs``; ``targets`` maps further data keys to their specs.
    Nothing appears at ``path`` until :meth:`close` succeeds; :meth:`abort` (or an error inside a
    ``with`` block) removes the temporary file. Also the ``"hdf"`` output writer of the forward task.
    With ``extend_existing_file`` (RETURNN's ``SimpleHDFWriter`` option) the seqs are appended to the
    existing file at ``path``, which must have the same streams.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dim: int,
        sparse: bool = False,
        labels: Sequence[str] | None = None,
        targets: Mapping[str, DataSpec] | None = None,
        dtype: str | None = None,
        extend_existing_file: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        if extend_existing_file and not os.path.isfile(self.path):
            raise DatasetError(f"HDF writer: extend_existing_file is set, but {self.path} does not exist")
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise DatasetError(f"HDF writer: directory {directory} of {self.path} does not exist")
        fd, self.tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory)
        os.close(fd)
        self.input_spec = DataSpec(int(dim), sparse=sparse, dtype=dtype or "", labels=tuple(labels) if labels else None)
        self.target_specs = dict(sorted((targets or {}).items()))
        if L.INPUT_KEY in self.target_specs:
            raise DatasetError(f"HDF writer: target key {L.INPUT_KEY!r} is reserved for the inputs")
        self._tags: list[str] = []
        self._lengths: list[list[int]] = []
        try:
            if extend_existing_file:
                shutil.copyfile(self.path, self.tmp_path)
            self._h5: h5py.File | None = h5py.File(self.tmp_path, "r+" if extend_existing_file else "w")
            if extend_existing_file:
                self._read_index(self._h5)
            self._inputs = _Stream(self._h5, L.INPUTS, self.input_spec, L.INPUTS)
            self._targets: dict[str, _Stream] = {}
            if self.target_specs:
                data = self._h5.require_group(L.TARGETS_DATA)
                for key, spec in self.target_specs.items():
                    self._targets[key] = _Stream(data, key, spec, f"{L.TARGETS_DATA}/{key}")
        except OSError as exc:
            self.abort()
            raise DatasetError(f"HDF writer: cannot extend {self.path}: {exc}") from None
        except BaseException:
            self.abort()
            raise

    def _read_index(self, h5: h5py.File) -> None:
        """Take over the seqs of the file being extended (its tags and lengths; the index is rewritten on close)."""
        existing = sorted(h5[L.TARGETS_DATA].keys()) if L.TARGETS_DATA in h5 else []
        if L.SEQ_LENGTHS not in h5 or L.INPUTS not in h5 or existing != sorted(self.target_specs):
            raise DatasetError(
                f"HDF writer: cannot extend {self.path}: it has targets {existing}, the writer was opened for "
                f"{sorted(self.target_specs)} (or it is not a RETURNN HDF file)"
            )
        lengths = np.asarray(h5[L.SEQ_LENGTHS][...], dtype=np.int64).reshape(h5[L.SEQ_LENGTHS].shape[0], -1)
        self._lengths = lengths[:, : 1 + len(self.target_specs)].tolist()
        self._tags = [L.decode_string(t) for t in h5[L.SEQ_TAGS][...].tolist()] if L.SEQ_TAGS in h5 else [
            f"seq-{i}" for i in range(len(self._lengths))]
        for name in (L.SEQ_LENGTHS, L.SEQ_TAGS, L.LABELS, L.TARGETS_SIZE, L.TARGETS_LABELS):
            if name in h5:
                del h5[name]

    # -- writing ----------------------------------------------------------------------------------
    def write_seq(self, tag: str, data: np.ndarray, targets: Mapping[str, np.ndarray] | None = None) -> None:
        """Append one seq: its ``inputs`` frames and one array per declared target key."""
        if self._h5 is None:
            raise DatasetError(f"HDF writer for {self.path} is already closed")
        targets = targets or {}
        unknown = set(targets) - set(self._targets)
        missing = set(self._targets) - set(targets)
        if unknown or missing:
            raise DatasetError(
                f"HDF writer {self.path}: seq {tag!r} has target keys {sorted(targets)}, "
                f"the file was opened for {sorted(self._targets)}"
            )
        row = [self._inputs.append(data)]
        row += [self._targets[k].append(targets[k]) for k in self._targets]
        self._tags.append(str(tag))
        self._lengths.append(row)

    def write_batch(self, outputs: np.ndarray, seq_lens: np.ndarray, tags: list[str]) -> None:
        """Append a padded batch (B, T, D) or (B, T) with valid lengths ``seq_lens`` (the forward-writer protocol)."""
        for b, tag in enumerate(tags):
            self.write_seq(tag, outputs[b, : int(seq_lens[b])])

    # -- finishing --------------------------------------------------------------------------------
    def close(self) -> None:
        """Write the index (lengths, tags, attributes, labels), then move the file into place."""
        if self._h5 is None:
            return
        try:
            self._finish(self._h5)
            self._h5.close()
            self._h5 = None
            os.chmod(self.tmp_path, 0o666 & ~_umask())  # mkstemp made it private; give it normal permissions
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise

    def _finish(self, h5: h5py.File) -> None:
        self._inputs.flush()
        for stream in self._targets.values():
            stream.flush()
        n = len(self._tags)
        # RETURNN's reader assumes a 'classes' column when there are no targets, so keep at least two columns
        cols = 1 + max(len(self._targets), 1)
        lengths = np.zeros((n, cols), dtype=np.int32)
        if n:
            lengths[:, : 1 + len(self._targets)] = np.asarray(self._lengths, dtype=np.int64)
        h5.create_dataset(L.SEQ_LENGTHS, data=lengths, maxshape=(None, None), chunks=True)
        tags = h5.create_dataset(L.SEQ_TAGS, shape=(n,), dtype=h5py.string_dtype("utf-8"), maxshape=(None,))
        if n:
            tags[:] = np.array(self._tags, dtype=object)
        h5.attrs[L.ATTR_INPUT_DIM] = int(self.input_spec.dim or 1)
        h5.attrs[L.ATTR_NUM_SEQS] = n
        h5.attrs[L.ATTR_NUM_FRAMES] = int(self._inputs.frames)
        h5.attrs[L.ATTR_NUM_DIMS] = 1
        classes = self.target_specs.get("classes")
        h5.attrs[L.ATTR_NUM_LABELS] = int((classes or self.input_spec).dim or 1)
        # root 'labels' name the input dims/classes (RETURNN's writer); target labels go to targets/labels
        if self.input_spec.labels:
            h5.create_dataset(L.LABELS, data=L.encode_strings(self.input_spec.labels))
        else:
            h5.create_dataset(L.LABELS, shape=(0,), dtype="S5")
        if self._targets:
            size = h5.create_group(L.TARGETS_SIZE)
            labels = h5.create_group(L.TARGETS_LABELS)
            for key, spec in self.target_specs.items():
                size.attrs[key] = np.array([int(spec.dim or 1), spec.ndim], dtype=np.int32)
                labels.create_dataset(key, data=L.encode_strings(spec.labels or ["dummy-label"]))

    def abort(self) -> None:
        """Discard everything written (nothing ever appears at ``path``)."""
        h5, self._h5 = getattr(self, "_h5", None), None
        if h5 is not None:
            try:
                h5.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)

    @property
    def num_seqs(self) -> int:
        """Seqs written so far."""
        return len(self._tags)

    def __enter__(self) -> HDFWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if getattr(self, "_h5", None) is not None:
            self.abort()


def dump_dataset_to_hdf(
    dataset: Dataset,
    path: str | os.PathLike[str],
    *,
    epoch: int = 1,
    start_seq: int = 0,
    end_seq: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write seqs ``start_seq:end_seq`` of ``dataset``'s ``epoch`` to ``path``; returns the number written.

    ``data`` becomes ``inputs``; every other key becomes ``targets/data/KEY``.
    """
    dataset.init_seq_order(epoch=epoch)
    specs = dataset.output_specs()
    if L.INPUT_KEY not in specs:
        raise DatasetError(f"{dataset.name}: has no {L.INPUT_KEY!r} stream to write as HDF 'inputs' (has {sorted(specs)})")
    inp = specs[L.INPUT_KEY]
    targets = {k: v for k, v in specs.items() if k != L.INPUT_KEY}
    end = dataset.end_seq(end_seq)
    with HDFWriter(path, dim=int(inp.dim or 0), sparse=inp.sparse, labels=inp.labels, targets=targets,
                   dtype=inp.dtype) as writer:
        for i in range(start_seq, end):
            seq = dataset.get_seq(i)
            writer.write_seq(seq.tag, seq.features[L.INPUT_KEY], {k: seq.features[k] for k in targets})
            if progress is not None:
                progress(i - start_seq + 1, end - start_seq)
        count = writer.num_seqs
    return count
