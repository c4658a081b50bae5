"""Text datasets: :class:`LmDataset` (one seq per line, chars or words) and :class:`TranslationDataset`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError
from returnn_datasets.vocab import Encoder, load_vocab, read_lines, symbol_list


class _InMemoryText(Dataset):
    """Seqs held as index arrays after reading the corpus once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._seqs: list[dict[str, np.ndarray]] = []
        self._tags: list[str] = []
        self._specs: dict[str, DataSpec] = {}

    def data_specs(self) -> dict[str, DataSpec]:
        """Sparse streams over the vocabularies."""
        return dict(self._specs)

    def _num_total_seqs(self) -> int:
        return len(self._seqs)

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        return self._seqs[corpus_idx]

    def _seq_length(self, corpus_idx: int) -> int:
        return int(self._seqs[corpus_idx]["data"].shape[0])

    def _seq_tag(self, corpus_idx: int) -> str:
        return self._tags[corpus_idx]


class LmDataset(_InMemoryText):
    """Language-model data: each non-empty corpus line is a seq of symbol indices (sparse ``data``).

    Symbols are chars (``orth_symbols_file``: one symbol per line) or words (``word_based`` or an
    ``orth_symbols_map_file`` of ``word index`` lines / a dict literal / a pickle). ``seq_end_symbol`` is
    appended; with ``add_delayed_seq_data`` a ``delayed`` stream (start symbol + data shifted) is added.
    Unknown symbols are an error unless ``auto_replace_unknown_symbol`` maps them to ``unknown_symbol``.
    """

    def __init__(
        self,
        corpus_file: str | Sequence[str],
        orth_symbols_file: str | None = None,
        orth_symbols_map_file: str | None = None,
        word_based: bool = False,
        seq_end_symbol: str | None = "[END]",
        unknown_symbol: str | None = "[UNKNOWN]",
        auto_replace_unknown_symbol: bool = False,
        add_delayed_seq_data: bool = False,
        delayed_seq_data_start_symbol: str = "[START]",
        lowercase: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if orth_symbols_map_file:
            vocab = load_vocab(orth_symbols_map_file)
            word_based = word_based or not orth_symbols_file
        elif orth_symbols_file:
            vocab = {}
            for line in read_lines(orth_symbols_file):
                if line:
                    vocab.setdefault(line, len(vocab))
            if not vocab:
                raise DatasetError(f"{self.name}: symbols file {orth_symbols_file} is empty")
        else:
            raise DatasetError(f"{self.name}: give orth_symbols_file (chars) or orth_symbols_map_file (words)")
        self.vocab = vocab
        self.word_based = bool(word_based)
        files = [corpus_file] if isinstance(corpus_file, str) else list(corpus_file)
        self.encoder = Encoder(vocab, unknown_symbol if auto_replace_unknown_symbol else None, self.name)
        end = self._symbol_idx(seq_end_symbol, "seq_end_symbol") if seq_end_symbol else None
        start = self._symbol_idx(delayed_seq_data_start_symbol, "delayed_seq_data_start_symbol") if add_delayed_seq_data else None
        for path in files:
            for lineno, line in enumerate(read_lines(path), start=1):
                text = line.strip()
                if not text:
                    continue
                if lowercase:
                    text = text.lower()
                symbols = text.split() if self.word_based else list(text)
                x = self.encoder.encode(symbols, f"{path}:{lineno}")
                if end is not None:
                    x = np.append(x, np.int32(end))
                feats = {"data": x}
                if start is not None:
                    feats["delayed"] = np.concatenate([[start], x[:-1]]).astype(np.int32)
                self._seqs.append(feats)
                self._tags.append(f"line-{len(self._tags)}")
        if not self._seqs:
            raise DatasetError(f"{self.name}: corpus {', '.join(files)} has no non-empty lines")
        labels = tuple(symbol_list(vocab))
        self._specs = {"data": DataSpec(len(labels), sparse=True, labels=labels)}
        if start is not None:
            self._specs["delayed"] = DataSpec(len(labels), sparse=True, labels=labels)

    def _symbol_idx(self, symbol: str, option: str) -> int:
        if symbol not in self.vocab:
            raise DatasetError(f"{self.name}: {option} {symbol!r} is not in the vocabulary (set {option}=None?)")
        return self.vocab[symbol]


class TranslationDataset(_InMemoryText):
    """Parallel text: ``{path}/source.{file_postfix}`` -> ``data``, ``target.{file_postfix}`` -> ``classes``.

    Lines are whitespace-split words (files may be gzipped, also as ``*.gz``); vocabularies are
    ``source.vocab.pkl``/``target.vocab.pkl`` (pickled dicts) or given explicitly. ``source_postfix`` /
    ``target_postfix`` (e.g. ``" </S>"``) are appended to every line before splitting. ``unknown_label``
    replaces words missing from a vocabulary: one label for both sides (where that vocabulary has it), or
    ``{"data": ..., "classes": ...}`` per side (then the vocabulary must have it).
    """

    def __init__(
        self,
        path: str,
        file_postfix: str,
        source_postfix: str = "",
        target_postfix: str = "",
        source_vocab: str | None = None,
        target_vocab: str | None = None,
        unknown_label: str | Mapping[str, str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(unknown_label, Mapping):
            unknown = dict(unknown_label)
            extra = sorted(set(unknown) - {"data", "classes"})
            if extra:
                raise DatasetError(f"{self.name}: unknown_label has keys {extra}; its keys are 'data' and 'classes'")
        sides = {}
        for side, key, postfix, vocab_file in (
            ("source", "data", source_postfix, source_vocab), ("target", "classes", target_postfix, target_vocab)
        ):
            text_file = self._find(os.path.join(path, f"{side}.{file_postfix}"))
            vocab = load_vocab(vocab_file or os.path.join(path, f"{side}.vocab.pkl"))
            if isinstance(unknown_label, Mapping):
                label = unknown.get(key)
            else:
                label = unknown_label if unknown_label in vocab else None
            encoder = Encoder(vocab, label, f"{self.name} ({side})")
            seqs = [encoder.encode((line + postfix).split(), f"{text_file}:{n}") for n, line in enumerate(read_lines(text_file), 1)]
            sides[side] = (text_file, vocab, seqs)
        (src_file, src_vocab, src), (tgt_file, tgt_vocab, tgt) = sides["source"], sides["target"]
        if len(src) != len(tgt):
            raise DatasetError(f"{self.name}: {src_file} has {len(src)} lines but {tgt_file} has {len(tgt)}")
        if not src:
            raise DatasetError(f"{self.name}: {src_file} is empty")
        self._seqs = [{"data": s, "classes": t} for s, t in zip(src, tgt)]
        self._tags = [f"line-{i}" for i in range(len(src))]
        self._specs = {
            "data": DataSpec(max(src_vocab.values()) + 1, sparse=True, labels=tuple(symbol_list(src_vocab))),
            "classes": DataSpec(max(tgt_vocab.values()) + 1, sparse=True, labels=tuple(symbol_list(tgt_vocab))),
        }

    def _find(self, base: str) -> str:
        for candidate in (base, base + ".gz"):
            if os.path.isfile(candidate):
                return candidate
        raise DatasetError(f"{self.name}: text file {base} (or {base}.gz) does not exist")
