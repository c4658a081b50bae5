"""Values that RETURNN's own dataset tests (2017-2019) expect, reached through our public API.

Each test names the RETURNN test whose expectation it asserts; the data and code here are our own.
"""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
from returnn_datasets.generating import DummyDataset, StaticDataset
from returnn_datasets.hdf import HDFDataset, dump_dataset_to_hdf
from returnn_datasets.lm import LmDataset, TranslationDataset
from returnn_datasets.task_12ax import Task12AXDataset

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError


class _Lengths(Dataset):
    """Only an order to compute: ``n`` seqs of lengths ``lens(i)``."""

    def __init__(self, n: int, lens, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n, self.lens = n, lens

    def data_specs(self) -> dict[str, DataSpec]:
        return {"data": DataSpec(1)}

    def _num_total_seqs(self) -> int:
        return self.n

    def _seq_length(self, corpus_idx: int) -> int:
        return int(self.lens(corpus_idx))


def test_num_outputs_pairs_equal_lists_and_tuples() -> None:
    # test_GeneratingDataset.test_init, written against lists in one RETURNN version and tuples in another
    ds = DummyDataset(input_dim=2, output_dim=3, num_seqs=4)
    assert ds.num_inputs == 2 and ds.num_seqs == 4
    assert ds.num_outputs == {"classes": (3, 1), "data": (2, 2)}
    assert ds.num_outputs == {"classes": [3, 1], "data": [2, 2]}
    assert ds.num_outputs != {"classes": (3, 2), "data": (2, 2)}


@pytest.mark.parametrize("ordering", [
    "default", "default_every_n:5", "sorted", "sorted_reverse", "random:3", "laplace:3", "laplace:.10",
    "sort_bin_shuffle:3", "sort_bin_shuffle_x2:.10",
])
def test_every_ordering_is_a_permutation_and_partitions_cover_it(ordering: str) -> None:
    # test_Dataset.test_get_seq_order
    lens = lambda i: i**2 % 17  # noqa: E731
    full = _Lengths(30, lens, seq_ordering=ordering).get_seq_order_for_epoch(3, 30, lens)
    assert sorted(full) == list(range(30))
    parted = _Lengths(30, lens, seq_ordering=ordering, partition_epoch=4)
    parts = [parted.get_seq_order_for_epoch(ep, 30, lens) for ep in range(1, 5)]
    assert [len(p) for p in parts] == [8, 8, 7, 7]
    assert sorted(sum(parts, [])) == list(range(30))


def test_laplace_order_of_the_first_epoch() -> None:
    # test_Dataset.test_get_seq_order_laplace_reference: seed = epoch, ~100 seqs per bin, odd bins longest first
    lens = np.random.RandomState(42).randint(1, 23, size=3023)
    ds = _Lengths(3023, lens.__getitem__, seq_ordering="laplace:.100")
    ds.init_seq_order(epoch=1)
    shuffled = np.random.RandomState(1).permutation(3023).tolist()
    bins = 3023 // 100
    edges = [b * 3023 // bins for b in range(bins + 1)]
    expected = []
    for b in range(bins):
        expected += sorted(shuffled[edges[b] : edges[b + 1]], key=lens.__getitem__, reverse=b % 2 == 1)
    assert ds.epoch_order() == expected


def test_chunk_attributes_and_iterate_seqs() -> None:
    # test_Dataset.test_iterate_seqs_*: RETURNN sets chunk_step and chunk_size one at a time
    ds = DummyDataset(input_dim=2, output_dim=3, num_seqs=2, seq_len=11)
    ds.chunk_step, ds.chunk_size = 0, 0
    ds.init_seq_order(1)
    assert list(ds.iterate_seqs()) == [(0, 0, 11), (1, 0, 11)]
    ds.chunk_step, ds.chunk_size = 5, 10
    assert (ds.chunk_size, ds.chunk_step) == (10, 5)
    expected = [(s, a, b) for s in (0, 1) for a, b in ((0, 10), (5, 11), (10, 11))]
    assert list(ds.iterate_seqs()) == expected
    batches = ds.generate_batches(batch_size=20, max_seqs=1)  # test_batches_recurrent_1: one chunk per batch
    assert [[(s.seq.seq_idx, s.start, s.end) for s in b.slices] for b in batches] == [[c] for c in expected]

    per_key = DummyDataset(input_dim=2, output_dim=3, num_seqs=2, seq_len={"data": 24, "classes": 12})
    per_key.chunk_size = {"data": 12, "classes": 6}
    per_key.chunk_step = {"data": 6, "classes": 3}
    per_key.init_seq_order(1)
    got = list(per_key.iterate_seqs())
    assert len(got) == 8
    assert got[1] == (0, {"data": 6, "classes": 3}, {"data": 18, "classes": 9})
    assert got[3] == (0, {"data": 18, "classes": 9}, {"data": 24, "classes": 12})
    assert got[4] == (1, {"data": 0, "classes": 0}, {"data": 12, "classes": 6})


def test_12ax_window_stacks_zero_padded_neighbours() -> None:
    # test_Dataset.test_task12ax_window
    plain, windowed = Task12AXDataset(num_seqs=10), Task12AXDataset(num_seqs=10, window=3)
    for ds in (plain, windowed):
        ds.initialize()
        ds.init_seq_order(epoch=1)
        ds.load_seqs(0, 1)
    dim = plain.get_data_dim("data")
    assert windowed.get_data_dim("data") == 3 * dim
    x = plain.get_data(0, "data")
    w = windowed.get_data(0, "data").reshape(len(x), 3, dim)
    np.testing.assert_array_equal(w[0, 0], np.zeros(dim))
    np.testing.assert_array_equal(w[0, 1:], x[:2])
    np.testing.assert_array_equal(w[1], x[:3])
    np.testing.assert_array_equal(w[-1, 2], np.zeros(dim))


def test_static_dataset_keys_and_utf8_serialization() -> None:
    # test_GeneratingDataset.test_StaticDataset_custom_keys / _utf8
    ds = StaticDataset([{"source": np.array([1, 2, 3]), "target": np.array([3, 4, 5, 6, 7])}])
    ds.init_seq_order(epoch=1)
    assert ds.get_data_keys() == ["source", "target"]
    assert ds.num_outputs["source"][1] == ds.num_outputs["target"][1] == 1
    assert ds.get_data(0, "target").tolist() == [3, 4, 5, 6, 7]

    raw = np.array(list("wër".encode()), dtype="uint8")
    ds = StaticDataset([{"data": raw}], output_dim={"data": (255, 1)})
    assert not ds.can_serialize_data("data")
    with pytest.raises(DatasetError, match="no labels for 'data'"):
        ds.serialize_data("data", raw)
    ds.labels["data"] = [chr(i) for i in range(255)]  # as RETURNN's Sprint datasets name raw bytes
    ds.init_seq_order(epoch=1)
    assert ds.serialize_data("data", ds.get_data(0, "data")) == "wër"
    words = StaticDataset([{"data": np.array([0, 2])}], output_dim={"data": (3, 1)})
    words.labels = {"data": ["hello", "big", "world"]}
    assert words.serialize_data("data", np.array([0, 2])) == "hello world"


@pytest.mark.parametrize("seq, dims, shapes", [
    # test_HDFDataset: test_hdf_data_short_int_dtype, _target_int32, _target_float_dense
    ({"data": np.array([1, 2, 3], "uint8"), "classes": np.array([-1, 5], "int16")}, {"data": (255, 1), "classes": (10, 1)},
     {"data": [], "classes": []}),
    ({"data": np.array([1, 2, 3], "uint8"), "classes": np.array([2**31 - 1, 2**31 - 2], "int32")},
     {"data": (255, 1), "classes": (10, 1)}, {"data": [], "classes": []}),
    ({"data": np.array([[1, 2, 3], [2, 3, 4]], "float32"), "classes": np.array([[-1, 5], [-2, 4], [-3, 2]], "float32")},
     None, {"data": [3], "classes": [2]}),
])
def test_hdf_round_trip_keeps_dtypes_dims_and_values(tmp_path, seq, dims, shapes) -> None:
    source = StaticDataset([seq], output_dim=dims)
    path = str(tmp_path / "x.hdf")
    dump_dataset_to_hdf(source, path)
    ds = HDFDataset([path])
    ds.initialize()
    ds.init_seq_order(epoch=1)
    ds.load_seqs(0, 1)
    for key, array in seq.items():
        assert ds.get_data_dtype(key) == source.get_data_dtype(key) == array.dtype.name
        assert ds.get_data_dim(key) == source.get_data_dim(key)
        assert ds.get_data_shape(key) == shapes[key]
        got = ds.get_data(0, key)
        assert got.dtype == array.dtype
        np.testing.assert_array_equal(got, array)


def _char_symbols(path, text: str) -> list[str]:
    symbols = ["[END]"]
    for c in text:
        if c != "\n" and c not in symbols:
            symbols.append(c)
    path.write_text("".join(s + "\n" for s in symbols))
    return symbols


def test_lm_dataset_chars_words_and_several_gzipped_files(tmp_path) -> None:
    # test_Dataset.test_LmDataset_char_based / _word_based / _multiple_and_gzipped
    text = "Hello world\nNext line\n"
    (tmp_path / "a.txt").write_text(text)
    _char_symbols(tmp_path / "chars.syms", text)
    ds = LmDataset(str(tmp_path / "a.txt"), orth_symbols_file=str(tmp_path / "chars.syms"))
    ds.init_seq_order(epoch=1)
    ds.load_seqs(0, 2)
    assert ds.get_data(0, "data").tolist() == [1, 2, 3, 3, 4, 5, 6, 4, 7, 3, 8, 0]
    assert ds.get_data(1, "data").tolist() == [9, 2, 10, 11, 5, 3, 12, 13, 2, 0]
    assert not ds.is_less_than_num_seqs(2)

    (tmp_path / "words.syms").write_text("[END]\nHello\nworld\nNext\nline\n")
    words = LmDataset(str(tmp_path / "a.txt"), orth_symbols_file=str(tmp_path / "words.syms"), word_based=True)
    words.init_seq_order(epoch=1)
    assert [words.get_data(i, "data").tolist() for i in range(2)] == [[1, 2, 0], [3, 4, 0]]

    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write(text)
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("Next world\n")
    (tmp_path / "c.txt").write_text("Hello line\n")
    files = [str(tmp_path / n) for n in ("a.txt.gz", "b.txt.gz", "c.txt")]
    several = pickle.loads(pickle.dumps(LmDataset(files, orth_symbols_file=str(tmp_path / "chars.syms"))))
    several.init_seq_order(epoch=1)
    assert several.num_seqs == 4
    assert several.get_data(2, "data").tolist() == [9, 2, 10, 11, 5, 6, 4, 7, 3, 8, 0]
    assert several.get_data(3, "data").tolist() == [1, 2, 3, 3, 4, 5, 3, 12, 13, 2, 0]


@pytest.mark.parametrize("postfix", ["", " </S>"])
def test_translation_dataset_unknown_label_per_side(tmp_path, postfix: str) -> None:
    # test_TranslationDataset.test_translation_dataset: unknown_label={"classes": "<UNK>"}
    source, target = "a b c\nc b\n", "x y\ny rare z\n"
    with gzip.open(tmp_path / "source.test.gz", "wt") as f:
        f.write(source)
    (tmp_path / "target.test").write_text(target)
    src_vocab = {w: i for i, w in enumerate(["a", "b", "c", "</S>"])}
    tgt_vocab = {w: i for i, w in enumerate(["x", "y", "z", "<UNK>", "</S>"])}
    for side, vocab in (("source", src_vocab), ("target", tgt_vocab)):
        with open(tmp_path / f"{side}.vocab.pkl", "wb") as f:
            pickle.dump(vocab, f)
    ds = TranslationDataset(path=str(tmp_path), file_postfix="test", source_postfix=postfix, target_postfix=postfix,
                            unknown_label={"classes": "<UNK>"})
    ds.init_seq_order(epoch=1)
    ds.load_seqs(0, 10)  # RETURNN's test loads past the end
    assert ds.num_seqs == 2
    tail = [4] if postfix else []
    assert ds.get_data(1, "data").tolist() == [2, 1] + ([3] if postfix else [])
    assert ds.get_data(1, "classes").tolist() == [1, 3, 2] + tail
    (tmp_path / "source.test2").write_text("a q\n")
    (tmp_path / "target.test2").write_text("x\n")
    with pytest.raises(DatasetError, match=r"\(source\): .*source.test2:1: symbol 'q' is not in the vocabulary"):
        TranslationDataset(path=str(tmp_path), file_postfix="test2", unknown_label={"classes": "<UNK>"})
    with pytest.raises(DatasetError, match=r"unknown_label has keys \['target'\]"):
        TranslationDataset(path=str(tmp_path), file_postfix="test", unknown_label={"target": "<UNK>"})


def _drain(batch_gen) -> list:
    """RETURNN's loop over a BatchSetGenerator: peek one, keep it, advance."""
    out = []
    while batch_gen.has_more():
        (batch,) = batch_gen.peek_next_n(1)
        out.append(batch)
        batch_gen.advance(1)
    assert batch_gen.peek_next_n(1) == []
    return out


def _parts(batch) -> list[tuple]:
    return [(p.seq_idx, p.seq_start_frame, p.seq_end_frame, p.frame_length, p.batch_slice, p.batch_frame_offset)
            for p in batch.seqs]


def test_recurrent_batches_through_the_batch_set_generator() -> None:
    # test_Dataset.test_batches_recurrent_1: chunks 10:5 of two 11-frame seqs, one per batch
    ds = DummyDataset(input_dim=2, output_dim=3, num_seqs=2, seq_len=11)
    ds.init_seq_order(1)
    ds.chunk_size, ds.chunk_step = 10, 5
    batches = _drain(ds.generate_batches(recurrent_net=True, max_seqs=1, batch_size=20))
    assert [(b.start_seq, b.end_seq) for b in batches] == [(0, 1)] * 3 + [(1, 2)] * 3
    assert [_parts(b) for b in batches[:4]] == [
        [(0, 0, 10, 10, 0, 0)], [(0, 5, 11, 6, 0, 0)], [(0, 10, 11, 1, 0, 0)], [(1, 0, 10, 10, 0, 0)]]


def test_non_recurrent_batches_through_the_batch_set_generator() -> None:
    # test_Dataset.test_batches_non_recurrent_1: 2 x 11 frames joined into rows of 5
    ds = DummyDataset(input_dim=2, output_dim=3, num_seqs=2, seq_len=11)
    ds.init_seq_order(1)
    batches = _drain(ds.generate_batches(recurrent_net=False, max_seqs=2, batch_size=5))
    assert [(b.start_seq, b.end_seq) for b in batches] == [(0, 1), (0, 1), (0, 2), (1, 2), (1, 2)]
    assert _parts(batches[2]) == [(0, 10, 11, 1, 0, 0), (1, 0, 4, 4, 0, 1)]
    assert _parts(batches[4]) == [(1, 9, 11, 2, 0, 0)]


def test_context_window_batches_through_the_batch_set_generator() -> None:
    # test_Dataset.test_batches_context_window: window 2 adds 0 frames before and 1 after each chunk of data
    ds = DummyDataset(input_dim=2, output_dim=3, num_seqs=1, seq_len=11, context_window=2)
    ds.init_seq_order(1)
    ds.chunk_size, ds.chunk_step = 5, 5
    batches = _drain(ds.generate_batches(recurrent_net=True, max_seqs=1, batch_size=20))
    assert len(batches) == 3
    last = batches[2].seqs[0]
    assert last.seq_start_frame == {"data": 10, "classes": 10} and last.seq_end_frame == {"data": 12, "classes": 11}
    assert last.frame_length == {"data": 2, "classes": 1} and (last.batch_slice, last.batch_frame_offset) == (0, 0)
    with pytest.raises(IndexError, match=r"advance\(4\): the epoch has 1 batch\(es\) left"):
        ds.generate_batches(batch_size=20).advance(4)
