"""Generated datasets: Task12AX, Dummy and Static, through the registry and the core's batching."""

from __future__ import annotations

import numpy as np
import pytest
from returnn_datasets.hdf import dump_dataset_to_hdf
from returnn_datasets.task_12ax import Task12AXDataset, targets_12ax

from returnn_core.datasets import init_dataset
from returnn_core.errors import ConfigError, DatasetError
from returnn_core.plugin import PluginManager


@pytest.mark.parametrize(
    "symbols, expected",
    [
        ("1AX", "LLR"),
        ("2BY", "LLR"),
        ("1BY", "LLL"),
        ("2AX", "LLL"),
        ("1AZCX", "LLLLR"),  # distractors between the letter and the X do not clear it
        ("1AXX", "LLRL"),  # an X/Y clears the pending letter
        ("1A2BY", "LLLLR"),  # the last digit counts
        ("1A3X", "LLLR"),  # 3 is a distractor, not a digit of the outer loop
        ("AX1", "LLL"),  # no digit yet
        ("1AYAX", "LLLLR"),
    ],
)
def test_12ax_target_rule(symbols: str, expected: str) -> None:
    assert targets_12ax(symbols) == expected


def test_12ax_dataset_follows_its_definition(manager: PluginManager) -> None:
    ds = init_dataset({"class": "Task12AXDataset", "num_seqs": 200}, manager=manager)
    assert isinstance(ds, Task12AXDataset)
    assert ds.num_outputs == {"data": [9, 2], "classes": [2, 1]}
    assert ds.data_specs()["classes"].labels == ("L", "R")
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 200
    total = r_count = 0
    for seq in ds.iter_seqs():
        x, y = seq.features["data"], seq.features["classes"]
        assert x.dtype == np.float32 and x.shape[1] == 9 and y.dtype == np.int32
        assert 10 <= x.shape[0] <= 100 and y.shape == (x.shape[0],)
        assert np.all(x.sum(axis=1) == 1.0)
        assert ds.decode_targets(y) == targets_12ax(ds.decode_input(x))
        total += len(y)
        r_count += int(y.sum())
    assert 0.05 < r_count / total < 0.5  # R must not be too rare to learn


def test_12ax_deterministic_per_epoch_and_seed() -> None:
    def seqs(epoch: int, **kw) -> list[str]:
        ds = Task12AXDataset(num_seqs=20, **kw)
        ds.init_seq_order(epoch=epoch)
        return [ds.decode_input(s.features["data"]) for s in ds.iter_seqs()]

    assert seqs(1) == seqs(1)
    assert seqs(1) != seqs(2)
    assert seqs(1, fixed_random_seed=5) == seqs(7, fixed_random_seed=5)
    assert seqs(1, fixed_random_seed=5) != seqs(1, fixed_random_seed=6)


def test_12ax_batches_with_chunking() -> None:
    ds = Task12AXDataset(num_seqs=50, fixed_random_seed=1, chunking="20:20", seq_ordering="sorted")
    ds.init_seq_order(epoch=1)
    lens = [ds.get_seq(i).length("data") for i in range(ds.num_seqs)]
    assert lens == sorted(lens)
    frames = 0
    for batch in ds.generate_batches(batch_size=200, max_seqs=10):
        bd = batch.to_data(ds.output_specs())
        assert bd.data["data"].shape[1] <= 20 and bd.num_seqs <= 10
        assert bd.data["data"].shape[0] * bd.data["data"].shape[1] <= 200
        frames += bd.num_frames("classes")
    assert frames == sum(lens)


def test_dummy_dataset_values_and_num_seqs_as_returnn(manager: PluginManager) -> None:
    ds = init_dataset({"class": "DummyDataset", "input_dim": 2, "output_dim": 3, "num_seqs": 4}, manager=manager)
    assert ds.num_seqs == 4  # RETURNN knows it before init_seq_order
    assert ds.num_outputs == {"data": [2, 2], "classes": [3, 1]}
    ds.init_seq_order(epoch=1)
    # RETURNN's pattern: ((i % 10) - 5) / 10 for the flat index i from the seq index; classes go on counting
    np.testing.assert_allclose(ds.get_data(0, "data"), [[-0.5, -0.4], [-0.3, -0.2]], rtol=1e-6)
    assert ds.get_data(0, "classes").tolist() == [1, 2]  # i = 4, 5 modulo 3 classes
    np.testing.assert_allclose(ds.get_data(1, "data"), [[-0.4, -0.3], [-0.2, -0.1]], rtol=1e-6)
    assert ds.get_data(1, "classes").tolist() == [2, 0]
    other = init_dataset({"class": "DummyDataset", "input_dim": 3, "output_dim": 4, "num_seqs": 5,
                          "seq_len": {"data": 7, "classes": 3}, "input_max_value": 4, "input_shift": 0,
                          "input_scale": 1}, manager=manager)
    other.init_seq_order(epoch=3)
    assert other.get_data(2, "data")[0].tolist() == [2, 3, 0] and other.get_data(2, "classes").shape == (3,)


