"""HDFDataset and HDFWriter on real HDF5 files: RETURNN layouts, several files, bad files, bounded cache."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from ds_hdf_files import write_old_style, write_returnn_style
from returnn_datasets.hdf import HDFDataset, HDFWriter, dump_dataset_to_hdf
from returnn_datasets.task_12ax import Task12AXDataset

from returnn_core.datasets import init_dataset
from returnn_core.errors import ConfigError, DatasetError


def _corpus(n: int, dim: int = 4, seed: int = 0):
    rng = np.random.RandomState(seed)
    lens = rng.randint(1, 30, size=n)
    inputs = [rng.randn(t, dim).astype("float32") for t in lens]
    classes = [rng.randint(0, 7, size=t).astype("int32") for t in lens]
    # a stream of its own length (e.g. an orthography), sparse
    words = [rng.randint(0, 50, size=rng.randint(1, 6)).astype("int32") for _ in lens]
    return inputs, classes, words


def test_reads_returnn_writer_layout(tmp_path, manager) -> None:
    inputs, classes, words = _corpus(12)
    path = str(tmp_path / "a.hdf")
    write_returnn_style(
        path, inputs, {"classes": classes, "words": words}, sizes={"classes": (7, 1), "words": (50, 1)},
        target_labels={"classes": list("abcdefg")},
    )
    ds = init_dataset(path, manager=manager)  # "a.hdf" string form
    assert isinstance(ds, HDFDataset)
    assert ds.num_outputs == {"data": [4, 2], "classes": [7, 1], "words": [50, 1]}
    assert ds.data_specs()["classes"].labels == tuple("abcdefg")
    assert ds.data_specs()["words"].labels is None  # "dummy-label" placeholder is not a label list
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 12
    for i in range(12):
        seq = ds.get_seq(i)
        assert seq.tag == f"corpus/seq{i}"
        np.testing.assert_array_equal(seq.features["data"], inputs[i])
        np.testing.assert_array_equal(seq.features["classes"], classes[i])
        np.testing.assert_array_equal(seq.features["words"], words[i])


def test_reads_old_style_file(tmp_path) -> None:
    inputs, classes, _ = _corpus(5, dim=3)
    path = str(tmp_path / "old.hdf")
    write_old_style(path, inputs, classes, [f"s{i}" for i in range(5)], 7, list("ABCDEFG"))
    ds = HDFDataset([path])
    assert ds.num_outputs == {"data": [3, 2], "classes": [7, 1]}
    assert ds.data_specs()["classes"].labels == tuple("ABCDEFG")
    ds.init_seq_order(epoch=1, seq_list=["s3", "s0"])
    assert [ds.get_tag(i) for i in range(2)] == ["s3", "s0"]
    np.testing.assert_array_equal(ds.get_data(0, "classes"), classes[3])
    np.testing.assert_array_equal(ds.get_data(1, "data"), inputs[0])


@pytest.mark.parametrize(
    "stored, expected",
    [  # variable-length UTF-8, a bad byte replaced; fixed-width, where a tag ends at its first NUL
        (np.array([b"caf\xc3\xa9/1", b"plain", b"\xff"], dtype=h5py.special_dtype(vlen=bytes)), ["café/1", "plain", "\ufffd"]),
        (np.array([b"caf\xc3\xa9/1", b"a\0junk", b"b"], dtype="S16"), ["café/1", "a", "b"]),
    ],
)
def test_tags_decoded_as_utf8_up_to_nul(tmp_path, stored, expected) -> None:
    inputs, _, _ = _corpus(3)
    path = str(tmp_path / "tags.hdf")
    write_returnn_style(path, inputs)
    with h5py.File(path, "a") as f:
        del f["seqTags"]
        f.create_dataset("seqTags", data=stored)
    ds = HDFDataset(path)
    assert ds.get_all_tags() == expected
    ds.init_seq_order(epoch=1, seq_list=[expected[2], expected[0]])
    np.testing.assert_array_equal(ds.get_data(1, "data"), inputs[0])


def test_sparse_inputs(tmp_path) -> None:
    rng = np.random.RandomState(1)
    inputs = [rng.randint(0, 11, size=t).astype("int32") for t in (3, 5, 2)]
    path = str(tmp_path / "sparse.hdf")
    write_returnn_style(path, inputs, {"classes": inputs}, sparse_dim=11, sizes={"classes": (11, 1)})
    ds = HDFDataset(path)
    assert ds.num_outputs == {"data": [11, 1], "classes": [11, 1]}
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(1, "data"), inputs[1])


def test_several_files_order_partition_and_tags(tmp_path) -> None:
    paths, all_inputs = [], []
    for k in range(3):
        inputs, classes, _ = _corpus(7, seed=k)
        p = str(tmp_path / f"part{k}.hdf")
        write_returnn_style(p, inputs, {"classes": classes}, tags=[f"f{k}/s{i}" for i in range(7)], sizes={"classes": (7, 1)})
        paths.append(p)
        all_inputs += inputs
    ds = HDFDataset(paths, partition_epoch=3, seq_ordering="sorted")
    assert ds.get_total_num_seqs() == 21
    seen = []
    for epoch in (1, 2, 3):
        ds.init_seq_order(epoch=epoch)
        seen += [ds.corpus_index(i) for i in range(ds.num_seqs)]
        for i in range(ds.num_seqs):
            np.testing.assert_array_equal(ds.get_data(i, "data"), all_inputs[ds.corpus_index(i)])
    assert sorted(seen) == list(range(21))
    lens = [len(all_inputs[i]) for i in seen]
    assert lens == sorted(lens)
    ds.init_seq_order(epoch=1, seq_list=["f2/s6", "f0/s0", "f1/s3"])
    np.testing.assert_array_equal(ds.get_data(0, "data"), all_inputs[20])
    np.testing.assert_array_equal(ds.get_data(2, "data"), all_inputs[10])
    with pytest.raises(DatasetError, match="f9/s1"):
        ds.init_seq_order(epoch=1, seq_list=["f9/s1"])
    assert ds.get_all_tags()[7] == "f1/s0"


@pytest.mark.parametrize("ordering", ["default", "random", "sorted_reverse"])
def test_cache_stays_within_budget_and_data_matches(tmp_path, ordering) -> None:
    inputs, classes, _ = _corpus(200, dim=16, seed=3)
    path = str(tmp_path / "big.hdf")
    write_returnn_style(path, inputs, {"classes": classes}, sizes={"classes": (7, 1)})
    budget = 8 * 1024  # a handful of seqs
    ds = HDFDataset(path, cache_size=budget, seq_ordering=ordering)
    ds.init_seq_order(epoch=2)
    largest = max(x.nbytes + y.nbytes for x, y in zip(inputs, classes))
    peak = 0
    for i in range(ds.num_seqs):
        seq = ds.get_seq(i)
        np.testing.assert_array_equal(seq.features["data"], inputs[ds.corpus_index(i)])
        peak = max(peak, ds.cached_bytes)
    assert 0 < peak <= budget + largest
    uncached = HDFDataset(path, cache_size=0)
    uncached.init_seq_order(epoch=1)
    np.testing.assert_array_equal(uncached.get_data(5, "classes"), classes[5])
    assert uncached.cached_bytes == 0


def test_batches_from_hdf(tmp_path) -> None:
    inputs, classes, _ = _corpus(30, seed=4)
    path = str(tmp_path / "b.hdf")
    write_returnn_style(path, inputs, {"classes": classes}, sizes={"classes": (7, 1)})
    ds = HDFDataset(path, chunking="10:5")
    ds.init_seq_order(epoch=1)
    total = 0
    for batch in ds.generate_batches(batch_size=100, max_seqs=8):
        bd = batch.to_data(ds.output_specs())
        assert bd.data["data"].dtype == np.float32 and bd.data["classes"].dtype == np.int32
        assert bd.data["data"].shape[1] <= 10
        total += bd.num_seqs
    assert total >= 30


def test_writer_roundtrip_layout(tmp_path) -> None:
    src = Task12AXDataset(num_seqs=25, fixed_random_seed=2)
    path = str(tmp_path / "12ax.hdf")
    assert dump_dataset_to_hdf(src, path) == 25
    with h5py.File(path, "r") as f:
        assert f["inputs"].shape[1] == 9 and f["inputs"].dtype == np.float32
        assert f["seqLengths"].shape == (25, 2) and f["seqLengths"].dtype == np.int32
        assert f.attrs["numSeqs"] == 25 and f.attrs["inputPattSize"] == 9
        assert f.attrs["numTimesteps"] == f["inputs"].shape[0] == f["seqLengths"][:, 0].sum()
        assert list(f["targets/size"].attrs["classes"]) == [2, 1]
        assert [x.decode() for x in f["targets/labels/classes"][...]] == ["L", "R"]
        assert [x.decode() for x in f["labels"][...]] == list("123ABCXYZ")  # root labels name the inputs
    back = HDFDataset(path)
    src.init_seq_order(epoch=1)
    back.init_seq_order(epoch=1)
    assert back.num_outputs == src.num_outputs
    assert back.data_specs()["classes"].labels == ("L", "R")
    assert back.data_specs()["data"].labels == tuple("123ABCXYZ")
    for i in range(25):
        a, b = src.get_seq(i), back.get_seq(i)
        assert a.tag == b.tag
        for key in ("data", "classes"):
            np.testing.assert_array_equal(a.features[key], b.features[key])


def test_output_writer_protocol_and_atomicity(tmp_path, manager) -> None:
    from returnn_core.engine.output import OutputWriter

    writer_cls = manager.output_writers.get("hdf")
    path = tmp_path / "fwd.hdf"
    writer = writer_cls(str(path), dim=3, sparse=False)
    assert isinstance(writer, OutputWriter)
    out = np.arange(2 * 5 * 3, dtype="float32").reshape(2, 5, 3)
    writer.write_batch(out, np.array([5, 2]), ["x", "y"])
    assert not path.exists()  # nothing at the path before close
    writer.close()
    ds = HDFDataset(str(path))
    assert ds.data_keys == ["data"]
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(1, "data"), out[1, :2])
    with h5py.File(path) as f:
        assert f["seqLengths"].shape == (2, 2)  # RETURNN's reader expects a 'classes' column

    aborted = tmp_path / "aborted.hdf"
    w = writer_cls(str(aborted), dim=2, sparse=True)
    w.write_batch(np.zeros((1, 4), dtype="int32"), np.array([4]), ["z"])
    w.abort()
    with pytest.raises(RuntimeError), HDFWriter(str(tmp_path / "err.hdf"), dim=2) as w2:
        w2.write_seq("a", np.zeros((3, 2)))
        raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["fwd.hdf"]


def test_writer_rejects_wrong_shapes(tmp_path) -> None:
    with HDFWriter(str(tmp_path / "w.hdf"), dim=4, targets={}) as w:
        with pytest.raises(DatasetError, match="shape"):
            w.write_seq("a", np.zeros((3, 5)))
        w.write_seq("b", np.zeros((3, 4)))
    with pytest.raises(DatasetError, match="does not exist"):
        HDFWriter(str(tmp_path / "nodir" / "x.hdf"), dim=1)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(DatasetError, match="missing.hdf does not exist"):
        HDFDataset(str(tmp_path / "missing.hdf"))
    garbage = tmp_path / "garbage.hdf"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DatasetError, match="garbage.hdf cannot be opened"):
        HDFDataset(str(garbage))
    with h5py.File(tmp_path / "nolen.hdf", "w") as f:
        f.create_dataset("inputs", data=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match="nolen.hdf has no 'seqLengths'"):
        HDFDataset(str(tmp_path / "nolen.hdf"))
    inputs, classes, _ = _corpus(4, dim=2)
    bad = str(tmp_path / "short.hdf")
    write_returnn_style(bad, inputs, {"classes": classes})
    with h5py.File(bad, "r+") as f:
        f["seqLengths"][0, 0] += 5
    with pytest.raises(DatasetError, match="short.hdf is corrupt"):
        HDFDataset(bad)
    a, b = str(tmp_path / "dim2.hdf"), str(tmp_path / "dim3.hdf")
    write_returnn_style(a, inputs)
    write_returnn_style(b, _corpus(4, dim=3)[0])
    with pytest.raises(DatasetError, match=r"dim3.hdf has 'data' with dim 3.*dim2.hdf has dim 2"):
        HDFDataset([a, b])
    with pytest.raises(DatasetError, match="no HDF files"):
        HDFDataset([])
    with HDFWriter(str(tmp_path / "empty.hdf"), dim=2):
        pass
    with pytest.raises(DatasetError, match="hold no seqs"):
        HDFDataset(str(tmp_path / "empty.hdf"))
    with pytest.raises(ConfigError, match="cache_size"):
        HDFDataset(a, cache_size="lots")


def test_read_ahead_reads_consecutive_seqs_in_few_calls(tmp_path, monkeypatch) -> None:
    from returnn_datasets.hdf import reader

    inputs, classes, _ = _corpus(300, dim=8, seed=5)
    path = str(tmp_path / "ahead.hdf")
    write_returnn_style(path, inputs, {"classes": classes}, sizes={"classes": (7, 1)})
    calls = []
    original = reader.HDFFile.read

    def counting_read(self, keys, start, end):
        calls.append((start, end))
        return original(self, keys, start, end)

    monkeypatch.setattr(reader.HDFFile, "read", counting_read)
    ds = HDFDataset(path, partition_epoch=2)
    for epoch in (1, 2):
        ds.init_seq_order(epoch=epoch)
        for i in range(ds.num_seqs):
            np.testing.assert_array_equal(ds.get_data(i, "data"), inputs[ds.corpus_index(i)])
            assert 0 <= ds.cached_bytes <= ds.cache_size
    assert len(calls) <= 4  # one block per sub-epoch (and file), not one read per seq
    covered = sorted(s for a, b in calls for s in range(a, b))
    assert covered == list(range(300))  # nothing read twice

    calls.clear()
    rand = HDFDataset(path, seq_ordering="random", cache_size="1M")
    rand.init_seq_order(epoch=1)
    for i in range(rand.num_seqs):
        rand.get_seq(i)
        rand.get_seq(max(i - 3, 0))  # revisiting a recent seq hits the cache
    assert sorted(s for a, b in calls for s in range(a, b)) == list(range(300))  # each seq read exactly once


def _write_chunked(path: str, inputs, classes, chunk_rows: int, **filters) -> None:
    """RETURNN's layout in small chunks, the two streams appended in turn, so that a stream's chunks are not
    back to back in the file and seqs cross from one stored run to the next."""
    dim = inputs[0].shape[1]
    with h5py.File(path, "w", rdcc_nbytes=0) as f:  # no chunk cache: each chunk gets its place when first written
        x = f.create_dataset("inputs", (0, dim), maxshape=(None, dim), chunks=(chunk_rows, dim), dtype="float32", **filters)
        y = f.create_group("targets/data").create_dataset(
            "classes", (0,), maxshape=(None,), chunks=(chunk_rows,), dtype="int32", **filters
        )
        f.create_group("targets/size").attrs["classes"] = [7, 1]
        for a, b in zip(inputs, classes):
            for ds, arr in ((x, a), (y, b)):
                ds.resize(ds.shape[0] + len(arr), axis=0)
                ds[-len(arr) :] = arr
        f.create_dataset("seqLengths", data=np.array([[len(a), len(b)] for a, b in zip(inputs, classes)], dtype="int32"))
        f.create_dataset("seqTags", data=np.array([f"s{i}".encode() for i in range(len(inputs))], dtype="S8"))


@pytest.mark.parametrize("layout", ["contiguous", "chunked", "chunked-on-disk", "gzip"])
def test_batches_built_from_mapped_seqs_equal_the_h5py_read(tmp_path, monkeypatch, layout) -> None:
    """Padded batches filled straight from the mapped file (or, for bytes not in RAM, one pread per block)
    hold what reading through h5py and padding gives."""
    from returnn_datasets.hdf import extents, reader

    if layout == "chunked-on-disk":  # as if the page cache did not hold the file: every block is read with pread
        monkeypatch.setattr(extents, "_resident", lambda m: False)
    inputs, classes, _ = _corpus(120, dim=5, seed=7)
    path = str(tmp_path / f"{layout}.hdf")
    if layout == "contiguous":
        write_returnn_style(path, inputs, {"classes": classes}, sizes={"classes": (7, 1)})
    else:
        _write_chunked(path, inputs, classes, chunk_rows=37, **({"compression": "gzip"} if layout == "gzip" else {}))
    layout = layout.replace("-on-disk", "")
    with h5py.File(path, "r") as f:
        runs = extents.row_extents(f["inputs"])
        reference = {"data": f["inputs"][...], "classes": f["targets/data/classes"][...]}
    assert (runs is None) == (layout == "gzip")  # compressed chunks are read through HDF5
    if layout == "chunked":
        assert len(runs.offsets) > 10  # the runs are broken up, so some seqs straddle two of them

    def batches(ds: HDFDataset) -> list:
        ds.init_seq_order(epoch=1)
        return [b.to_data(ds.output_specs()) for b in ds.generate_batches(batch_size=90, max_seqs=6)]

    mapped_ds = HDFDataset(path, cache_size="2k")  # small blocks: many reads, each crossing runs
    new = batches(mapped_ds)
    assert mapped_ds.files[0].mapped(["data", "classes"]) == (layout != "gzip")
    monkeypatch.setattr(reader, "row_extents", lambda ds: None)  # the h5py read, as before mapping
    old = batches(HDFDataset(path, cache_size="2k"))
    assert len(new) == len(old) > 10
    starts = np.cumsum([0] + [len(x) for x in inputs])
    for a, b in zip(new, old):
        assert a.tags == b.tags
        for key in ("data", "classes"):
            assert a.data[key].dtype == b.data[key].dtype == (np.float32 if key == "data" else np.int32)
            np.testing.assert_array_equal(a.data[key], b.data[key])
            np.testing.assert_array_equal(a.seq_lens[key], b.seq_lens[key])
        for row, idx in enumerate(a.seq_idx):  # and both hold the file's frames, zero-padded
            t = len(inputs[idx])
            np.testing.assert_array_equal(a.data["data"][row, :t], reference["data"][starts[idx] : starts[idx] + t])
            assert not a.data["data"][row, t:].any()
