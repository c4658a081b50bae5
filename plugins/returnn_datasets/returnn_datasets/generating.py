"""Datasets whose seqs are generated in memory: the :class:`GeneratingDataset` base, Dummy and Static data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError


def spec_from_dims(key: str, value: Any, labels: Sequence[str] | None = None) -> DataSpec:
    """``[dim, ndim]``, a plain ``dim`` (dense for ``data``, sparse otherwise) or a DataSpec -> DataSpec."""
    spec = DataSpec.from_config(key, value)
    if labels is not None and spec.labels is None:
        spec = DataSpec(spec.dim, sparse=spec.sparse, dtype=spec.dtype, labels=tuple(labels))
    return spec


class GeneratingDataset(Dataset):
    """Base of generated tasks: :meth:`generate_seq` makes ``num_seqs`` seqs per epoch from that epoch's seed.

    The seqs of one seed are kept, so sub-epochs (``partition_epoch``) and a ``fixed_random_seed`` share them.
    """

    #: symbols of the input and output streams (set by tasks with a symbol alphabet)
    input_labels: Sequence[str] | None = None
    output_labels: Sequence[str] | None = None

    def __init__(self, input_dim: Any, output_dim: Any, num_seqs: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_seqs) < 0:
            raise DatasetError(f"{self.name}: num_seqs must be >= 0, got {num_seqs}")
        self._num_seqs = int(num_seqs)
        self._specs: dict[str, DataSpec] = {}
        if input_dim is not None:
            self._specs["data"] = spec_from_dims("data", input_dim, self.input_labels)
        if isinstance(output_dim, Mapping):
            for key, value in output_dim.items():
                self._specs[key] = spec_from_dims(key, value, self.output_labels if key == "classes" else None)
        elif output_dim is not None:
            self._specs["classes"] = spec_from_dims("classes", output_dim, self.output_labels)
        self._seqs: list[dict[str, np.ndarray]] = []
        self._seqs_seed: int | None = None

    def data_specs(self) -> dict[str, DataSpec]:
        """Specs given by ``input_dim``/``output_dim``."""
        return dict(self._specs)

    def _num_total_seqs(self) -> int:
        return self._num_seqs

    def _prepare_epoch(self, epoch: int) -> None:
        seed = self.random_seed(epoch)
        if seed == self._seqs_seed:
            return
        rng = np.random.RandomState(seed % 2**32)
        self._seqs = [self.generate_seq(i, rng, epoch) for i in range(self._num_seqs)]
        self._seqs_seed = seed

    def _ensure_prepared(self) -> None:
        if self._seqs_seed is None:
            self._prepare_epoch(self.epoch or 1)

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        self._ensure_prepared()
        return self._seqs[corpus_idx]

    def _seq_length(self, corpus_idx: int) -> int:
        self._ensure_prepared()
        feats = self._seqs[corpus_idx]
        return int(feats["data" if "data" in feats else next(iter(feats))].shape[0])

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """Arrays of the ``seq_idx``-th seq, drawn from ``rng`` (called in seq order)."""
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------------------
    def one_hot(self, indices: Sequence[int] | np.ndarray, key: str = "data") -> np.ndarray:
        """(T, dim) float32 one-hot rows of ``indices`` for the dense stream ``key``."""
        dim = int(self._specs[key].dim or 0)
        out = np.zeros((len(indices), dim), dtype=np.float32)
        out[np.arange(len(indices)), np.asarray(indices, dtype=np.int64)] = 1.0
        return out

    def sparse(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(T,) int32 labels."""
        return np.asarray(indices, dtype=np.int32).reshape(-1)


