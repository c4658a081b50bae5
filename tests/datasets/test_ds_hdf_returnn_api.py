"""RETURNN's HDF behaviours: SimpleHDFWriter (extend_existing_file, axes of variable size) and a picklable HDFDataset."""

from __future__ import annotations

import copy
import pickle

import h5py
import numpy as np
import pytest
from returnn_datasets.hdf import HDFDataset, HDFWriter, SimpleHDFWriter

from returnn_core.datasets import DataSpec
from returnn_core.errors import DatasetError


def _write(path, seqs, **kw):
    with HDFWriter(path, dim=3, targets={"classes": DataSpec(5, sparse=True)}, **kw) as w:
        for tag, x, y in seqs:
            w.write_seq(tag, x, {"classes": y})


def _seqs(prefix, lens, seed):
    rng = np.random.RandomState(seed)
    return [(f"{prefix}{i}", rng.randn(t, 3).astype("float32"), rng.randint(0, 5, t)) for i, t in enumerate(lens)]


def _read(path):
    ds = HDFDataset(files=[str(path)])
    ds.init_seq_order(epoch=1)
    return ds, [ds.get_seq(i) for i in range(ds.num_seqs)]


def test_extend_existing_file(tmp_path) -> None:
    path = tmp_path / "out.hdf"
    first, second = _seqs("a", [4, 2], 0), _seqs("b", [3], 1)
    _write(path, first)
    _write(path, second, extend_existing_file=True)
    ds, got = _read(path)
    assert [s.tag for s in got] == ["a0", "a1", "b0"]
    for seq, (_, x, y) in zip(got, first + second):
        np.testing.assert_array_equal(seq.features["data"], x)
        np.testing.assert_array_equal(seq.features["classes"], y)
    with h5py.File(path, "r") as f:
        assert f.attrs["numSeqs"] == 3 and f.attrs["numTimesteps"] == 9
        assert f["seqLengths"][...].tolist() == [[4, 4], [2, 2], [3, 3]]
    ds.close()
    with pytest.raises(DatasetError, match="extend_existing_file is set, but .*missing.hdf does not exist"):
        _write(tmp_path / "missing.hdf", second, extend_existing_file=True)
    with pytest.raises(DatasetError, match=r"cannot extend .*targets \['classes'\].*opened for \[\]"):
        HDFWriter(path, dim=3, extend_existing_file=True)


def test_simple_writer_variable_dims_with_sizes(tmp_path) -> None:
    path = tmp_path / "2d.hdf"
    inputs = np.arange(2 * 3 * 4, dtype="int32").reshape(2, 3, 4)  # (batch, time1, time2), padded
    writer = SimpleHDFWriter(path, dim=None, ndim=2)
    writer.insert_batch(inputs, seq_len={0: [3, 2], 1: [4, 1]}, seq_tag=["s0", "s1"])
    writer.close()
    with h5py.File(path, "r") as f:  # RETURNN's layout: flattened sparse inputs, per-seq axis lengths in "sizes"
        assert f["inputs"][...].tolist() == inputs[0].reshape(-1).tolist() + [12, 16]
        assert f["targets/data/sizes"][...].tolist() == [3, 4, 2, 1]
        assert f["seqLengths"][...].tolist() == [[12, 2], [2, 2]]
        assert f["targets/size"].attrs["sizes"].tolist() == [1, 1]
    ds, got = _read(path)
    assert got[1].features["data"].tolist() == [12, 16] and got[1].features["sizes"].tolist() == [2, 1]
    with pytest.raises(DatasetError, match="exists; set extend_existing_file=True"):
        SimpleHDFWriter(path, dim=None, ndim=2)
    more = SimpleHDFWriter(path, dim=None, ndim=2, extend_existing_file=True)
    more.insert_batch(inputs[:1], seq_len={0: [1], 1: [2]}, seq_tag=["s2"])
    more.close()
    assert [s.features["sizes"].tolist() for s in _read(path)[1]] == [[3, 4], [2, 1], [1, 2]]


def test_simple_writer_dense_with_extra(tmp_path) -> None:
    path = tmp_path / "dense.hdf"
    x = np.random.RandomState(0).randn(2, 5, 3).astype("float32")
    with SimpleHDFWriter(path, dim=3) as w:
        w.insert_batch(x, seq_len=[5, 2], seq_tag=["u", "v"], extra={"classes": np.array([[1, 2], [3, 4]], "int32")})
    ds, got = _read(path)
    np.testing.assert_array_equal(got[1].features["data"], x[1, :2])
    assert got[1].features["classes"].tolist() == [3, 4] and ds.data_specs()["classes"].sparse
    with pytest.raises(DatasetError, match="feature dim 4, the writer was opened with dim 3"):
        SimpleHDFWriter(tmp_path / "bad.hdf", dim=3).insert_batch(np.zeros((1, 2, 4)), [2], ["t"])


@pytest.mark.parametrize("clone", [lambda ds: pickle.loads(pickle.dumps(ds)), copy.deepcopy])
def test_hdf_dataset_pickles_and_reopens_lazily(tmp_path, clone) -> None:
    path = tmp_path / "p.hdf"
    seqs = _seqs("p", [3, 5], 2)
    _write(path, seqs)
    ds, _ = _read(path)
    twin = clone(ds)
    assert all(f.h5 is None for f in twin.files)  # nothing open until the first read
    twin.init_seq_order(epoch=1)
    np.testing.assert_array_equal(twin.get_seq(1).features["data"], seqs[1][1])
    assert twin.get_tag(0) == "p0" and ds.files[0].h5 is not twin.files[0].h5
    ds.close()
    np.testing.assert_array_equal(twin.get_seq(0).features["classes"], seqs[0][2])
    twin.init_seq_order(epoch=2, seq_list=["p1"])
    assert twin.num_seqs == 1 and twin.get_tag(0) == "p1"
