"""Text datasets: :class:`LmDataset` (one seq per line, chars or words) and :class:`TranslationDataset`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.errors import DatasetError
from returnn_datasets.json_file import read_json_object
from returnn_datasets.orthography import corpus_orthographies, orthography_symbols, parse_orthography
from returnn_datasets.vocab import Encoder, load_vocab, read_lines, symbol_list

_logger = logging.getLogger(__name__)


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
    """Language-model data: each orthography of the corpus (non-empty lines, or a Bliss XML corpus) is a seq of
    symbol indices (sparse ``data``), processed as RETURNN's ``parse_orthography`` does.

    Symbols are chars unless ``word_based``; the vocabulary is ``orth_symbols_file`` (one symbol per line, its
    index the line number) or ``orth_symbols_map_file`` (``symbol index`` lines, a dict literal or a pickle).
    ``orth_replace_map_file`` (JSON symbol -> text) replaces symbols; ``seq_end_symbol`` is appended;
    ``parse_orth_opts`` go to the parsing (``prefix``, ``postfix``, ``remove_chars``, ...). A ``</s>`` line is
    skipped. An unknown symbol becomes ``unknown_symbol`` with ``auto_replace_unknown_symbol`` (or is dropped
    when that is None), else its seq is an error, or skipped if ``error_on_invalid_seq`` is False. With
    ``add_delayed_seq_data`` a ``delayed`` stream (start symbol + data shifted) is added.
    """

    def __init__(
        self,
        corpus_file: str | Sequence[str] | Callable[[], str],
        orth_symbols_file: str | Callable[[], str] | None = None,
        orth_symbols_map_file: str | Callable[[], str] | None = None,
        orth_replace_map_file: str | Callable[[], str] | None = None,
        word_based: bool = False,
        seq_end_symbol: str | None = "[END]",
        unknown_symbol: str | None = "[UNKNOWN]",
        parse_orth_opts: Mapping[str, Any] | None = None,
        auto_replace_unknown_symbol: bool = False,
        log_auto_replace_unknown_symbols: bool | int = 10,
        log_skipped_seqs: bool | int = 10,
        error_on_invalid_seq: bool = True,
        add_delayed_seq_data: bool = False,
        delayed_seq_data_start_symbol: str = "[START]",
        lowercase: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        corpus_file, orth_symbols_file, orth_symbols_map_file, orth_replace_map_file = (
            f() if callable(f) else f for f in (corpus_file, orth_symbols_file, orth_symbols_map_file, orth_replace_map_file)
        )
        if orth_symbols_file:
            labels = list(read_lines(orth_symbols_file))
            if not labels:
                raise DatasetError(f"{self.name}: symbols file {orth_symbols_file} is empty")
            vocab = {sym: i for i, sym in enumerate(labels)}  # RETURNN: the line number (a repeated line: its last)
        elif orth_symbols_map_file:
            vocab = load_vocab(orth_symbols_map_file)
            labels = symbol_list(vocab)
        else:
            raise DatasetError(f"{self.name}: give orth_symbols_file (chars) or orth_symbols_map_file (words)")
        self.vocab = vocab
        self.word_based = bool(word_based)
        self.parse_opts = {"word_based": self.word_based, "postfix": [seq_end_symbol] if seq_end_symbol else []}
        self.parse_opts.update(parse_orth_opts or {})
        self.replace_map: dict[str, list[str]] = {}
        if orth_replace_map_file:
            replace = read_json_object(orth_replace_map_file, f"{self.name}: orth_replace_map_file", "symbol -> replacement")
            self.replace_map = {str(k): orthography_symbols(str(v), word_based=self.word_based) for k, v in replace.items()}
        self.unknown_symbol = unknown_symbol
        self.auto_replace_unknown_symbol = bool(auto_replace_unknown_symbol)
        self.error_on_invalid_seq = bool(error_on_invalid_seq)
        self.num_skipped = self.num_unknown = 0
        self._log_limits = {"replaced": log_auto_replace_unknown_symbols, "skipped": log_skipped_seqs}
        if self.auto_replace_unknown_symbol and unknown_symbol is not None:
            self._symbol_idx(unknown_symbol, "unknown_symbol")
        start = self._symbol_idx(delayed_seq_data_start_symbol, "delayed_seq_data_start_symbol") if add_delayed_seq_data else None
        files = [corpus_file] if isinstance(corpus_file, str) else list(corpus_file)
        for path in files:
            for where, orth in corpus_orthographies(path):
                if orth == "</s>":
                    continue  # RETURNN: a sentence-end line stands for an empty seq
                x = self._encode(orth.lower() if lowercase else orth, where)
                if x is None:
                    continue
                feats = {"data": x}
                if start is not None:
                    feats["delayed"] = np.concatenate([[start], x[:-1]]).astype(np.int32)
                self._seqs.append(feats)
                self._tags.append(f"line-{len(self._tags)}")
        if not self._seqs:
            raise DatasetError(f"{self.name}: corpus {', '.join(files)} has no non-empty lines")
        self._specs = {"data": DataSpec(len(labels), sparse=True, labels=tuple(labels))}
        if start is not None:
            self._specs["delayed"] = DataSpec(len(labels), sparse=True, labels=tuple(labels))

    def _encode(self, orth: str, where: str) -> np.ndarray | None:
        """The indices of one orthography, or None where it is skipped (an unknown symbol, errors off)."""
        symbols = parse_orthography(orth, **self.parse_opts)
        while True:
            symbols = [t for s in symbols for t in self.replace_map.get(s, [s])]
            if not self.word_based:
                symbols = [s for i, s in enumerate(symbols) if not (s == " " and i and symbols[i - 1] == " ")]
            unknown = next((s for s in symbols if s not in self.vocab), None)
            if unknown is None or not self.auto_replace_unknown_symbol:
                break
            self._log("replaced", f"{self.name}: unknown symbol {unknown!r} at {where} replaced by {self.unknown_symbol!r}")
            self.replace_map[unknown] = [self.unknown_symbol] if self.unknown_symbol is not None else []
        self.num_unknown += symbols.count(self.unknown_symbol) if self.unknown_symbol else 0
        if unknown is not None:
            message = f"{self.name}: {where}: symbol {unknown!r} is not in the vocabulary"
            if self.error_on_invalid_seq:
                raise DatasetError(f"{message} (set auto_replace_unknown_symbol, or error_on_invalid_seq=False to skip)")
            self._log("skipped", f"{message}; seq skipped")
            self.num_skipped += 1
            return None
        return np.array([self.vocab[s] for s in symbols], dtype=np.int32)

    def _log(self, what: str, message: str) -> None:
        """RETURNN's log_* options: True logs always, an int the first N times."""
        limit = self._log_limits[what]
        if limit:
            _logger.info(message)
            if not isinstance(limit, bool):
                self._log_limits[what] = limit - 1

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
