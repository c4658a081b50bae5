"""Seq orderings (``seq_ordering`` option): default, default_every_n, reverse, sorted, random, laplace, sort_bin_shuffle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from returnn_core.errors import ConfigError

SeqLen = Callable[[int], int]

ORDERINGS = (
    "default", "default_every_n", "reverse", "sorted", "sorted_reverse", "random", "laplace", "sort_bin_shuffle",
    "sort_bin_shuffle_x2",
)
_NEEDS_LEN = ("sorted", "sorted_reverse", "laplace", "sort_bin_shuffle", "sort_bin_shuffle_x2")


def seq_order_name(method: str) -> str:
    """The ordering's name without its ``:`` arguments (``"laplace:.100"`` -> ``"laplace"``)."""
    return method.split(":", 1)[0]


def seq_order_every(method: str) -> int:
    """For how many epochs the random seed stays the same: ``random:N``, ``laplace:BINS:N``, ``sort_bin_shuffle:BINS:N``."""
    name, *args = method.split(":")
    pos = 0 if name == "random" else 1 if name in ("laplace", "sort_bin_shuffle", "sort_bin_shuffle_x2") else None
    if pos is None or len(args) <= pos or not args[pos]:
        return 1
    try:
        return max(int(args[pos]), 1)
    except ValueError:
        raise ConfigError(f"seq_ordering {method!r}: {args[pos]!r} is not a number of epochs") from None


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
    """Indices ``0..num_seqs-1`` in the order ``method`` asks for; ``seed`` drives the random ones.

    The caller picks ``seed`` for the epoch, kept for ``seq_order_every(method)`` epochs as RETURNN does.
    """
    name, _, rest = method.partition(":")
    arg = rest.split(":", 1)[0]
    if name in _NEEDS_LEN and seq_len is None:
        raise ConfigError(f"seq_ordering {method!r} needs seq lengths, which this dataset cannot give up front")
    try:
        if name == "default":
            return list(range(num_seqs))
        if name == "default_every_n":
            # RETURNN: seq i*N+j of the order is corpus seq j*(num_seqs//N)+i, so N parallel streams each run
            # through a contiguous stretch of the corpus (for state kept over batches); the remainder is dropped
            n = int(arg)
            if n < 1:
                raise ValueError
            per = num_seqs // n
            return [j * per + i for i in range(per) for j in range(n)]
        if name == "reverse":
            return list(range(num_seqs - 1, -1, -1))
        if name == "sorted":
            return sorted(range(num_seqs), key=seq_len)
        if name == "sorted_reverse":
            return sorted(range(num_seqs), key=seq_len, reverse=True)
        if name == "random":
            int(arg or 1)
            return np.random.RandomState(seed % 2**32).permutation(num_seqs).tolist()
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
