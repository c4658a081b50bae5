"""The backend-neutral :class:`Dataset` base class every dataset plugin builds on."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from returnn_core.datasets.batch_set import BatchSetGenerator
from returnn_core.datasets.batching import DatasetSeq, generate_batches
from returnn_core.datasets.chunking import chunk_seq, parse_chunking, parse_context_window
from returnn_core.datasets.seq_order import seq_order, seq_order_every
from returnn_core.datasets.spec import DataSpec
from returnn_core.errors import DatasetError


class Dataset:
    """Seqs of named data streams, ordered per epoch, partitioned, windowed, chunked and batched.

    A random-access subclass implements :meth:`data_specs`, :meth:`_num_total_seqs` and :meth:`_load_seq`
    (and optionally :meth:`_seq_length`, :meth:`_seq_tag`, :meth:`_prepare_epoch`). A streaming subclass
    (seqs arrive from a process) overrides :meth:`init_seq_order` and :meth:`iter_seqs` instead.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        seq_ordering: str = "default",
        partition_epoch: int = 1,
        fixed_random_seed: int | None = None,
        random_seed_offset: int = 0,
        chunking: Any = None,
        min_chunk_size: int = 0,
        window: int = 1,
        context_window: Any = None,
    ) -> None:
        self.name = name or type(self).__name__
        self.seq_ordering = seq_ordering
        self.partition_epoch = int(partition_epoch)
        if self.partition_epoch < 1:
            raise DatasetError(f"{self.name}: partition_epoch must be >= 1, got {partition_epoch}")
        self.fixed_random_seed = fixed_random_seed
        self.random_seed_offset = int(random_seed_offset)
        self.chunking = chunking
        self.min_chunk_size = int(min_chunk_size)
        self.window = int(window)
        parse_context_window(context_window)  # a bad value fails here, naming the option
        self.context_window = context_window
        self.epoch: int | None = None
        self._order: list[int] | None = None  # corpus indices of the epoch, set by init_seq_order

    # -- what subclasses provide ----------------------------------------------------------------
    def data_specs(self) -> dict[str, DataSpec]:
        """Data key -> spec of the streams this dataset delivers (before windowing)."""
        raise NotImplementedError

    def _num_total_seqs(self) -> int:
        """Seqs in the whole corpus (one full epoch)."""
        raise NotImplementedError

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        """Arrays of one seq by its index in the corpus."""
        raise NotImplementedError

    def _seq_length(self, corpus_idx: int) -> int:
        """Frames of the default key of one corpus seq (used by sorted orderings)."""
        feats = self._load_seq(corpus_idx)
        key = "data" if "data" in feats else next(iter(feats))
        return int(feats[key].shape[0])

    def _seq_tag(self, corpus_idx: int) -> str:
        """Name of one corpus seq."""
        return f"seq-{corpus_idx}"

    def _prepare_epoch(self, epoch: int) -> None:
        """Called before the order of ``epoch`` is computed (e.g. to generate that epoch's data)."""

    # -- seq order --------------------------------------------------------------------------------
    def random_seed(self, epoch: int | None, *, every: int = 1) -> int:
        """The seed for ``epoch`` (fixed when ``fixed_random_seed`` is set; shared by the sub-epochs of one full epoch)."""
        if self.fixed_random_seed is not None:
            return int(self.fixed_random_seed)
        return self.epoch_seed(epoch, every=every)

    def epoch_seed(self, epoch: int | None, *, every: int = 1) -> int:
        """The full epoch's seed (``every`` full epochs share one), plus ``random_seed_offset``."""
        full_epoch = ((epoch or 1) - 1) // self.partition_epoch + 1
        full_epoch = (full_epoch - 1) // max(every, 1) + 1
        return full_epoch + self.random_seed_offset

    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """Fix the seqs and their order for ``epoch`` (or exactly the tags in ``seq_list``)."""
        self.epoch = epoch
        self._prepare_epoch(epoch or 1)
        total = self._num_total_seqs()
        if seq_list is not None:
            index = {self._seq_tag(i): i for i in range(total)}
            missing = [t for t in seq_list if t not in index]
            if missing:
                raise DatasetError(f"{self.name}: seq tag(s) not found: {', '.join(missing[:5])}")
            self._order = [index[t] for t in seq_list]
            return
        self._order = self.get_seq_order_for_epoch(epoch, total, self._seq_length)

    def get_seq_order_for_epoch(self, epoch: int | None, num_seqs: int, get_seq_len: Any = None) -> list[int]:
        """The corpus indices of (sub-)epoch ``epoch``, by ``seq_ordering``, of ``num_seqs`` seqs of lengths
        ``get_seq_len(i)``: RETURNN's method, also what :meth:`init_seq_order` uses."""
        order = self._full_epoch_order(epoch, num_seqs, get_seq_len)
        if self.partition_epoch > 1:
            part = ((epoch or 1) - 1) % self.partition_epoch
            sizes = self.partition_sizes(len(order))
            start = sum(sizes[:part])
            order = order[start : start + sizes[part]]
        return order

    def _full_epoch_order(self, epoch: int | None, num_seqs: int, get_seq_len: Any) -> list[int]:
        """All seqs of the full epoch that ``epoch`` belongs to, in ``seq_ordering``, before partitioning."""
        seed = self.random_seed(epoch, every=seq_order_every(self.seq_ordering))
        return seq_order(self.seq_ordering, num_seqs, get_seq_len, seed)

    def partition_sizes(self, num_seqs: int) -> list[int]:
        """Seqs per sub-epoch: RETURNN gives the first ``num_seqs % partition_epoch`` parts one seq more."""
        per, extra = divmod(num_seqs, self.partition_epoch)
        return [per + 1] * extra + [per] * (self.partition_epoch - extra)

    @property
    def num_seqs(self) -> int:
        """Seqs in the current (sub-)epoch; before :meth:`init_seq_order`, those of the first sub-epoch."""
        if self._order is None:
            try:
                return self.partition_sizes(self._num_total_seqs())[0]
            except NotImplementedError:
                return 0  # a stream that learns its size only once it runs
        return len(self._order)

    def end_seq(self, end: int | None = None) -> int:
        """``min(end, num_seqs)`` of the current epoch; an endless dataset (``num_seqs`` inf) needs an ``end``."""
        if end is None and self.num_seqs == float("inf"):
            raise DatasetError(f"{self.name}: num_seqs is inf (an endless stream); give the seq to stop at")
        return int(self.num_seqs if end is None else min(end, self.num_seqs))

    def is_less_than_num_seqs(self, n: int) -> bool:
        """Whether seq ``n`` exists in the current epoch."""
        return n < self.num_seqs

    def get_total_num_seqs(self) -> int:
        """Seqs in the whole corpus."""
        return self._num_total_seqs()

    def get_all_tags(self) -> list[str]:
        """Tags of every corpus seq, in corpus order."""
        return [self._seq_tag(i) for i in range(self._num_total_seqs())]

    def corpus_index(self, seq_idx: int) -> int:
        """Corpus index of the ``seq_idx``-th seq of the current epoch."""
        return self.epoch_order()[seq_idx]

    def epoch_order(self) -> list[int]:
        """Corpus indices of the current epoch's seqs."""
        if self._order is None:
            raise DatasetError(f"{self.name}: call init_seq_order(epoch) before reading seqs")
        return self._order

    # -- access ---------------------------------------------------------------------------------
    def get_seq(self, seq_idx: int) -> DatasetSeq:
        """The ``seq_idx``-th seq of the current epoch, windowed."""
        order = self.epoch_order()
        if not 0 <= seq_idx < len(order):
            raise DatasetError(f"{self.name}: seq index {seq_idx} out of range (epoch has {len(order)})")
        corpus_idx = order[seq_idx]
        features = self._load_seq(corpus_idx)
        return DatasetSeq(seq_idx, self._seq_tag(corpus_idx), self._apply_window(features))

    def iter_seqs(self) -> Iterator[DatasetSeq]:
        """Seqs of the current epoch in order."""
        for i in range(self.num_seqs):
            yield self.get_seq(i)

    def get_data(self, seq_idx: int, key: str) -> np.ndarray:
        """Array of ``key`` for one seq of the current epoch."""
        return self.get_seq(seq_idx).features[key]

    def get_tag(self, seq_idx: int) -> str:
        """Tag of one seq of the current epoch."""
        return self._seq_tag(self.epoch_order()[seq_idx])

    def get_seq_length(self, seq_idx: int) -> dict[str, int]:
        """Frames per key of one seq of the current epoch."""
        seq = self.get_seq(seq_idx)
        return {k: seq.length(k) for k in seq.features}

    @property
    def data_keys(self) -> list[str]:
        """Sorted data keys."""
        return sorted(self.data_specs())

    # -- RETURNN's Dataset API names (its manual), over the same state -----------------------------
    def initialize(self) -> None:
        """RETURNN's setup call before loading seqs: the constructor did the rest, this fixes the first order."""
        self.init_seq_order()

    def load_seqs(self, start: int, end: int) -> None:
        """Make seqs ``start:end`` of the epoch readable; seqs load on access here, so this only checks the range
        (as in RETURNN, ``end`` may lie behind the last seq)."""
        if not 0 <= start <= end:
            raise DatasetError(f"{self.name}: load_seqs({start}, {end}): need 0 <= start <= end")

    def have_seqs(self) -> bool:
        """Whether the current epoch has any seq."""
        return self.is_less_than_num_seqs(0)

    def get_data_keys(self) -> list[str]:
        """Sorted data keys."""
        return self.data_keys

    def get_target_list(self) -> list[str]:
        """The data keys other than ``data``."""
        return [k for k in self.data_keys if k != "data"]

    def get_data_dim(self, key: str) -> int:
        """Feature dim (dense) or number of classes (sparse) of ``key`` as delivered."""
        return int(self._output_spec(key).dim or 0)

    def get_data_dtype(self, key: str) -> str:
        """Numpy dtype name of ``key``."""
        return self._output_spec(key).dtype

    def is_data_sparse(self, key: str) -> bool:
        """Whether ``key`` holds class indices (one per frame)."""
        return self._output_spec(key).sparse

    def get_data_shape(self, key: str) -> list[int]:
        """Shape of one frame of ``key``: ``[]`` when sparse, else ``[dim]``."""
        spec = self._output_spec(key)
        return [] if spec.sparse else [int(spec.dim or 0)]

    def get_targets(self, target: str, seq_idx: int) -> np.ndarray:
        """Array of the target ``target`` of one seq."""
        return self.get_data(seq_idx, target)

    def get_input_data(self, seq_idx: int) -> np.ndarray:
        """Array of ``data`` of one seq."""
        return self.get_data(seq_idx, "data")

    def _output_spec(self, key: str) -> DataSpec:
        specs = self.output_specs()
        if key not in specs:
            raise DatasetError(f"{self.name}: no data key {key!r}; it has {', '.join(sorted(specs)) or 'none'}")
        return specs[key]

    @property
    def labels(self) -> dict[str, list[str]]:
        """Data key -> label names, from the specs; a dict the caller may extend, as RETURNN's ``labels``."""
        if "_labels" not in self.__dict__:
            self._labels = {k: list(s.labels) for k, s in self.output_specs().items() if s.labels}
        return self._labels

    @labels.setter
    def labels(self, value: Mapping[str, list[str]]) -> None:
        self._labels = dict(value)  # a subclass in RETURNN's style assigns the whole dict

    def can_serialize_data(self, key: str) -> bool:
        """Whether :meth:`serialize_data` knows the labels of ``key``."""
        return key in self.labels

    def serialize_data(self, key: str, data: np.ndarray) -> str:
        """Label indices of ``key`` as text, as RETURNN writes them: labels that are single chars are joined
        (bytes that are UTF-8 are decoded), longer labels are joined by spaces."""
        if key not in self.labels:
            raise DatasetError(f"{self.name}: no labels for {key!r} to serialize with; set labels[{key!r}]")
        labels = self.labels[key]
        indices = np.asarray(data).reshape(-1).tolist()
        names = [labels[int(i)] for i in indices]
        if len(labels) < 1000 and all(len(label) == 1 for label in labels):
            if all(ord(label) <= 255 for label in labels):
                try:
                    return bytes(ord(n) for n in names).decode("utf-8")
                except UnicodeDecodeError:
                    pass  # not UTF-8 after all: the chars as they are
            return "".join(names)
        return " ".join(names)

    def output_specs(self) -> dict[str, DataSpec]:
        """Specs as delivered (``window`` multiplies the input dim)."""
        specs = dict(self.data_specs())
        if self.window > 1 and "data" in specs and not specs["data"].sparse:
            base = specs["data"]
            specs["data"] = DataSpec((base.dim or 0) * self.window, dtype=base.dtype)
        return specs

    @property
    def num_outputs(self) -> dict[str, list[int]]:
        """RETURNN's ``{key: [dim, ndim]}``."""
        return {k: s.as_num_outputs() for k, s in self.output_specs().items()}

    @property
    def num_inputs(self) -> int:
        """Input feature dim."""
        return int(self.output_specs()["data"].dim or 0)

    def _apply_window(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.window <= 1 or "data" not in features or features["data"].ndim != 2:
            return features
        x = features["data"]
        w, t = self.window, x.shape[0]
        left = (w - 1) // 2
        padded = np.zeros((t + w - 1, x.shape[1]), dtype=x.dtype)
        padded[left : left + t] = x
        windowed = np.concatenate([padded[i : i + t] for i in range(w)], axis=1)
        return {**features, "data": windowed}

    # -- chunks ---------------------------------------------------------------------------------
    def _chunk_pair(self) -> tuple[Any, Any]:
        """``chunking`` as RETURNN's ``(chunk_size, chunk_step)``; size 0 means no chunking."""
        if isinstance(self.chunking, tuple) and len(self.chunking) == 2 and not self.chunking[0]:
            return self.chunking  # off, keeping a step set before the size (RETURNN sets them one at a time)
        parsed = parse_chunking(self.chunking)
        return parsed if parsed is not None else (0, 0)

    @property
    def chunk_size(self) -> int | dict[str, int]:
        """Frames per chunk (or per key), 0 without chunking: the first half of ``chunking``."""
        return self._chunk_pair()[0]

    @chunk_size.setter
    def chunk_size(self, size: int | dict[str, int]) -> None:
        self.chunking = (size, self._chunk_pair()[1])

    @property
    def chunk_step(self) -> int | dict[str, int]:
        """Frames from one chunk's start to the next (or per key): the second half of ``chunking``."""
        return self._chunk_pair()[1]

    @chunk_step.setter
    def chunk_step(self, step: int | dict[str, int]) -> None:
        self.chunking = (self._chunk_pair()[0], step)

    def iterate_seqs(
        self, chunk_size: Any = None, chunk_step: Any = None, used_data_keys: Any = None
    ) -> Iterator[tuple[int, Any, Any]]:
        """``(seq_idx, start, end)`` of every chunk of the epoch, as batches cut them (``chunk_size``/``chunk_step``
        default to the dataset's); per-key chunking or a context window gives ``{key: frame}`` dicts."""
        size, step = self._chunk_pair() if chunk_size is None else (chunk_size, chunk_step or chunk_size)
        chunks = parse_chunking((size, step) if size else None)
        context = parse_context_window(self.context_window)
        for seq in self.iter_seqs():
            keys = [k for k in (used_data_keys or seq.features) if k in seq.features]
            for piece in chunk_seq(seq, chunks, min_chunk_size=self.min_chunk_size, context=context):
                yield seq.seq_idx, *piece.frame_range(keys)

    # -- batches --------------------------------------------------------------------------------
    def generate_batches(
        self,
        *,
        batch_size: int,
        max_seqs: int = -1,
        max_seq_length: int | Mapping[str, int] | None = None,
        chunking: Any = "from-dataset",
        recurrent_net: bool = True,
    ) -> BatchSetGenerator:
        """Batches over the current epoch (``chunking`` defaults to the dataset's own; see :func:`generate_batches`)."""
        opts = dict(
            batch_size=batch_size,
            max_seqs=max_seqs,
            max_seq_length=max_seq_length,
            chunking=self.chunking if isinstance(chunking, str) and chunking == "from-dataset" else chunking,
            min_chunk_size=self.min_chunk_size,
            context_window=self.context_window,
            recurrent_net=recurrent_net,
        )
        return BatchSetGenerator(batch for run in self.batch_runs() for batch in generate_batches(run, **opts))

    def batch_runs(self) -> Iterator[Iterator[DatasetSeq]]:
        """The epoch's seqs as consecutive runs that never share a batch (one run unless a dataset splits it)."""
        yield self.iter_seqs()

    def finish_epoch(self) -> None:
        """Called when an epoch's seqs are consumed (streaming datasets stop their source here)."""

    def close(self) -> None:
        """Release files and processes."""

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
