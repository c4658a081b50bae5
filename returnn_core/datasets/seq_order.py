"""Seq orderings (``seq_ordering`` option): default, reverse, sorted, random, laplace, sort_bin_shuffle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from returnn_core.errors import ConfigError

SeqLen = Callable[[int], int]

ORDERINGS = ("default", "reverse", "sorted", "sorted_reverse", "random", "laplace", "sort_bin_shuffle")


def _bins(spec: str, num_seqs: int) -> int:
    """``:N`` is a number of bins, ``:.N`` seqs per bin (at least 2 bins)."""
    if not spec:
        return 2
    if spec.startswith("."):
        return max(num_seqs // max(int(spec[1:]), 1), 2)
    return max(int(spec), 1)


def _split(items: list[int], bins: int) -> list[list[int]]:
    n = len(items)
    return [items[i * n // bins : (i + 1) * n // bins] for i in range(bins)]


def seq_order(method: str, num_seqs: int, seq_len: SeqLen | None, seed: int) -> list[int]:
    """Indices ``0..num_seqs-1`` in the order ``method`` asks for; ``seed`` drives the random ones."""
    name, _, arg = method.partition(":")
    needs_len = name in ("sorted", "sorted_reverse", "laplace", "sort_bin_shuffle", "sort_bin_shuffle_x2")
    if needs_len and seq_len is None:
        raise ConfigError(f"seq_ordering {method!r} needs seq lengths, which this dataset cannot give up front")
    try:
        if name == "default":
            return list(range(num_seqs))
        if name == "reverse":
            return list(range(num_seqs - 1, -1, -1))
        if name == "sorted":
            return sorted(range(num_seqs), key=seq_len)
        if name == "sorted_reverse":
            return sorted(range(num_seqs), key=seq_len, reverse=True)
        if name == "random":
            rng = np.random.RandomState((seed + (int(arg) if arg else 0)) % 2**32)
            return rng.permutation(num_seqs).tolist()
        if name == "laplace":
            # shuffled bins, each sorted by length in alternating direction: similar lengths batch together
            rng = np.random.RandomState(seed % 2**32)
            shuffled = rng.permutation(num_seqs).tolist()
            out: list[int] = []
            for i, part in enumerate(_split(shuffled, _bins(arg, num_seqs))):
                out += sorted(part, key=seq_len, reverse=i % 2 == 1)
            return out
        if name in ("sort_bin_shuffle", "sort_bin_shuffle_x2"):
            # sorted by length, cut into bins, bins visited in random order
            rng = np.random.RandomState(seed % 2**32)
            by_len = sorted(rng.permutation(num_seqs).tolist(), key=seq_len)
            parts = _split(by_len, _bins(arg, num_seqs))
            out = []
            for i in rng.permutation(len(parts)):
                part = list(parts[i])
                if name == "sort_bin_shuffle_x2":
                    rng.shuffle(part)
                out += part
            return out
    except ValueError:
        raise ConfigError(f"seq_ordering {method!r}: bad argument {arg!r}") from None
    raise ConfigError(f"unknown seq_ordering {method!r}; known: {', '.join(ORDERINGS)}")
