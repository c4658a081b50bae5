"""Chunking, context windows and non-recurrent batches with the expected values of RETURNN's own dataset tests."""

from __future__ import annotations

import numpy as np
import pytest
from returnn_datasets.generating import DummyDataset

from returnn_core.datasets import parse_chunking
from returnn_core.errors import ConfigError


def _slices(batches, key=None):
    return [[(s.seq.seq_idx, *(s.bounds(key) if key else (s.start, s.end))) for s in b.slices] for b in batches]


def _dummy(**kw) -> DummyDataset:
    ds = DummyDataset(input_dim=2, output_dim=3, **kw)
    ds.init_seq_order(epoch=1)
    return ds


def test_chunking_10_5_over_11_frames() -> None:
    ds = _dummy(num_seqs=2, seq_len=11, chunking="10:5")
    got = _slices(ds.generate_batches(batch_size=20, max_seqs=1))
    assert got == [[(0, 0, 10)], [(0, 5, 11)], [(0, 10, 11)], [(1, 0, 10)], [(1, 5, 11)], [(1, 10, 11)]]


def test_chunking_per_key() -> None:
    ds = _dummy(num_seqs=2, seq_len={"data": 24, "classes": 12},
                chunking=({"data": 12, "classes": 6}, {"data": 6, "classes": 3}))
    batches = list(ds.generate_batches(batch_size=1000, max_seqs=1))
    assert _slices(batches, "data") == [[(s, a, b)] for s in (0, 1) for a, b in ((0, 12), (6, 18), (12, 24), (18, 24))]
    assert _slices(batches, "classes") == [[(s, a, b)] for s in (0, 1) for a, b in ((0, 6), (3, 9), (6, 12), (9, 12))]
    second = batches[1].to_data(ds.output_specs())
    np.testing.assert_array_equal(second.data["classes"][0], ds.get_data(0, "classes")[3:9])
    assert second.seq_lens["data"].tolist() == [12] and second.seq_lens["classes"].tolist() == [6]
    # sizes only (step = size) and the string forms
    assert parse_chunking({"data": 12, "classes": 6}) == ({"data": 12, "classes": 6}, {"data": 12, "classes": 6})
    assert parse_chunking("12:6") == (12, 6) and parse_chunking("12") == (12, 12) and parse_chunking("0") is None
    with pytest.raises(ConfigError, match="sizes are for keys"):
        parse_chunking(({"data": 12}, {"classes": 3}))


def test_context_window_pads_the_data_around_each_chunk() -> None:
    # RETURNN: context_window 2 adds 0 frames before and 1 after each chunk of "data", zero-padded at the end
    ds = _dummy(num_seqs=1, seq_len=11, context_window=2, chunking="5:5")
    batches = list(ds.generate_batches(batch_size=20, max_seqs=1))
    assert _slices(batches, "classes") == [[(0, 0, 5)], [(0, 5, 10)], [(0, 10, 11)]]
    assert _slices(batches, "data") == [[(0, 0, 6)], [(0, 5, 11)], [(0, 10, 12)]]
    last = batches[2].to_data(ds.output_specs())
    x = ds.get_data(0, "data")
    np.testing.assert_array_equal(last.data["data"][0], [x[10], [0, 0]])
    with pytest.raises(ConfigError, match="context_window"):
        _dummy(num_seqs=1, context_window=-3)


def test_non_recurrent_batches_join_the_frames_of_seqs() -> None:
    ds = _dummy(num_seqs=2, seq_len=11)
    batches = list(ds.generate_batches(batch_size=5, max_seqs=2, recurrent_net=False))
    # RETURNN: 2 * 11 frames in rows of 5; seq 0's last frame and seq 1's first 4 share the third row
    assert _slices(batches) == [[(0, 0, 5)], [(0, 5, 10)], [(0, 10, 11), (1, 0, 4)], [(1, 4, 9)], [(1, 9, 11)]]
    third = batches[2].to_data(ds.output_specs())
    assert third.data["data"].shape == (1, 5, 2) and third.seq_lens["classes"].tolist() == [5]
    np.testing.assert_array_equal(third.data["data"][0], np.concatenate([ds.get_data(0, "data")[10:], ds.get_data(1, "data")[:4]]))
    assert third.tags == ["seq-0+seq-1"]
