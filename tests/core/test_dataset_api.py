"""The core Dataset API: orderings, partitioning, windowing, chunking and batches against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from returnn_core.config import Config
from returnn_core.datasets import Dataset, DataSpec, ExternData, generate_batches, init_dataset, seq_order
from returnn_core.datasets.factory import parse_dataset_str
from returnn_core.errors import ConfigError, DatasetError, UnknownNameError

LENS = [5, 3, 8, 2, 6, 4]


class LenDataset(Dataset):
    """Seq i has LENS[i] frames; frame t of seq i holds the value 100*i + t (dim 1); classes = t % 2."""

    def __init__(self, lens=LENS, **kwargs):
        super().__init__(**kwargs)
        self.lens = lens

    def data_specs(self):
        return {"data": DataSpec(1), "classes": DataSpec(2, sparse=True)}

    def _num_total_seqs(self):
        return len(self.lens)

    def _seq_length(self, i):
        return self.lens[i]

    def _seq_tag(self, i):
        return f"s{i}"

    def _load_seq(self, i):
        t = np.arange(self.lens[i])
        return {"data": (100 * i + t).astype("float32")[:, None], "classes": (t % 2).astype("int32")}


def order(ds, epoch=1):
    ds.init_seq_order(epoch)
    return [ds.corpus_index(i) for i in range(ds.num_seqs)]


def test_basic_orderings():
    assert order(LenDataset()) == [0, 1, 2, 3, 4, 5]
    assert order(LenDataset(seq_ordering="reverse")) == [5, 4, 3, 2, 1, 0]
    assert order(LenDataset(seq_ordering="sorted")) == [3, 1, 5, 0, 4, 2]
    assert order(LenDataset(seq_ordering="sorted_reverse")) == [2, 4, 0, 5, 1, 3]


def test_random_orderings_are_permutations_deterministic_per_epoch():
    ds = LenDataset(seq_ordering="random")
    e1, e1_again, e2 = order(ds, 1), order(ds, 1), order(ds, 2)
    assert sorted(e1) == list(range(6)) and e1 == e1_again and e1 != e2
    every2 = LenDataset(seq_ordering="random:2")  # RETURNN: the order stays for 2 epochs
    assert order(every2, 1) == order(every2, 2) == e1 != order(every2, 3) == e2
    fixed = LenDataset(seq_ordering="random", fixed_random_seed=3)
    assert order(fixed, 1) == order(fixed, 2)


def test_laplace_and_sort_bin_shuffle_sort_within_bins():
    lens = list(range(100, 0, -1))
    lap = seq_order("laplace:4", 100, lambda i: lens[i], seed=1)
    assert sorted(lap) == list(range(100))
    for b in range(4):
        part = [lens[i] for i in lap[b * 25 : (b + 1) * 25]]
        assert part == sorted(part, reverse=b % 2 == 1)  # alternating direction per bin
    sbs = seq_order("sort_bin_shuffle:.25", 100, lambda i: lens[i], seed=1)
    bins = [sorted(lens[i] for i in sbs[b * 25 : (b + 1) * 25]) for b in range(4)]
    assert sorted(bins) == [list(range(1 + 25 * k, 26 + 25 * k)) for k in range(4)]  # bins of consecutive lengths
    assert sbs != sorted(range(100), key=lambda i: lens[i])
    with pytest.raises(ConfigError, match="unknown seq_ordering 'bogus'"):
        seq_order("bogus", 3, None, 1)


def test_default_every_n_and_partition_sizes_as_returnn():
    # RETURNN: 30 seqs in 4 sub-epochs are 8, 8, 7, 7 (the remainder goes to the first parts)
    ds = LenDataset(lens=[1] * 30, partition_epoch=4)
    assert ds.num_seqs == 8  # known before init_seq_order
    parts = [order(ds, e) for e in (1, 2, 3, 4)]
    assert [len(p) for p in parts] == [8, 8, 7, 7] and sum(parts, []) == list(range(30))
    # default_every_n:5 over 30 seqs: 5 streams of 6 consecutive seqs, interleaved
    assert seq_order("default_every_n:5", 30, None, 1)[:12] == [0, 6, 12, 18, 24, 1, 7, 13, 19, 25, 2, 8]
    assert sorted(seq_order("default_every_n:5", 32, None, 1)) == list(range(30))  # the remainder is dropped
    with pytest.raises(ConfigError, match="default_every_n:x"):
        seq_order("default_every_n:x", 3, None, 1)


def test_partition_epoch_splits_one_full_epoch():
    ds = LenDataset(seq_ordering="random", partition_epoch=3)
    parts = [order(ds, e) for e in (1, 2, 3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert sorted(sum(parts, [])) == list(range(6))  # together the sub-epochs cover the corpus once
    assert sorted(sum([order(ds, e) for e in (4, 5, 6)], [])) == list(range(6))


def test_seq_list_and_unknown_tag():
    ds = LenDataset()
    ds.init_seq_order(1, seq_list=["s4", "s0"])
    assert [ds.get_tag(i) for i in range(ds.num_seqs)] == ["s4", "s0"]
    with pytest.raises(DatasetError, match="seq tag.*not found: s9"):
        ds.init_seq_order(1, seq_list=["s9"])


def test_window_concatenates_neighbour_frames():
    ds = LenDataset(window=3)
    ds.init_seq_order(1)
    x = ds.get_data(1, "data")  # seq 1: values 100, 101, 102
    assert x.tolist() == [[0, 100, 101], [100, 101, 102], [101, 102, 0]]
    assert ds.num_outputs == {"data": [3, 2], "classes": [2, 1]}


def batches_of(ds, **kw):
    ds.init_seq_order(1)
    return [[(s.seq.tag, s.start, s.end) for s in b.slices] for b in ds.generate_batches(**kw)]


def test_batches_bounded_by_padded_frames_and_max_seqs():
    # lens 5,3,8,2,6,4 with batch_size 16: [5,3] -> 2*5=10 ok, +8 -> 3*8=24 > 16 -> new; [8] +2 -> 16 ok,
    # +6 -> 3*8 > 16 -> new; [6,4] -> 12
    assert batches_of(LenDataset(), batch_size=16) == [
        [("s0", 0, 5), ("s1", 0, 3)], [("s2", 0, 8), ("s3", 0, 2)], [("s4", 0, 6), ("s5", 0, 4)]]
    assert [len(b) for b in batches_of(LenDataset(), batch_size=1000, max_seqs=4)] == [4, 2]
    # a single seq longer than batch_size still forms its own batch
    assert batches_of(LenDataset(lens=[10, 2]), batch_size=4) == [[("s0", 0, 10)], [("s1", 0, 2)]]
    # max_seq_length drops longer seqs
    assert batches_of(LenDataset(), batch_size=1000, max_seq_length=5) == [
        [("s0", 0, 5), ("s1", 0, 3), ("s3", 0, 2), ("s5", 0, 4)]]


def test_chunking_size_step():
    # seq of 8 frames, chunks of 3 every 2: [0,3) [2,5) [4,7) [6,8)
    got = batches_of(LenDataset(lens=[8]), batch_size=1000, chunking="3:2")
    assert got == [[("s0", 0, 3), ("s0", 2, 5), ("s0", 4, 7), ("s0", 6, 8)]]
    got = batches_of(LenDataset(lens=[5, 2], chunking="2:2"), batch_size=4)
    assert got == [[("s0", 0, 2), ("s0", 2, 4)], [("s0", 4, 5), ("s1", 0, 2)]]
    with pytest.raises(ConfigError, match="expected 'size:step'"):
        batches_of(LenDataset(), batch_size=10, chunking="a:b")


def test_batch_padding_and_lengths():
    ds = LenDataset()
    ds.init_seq_order(1)
    batch = next(ds.generate_batches(batch_size=100, max_seqs=2, chunking="4:4"))
    data = batch.to_data(ExternData({"data": DataSpec(1), "classes": DataSpec(2, sparse=True)}))
    assert data.data["data"].shape == (2, 4, 1) and data.data["data"].dtype == np.float32
    assert data.seq_lens["data"].tolist() == [4, 1] and data.data["classes"].dtype == np.int32
    assert data.data["data"][1, :, 0].tolist() == [4, 0, 0, 0]  # chunk [4,5) of seq 0, zero padded
    assert data.tags == ["s0", "s0"] and data.num_frames("data") == 5


def test_generate_batches_on_a_stream():
    from returnn_core.datasets import DatasetSeq

    seqs = (DatasetSeq(i, f"t{i}", {"data": np.zeros((n, 2), "float32")}) for i, n in enumerate([3, 3, 3]))
    assert [b.num_seqs for b in generate_batches(seqs, batch_size=6)] == [2, 1]


def test_init_dataset_from_config_values(manager):
    ds = init_dataset({"class": "ToyDataset", "num_seqs": 3}, manager=manager)
    assert type(ds).__name__ == "ToyDataset"
    with pytest.raises(UnknownNameError, match="unknown dataset class 'Nope'"):
        init_dataset({"class": "Nope"}, manager=manager)
    with pytest.raises(ConfigError, match="dataset ToyDataset:.*bogus_option"):
        init_dataset({"class": "ToyDataset", "bogus_option": 1}, manager=manager)
    with pytest.raises(UnknownNameError, match="'HDFDataset' needs plugin 'datasets'"):
        init_dataset("a.hdf,b.hdf", manager=manager)



def test_dataset_strings_as_returnn(manager):
    ds = init_dataset("ToyDataset:num_seqs=3,seq_ordering='reverse'", manager=manager)
    assert type(ds).__name__ == "ToyDataset" and ds.num_seqs == 3 and ds.seq_ordering == "reverse"
    ds = init_dataset("GeneratingDataset::ToyDataset(num_seqs=4, seq_len=2)", manager=manager)
    assert ds.num_seqs == 4 and ds.window == 1
    ds = init_dataset("ToyDataset:num_seqs=4", manager=manager, config=Config({"window": 3}))
    assert ds.window == 3  # a dataset string takes the config's window, as in RETURNN
    assert parse_dataset_str("Task12AXDataset:num_seqs=1000") == {"class": "Task12AXDataset", "num_seqs": 1000}
    assert parse_dataset_str("GeneratingDataset::Task12AXDataset(num_seqs=float('inf'))")["num_seqs"] == float("inf")
    assert parse_dataset_str("a.hdf,b.hdf") == {"class": "HDFDataset", "files": ["a.hdf", "b.hdf"]}
    assert parse_dataset_str("feats.h5")["files"] == ["feats.h5"]  # RETURNN reads any other string as HDF files
    with pytest.raises(ConfigError, match="option 'num_seqs' must be a literal"):
        parse_dataset_str("ToyDataset:num_seqs=open('x')")
    with pytest.raises(ConfigError, match="set sprint_trainer_exec_path"):
        init_dataset("sprint:--config=train.config", manager=manager)
    config = Config({"sprint_trainer_exec_path": "/opt/rasr/nn-trainer"})
    assert parse_dataset_str("sprint:--config=train.config", config=config) == {
        "class": "ExternSprintDataset", "sprintConfigStr": "--config=train.config",
        "sprintTrainerExecPath": "/opt/rasr/nn-trainer"}
    with pytest.raises(UnknownNameError, match="'ExternSprintDataset' needs plugin 'sprint': pip install returnn-sprint"):
        init_dataset("sprint:--config=train.config", manager=manager, config=config)


def test_extern_data_from_config_and_dataset():
    ed = ExternData.from_config(Config({"num_inputs": 9, "num_outputs": 2}))
    assert ed["data"] == DataSpec(9) and ed["classes"] == DataSpec(2, sparse=True)
    ed = ExternData.from_config(Config({"extern_data": {"data": {"dim": 3}, "c": {"dim": 5, "sparse": True}}}))
    assert ed["c"].sparse and ed["data"].dim == 3
    ed = ExternData.from_config(Config({}), LenDataset())
    assert ed["classes"].as_num_outputs() == [2, 1]
    with pytest.raises(ConfigError, match="unknown option"):
        ExternData.from_config(Config({"extern_data": {"data": {"dimm": 3}}}))
