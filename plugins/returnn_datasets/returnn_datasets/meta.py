"""Datasets made of other datasets: :class:`MetaDataset` (aligned by tag), :class:`ConcatDataset`, :class:`CombinedDataset`."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec, init_dataset
from returnn_core.errors import ConfigError, DatasetError


def _build(spec: Any, what: str) -> Dataset:
    try:
        return init_dataset(spec)
    except DatasetError as exc:
        raise DatasetError(f"{what}: {exc}") from None


class MetaDataset(Dataset):
    """Streams taken from several datasets whose seqs share tags.

    ``datasets``: name -> dataset (dict spec or instance); ``data_map``: our key -> ``(name, their key)``.
    The ``seq_order_control_dataset`` (default: the one that provides ``data``, else the first name)
    fixes the seqs and their order each epoch (its own ``seq_ordering``/``partition_epoch`` apply); every
    other dataset is asked for exactly those tags.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        data_map: Mapping[str, Sequence[str]],
        seq_order_control_dataset: str | None = None,
        seq_list_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not datasets:
            raise ConfigError(f"{self.name}: 'datasets' is empty")
        self.datasets = {name: _build(spec, f"{self.name} dataset {name!r}") for name, spec in datasets.items()}
        self.data_map: dict[str, tuple[str, str]] = {}
        for key, target in data_map.items():
            if not isinstance(target, (list, tuple)) or len(target) != 2:
                raise ConfigError(f"{self.name}: data_map[{key!r}] must be (dataset name, data key), got {target!r}")
            name, sub_key = target
            if name not in self.datasets:
                raise ConfigError(f"{self.name}: data_map[{key!r}] names dataset {name!r}; known: {', '.join(self.datasets)}")
            if sub_key not in self.datasets[name].output_specs():
                raise DatasetError(
                    f"{self.name}: data_map[{key!r}]: dataset {name!r} has no key {sub_key!r} "
                    f"(it has {', '.join(sorted(self.datasets[name].output_specs()))})"
                )
            self.data_map[key] = (name, sub_key)
        if seq_order_control_dataset is None:
            seq_order_control_dataset = self.data_map["data"][0] if "data" in self.data_map else sorted(self.datasets)[0]
        if seq_order_control_dataset not in self.datasets:
            raise ConfigError(f"{self.name}: seq_order_control_dataset {seq_order_control_dataset!r} is not in datasets")
        self.control = seq_order_control_dataset
        self.seq_list = None
        if seq_list_file:
            with open(seq_list_file, encoding="utf-8") as f:
                self.seq_list = [line.strip() for line in f if line.strip()]
        self._used = sorted({name for name, _ in self.data_map.values()} | {self.control})
        self._tags: list[str] = []

    def data_specs(self) -> dict[str, DataSpec]:
        """Our keys with the specs of the streams they map to."""
        return {key: self.datasets[name].output_specs()[sub] for key, (name, sub) in self.data_map.items()}

    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """Let the control dataset pick the seqs; align every other dataset to those tags."""
        self.epoch = epoch
        control = self.datasets[self.control]
        control.init_seq_order(epoch, seq_list=seq_list if seq_list is not None else self.seq_list)
        self._tags = [control.get_tag(i) for i in range(control.num_seqs)]
        for name in self._used:
            if name == self.control:
                continue
            try:
                self.datasets[name].init_seq_order(epoch, seq_list=self._tags)
            except DatasetError as exc:
                raise DatasetError(
                    f"{self.name}: dataset {name!r} lacks seqs of control dataset {self.control!r}: {exc}"
                ) from None
        self._order = list(range(len(self._tags)))

    def _num_total_seqs(self) -> int:
        return self.datasets[self.control].get_total_num_seqs()

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        seqs = {name: self.datasets[name].get_seq(corpus_idx) for name in self._used}
        tag = self._tags[corpus_idx]
        for name, seq in seqs.items():
            if seq.tag != tag:
                raise DatasetError(f"{self.name}: dataset {name!r} gave seq {seq.tag!r} where {tag!r} was expected")
        return {key: seqs[name].features[sub] for key, (name, sub) in self.data_map.items()}

    def _seq_tag(self, corpus_idx: int) -> str:
        return self._tags[corpus_idx]

    def finish_epoch(self) -> None:
        """Pass on to every sub dataset."""
        for ds in self.datasets.values():
            ds.finish_epoch()

    def close(self) -> None:
        """Close every sub dataset."""
        for ds in self.datasets.values():
            ds.close()


