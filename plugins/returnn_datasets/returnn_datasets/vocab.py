"""Text inputs: (gzipped) corpus files and symbol vocabularies in RETURNN's file formats."""

from __future__ import annotations

import ast
import gzip
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from returnn_core.errors import DatasetError


def read_lines(path: str) -> Iterator[str]:
    """Lines of a text file without their newline; gzip is detected by its magic bytes."""
    if not os.path.isfile(path):
        raise DatasetError(f"text file {path} does not exist")
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")) as f:
            for line in f:
                yield line.rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"text file {path} cannot be read: {exc}") from None


def load_vocab(path: str) -> dict[str, int]:
    """Symbol -> index from a pickled dict (``.pkl``), a Python dict literal, or lines ``symbol [index]``."""
    if not os.path.isfile(path):
        raise DatasetError(f"vocabulary file {path} does not exist")
    if path.endswith(".pkl"):
        try:
            with open(path, "rb") as f:
                vocab = pickle.load(f)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a broken file
            raise DatasetError(f"vocabulary file {path} is not a pickled dict: {exc}") from None
    else:
        lines = list(read_lines(path))
        text = "\n".join(lines).strip()
        if text.startswith("{"):
            try:
                vocab = ast.literal_eval(text)
            except (ValueError, SyntaxError) as exc:
                raise DatasetError(f"vocabulary file {path}: not a dict literal: {exc}") from None
        else:
            vocab = {}
            for line in lines:
                parts = line.split()
                if len(parts) >= 2 and parts[-1].isdigit():
                    vocab[" ".join(parts[:-1])] = int(parts[-1])
                elif parts:
                    vocab.setdefault(line.strip(), len(vocab))
    if not isinstance(vocab, Mapping) or not vocab:
        raise DatasetError(f"vocabulary file {path} holds no symbols")
    return {str(k): int(v) for k, v in vocab.items()}


def symbol_list(vocab: Mapping[str, int]) -> list[str]:
    """Labels by index (gaps filled with ``<unused-N>``)."""
    out = [f"<unused-{i}>" for i in range(max(vocab.values()) + 1)]
    for sym, idx in vocab.items():
        out[idx] = sym
    return out


class Encoder:
    """Maps symbols to indices, replacing unknown ones by ``unknown`` or raising an error naming the place."""

    def __init__(self, vocab: Mapping[str, int], unknown: str | None, what: str) -> None:
        self.vocab = dict(vocab)
        self.what = what
        self.unknown_idx: int | None = None
        if unknown is not None:
            if unknown not in self.vocab:
                raise DatasetError(f"{what}: unknown symbol {unknown!r} is not in the vocabulary")
            self.unknown_idx = self.vocab[unknown]
        self.num_replaced = 0

    def encode(self, symbols: Sequence[str], where: str) -> np.ndarray:
        """Indices of ``symbols``; ``where`` (file:line) goes into the error message."""
        out = np.empty(len(symbols), dtype=np.int32)
        for i, s in enumerate(symbols):
            idx = self.vocab.get(s)
            if idx is None:
                if self.unknown_idx is None:
                    raise DatasetError(
                        f"{self.what}: {where}: symbol {s!r} is not in the vocabulary "
                        "(set an unknown symbol to replace it)"
                    )
                idx = self.unknown_idx
                self.num_replaced += 1
            out[i] = idx
        return out
