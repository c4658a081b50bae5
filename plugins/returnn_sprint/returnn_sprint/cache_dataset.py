"""SprintCacheDataset: features and alignments from Sprint cache archives or bundles as a random-access dataset."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError
from returnn_sprint.allophones import AllophoneLabeling
from returnn_sprint.archive import FileArchive, FileArchiveBundle, SprintCacheError, open_file_archive


class _CacheStream:
    """One data key read from one archive or bundle: dense features or sparse alignment labels."""

    def __init__(
        self,
        key: str,
        filename: str,
        data_type: str | None = None,
        allophone_labeling: Mapping[str, Any] | None = None,
        recover: bool = False,
    ) -> None:
        self.key = key
        self.filename = filename
        self.cache: FileArchive | FileArchiveBundle = open_file_archive(filename, recover=recover)
        for problem in self.cache.problems:
            print(f"SprintCacheDataset data {key!r}: skipped a broken entry: {problem}", file=sys.stderr, flush=True)
        if data_type is None:
            data_type = "align" if allophone_labeling or key == "classes" else "feat"
        if data_type not in ("feat", "align"):
            raise DatasetError(f"SprintCacheDataset data {key!r}: data_type must be 'feat' or 'align', got {data_type!r}")
        self.type = data_type
        self.labeling: AllophoneLabeling | None = None
        if data_type == "align":
            if not allophone_labeling:
                raise DatasetError(
                    f"SprintCacheDataset data {key!r}: alignments need allophone_labeling "
                    "(allophone_file plus phoneme_file or state_tying_file)"
                )
            self.labeling = AllophoneLabeling(**dict(allophone_labeling))
        self.names = self.cache.names()
        if not self.names:
            raise DatasetError(f"SprintCacheDataset data {key!r}: {filename} has no entries")

    def spec(self) -> DataSpec:
        if self.labeling is not None:
            return DataSpec(self.labeling.num_labels, sparse=True, labels=tuple(self.labeling.labels()))
        feats, _ = self.cache.read_features(self.names[0])
        return DataSpec(int(feats.shape[1]))

    def read(self, name: str) -> np.ndarray:
        if self.labeling is None:
            return self.cache.read_features(name)[0]
        items = self.cache.read_alignment(name)
        # soft (weighted) alignments may hold several states per frame: take the heaviest one
        best: dict[int, tuple[float, int]] = {}
        for it in items:
            label = self.labeling.get_label_idx(it.allophone, it.state)
            if it.time not in best or it.weight > best[it.time][0]:
                best[it.time] = (it.weight, label)
        times = sorted(best)
        if times != list(range(len(times))):
            missing = sorted(set(range(times[-1] + 1)) - set(times))[:5] if times else []
            raise DatasetError(f"SprintCacheDataset: alignment {name!r} in {self.filename} has no label for frames {missing}")
        return np.array([best[t][1] for t in times], dtype=np.int32)

    def close(self) -> None:
        self.cache.close()


class SprintCacheDataset(Dataset):
    """Seqs named by the entries of the ``data`` cache; every other key is looked up by the same name.

    ``data``: key -> ``{"filename": archive or bundle, "data_type": "feat"|"align",
    "allophone_labeling": {"allophone_file": ..., "state_tying_file" or "phoneme_file": ...}, "recover": bool}``;
    ``recover`` reads an archive without a file-info table past broken entries (each reported on stderr).
    """

    def __init__(self, data: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if "data" not in data:
            raise DatasetError(f"{self.name}: 'data' needs a 'data' key (the feature cache), got {sorted(data)}")
        self.streams: dict[str, _CacheStream] = {}
        try:
            for key, opts in data.items():
                if "filename" not in opts:
                    raise DatasetError(f"{self.name}: data {key!r} has no 'filename'")
                self.streams[key] = _CacheStream(key, **dict(opts))
            self.seq_names = list(self.streams["data"].names)
            for key, stream in self.streams.items():
                if key == "data":
                    continue
                for name in self.seq_names:
                    try:
                        stream.cache.resolve_name(name)
                    except SprintCacheError as exc:
                        raise SprintCacheError(f"{self.name}: data {key!r} lacks a seq of the features: {exc}") from None
            self._specs = {key: s.spec() for key, s in self.streams.items()}
        except BaseException:
            self.close()
            raise

    def data_specs(self) -> dict[str, DataSpec]:
        """Feature dim of ``data``, label count of the alignment keys."""
        return dict(self._specs)

    def _num_total_seqs(self) -> int:
        return len(self.seq_names)

    def _seq_tag(self, corpus_idx: int) -> str:
        return self.seq_names[corpus_idx]

    def _seq_length(self, corpus_idx: int) -> int:
        # the stored size grows with the frame count; cheaper than decoding every entry for a sorted order
        return self.streams["data"].cache.entry_info(self.seq_names[corpus_idx]).size

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        name = self.seq_names[corpus_idx]
        out = {key: stream.read(name) for key, stream in self.streams.items()}
        n = out["data"].shape[0]
        for key, arr in out.items():
            if self.streams[key].type == "align" and arr.shape[0] != n:
                raise DatasetError(
                    f"{self.name}: seq {name!r}: {key} alignment has {arr.shape[0]} frames, features have {n}"
                )
        return out

    def close(self) -> None:
        """Close the cache files."""
        for stream in self.streams.values():
            stream.close()
