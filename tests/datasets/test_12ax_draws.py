"""The 12AX generator's fast draws give numpy's ``RandomState.uniform()``/``randint`` values from the same stream."""

from __future__ import annotations

import numpy as np
from returnn_datasets.task_12ax import INPUT_SYMBOLS, MT19937Draws, Task12AXDataset


def _numpy_symbols(rng: np.random.RandomState, length: int) -> str:
    """The 12AX input drawn with numpy's own calls (as RETURNN draws it)."""
    text = ("", "1", "2")[rng.randint(0, 3)]
    while len(text) < length:
        if rng.uniform() < 0.5:
            text += "12"[rng.randint(0, 2)]
        if rng.uniform() < 0.9:
            text += ("AX", "BY")[rng.randint(0, 2)]
        while rng.uniform() < 0.5:
            text += INPUT_SYMBOLS[rng.randint(0, len(INPUT_SYMBOLS))]
    return text[:length]


def test_draws_match_numpy_calls_interleaved() -> None:
    ours, ref = np.random.RandomState(7), np.random.RandomState(7)
    draws = MT19937Draws(ours)
    ranges = [(0, 2), (0, 3), (0, 9), (10, 100), (5, 6), (0, 2**31), (-4, 1000)]
    for i in range(20000):
        if i % 3 == 0:
            assert draws.uniform() == ref.uniform()
        else:
            low, high = ranges[i % len(ranges)]
            assert draws.randint(low, high) == ref.randint(low, high)
    assert ours.uniform() == ref.uniform()  # the stream stays in step after all draws


def test_12ax_seqs_equal_the_numpy_drawn_ones() -> None:
    ref = np.random.RandomState(2)
    expected = [_numpy_symbols(ref, ref.randint(10, 100)) for _ in range(50)]
    ds = Task12AXDataset(num_seqs=50)
    ds.init_seq_order(epoch=2)  # seed = epoch, as RETURNN seeds it
    got = [ds.decode_input(seq.features["data"]) for seq in ds.iter_seqs()]
    assert got == expected


def test_other_bit_generators_use_numpy_calls() -> None:
    ours, ref = np.random.RandomState(np.random.PCG64(3)), np.random.RandomState(np.random.PCG64(3))
    draws = MT19937Draws(ours)
    assert [draws.randint(0, 9) for _ in range(100)] == [ref.randint(0, 9) for _ in range(100)]
