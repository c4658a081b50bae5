"""Datasets made of other datasets: :class:`MetaDataset` (aligned by tag), :class:`ConcatDataset`, :class:`CombinedDataset`."""

from __future__ import annotations

import bisect
import gzip
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec, init_dataset
from returnn_core.errors import ConfigError, DatasetError
from returnn_datasets.json_file import read_json_object


def _build(spec: Any, what: str) -> Dataset:
    try:
        return init_dataset(spec)
    except DatasetError as exc:
        raise DatasetError(f"{what}: {exc}") from None


class MetaDataset(Dataset):
    """Streams taken from several datasets whose seqs share tags.

    ``datasets``: name -> dataset (dict spec or instance); ``data_map``: our key -> ``(name, their key)``.
    The seqs are those of ``seq_list_file`` (lines, ``.gz`` lines, or a ``.pkl`` list or dict name -> tags
    when the datasets name seqs differently), else all seqs of the default dataset (the one providing
    ``data``). Each epoch this dataset orders them by its own ``seq_ordering``/``partition_epoch``, with the
    lengths of ``seq_lens_file`` (JSON ``tag -> key -> frames``) or of the default dataset's ``data``; with
    ``seq_order_control_dataset`` that dataset's own order is taken instead. Every dataset is then asked for
    exactly those tags. ``data_dims``/``data_dtypes`` (RETURNN's, optional) must agree with the streams.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        data_map: Mapping[str, Sequence[str]],
        seq_order_control_dataset: str | None = None,
        seq_list_file: str | None = None,
        seq_lens_file: str | None = None,
        data_dims: Mapping[str, Any] | None = None,
        data_dtypes: Mapping[str, str] | None = None,
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
        if seq_order_control_dataset is not None and seq_order_control_dataset not in self.datasets:
            raise ConfigError(f"{self.name}: seq_order_control_dataset {seq_order_control_dataset!r} is not in datasets")
        self.order_control = seq_order_control_dataset
        self.control = seq_order_control_dataset or (
            self.data_map["data"][0] if "data" in self.data_map else sorted(self.datasets)[0]
        )
        self._used = sorted({name for name, _ in self.data_map.values()} | {self.control})
        self._lists = _read_seq_lists(seq_list_file, self._used) if seq_list_file else None
        self._seq_lens = (read_json_object(seq_lens_file, "seq_lens_file", "tag -> {key: frames}")
                          if seq_lens_file else None)
        _check_declared(self.name, self.data_specs(), data_dims or {}, data_dtypes or {})
        self._tags: dict[str, list[str]] = {}  # dataset name -> tags of the epoch's seqs, in order

    def data_specs(self) -> dict[str, DataSpec]:
        """Our keys with the specs of the streams they map to."""
        return {key: self.datasets[name].output_specs()[sub] for key, (name, sub) in self.data_map.items()}

    def _seq_lists(self) -> dict[str, list[str]]:
        """Dataset name -> its tags of all our seqs (the same list for each, unless the seq list file differs)."""
        if self._lists is None:
            tags = self.datasets[self.control].get_all_tags()
            self._lists = dict.fromkeys(self._used, tags)
        return self._lists

    def _num_total_seqs(self) -> int:
        return len(self._seq_lists()[self.control])

    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """Order our seqs (or take ``seq_list``, or the control dataset's order); align every dataset to them."""
        self.epoch = epoch
        lists = self._seq_lists()
        main = lists[self.control]
        index = {tag: i for i, tag in enumerate(main)}
        if seq_list is None and self.order_control is not None:
            control = self.datasets[self.control]
            control.init_seq_order(epoch)
            seq_list = [control.get_tag(i) for i in range(control.num_seqs)]
        if seq_list is not None:
            missing = [t for t in seq_list if t not in index]
            if missing:
                raise DatasetError(f"{self.name}: seq tag(s) not in the seq list of {self.control!r}: {', '.join(missing[:5])}")
            order = [index[t] for t in seq_list]
        else:
            order = self.get_seq_order_for_epoch(epoch, len(main), self._length_of(main))
        self._tags = {name: [lists[name][i] for i in order] for name in self._used}
        for name in self._used:
            if name == self.order_control:
                continue  # it is in that order already
            try:
                self.datasets[name].init_seq_order(epoch, seq_list=self._tags[name])
            except DatasetError as exc:
                raise DatasetError(
                    f"{self.name}: dataset {name!r} lacks seqs of control dataset {self.control!r}: {exc}"
                ) from None
        self._order = list(range(len(order)))

    def _length_of(self, main: list[str]) -> Callable[[int], int]:
        """Length of ``data`` of our ``i``-th seq (for sorted orderings): from the lengths file, else read."""
        if self._seq_lens is not None:
            def from_file(i: int) -> int:
                try:
                    return int(self._seq_lens[main[i]]["data"])
                except KeyError:
                    raise DatasetError(f"{self.name}: seq_lens_file has no 'data' length of seq {main[i]!r}") from None
            return from_file
        control = self.datasets[self.control]
        key = "data" if "data" in control.output_specs() else self.data_map.get("data", (None, None))[1]
        state: dict[str, bool] = {}

        def read(i: int) -> int:
            if not state:  # only sorted orderings ask: put the control dataset in list order once
                control.init_seq_order(self.epoch, seq_list=main)
                state["ready"] = True
            lengths = control.get_seq_length(i)
            return int(lengths[key] if key in lengths else max(lengths.values()))
        return read

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        seqs = {name: self.datasets[name].get_seq(corpus_idx) for name in self._used}
        for name, seq in seqs.items():
            expected = self._tags[name][corpus_idx]
            if seq.tag != expected:
                raise DatasetError(f"{self.name}: dataset {name!r} gave seq {seq.tag!r} where {expected!r} was expected")
        return {key: seqs[name].features[sub] for key, (name, sub) in self.data_map.items()}

    def _seq_tag(self, corpus_idx: int) -> str:
        if self._tags:
            return self._tags[self.control][corpus_idx]
        return self._seq_lists()[self.control][corpus_idx]

    def finish_epoch(self) -> None:
        """Pass on to every sub dataset."""
        for ds in self.datasets.values():
            ds.finish_epoch()

    def close(self) -> None:
        """Close every sub dataset."""
        for ds in self.datasets.values():
            ds.close()


def _check_declared(
    owner: str, specs: Mapping[str, DataSpec], data_dims: Mapping[str, Any], data_dtypes: Mapping[str, str]
) -> None:
    """RETURNN's ``data_dims`` (key -> ``[dim, ndim]``) and ``data_dtypes`` must agree with the streams delivered."""
    for key, dims in data_dims.items():
        if key not in specs:
            raise ConfigError(f"{owner}: data_dims names {key!r}, which data_map does not map")
        declared = DataSpec.from_config(key, dims).as_num_outputs()
        if declared != specs[key].as_num_outputs():
            raise DatasetError(
                f"{owner}: data_dims[{key!r}] is {list(declared)}, but the data delivers {list(specs[key].as_num_outputs())}"
            )
    for key, dtype in data_dtypes.items():
        if key in specs and str(dtype) != specs[key].dtype:
            raise DatasetError(f"{owner}: data_dtypes[{key!r}] is {dtype}, but the data delivers {specs[key].dtype}")


def _read_seq_lists(path: str, names: Sequence[str]) -> dict[str, list[str]]:
    """RETURNN's ``seq_list_file``: a ``.pkl`` list or dict name -> list, ``.gz`` lines or plain lines."""
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                value = pickle.load(f)
        else:
            with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
                value = [line.strip() for line in f if line.strip()]
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetError(f"seq_list_file {path} cannot be read: {exc}") from None
    if isinstance(value, list):
        return dict.fromkeys(names, value)
    if not isinstance(value, dict) or set(names) - set(value):
        raise DatasetError(f"seq_list_file {path}: expected a tag list or a dict with a tag list for each of {list(names)}")
    lists = {name: list(value[name]) for name in names}
    if len({len(v) for v in lists.values()}) > 1:
        raise DatasetError(f"seq_list_file {path}: the datasets' tag lists differ in length")
    return lists



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


#: CombinedDataset's own orderings, which pick the dataset of each position and keep every dataset's order
DATASET_PICKING = ("default", "random", "random_dataset", "in-order", "reversed")


class CombinedDataset(ConcatDataset):
    """Seqs of several datasets with different streams in one epoch (e.g. multi-task data).

    ``datasets``: name -> dataset; ``data_map``: ``(name, their key)`` -> our key. A seq carries every
    one of our keys; those its dataset does not map are empty (length 0). As RETURNN's manual says, each
    position of the epoch takes the next seq of a dataset picked at random, equally distributed over all
    seqs (``seq_ordering`` ``default``, ``random`` or ``random_dataset``, seeded by the epoch); ``in-order``
    goes through the datasets one after another, ``reversed`` from the last; the length-based orderings
    order all seqs together. ``data_dims``/``data_dtypes`` (RETURNN's) must agree with the streams.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        data_map: Mapping[Sequence[str], str],
        data_dims: Mapping[str, Any] | None = None,
        data_dtypes: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
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
        _check_declared(self.name, specs, data_dims or {}, data_dtypes or {})
        self._offsets = [0]

    def _full_epoch_order(self, epoch: int | None, num_seqs: int, get_seq_len: Any) -> list[int]:
        name = self.seq_ordering.split(":", 1)[0]
        if name not in DATASET_PICKING:
            return super()._full_epoch_order(epoch, num_seqs, get_seq_len)
        counts = [b - a for a, b in zip(self._offsets, self._offsets[1:])]
        picks = [i for i, n in enumerate(counts) for _ in range(n)]  # the dataset of each position
        if name == "reversed":
            picks.reverse()
        elif name != "in-order":
            np.random.RandomState(self.random_seed(epoch) % 2**32).shuffle(picks)
        taken = [0] * len(counts)
        order = []
        for i in picks:
            order.append(self._offsets[i] + taken[i])
            taken[i] += 1
        return order

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
