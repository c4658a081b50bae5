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


class MT19937Draws:
    """``uniform()`` and ``randint(low, high)`` of a ``RandomState``: the same values from the same stream.

    A numpy call costs 3-4 us in argument handling, most of a 12AX epoch's data time. ``uniform(0, 1)`` is
    ``random_sample()`` exactly; the legacy ``randint`` of a range below 2**32 takes 32-bit words of the
    MT19937 stream, masked to the range's bit length, until one fits: done here on the raw words. Another bit
    generator (or a numpy without ``_bit_generator``) gets the numpy calls.
    """

    def __init__(self, rng: np.random.RandomState) -> None:
        self.uniform = rng.random_sample
        bitgen = getattr(rng, "_bit_generator", None)
        self._raw = bitgen.random_raw if isinstance(bitgen, np.random.MT19937) else None
        self._rng = rng

    def randint(self, low: int, high: int) -> int:
        """``rng.randint(low, high)`` for ``0 < high - low < 2**32``."""
        span = high - low - 1
        if self._raw is None or not 0 < span < 2**32:
            return int(self._rng.randint(low, high))
        mask = (1 << span.bit_length()) - 1
        while True:
            value = self._raw() & mask
            if value <= span:
                return low + value


class Task12AXDataset(GeneratingDataset):
    """12AX: dense one-hot ``data`` over "123ABCXYZ" (dim 9), sparse ``classes`` L/R (2 classes), lengths 10-99.

    The inputs follow RETURNN's "somewhat made up" distribution, drawn with the same calls: an optional
    leading digit, then repeatedly a digit (p 0.5), an ``AX``/``BY`` pair (p 0.9) and random symbols
    (each further one with p 0.5), cut to the seq length; that way enough ``R`` targets occur.
    """

    input_labels = tuple(INPUT_SYMBOLS)
    output_labels = tuple(OUTPUT_SYMBOLS)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(input_dim=len(INPUT_SYMBOLS), output_dim=len(OUTPUT_SYMBOLS), **kwargs)

    @staticmethod
    def generate_symbols(rng: np.random.RandomState, length: int) -> str:
        """A random input string of ``length`` symbols (``rng.randint(0, n)`` draws as RETURNN's ``rng.choice``)."""
        draw = MT19937Draws(rng)
        uniform, randint = draw.uniform, draw.randint
        text = ("", "1", "2")[randint(0, 3)]
        while len(text) < length:
            if uniform() < 0.5:
                text += "12"[randint(0, 2)]
            if uniform() < 0.9:
                text += ("AX", "BY")[randint(0, 2)]
            while uniform() < 0.5:
                text += INPUT_SYMBOLS[randint(0, len(INPUT_SYMBOLS))]
        return text[:length]

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """One 12AX seq: its one-hot input and its L/R targets."""
        symbols = self.generate_symbols(rng, MT19937Draws(rng).randint(10, 100))
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
