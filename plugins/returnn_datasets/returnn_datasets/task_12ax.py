"""The 12AX task: a classic test of working memory with an outer (digit) and an inner (letter) loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from returnn_datasets.generating import GeneratingDataset

INPUT_SYMBOLS = "123ABCXYZ"
OUTPUT_SYMBOLS = "LR"
# ASCII code -> class index, to map whole strings at once
_INPUT_INDEX = np.zeros(128, dtype=np.int64)
_INPUT_INDEX[[ord(c) for c in INPUT_SYMBOLS]] = np.arange(len(INPUT_SYMBOLS))


def targets_12ax(symbols: str) -> str:
    """The ``L``/``R`` target per input symbol.

    ``R`` exactly at an X/Y that completes ``1AX`` or ``2BY``: the last digit seen (1 or 2; "3" is a
    distractor and does not count) and the pending letter (the last A or B since the previous X/Y).
    Every X/Y clears the pending letter; C, Z and 3 change nothing.
    """
    digit, letter = "", ""
    out = []
    for c in symbols:
        target = "L"
        if c in "12":
            digit = c
        elif c in "AB":
            letter = c
        elif c in "XY":
            if digit + letter + c in ("1AX", "2BY"):
                target = "R"
            letter = ""
        out.append(target)
    return "".join(out)


class _Uniforms:
    """Uniform [0, 1) draws taken from one pre-drawn block (refilled when used up): one RNG call per seq."""

    def __init__(self, rng: np.random.RandomState, block: int) -> None:
        self.rng, self.block = rng, block
        self.values: list[float] = rng.random_sample(block).tolist()
        self.pos = 0

    def __call__(self) -> float:
        if self.pos == len(self.values):
            self.values, self.pos = self.rng.random_sample(self.block).tolist(), 0
        self.pos += 1
        return self.values[self.pos - 1]


class Task12AXDataset(GeneratingDataset):
    """12AX: dense one-hot ``data`` over "123ABCXYZ" (dim 9), sparse ``classes`` L/R (2 classes), lengths 10-100."""

    input_labels = tuple(INPUT_SYMBOLS)
    output_labels = tuple(OUTPUT_SYMBOLS)

    def __init__(self, num_seqs: int = 1000, min_seq_len: int = 10, max_seq_len: int = 100, **kwargs: Any) -> None:
        super().__init__(len(INPUT_SYMBOLS), len(OUTPUT_SYMBOLS), num_seqs, **kwargs)
        self.min_seq_len, self.max_seq_len = int(min_seq_len), int(max_seq_len)

    def generate_symbols(self, rng: np.random.RandomState, length: int) -> str:
        """A random input string: digits now and then, inner loops of letter pairs and distractors."""
        u = _Uniforms(rng, 16 * length)
        parts: list[str] = []
        size = 0
        while size < length:
            if u() < 0.4:
                parts.append("12"[int(u() * 2)] if u() < 0.9 else "3")
                size += 1
            for _ in range(1 + int(u() * 4)):
                r = u()
                if r < 0.7:
                    # the pairs that can give R (35% each), and their near misses (15% each)
                    c = u()
                    part = "AX" if c < 0.35 else "BY" if c < 0.7 else "AY" if c < 0.85 else "BX"
                elif r < 0.85:
                    part = "CZ"[int(u() * 2)] + "XYZ"[int(u() * 3)]
                else:
                    part = INPUT_SYMBOLS[int(u() * len(INPUT_SYMBOLS))]
                parts.append(part)
                size += len(part)
        return "".join(parts)[:length]

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """One 12AX seq: its one-hot input and its L/R targets."""
        length = rng.randint(self.min_seq_len, self.max_seq_len + 1)
        symbols = self.generate_symbols(rng, length)
        targets = np.frombuffer(targets_12ax(symbols).encode("ascii"), dtype=np.uint8) == ord("R")
        return {
            "data": self.one_hot(_INPUT_INDEX[np.frombuffer(symbols.encode("ascii"), dtype=np.uint8)]),
            "classes": self.sparse(targets.astype(np.int32)),
        }

    @staticmethod
    def decode_input(data: np.ndarray) -> str:
        """One-hot (T, 9) input back to its symbols."""
        return "".join(INPUT_SYMBOLS[i] for i in np.argmax(data, axis=1))

    @staticmethod
    def decode_targets(classes: Sequence[int]) -> str:
        """Class indices back to ``L``/``R``."""
        return "".join(OUTPUT_SYMBOLS[int(i)] for i in classes)
