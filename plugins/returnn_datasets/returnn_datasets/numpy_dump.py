""":class:`NumpyDumpDataset`: seqs stored one file per seq and stream, as text (``loadtxt``) or ``.npy``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError


class NumpyDumpDataset(Dataset):
    """Reads ``{prefix}{i}.data{postfix}`` and ``{prefix}{i}.targets{postfix}`` (RETURNN's layout: text, maybe gzipped)
    for ``i`` from ``start_seq`` while the files exist (or up to ``end_seq``); ``.npy`` postfixes load with ``np.load``.

    ``data`` is (T, num_inputs) float32, the ``targets`` file holds sparse ``classes`` (T,) with ``num_outputs``
    classes. Our ``dump-dataset --type numpy`` files (``{prefix}{i}.{key}.npy``) read with ``postfix=".npy"``
    and ``target_key_file="classes"``.
    """

    def __init__(
        self,
        prefix: str,
        postfix: str = ".txt.gz",
        start_seq: int = 0,
        end_seq: int | None = None,
        num_inputs: int | None = None,
        num_outputs: int | None = None,
        target_key_file: str = "targets",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prefix, self.postfix, self.target_key_file = prefix, postfix, target_key_file
        self.start_seq = int(start_seq)
        end = self.start_seq
        while (end_seq is None or end < end_seq) and os.path.exists(self._path(end, "data")):
            end += 1
        if end_seq is not None and end < end_seq:
            raise DatasetError(f"{self.name}: {self._path(end, 'data')} does not exist (end_seq is {end_seq})")
        self._n = end - self.start_seq
        if self._n == 0:
            raise DatasetError(f"{self.name}: no seq files, {self._path(self.start_seq, 'data')} does not exist")
        first = self._read(self.start_seq, "data")
        self._has_targets = os.path.exists(self._path(self.start_seq, target_key_file))
        dim = int(num_inputs) if num_inputs is not None else (first.shape[1] if first.ndim == 2 else 1)
        self._specs = {"data": DataSpec(dim)}
        if self._has_targets:
            if num_outputs is None:
                raise DatasetError(f"{self.name}: give num_outputs (the class count of the {target_key_file} files)")
            self._specs["classes"] = DataSpec(int(num_outputs), sparse=True)

    def _path(self, i: int, key: str) -> str:
        return f"{self.prefix}{i}.{key}{self.postfix}"

    def _read(self, i: int, key: str) -> np.ndarray:
        path = self._path(i, key)
        try:
            if self.postfix.endswith(".npy"):
                return np.load(path)
            return np.loadtxt(path, ndmin=2 if key == "data" else 1)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.name}: cannot read {path}: {exc}") from None

    def data_specs(self) -> dict[str, DataSpec]:
        """``data`` and, if target files exist, sparse ``classes``."""
        return dict(self._specs)

    def _num_total_seqs(self) -> int:
        return self._n

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        i = self.start_seq + corpus_idx
        x = self._read(i, "data").astype(np.float32)
        if x.ndim == 1:
            x = x[:, None]
        out = {"data": x}
        if self._has_targets:
            out["classes"] = self._read(i, self.target_key_file).astype(np.int32).reshape(-1)
        return out

    def _seq_tag(self, corpus_idx: int) -> str:
        return f"{os.path.basename(self.prefix)}seq-{self.start_seq + corpus_idx}"
