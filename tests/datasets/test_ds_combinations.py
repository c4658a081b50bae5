"""MetaDataset, ConcatDataset and CombinedDataset over real HDF files and generated data."""

from __future__ import annotations

import json
import pickle

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


def test_meta_dataset_orders_its_seqs_itself(tmp_path) -> None:
    # RETURNN's MetaDataset: its own seq_ordering over the seq list, lengths from seq_lens_file or from the data
    fpath, apath, feats, align, tags = _features_and_alignment(tmp_path)
    lens = {t: len(f) for t, f in zip(tags, feats)}
    datasets = {"feat": {"class": "HDFDataset", "files": [fpath], "seq_ordering": "random"},
                "align": {"class": "HDFDataset", "files": [apath]}}
    data_map = {"data": ("feat", "data"), "classes": ("align", "classes")}
    by_len = sorted(tags, key=lambda t: (lens[t], tags.index(t)))
    ds = init_dataset({"class": "MetaDataset", "datasets": datasets, "data_map": data_map, "seq_ordering": "sorted",
                       "data_dims": {"data": (5, 2), "classes": [9, 1]}, "data_dtypes": {"classes": "int32"}})
    ds.init_seq_order(epoch=1)
    assert [ds.get_tag(i) for i in range(8)] == by_len
    np.testing.assert_array_equal(ds.get_data(0, "classes"), align[tags.index(by_len[0])])

    # the lengths file decides instead of the data; the seq list file restricts and partition_epoch splits
    fake = {t: {"data": -i} for i, t in enumerate(tags)}
    (tmp_path / "lens.json").write_text(json.dumps(fake))
    (tmp_path / "list.txt").write_text("\n".join(tags[:6]) + "\n")
    ds = init_dataset({"class": "MetaDataset", "datasets": datasets, "data_map": data_map, "seq_ordering": "sorted",
                       "seq_lens_file": str(tmp_path / "lens.json"), "seq_list_file": str(tmp_path / "list.txt"),
                       "partition_epoch": 2})
    ds.init_seq_order(epoch=1)
    assert [ds.get_tag(i) for i in range(ds.num_seqs)] == tags[5:2:-1]
    ds.init_seq_order(epoch=2)
    assert [ds.get_tag(i) for i in range(ds.num_seqs)] == tags[2::-1]

    with pytest.raises(DatasetError, match=r"data_dims\['classes'\] is \[10, 1\], but the data delivers \[9, 1\]"):
        init_dataset({"class": "MetaDataset", "datasets": datasets, "data_map": data_map, "data_dims": {"classes": (10, 1)}})
    (tmp_path / "lens.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"seq_lens_file .*lens\.json must hold a JSON object tag -> \{key: frames\}"):
        init_dataset({"class": "MetaDataset", "datasets": datasets, "data_map": data_map,
                      "seq_lens_file": str(tmp_path / "lens.json")})


def test_meta_dataset_seq_list_per_dataset(tmp_path) -> None:
    # a pickled dict dataset -> tags, for datasets that name the same seqs differently
    fpath, _, feats, _, tags = _features_and_alignment(tmp_path)
    renamed = str(tmp_path / "renamed.hdf")
    write_returnn_style(renamed, [f[:, :2] for f in feats], tags=[f"other/{i}" for i in range(8)])
    with open(tmp_path / "lists.pkl", "wb") as f:
        pickle.dump({"a": tags[::-1], "b": [f"other/{i}" for i in range(8)][::-1]}, f)
    ds = init_dataset({
        "class": "MetaDataset", "seq_list_file": str(tmp_path / "lists.pkl"),
        "datasets": {"a": {"class": "HDFDataset", "files": [fpath]}, "b": {"class": "HDFDataset", "files": [renamed]}},
        "data_map": {"data": ("a", "data"), "head": ("b", "data")},
    })
    ds.init_seq_order(epoch=1)
    assert ds.get_tag(0) == tags[-1]
    np.testing.assert_array_equal(ds.get_data(0, "head"), feats[-1][:, :2])


def test_combined_dataset_picks_datasets_as_returnn() -> None:
    def build(ordering: str, **extra):
        return init_dataset({
            "class": "CombinedDataset", "seq_ordering": ordering,
            "datasets": {"a": {"class": "DummyDataset", "input_dim": 2, "output_dim": 3, "num_seqs": 3},
                         "b": {"class": "DummyDataset", "input_dim": 2, "output_dim": 3, "num_seqs": 4}},
            "data_map": {("a", "data"): "data", ("b", "data"): "data", ("b", "classes"): "classes"}, **extra,
        })

    def picks(ds, epoch=1):
        ds.init_seq_order(epoch=epoch)
        return [(ds.dataset_of(i), ds.get_tag(i)) for i in range(ds.num_seqs)]

    in_order = picks(build("in-order", data_dims={"data": (2, 2), "classes": (3, 1)}))
    assert in_order == [("a", f"seq-{i}") for i in range(3)] + [("b", f"seq-{i}") for i in range(4)]
    assert picks(build("reversed")) == [("b", f"seq-{i}") for i in range(4)] + [("a", f"seq-{i}") for i in range(3)]
    mixed = picks(build("default"))
    assert sorted(mixed) == sorted(in_order) and mixed != in_order  # random datasets, each in its own order
    for name in "ab":
        assert [t for d, t in mixed if d == name] == sorted(t for d, t in mixed if d == name)
    assert picks(build("default")) == mixed and picks(build("default"), epoch=2) != mixed
    with pytest.raises(DatasetError, match=r"data_dims\['data'\] is \[3, 2\]"):
        build("default", data_dims={"data": (3, 2)})