class ConcatDataset(Dataset):
    """The seqs of each dataset in turn (each in its own epoch order); all must deliver the same streams.

    The concatenation is then ordered by this dataset's own ``seq_ordering``.
    """

    def __init__(self, datasets: Sequence[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not datasets:
            raise ConfigError(f"{self.name}: 'datasets' is empty")
        self.sub = [_build(spec, f"{self.name} dataset #{i}") for i, spec in enumerate(datasets)]
        self._specs = self._combined_specs()
        self._offsets = [0]

    def _combined_specs(self) -> dict[str, DataSpec]:
        first = self.sub[0].output_specs()
        for i, ds in enumerate(self.sub[1:], start=1):
            specs = ds.output_specs()
            if set(specs) != set(first):
                raise DatasetError(f"{self.name}: dataset #{i} has keys {sorted(specs)}, dataset #0 has {sorted(first)}")
            for key in first:
                if (specs[key].dim, specs[key].sparse) != (first[key].dim, first[key].sparse):
                    raise DatasetError(
                        f"{self.name}: dataset #{i} has {key!r} with dim {specs[key].dim}, dataset #0 has {first[key].dim}"
                    )
        return first

    def data_specs(self) -> dict[str, DataSpec]:
        """The shared streams."""
        return dict(self._specs)

    def _prepare_epoch(self, epoch: int) -> None:
        self._offsets = [0]
        for ds in self.sub:
            ds.init_seq_order(epoch)
            self._offsets.append(self._offsets[-1] + ds.num_seqs)

    def _num_total_seqs(self) -> int:
        if len(self._offsets) == 1:
            self._prepare_epoch(self.epoch or 1)
        return self._offsets[-1]

    def _locate(self, corpus_idx: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._offsets, corpus_idx) - 1
        return i, corpus_idx - self._offsets[i]

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        i, local = self._locate(corpus_idx)
        return self._complete(i, self.sub[i].get_seq(local).features)

    def _complete(self, i: int, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return features

    def _seq_length(self, corpus_idx: int) -> int:
        feats = self._load_seq(corpus_idx)
        key = "data" if "data" in feats else next(iter(feats))
        return int(feats[key].shape[0])

    def _seq_tag(self, corpus_idx: int) -> str:
        i, local = self._locate(corpus_idx)
        return self.sub[i].get_tag(local)

    def finish_epoch(self) -> None:
        """Pass on to every sub dataset."""
        for ds in self.sub:
            ds.finish_epoch()

    def close(self) -> None:
        """Close every sub dataset."""
        for ds in self.sub:
            ds.close()


class CombinedDataset(ConcatDataset):
    """Seqs of several datasets with different streams in one epoch (e.g. multi-task data).

    ``datasets``: name -> dataset; ``data_map``: ``(name, their key)`` -> our key. A seq carries every
    one of our keys; those its dataset does not map are empty (length 0).
    """

    def __init__(self, datasets: Mapping[str, Any], data_map: Mapping[Sequence[str], str], **kwargs: Any) -> None:
        Dataset.__init__(self, **kwargs)
        if not datasets:
            raise ConfigError(f"{self.name}: 'datasets' is empty")
        self.names = list(datasets)
        self.sub = [_build(datasets[n], f"{self.name} dataset {n!r}") for n in self.names]
        self.maps: list[dict[str, str]] = [{} for _ in self.names]
        specs: dict[str, DataSpec] = {}
        for source, key in data_map.items():
            if not isinstance(source, tuple) or len(source) != 2:
                raise ConfigError(f"{self.name}: data_map keys must be (dataset name, data key), got {source!r}")
            name, sub_key = source
            if name not in datasets:
                raise ConfigError(f"{self.name}: data_map names dataset {name!r}; known: {', '.join(self.names)}")
            i = self.names.index(name)
            sub_specs = self.sub[i].output_specs()
            if sub_key not in sub_specs:
                raise DatasetError(f"{self.name}: dataset {name!r} has no key {sub_key!r} (it has {sorted(sub_specs)})")
            spec = sub_specs[sub_key]
            if key in specs and (specs[key].dim, specs[key].sparse) != (spec.dim, spec.sparse):
                raise DatasetError(f"{self.name}: {key!r} gets dim {spec.dim} from {name!r} but {specs[key].dim} elsewhere")
            specs.setdefault(key, spec)
            self.maps[i][key] = sub_key
        self._specs = specs
        self._offsets = [0]

    def _complete(self, i: int, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for key, spec in self._specs.items():
            sub_key = self.maps[i].get(key)
            if sub_key is not None:
                out[key] = features[sub_key]
            else:
                tail = () if spec.sparse else (int(spec.dim or 0),)
                out[key] = np.zeros((0, *tail), dtype=spec.dtype)
        return out

    def _seq_length(self, corpus_idx: int) -> int:
        return max((int(a.shape[0]) for a in self._load_seq(corpus_idx).values()), default=0)

    def dataset_of(self, seq_idx: int) -> str:
        """Name of the dataset the ``seq_idx``-th seq of the epoch comes from."""
        return self.names[self._locate(self.corpus_index(seq_idx))[0]]
