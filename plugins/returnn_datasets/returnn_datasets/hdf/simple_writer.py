""":class:`SimpleHDFWriter`: RETURNN's batch-wise HDF writer API (``insert_batch``) on top of :class:`HDFWriter`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import DataSpec
from returnn_core.errors import DatasetError
from returnn_datasets.hdf.writer import HDFWriter

#: RETURNN's extra stream holding the length of each dynamic axis when a seq has several
SIZES_KEY = "sizes"


class SimpleHDFWriter:
    """Writes padded batches as a RETURNN HDF file, with RETURNN's ``SimpleHDFWriter`` options.

    ``ndim`` counts the axes of one seq (default 2 with a ``dim``, else 1). If ``seq_len`` gives a length
    for every axis (e.g. ``dim=None, ndim=2`` and ``seq_len={0: ..., 1: ...}``), the data is sparse: each
    seq is flattened and the lengths of its axes go to the extra stream ``sizes``, as RETURNN stores them.
    ``extra`` arrays (batch-major) become ``targets/data/KEY``; their dims and dtypes are taken from the
    first batch, or from ``extra_type`` (``key -> (dim, ndim, dtype)``).
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        dim: int | None,
        labels: Sequence[str] | None = None,
        ndim: int | None = None,
        extra_type: Mapping[str, tuple[int, int, str]] | None = None,
        swmr: bool = False,
        extend_existing_file: bool = False,
    ) -> None:
        if swmr:
            raise DatasetError("SimpleHDFWriter: swmr is not supported (RETURNN's own implementation is unfinished)")
        self.filename = os.fspath(filename)
        self.dim, self.labels = dim, list(labels) if labels else None
        self.ndim = ndim if ndim is not None else (1 if dim is None else 2)
        if self.labels and len(self.labels) != dim:
            raise DatasetError(f"SimpleHDFWriter {self.filename}: {len(self.labels)} labels for dim {dim}")
        if not extend_existing_file and os.path.exists(self.filename):
            raise DatasetError(f"SimpleHDFWriter: {self.filename} exists; set extend_existing_file=True to append to it")
        self.extend_existing_file = extend_existing_file
        self.extra_type = dict(extra_type or {})
        self._writer: HDFWriter | None = None

    def _open(self, inputs: np.ndarray, sparse: bool, multi_axis: bool, extra: Mapping[str, np.ndarray]) -> HDFWriter:
        targets: dict[str, DataSpec] = {}
        for key, value in extra.items():
            dim, ndim, dtype = self.extra_type.get(key) or (
                value.shape[-1] if value.ndim > 2 else 1, max(value.ndim - 1, 1), value.dtype.name)
            targets[key] = DataSpec(int(dim or 1), sparse=ndim == 1, dtype=dtype)
        if multi_axis:
            targets[SIZES_KEY] = DataSpec(1, sparse=True, dtype="int32")
        return HDFWriter(
            self.filename, dim=int(self.dim or 1), sparse=sparse, labels=self.labels, targets=targets,
            dtype=inputs.dtype.name, extend_existing_file=self.extend_existing_file,
        )

    def insert_batch(
        self,
        inputs: np.ndarray,
        seq_len: Sequence[int] | np.ndarray | Mapping[int, Sequence[int] | np.ndarray],
        seq_tag: Sequence[str | bytes],
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Append a batch: ``inputs`` (B, T, ...) with lengths per dynamic axis, one tag per seq."""
        inputs = np.asarray(inputs)
        lens = {int(k): np.asarray(v) for k, v in seq_len.items()} if isinstance(seq_len, Mapping) else {0: np.asarray(seq_len)}
        n = len(seq_tag)
        where = f"SimpleHDFWriter {self.filename}"
        if inputs.ndim != self.ndim + 1 or inputs.shape[0] != n:
            raise DatasetError(f"{where}: inputs of shape {inputs.shape} for {n} tags and ndim {self.ndim} (+ batch)")
        if sorted(lens) != list(range(len(lens))) or len(lens) > self.ndim or any(len(v) != n for v in lens.values()):
            raise DatasetError(f"{where}: seq_len must give {n} lengths for axes 0..k (k < {self.ndim}), got {seq_len!r}")
        sparse = len(lens) == self.ndim
        if not sparse and self.dim and inputs.shape[-1] != self.dim:
            raise DatasetError(f"{where}: inputs have feature dim {inputs.shape[-1]}, the writer was opened with dim {self.dim}")
        extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
        if self._writer is None:
            self._writer = self._open(inputs, sparse, len(lens) > 1, extra)
        for i in range(n):
            axes = [int(lens[a][i]) for a in range(len(lens))]
            data = inputs[i][tuple(slice(None, t) for t in axes)]
            data = data.reshape(-1) if sparse else data.reshape(-1, inputs.shape[-1])
            targets = {k: v[i] for k, v in extra.items()}
            if len(lens) > 1:
                targets[SIZES_KEY] = np.array(axes, dtype=np.int32)
            tag = seq_tag[i].decode("utf8") if isinstance(seq_tag[i], bytes) else str(seq_tag[i])
            self._writer.write_seq(tag, data, targets)

    def close(self) -> None:
        """Write the index and move the file into place (an empty file if nothing was inserted)."""
        if self._writer is None:
            self._writer = HDFWriter(
                self.filename, dim=int(self.dim or 1), sparse=self.ndim == 1 and self.dim is None, labels=self.labels,
                extend_existing_file=self.extend_existing_file,
            )
        self._writer.close()

    def __enter__(self) -> SimpleHDFWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.abort()