class DummyDataset(GeneratingDataset):
    """Deterministic pattern data of fixed length: ``data`` (T, input_dim), sparse ``classes`` (T,)."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        num_seqs: int,
        seq_len: int | Mapping[str, int] = 2,
        input_max_value: float = 10.0,
        input_shift: float | None = None,
        input_base: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dim, output_dim, num_seqs, **kwargs)
        self.seq_len = dict(seq_len) if isinstance(seq_len, Mapping) else {"data": int(seq_len), "classes": int(seq_len)}
        self.input_max_value = float(input_max_value)
        self.input_shift = input_shift
        self.input_base = input_base

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """A ramp over time and feature dims, shifted by the seq index; classes cycle through the labels."""
        n_in = int(self._specs["data"].dim or 0)
        t_in = self.seq_len.get("data", 2)
        t_out = self.seq_len.get("classes", t_in)
        ramp = (np.arange(t_in)[:, None] + np.arange(n_in)[None, :] + seq_idx) % max(int(self.input_max_value), 1)
        x = ramp.astype(np.float32)
        if self.input_shift is not None:
            x += np.float32(self.input_shift)
        if self.input_base is not None:
            x /= np.float32(self.input_base)
        out = {"data": x}
        if "classes" in self._specs:
            n_out = int(self._specs["classes"].dim or 1)
            out["classes"] = self.sparse((np.arange(t_out) + seq_idx) % n_out)
        return out


class StaticDataset(GeneratingDataset):
    """Seqs given in memory: a list of ``{key: array}`` dicts (time-major), the same every epoch.

    Dims are taken from ``input_dim``/``output_dim`` where given (``{key: [dim, ndim]}`` or an int for
    ``classes``); otherwise a float 2-D array is dense with its last dim and an int 1-D array is sparse
    with ``max + 1`` classes.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        target_list: Sequence[str] | None = None,
        input_dim: int | None = None,
        output_dim: Any = None,
        tags: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        wanted = None if target_list is None else {"data", *target_list}
        seqs = [{k: np.asarray(v) for k, v in seq.items() if wanted is None or k in wanted} for seq in data]
        if not seqs:
            raise DatasetError("StaticDataset: 'data' is empty; give at least one seq dict")
        keys = list(seqs[0])
        for i, seq in enumerate(seqs):
            if sorted(seq) != sorted(keys):
                raise DatasetError(f"StaticDataset: seq {i} has keys {sorted(seq)}, seq 0 has {sorted(keys)}")
        out_dims = dict(output_dim) if isinstance(output_dim, Mapping) else {}
        if output_dim is not None and not isinstance(output_dim, Mapping):
            out_dims["classes"] = output_dim
        if input_dim is not None:
            out_dims.setdefault("data", [int(input_dim), 2])
        out_dims = {k: out_dims.get(k) or self._infer_dims(k, [s[k] for s in seqs]) for k in keys}
        super().__init__(None, out_dims, len(seqs), **kwargs)
        for seq in seqs:
            for key in keys:
                spec = self._specs[key]
                seq[key] = seq[key].astype(spec.dtype, copy=False)
        self._static = seqs
        if tags is not None and len(tags) != len(seqs):
            raise DatasetError(f"StaticDataset: {len(tags)} tags for {len(seqs)} seqs")
        self._tags = list(tags) if tags is not None else None

    @staticmethod
    def _infer_dims(key: str, arrays: list[np.ndarray]) -> list[int]:
        first = arrays[0]
        if first.ndim == 1 and np.issubdtype(first.dtype, np.integer):
            return [int(max((int(a.max()) for a in arrays if a.size), default=0)) + 1, 1]
        if first.ndim >= 2:
            return [int(first.shape[-1]), 2]
        raise DatasetError(f"StaticDataset: cannot infer the dim of {key!r} (shape {first.shape}); give output_dim")

    def _prepare_epoch(self, epoch: int) -> None:
        self._seqs, self._seqs_seed = self._static, 0

    def _seq_tag(self, corpus_idx: int) -> str:
        return self._tags[corpus_idx] if self._tags is not None else f"seq-{corpus_idx}"

    @classmethod
    def copy_from_dataset(cls, dataset: Dataset, start_seq_idx: int = 0, end_seq_idx: int | None = None) -> StaticDataset:
        """Materialise seqs ``start:end`` of ``dataset``'s current epoch (``init_seq_order`` must have run)."""
        end = dataset.num_seqs if end_seq_idx is None else min(end_seq_idx, dataset.num_seqs)
        seqs = [dataset.get_seq(i) for i in range(start_seq_idx, end)]
        dims = {k: s.as_num_outputs() for k, s in dataset.output_specs().items()}
        return cls([s.features for s in seqs], output_dim=dims, tags=[s.tag for s in seqs])
