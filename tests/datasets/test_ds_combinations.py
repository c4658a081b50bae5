"""MetaDataset, ConcatDataset and CombinedDataset over real HDF files and generated data."""

from __future__ import annotations

import numpy as np
import pytest
from ds_hdf_files import write_returnn_style

from returnn_core.datasets import init_dataset
from returnn_core.errors import ConfigError, DatasetError
from returnn_core.plugin import PluginManager, set_plugin_manager


@pytest.fixture(scope="module", autouse=True)
def global_manager(manager: PluginManager):
    # sub datasets are built through the process-wide manager
    set_plugin_manager(manager)
    yield manager
    set_plugin_manager(None)


def _features_and_alignment(tmp_path, n=8):
    rng = np.random.RandomState(7)
    lens = rng.randint(3, 12, size=n)
    feats = [rng.randn(t, 5).astype("float32") for t in lens]
    align = [rng.randint(0, 9, size=t).astype("int32") for t in lens]
    tags = [f"rec/{i}" for i in range(n)]
    fpath, apath = str(tmp_path / "feat.hdf"), str(tmp_path / "align.hdf")
    write_returnn_style(fpath, feats, tags=tags)
    # the alignment file holds the same seqs in another order, plus one extra
    perm = rng.permutation(n)
    extra = rng.randn(4, 1).astype("float32")
    write_returnn_style(
        apath, [np.zeros((lens[i], 1), "float32") for i in perm] + [extra],
        {"classes": [align[i] for i in perm] + [np.zeros(4, "int32")]},
        tags=[tags[i] for i in perm] + ["rec/extra"], sizes={"classes": (9, 1)},
    )
    return fpath, apath, feats, align, tags


def test_meta_dataset_aligns_by_tag(tmp_path) -> None:
    fpath, apath, feats, align, tags = _features_and_alignment(tmp_path)
    ds = init_dataset({
        "class": "MetaDataset",
        "datasets": {"feat": {"class": "HDFDataset", "files": [fpath], "seq_ordering": "random"},
                     "align": {"class": "HDFDataset", "files": [apath]}},
        "data_map": {"data": ("feat", "data"), "classes": ("align", "classes")},
        "seq_order_control_dataset": "feat",
    })
    assert ds.num_outputs == {"data": [5, 2], "classes": [9, 1]}
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 8
    order = [ds.get_tag(i) for i in range(8)]
    assert sorted(order) == sorted(tags) and order != tags  # the control dataset's random order
    for i in range(8):
        k = tags.index(ds.get_tag(i))
        seq = ds.get_seq(i)
        np.testing.assert_array_equal(seq.features["data"], feats[k])
        np.testing.assert_array_equal(seq.features["classes"], align[k])
    batches = list(ds.generate_batches(batch_size=40))
    assert sum(b.num_seqs for b in batches) == 8


def test_meta_dataset_missing_tag_and_bad_map(tmp_path) -> None:
    fpath, apath, *_ = _features_and_alignment(tmp_path)
    spec = {
        "class": "MetaDataset",
        "datasets": {"feat": {"class": "HDFDataset", "files": [fpath]}, "align": {"class": "HDFDataset", "files": [apath]}},
        "data_map": {"data": ("align", "data"), "classes": ("feat", "data")},
    }
    ds = init_dataset(spec)  # the alignment file controls, and 'rec/extra' is not in the feature file
    with pytest.raises(DatasetError, match=r"dataset 'feat' lacks seqs of control dataset 'align'.*rec/extra"):
        ds.init_seq_order(epoch=1)
    with pytest.raises(DatasetError, match="dataset 'feat' has no key 'classes'"):
        init_dataset({**spec, "data_map": {"data": ("feat", "classes")}})
    with pytest.raises(ConfigError, match="names dataset 'nope'"):
        init_dataset({**spec, "data_map": {"data": ("nope", "data")}})


def test_concat_dataset() -> None:
    a = {"class": "Task12AXDataset", "num_seqs": 3, "fixed_random_seed": 1}
    b = {"class": "Task12AXDataset", "num_seqs": 4, "fixed_random_seed": 2}
    ds = init_dataset({"class": "ConcatDataset", "datasets": [a, b]})
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 7
    ref_b = init_dataset(b)
    ref_b.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(5, "data"), ref_b.get_data(2, "data"))
    with pytest.raises(DatasetError, match=r"dataset #1 has keys"):
        init_dataset({"class": "ConcatDataset", "datasets": [a, {"class": "StaticDataset",
                                                                  "data": [{"data": np.zeros((2, 9), "float32")}]}]})
    with pytest.raises(DatasetError, match=r"'data' with dim 3, dataset #0 has 9"):
        init_dataset({"class": "ConcatDataset", "datasets": [a, {"class": "DummyDataset", "input_dim": 3,
                                                                  "output_dim": 2, "num_seqs": 2}]})


def test_combined_dataset_fills_missing_streams() -> None:
    ds = init_dataset({
        "class": "CombinedDataset",
        "datasets": {
            "ax": {"class": "Task12AXDataset", "num_seqs": 3},
            "copy": {"class": "CopyTaskDataset", "nsymbols": 4, "minlen": 2, "maxlen": 5, "num_seqs": 2},
        },
        "data_map": {("ax", "data"): "data", ("ax", "classes"): "classes", ("copy", "data"): "copy_in"},
        "seq_ordering": "random",
    })
    assert ds.num_outputs == {"data": [9, 2], "classes": [2, 1], "copy_in": [4, 1]}
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 5
    sources = [ds.dataset_of(i) for i in range(5)]
    assert sorted(sources) == ["ax"] * 3 + ["copy"] * 2
    for i, src in enumerate(sources):
        f = ds.get_seq(i).features
        assert set(f) == {"data", "classes", "copy_in"}
        if src == "copy":
            assert f["data"].shape == (0, 9) and len(f["copy_in"]) >= 2
        else:
            assert len(f["copy_in"]) == 0 and f["data"].shape[0] == len(f["classes"]) >= 10
    bd = next(iter(ds.generate_batches(batch_size=10000))).to_data(ds.output_specs())
    assert bd.num_seqs == 5 and bd.data["copy_in"].dtype == np.int32
