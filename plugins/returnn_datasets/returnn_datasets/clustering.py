"""RETURNN's ``ClusteringDataset``: one dataset's seqs plus each seq's cluster index from a Sprint corpus-key map."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np

from returnn_core.datasets import DataSpec
from returnn_core.datasets.batching import DatasetSeq
from returnn_core.errors import ConfigError, DatasetError
from returnn_datasets.meta import ConcatDataset

#: RASR writes the root misspelled; the spelling RETURNN expects, and the corrected one
MAP_ROOTS = ("coprus-key-map", "corpus-key-map")


def read_cluster_map(path: str, n_clusters: int) -> dict[str, int]:
    """Seq tag -> cluster index from a Sprint corpus-key map (``<map-item key="tag" value="idx"/>`` items)."""
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise DatasetError(f"cluster_map_file {path}: {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        raise DatasetError(f"cluster_map_file {path}: not a Sprint corpus-key map (XML error: {exc})") from None
    if root.tag not in MAP_ROOTS:
        raise DatasetError(f"cluster_map_file {path}: root element <{root.tag}>, expected <{MAP_ROOTS[0]}> as RASR writes it")
    clusters = {}
    for item in root.iter("map-item"):
        key, value = item.get("key"), item.get("value")
        try:
            idx = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DatasetError(f"cluster_map_file {path}: map-item {key!r} has value {value!r}, not a cluster index") from None
        if key is None or not 0 <= idx < n_clusters:
            raise DatasetError(f"cluster_map_file {path}: map-item {key!r} -> {value!r} is outside 0..{n_clusters - 1} "
                               f"(n_clusters {n_clusters})")
        clusters[key] = idx
    return clusters


class ClusteringDataset(ConcatDataset):
    """The seqs of ``dataset`` in its own order, with ``cluster_idx`` (one index per seq, sparse over
    ``n_clusters``) looked up by seq tag in ``cluster_map_file``; ``single_cluster``: a batch never mixes clusters."""

    def __init__(self, dataset: Any, cluster_map_file: str, n_clusters: int, single_cluster: bool = False,
                 **kwargs: Any) -> None:
        super().__init__([dataset], **kwargs)
        if not isinstance(n_clusters, int) or n_clusters < 1:
            raise ConfigError(f"{self.name}: n_clusters must be an int >= 1, got {n_clusters!r}")
        self.n_clusters = n_clusters
        self.single_cluster = single_cluster
        self.cluster_map_file = cluster_map_file
        self.cluster_map = read_cluster_map(cluster_map_file, n_clusters)

    def data_specs(self) -> dict[str, DataSpec]:
        """The dataset's streams and ``cluster_idx``."""
        return {**super().data_specs(), "cluster_idx": DataSpec(self.n_clusters, sparse=True, dtype="int32")}

    def cluster_of(self, tag: str) -> int:
        """The cluster index of seq ``tag``."""
        try:
            return self.cluster_map[tag]
        except KeyError:
            raise DatasetError(f"{self.name}: seq {tag!r} is not in cluster_map_file {self.cluster_map_file}") from None

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        features = super()._load_seq(corpus_idx)
        cluster = self.cluster_of(self._seq_tag(corpus_idx))
        return {**features, "cluster_idx": np.array([cluster], dtype=np.int32)}

    def batch_runs(self) -> Iterator[Iterator[DatasetSeq]]:
        """With ``single_cluster``, each run of consecutive seqs of one cluster (RETURNN starts a batch there)."""
        if not self.single_cluster:
            yield from super().batch_runs()
            return
        for _, run in itertools.groupby(self.iter_seqs(), key=lambda seq: int(seq.features["cluster_idx"][0])):
            yield run
