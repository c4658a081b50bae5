"""ClusteringDataset: RETURNN's cluster index per seq from a Sprint corpus-key map, and single-cluster batches."""

from __future__ import annotations

import numpy as np
import pytest

from returnn_core.datasets import init_dataset
from returnn_core.errors import DatasetError

AX = {"class": "Task12AXDataset", "num_seqs": 40, "fixed_random_seed": 3}


def write_map(path, clusters: dict[str, int], root: str = "coprus-key-map") -> str:
    items = "".join(f'<map-item key="{tag}" value="{idx}"/>\n' for tag, idx in clusters.items())
    path.write_text(f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<{root}>\n{items}</{root}>\n')
    return str(path)


def clustering(tmp_path, *, n_clusters=3, **opts):
    tags = [f"seq-{i}" for i in range(40)]
    cluster_map = write_map(tmp_path / "map.xml", {tag: (i // 3) % n_clusters for i, tag in enumerate(tags)})
    return init_dataset({"class": "ClusteringDataset", "dataset": AX, "cluster_map_file": cluster_map,
                         "n_clusters": n_clusters, **opts})


def test_each_seq_gets_its_cluster_and_keeps_the_inner_data(tmp_path):
    ds = clustering(tmp_path)
    inner = init_dataset(AX)
    ds.init_seq_order(1)
    inner.init_seq_order(1)
    assert ds.num_outputs["cluster_idx"] == [3, 1] and ds.get_data_dtype("cluster_idx") == "int32"
    assert ds.num_seqs == inner.num_seqs == 40
    for i in range(ds.num_seqs):
        tag = ds.get_tag(i)
        assert tag == inner.get_tag(i)
        assert ds.get_data(i, "cluster_idx").tolist() == [(int(tag.split("-")[1]) // 3) % 3]
        np.testing.assert_array_equal(ds.get_data(i, "data"), inner.get_data(i, "data"))


def test_single_cluster_batches_never_mix_clusters(tmp_path):
    mixed, single = clustering(tmp_path), clustering(tmp_path, single_cluster=True)
    for ds in (mixed, single):
        ds.init_seq_order(1)
    clusters = [[int(s.seq.features["cluster_idx"][0]) for s in b.slices]
                for b in single.generate_batches(batch_size=10_000, max_seqs=5)]
    assert all(len(set(c)) == 1 and len(c) <= 3 for c in clusters)  # runs of 3 seqs per cluster in the map
    assert sum(map(len, clusters)) == 40
    mixed_batches = list(mixed.generate_batches(batch_size=10_000, max_seqs=5))
    assert len(mixed_batches) == 8 and any(
        len({int(s.seq.features["cluster_idx"][0]) for s in b.slices}) > 1 for b in mixed_batches)


def test_bad_maps_name_the_file_and_the_seq(tmp_path):
    with pytest.raises(DatasetError, match=r"map\.xml: root element <corpus>"):
        init_dataset({"class": "ClusteringDataset", "dataset": AX, "n_clusters": 2,
                      "cluster_map_file": write_map(tmp_path / "map.xml", {"seq-0": 0}, root="corpus")})
    with pytest.raises(DatasetError, match=r"'seq-0' -> '5' is outside 0\.\.1"):
        init_dataset({"class": "ClusteringDataset", "dataset": AX, "n_clusters": 2,
                      "cluster_map_file": write_map(tmp_path / "map.xml", {"seq-0": 5})})
    ds = init_dataset({"class": "ClusteringDataset", "dataset": AX, "n_clusters": 2,
                       "cluster_map_file": write_map(tmp_path / "map.xml", {"seq-0": 1})})
    ds.init_seq_order(1)
    with pytest.raises(DatasetError, match=r"seq 'seq-\d+' is not in cluster_map_file .*map\.xml"):
        [ds.get_data(i, "cluster_idx") for i in range(ds.num_seqs)]
    with pytest.raises(DatasetError, match="missing.xml"):
        init_dataset({"class": "ClusteringDataset", "dataset": AX, "n_clusters": 2,
                      "cluster_map_file": str(tmp_path / "missing.xml")})
