"""Datasets whose seqs are generated in memory: the :class:`GeneratingDataset` base, Dummy and Static data."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DatasetSeq, DataSpec
from returnn_core.datasets.seq_order import seq_order_name
from returnn_core.errors import ConfigError, DatasetError

#: generated seqs an endless stream keeps behind the newest one (for batching and chunking to look back on)
STREAM_KEEP = 1000


def spec_from_dims(key: str, value: Any, labels: Sequence[str] | None = None) -> DataSpec:
    """``[dim, ndim]``, a plain ``dim`` (dense for ``data``, sparse otherwise) or a DataSpec -> DataSpec."""
    spec = DataSpec.from_config(key, value)
    if labels is not None and spec.labels is None:
        spec = DataSpec(spec.dim, sparse=spec.sparse, dtype=spec.dtype, labels=tuple(labels))
    return spec


def _num_seqs_option(name: str, num_seqs: Any) -> int | float:
    """``num_seqs`` as RETURNN takes it: an int, or ``float("inf")`` for an endless stream."""
    if isinstance(num_seqs, float) and math.isinf(num_seqs) and num_seqs > 0:
        return num_seqs
    try:
        value = int(num_seqs)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}: num_seqs must be an int or float('inf'), got {num_seqs!r}") from None
    if value < 0:
        raise ConfigError(f"{name}: num_seqs must be >= 0, got {num_seqs}")
    return value


class GeneratingDataset(Dataset):
    """Base of generated tasks: seq ``i`` comes from :meth:`generate_seq` drawing on one random stream per epoch.

    As in RETURNN, one ``numpy.random.RandomState`` is seeded at the start of each epoch with
    ``fixed_random_seed or epoch`` and the seqs are drawn from it one after another, so seq ``i`` depends on
    all seqs before it. ``num_seqs`` defaults to ``float("inf")``: an endless stream in default order.
    """

    #: symbols of the input and output streams (set by tasks with a symbol alphabet)
    input_labels: Sequence[str] | None = None
    output_labels: Sequence[str] | None = None
    #: whether a seq depends on the epoch beyond the seed (then a fixed seed still regenerates per epoch)
    epoch_dependent = False

    def __init__(
        self, input_dim: Any, output_dim: Any, num_seqs: int | float = float("inf"), fixed_random_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fixed_random_seed=fixed_random_seed, **kwargs)
        self._num_seqs = _num_seqs_option(self.name, num_seqs)
        self._specs: dict[str, DataSpec] = {}
        out_dims = dict(output_dim) if isinstance(output_dim, Mapping) else {}
        if output_dim is not None and not isinstance(output_dim, Mapping):
            out_dims["classes"] = output_dim
        if input_dim is not None and "data" not in out_dims:
            out_dims = {"data": [input_dim, 2], **out_dims}  # RETURNN: input_dim alone means dense data
        for key, value in out_dims.items():
            labels = self.input_labels if key == "data" else self.output_labels if key == "classes" else None
            self._specs[key] = spec_from_dims(key, value, labels)
        self._generated: list[dict[str, np.ndarray]] = []
        self._generated_start = 0  # corpus index of _generated[0] (an endless stream forgets old seqs)
        self._rng: np.random.RandomState | None = None
        self._stream_key: tuple[int, int] | None = None

    @property
    def endless(self) -> bool:
        """Whether ``num_seqs`` is infinite."""
        return math.isinf(self._num_seqs)

    def data_specs(self) -> dict[str, DataSpec]:
        """Specs given by ``input_dim``/``output_dim``."""
        return dict(self._specs)

    def _num_total_seqs(self) -> int:
        if self.endless:
            raise DatasetError(f"{self.name}: num_seqs is inf; an endless stream has no total")
        return int(self._num_seqs)

    def generation_seed(self, epoch: int | None) -> int:
        """``fixed_random_seed or epoch`` as RETURNN seeds it (a fixed seed of 0 counts as unset there too)."""
        return int(self.fixed_random_seed) if self.fixed_random_seed else self.epoch_seed(epoch)

    def _prepare_epoch(self, epoch: int) -> None:
        key = (self.generation_seed(epoch), epoch if self.epoch_dependent else 0)
        if key == self._stream_key:
            return  # same seed: the seqs drawn so far stay valid (sub-epochs, or a fixed seed)
        self._rng = np.random.RandomState(key[0] % 2**32)
        self._generated, self._generated_start, self._stream_key = [], 0, key

    def _ensure_prepared(self) -> None:
        if self._rng is None:
            self._prepare_epoch(self.epoch or 1)

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        self._ensure_prepared()
        assert self._rng is not None
        if corpus_idx < self._generated_start:
            raise DatasetError(
                f"{self.name}: seq {corpus_idx} of the endless stream was dropped (only the last {STREAM_KEEP} are kept); "
                "read the stream in order"
            )
        while self._generated_start + len(self._generated) <= corpus_idx:
            idx = self._generated_start + len(self._generated)
            self._generated.append(self.generate_seq(idx, self._rng, self.epoch or 1))
            if self.endless and len(self._generated) > 2 * STREAM_KEEP:
                del self._generated[:STREAM_KEEP]
                self._generated_start += STREAM_KEEP
        return self._generated[corpus_idx - self._generated_start]

    def _seq_length(self, corpus_idx: int) -> int:
        feats = self._load_seq(corpus_idx)
        return int(feats["data" if "data" in feats else next(iter(feats))].shape[0])

    # -- an endless stream has no order to compute --------------------------------------------------
    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """Start ``epoch``'s random stream (a predefined ``seq_list`` only for a finite ``num_seqs``)."""
        if not self.endless:
            super().init_seq_order(epoch, seq_list)
            return
        if seq_list is not None or seq_order_name(self.seq_ordering) != "default" or self.partition_epoch > 1:
            raise ConfigError(
                f"{self.name}: num_seqs=inf is an endless stream in default order; "
                "seq_list, seq_ordering and partition_epoch need a finite num_seqs"
            )
        self.epoch = epoch
        self._prepare_epoch(epoch or 1)

    @property
    def num_seqs(self) -> int | float:
        """Seqs in the current (sub-)epoch; ``inf`` for an endless stream."""
        return self._num_seqs if self.endless else super().num_seqs

    def corpus_index(self, seq_idx: int) -> int:
        """Corpus index of the ``seq_idx``-th seq of the current epoch."""
        return seq_idx if self.endless else super().corpus_index(seq_idx)

    def get_seq(self, seq_idx: int) -> DatasetSeq:
        """The ``seq_idx``-th seq of the current epoch, windowed."""
        if not self.endless:
            return super().get_seq(seq_idx)
        if seq_idx < 0:
            raise DatasetError(f"{self.name}: seq index {seq_idx} out of range")
        return DatasetSeq(seq_idx, self._seq_tag(seq_idx), self._apply_window(self._load_seq(seq_idx)))

    def get_tag(self, seq_idx: int) -> str:
        """Tag of one seq of the current epoch."""
        return self._seq_tag(self.corpus_index(seq_idx))

    def iter_seqs(self) -> Iterator[DatasetSeq]:
        """Seqs of the current epoch in order (without end for ``num_seqs=inf``)."""
        if not self.endless:
            yield from super().iter_seqs()
            return
        i = 0
        while True:
            yield self.get_seq(i)
            i += 1

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
    """RETURNN's meaningless test data: dense ``data`` counting up from the seq index, sparse ``classes`` after it.

    Frame values are ``((i % input_max_value) + input_shift) * input_scale`` for the flat index ``i`` running
    from ``seq_idx``; the classes continue the count, modulo the class count.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: Any,
        num_seqs: int | float,
        seq_len: int | Mapping[str, int] = 2,
        input_max_value: float = 10.0,
        input_shift: float | None = None,
        input_scale: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(input_dim, output_dim, num_seqs, **kwargs)
        self.seq_len = dict(seq_len) if isinstance(seq_len, Mapping) else {"data": int(seq_len), "classes": int(seq_len)}
        self.input_max_value = float(input_max_value)
        self.input_shift = -self.input_max_value / 2.0 if input_shift is None else float(input_shift)
        self.input_scale = 1.0 / self.input_max_value if input_scale is None else float(input_scale)

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """The counting pattern of seq ``seq_idx`` (the same in every epoch)."""
        n_in = int(self._specs["data"].dim or 0)
        t_in = self.seq_len.get("data", 2)
        flat = np.arange(seq_idx, seq_idx + t_in * n_in, dtype=np.float64)
        x = (((flat % self.input_max_value) + self.input_shift) * self.input_scale).reshape(t_in, n_in)
        out = {"data": x.astype(np.float32)}
        if "classes" in self._specs:
            t_out = self.seq_len.get("classes", t_in)
            start = seq_idx + t_in * n_in
            out["classes"] = self.sparse(np.arange(start, start + t_out) % int(self._specs["classes"].dim or 1))
        return out


class StaticDataset(GeneratingDataset):
    """Seqs given in memory: a list of ``{key: array}`` dicts (time-major), the same every epoch, dtypes as given.

    Dims come from ``output_dim`` (``{key: [dim, ndim]}``, or an int for ``classes``) and ``input_dim`` (dense
    ``data``); otherwise an array of 2+ dims is dense with its last dim, and a 1-D int array sparse with
    ``max + 1`` classes (RETURNN would give dim 0 there, which no output layer can use).
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        target_list: Sequence[str] | None = None,
        output_dim: Any = None,
        input_dim: int | None = None,
        tags: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        seqs = [{k: np.asarray(v) for k, v in seq.items()} for seq in data]
        if not seqs:
            raise DatasetError("StaticDataset: 'data' is empty; give at least one seq dict")
        keys = sorted(seqs[0])
        for i, seq in enumerate(seqs):
            if sorted(seq) != keys:
                raise DatasetError(f"StaticDataset: seq {i} has keys {sorted(seq)}, seq 0 has {keys}")
        unknown = [k for k in target_list or () if k not in keys]
        if unknown:
            raise DatasetError(f"StaticDataset: target_list names {unknown}, but the seqs have keys {keys}")
        self.target_list = list(target_list) if target_list is not None else [k for k in keys if k != "data"]
        out_dims = dict(output_dim) if isinstance(output_dim, Mapping) else {}
        if output_dim is not None and not isinstance(output_dim, Mapping):
            out_dims["classes"] = output_dim
        if input_dim is not None:
            out_dims.setdefault("data", [int(input_dim), 2])
        specs = {k: self._spec(k, out_dims.get(k), [s[k] for s in seqs]) for k in keys}
        super().__init__(None, specs, len(seqs), **kwargs)
        self._static = seqs
        if tags is not None and len(tags) != len(seqs):
            raise DatasetError(f"StaticDataset: {len(tags)} tags for {len(seqs)} seqs")
        self._tags = list(tags) if tags is not None else None

    @staticmethod
    def _spec(key: str, dims: Any, arrays: list[np.ndarray]) -> DataSpec:
        first = arrays[0]
        if dims is None:
            if first.ndim == 1 and np.issubdtype(first.dtype, np.integer):
                dims = [int(max((int(a.max()) for a in arrays if a.size), default=0)) + 1, 1]
            elif first.ndim >= 2:
                dims = [int(first.shape[-1]), first.ndim]
            else:
                raise DatasetError(f"StaticDataset: cannot infer the dim of {key!r} (shape {first.shape}); give output_dim")
        spec = DataSpec.from_config(key, dims)
        if spec.sparse != (first.ndim == 1):
            raise DatasetError(f"StaticDataset: {key!r} is given as {dims}, but its arrays have shape {first.shape}")
        if first.ndim >= 2 and spec.dim != first.shape[-1]:
            raise DatasetError(f"StaticDataset: {key!r} has dim {spec.dim} in output_dim, but its arrays have shape {first.shape}")
        return DataSpec(spec.dim, sparse=spec.sparse, dtype=str(first.dtype), labels=spec.labels)

    def _prepare_epoch(self, epoch: int) -> None:
        self._generated, self._generated_start, self._rng = self._static, 0, np.random.RandomState(0)

    def get_target_list(self) -> list[str]:
        """The target keys (all but ``data`` unless ``target_list`` was given)."""
        return list(self.target_list)

    def _seq_tag(self, corpus_idx: int) -> str:
        return self._tags[corpus_idx] if self._tags is not None else f"seq-{corpus_idx}"

    @classmethod
    def copy_from_dataset(cls, dataset: Dataset, start_seq_idx: int = 0, end_seq_idx: int | None = None) -> StaticDataset:
        """Materialise seqs ``start:end`` of ``dataset``'s current epoch (``init_seq_order`` must have run)."""
        seqs = [dataset.get_seq(i) for i in range(start_seq_idx, dataset.end_seq(end_seq_idx))]
        dims = {k: s.as_num_outputs() for k, s in dataset.output_specs().items()}
        return cls([s.features for s in seqs], output_dim=dims, tags=[s.tag for s in seqs])