def test_endless_12ax_stream(tmp_path) -> None:
    ds = Task12AXDataset(num_seqs=float("inf"))
    assert ds.num_seqs == float("inf")
    ds.init_seq_order(epoch=1)
    first = [ds.get_seq(i).features["classes"] for i in range(10)]
    assert ds.is_less_than_num_seqs(10**9) and ds.num_seqs == float("inf")
    batches = ds.generate_batches(batch_size=500, max_seqs=40)
    taken = [next(batches) for _ in range(30)]  # far beyond any finite default
    assert sum(b.num_seqs for b in taken) > 100
    np.testing.assert_array_equal(taken[0].slices[0].array("classes"), first[0])
    with pytest.raises(ConfigError, match="endless stream in default order"):
        Task12AXDataset(num_seqs=float("inf"), seq_ordering="sorted").init_seq_order(epoch=1)
    with pytest.raises(DatasetError, match="num_seqs is inf .*give the seq to stop at"):
        dump_dataset_to_hdf(Task12AXDataset(num_seqs=float("inf")), tmp_path / "x.hdf")
    assert dump_dataset_to_hdf(Task12AXDataset(num_seqs=float("inf")), tmp_path / "x.hdf", end_seq=3) == 3


def test_static_dataset_infers_dims_and_keeps_tags(manager: PluginManager) -> None:
    rng = np.random.RandomState(0)
    data = [
        {"data": rng.randn(t, 5).astype("float32"), "classes": rng.randint(0, 6, size=t)} for t in (4, 9, 2)
    ]
    data[1]["classes"][0] = 6  # the max over all seqs sets the class count
    ds = init_dataset({"class": "StaticDataset", "data": data, "tags": ["a", "b", "c"]}, manager=manager)
    assert ds.num_outputs == {"data": [5, 2], "classes": [7, 1]}
    ds.init_seq_order(epoch=1, seq_list=["c", "a"])
    assert [ds.get_tag(i) for i in range(ds.num_seqs)] == ["c", "a"]
    np.testing.assert_array_equal(ds.get_data(0, "data"), data[2]["data"])
    assert ds.get_data(1, "classes").dtype == np.int64  # RETURNN keeps the dtypes it was given
    assert ds.data_specs()["classes"].dtype == "int64" and ds.data_specs()["data"].dtype == "float32"
    batch = next(ds.generate_batches(batch_size=100)).to_data(ds.output_specs())
    assert batch.data["classes"].dtype == np.int64

    explicit = init_dataset({"class": "StaticDataset", "data": data, "output_dim": {"classes": [10, 1]}}, manager=manager)
    assert explicit.num_outputs["classes"] == [10, 1]


def test_static_dataset_bad_input() -> None:
    from returnn_datasets.generating import StaticDataset

    with pytest.raises(DatasetError, match="empty"):
        StaticDataset([])
    with pytest.raises(DatasetError, match="seq 1 has keys"):
        StaticDataset([{"data": np.zeros((2, 2))}, {"classes": np.zeros(2, dtype=int)}])


def test_static_copy_from_dataset() -> None:
    from returnn_datasets.generating import StaticDataset

    src = Task12AXDataset(num_seqs=10, fixed_random_seed=3)
    src.init_seq_order(epoch=1)
    copy = StaticDataset.copy_from_dataset(src, 2, 5)
    copy.init_seq_order(epoch=1)
    assert copy.num_seqs == 3 and copy.num_outputs == src.num_outputs
    np.testing.assert_array_equal(copy.get_data(0, "classes"), src.get_data(2, "classes"))
    assert copy.get_tag(0) == src.get_tag(2)
