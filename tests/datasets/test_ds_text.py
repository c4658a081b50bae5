"""LmDataset and TranslationDataset on real (gzipped) text files and vocabularies."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
from returnn_datasets.lm import LmDataset

from returnn_core.datasets import init_dataset
from returnn_core.errors import DatasetError


def test_char_lm_from_gzip_corpus(tmp_path, manager) -> None:
    symbols = ["[START]", "[END]", "[UNKNOWN]", " ", "a", "b", "c"]
    (tmp_path / "chars.txt").write_text("\n".join(symbols) + "\n")
    with gzip.open(tmp_path / "corpus.txt.gz", "wt") as f:
        f.write("ab c\n\nca\nabz\n")
    spec = {
        "class": "LmDataset", "corpus_file": str(tmp_path / "corpus.txt.gz"),
        "orth_symbols_file": str(tmp_path / "chars.txt"), "auto_replace_unknown_symbol": True,
        "add_delayed_seq_data": True,
    }
    ds = init_dataset(spec, manager=manager)
    assert ds.num_outputs == {"data": [7, 1], "delayed": [7, 1]}
    assert ds.data_specs()["data"].labels == tuple(symbols)
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 3  # the empty line is skipped
    decode = lambda a: [symbols[i] for i in a]  # noqa: E731
    assert decode(ds.get_data(0, "data")) == ["a", "b", " ", "c", "[END]"]
    assert decode(ds.get_data(0, "delayed")) == ["[START]", "a", "b", " ", "c"]
    assert decode(ds.get_data(2, "data")) == ["a", "b", "[UNKNOWN]", "[END]"]
    assert ds.get_tag(1) == "line-1"

    spec.pop("auto_replace_unknown_symbol")
    with pytest.raises(DatasetError, match=r"corpus.txt.gz:4: symbol 'z' is not in the vocabulary"):
        init_dataset(spec, manager=manager)


def test_word_lm_with_vocab_map_and_several_files(tmp_path, manager) -> None:
    (tmp_path / "vocab.txt").write_text("<s> 0\n</s> 1\n<unk> 2\nthe 3\ncat 4\nsat 5\n")
    (tmp_path / "a.txt").write_text("the cat sat\n")
    (tmp_path / "b.txt").write_text("the dog sat\n")
    ds = init_dataset({
        "class": "LmDataset", "corpus_file": [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")],
        "orth_symbols_map_file": str(tmp_path / "vocab.txt"), "word_based": True, "seq_end_symbol": "</s>",
        "unknown_symbol": "<unk>", "auto_replace_unknown_symbol": True,
    }, manager=manager)
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(0, "data"), [3, 4, 5, 1])
    np.testing.assert_array_equal(ds.get_data(1, "data"), [3, 2, 5, 1])


def test_lm_bad_input(tmp_path) -> None:
    (tmp_path / "chars.txt").write_text("a\n[END]\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match="empty.txt has no non-empty lines"):
        LmDataset(str(tmp_path / "empty.txt"), orth_symbols_file=str(tmp_path / "chars.txt"))
    with pytest.raises(DatasetError, match="nothere.txt does not exist"):
        LmDataset(str(tmp_path / "nothere.txt"), orth_symbols_file=str(tmp_path / "chars.txt"))
    with pytest.raises(DatasetError, match="orth_symbols_file"):
        LmDataset(str(tmp_path / "empty.txt"))
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DatasetError, match="broken.gz cannot be read"):
        LmDataset(str(tmp_path / "broken.gz"), orth_symbols_file=str(tmp_path / "chars.txt"))


def test_translation_dataset(tmp_path, manager) -> None:
    src_vocab = {"<S>": 0, "</S>": 1, "<UNK>": 2, "hallo": 3, "welt": 4}
    tgt_vocab = {"<S>": 0, "</S>": 1, "<UNK>": 2, "hello": 3, "world": 4}
    for side, vocab in (("source", src_vocab), ("target", tgt_vocab)):
        with open(tmp_path / f"{side}.vocab.pkl", "wb") as f:
            pickle.dump(vocab, f)
    with gzip.open(tmp_path / "source.train.gz", "wt") as f:
        f.write("hallo welt\nwelt mars\n")
    (tmp_path / "target.train").write_text("hello world\nworld\n")
    ds = init_dataset({
        "class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "train",
        "source_postfix": " </S>", "target_postfix": " </S>", "unknown_label": "<UNK>",
    }, manager=manager)
    assert ds.num_outputs == {"data": [5, 1], "classes": [5, 1]}
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(0, "data"), [3, 4, 1])
    np.testing.assert_array_equal(ds.get_data(1, "data"), [4, 2, 1])
    np.testing.assert_array_equal(ds.get_data(1, "classes"), [4, 1])
    (tmp_path / "target.dev").write_text("hello\n")
    (tmp_path / "source.dev").write_text("hallo\nwelt\n")
    with pytest.raises(DatasetError, match="has 2 lines but .*target.dev has 1"):
        init_dataset({"class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "dev"}, manager=manager)


def test_lm_orthography_as_returnn_parses_it(tmp_path) -> None:
    # RETURNN's parse_orthography: (){} removed, whitespace collapsed, [specials] one upper-cased symbol;
    # orth_replace_map_file maps symbols; a "</s>" line is no seq; the symbols file's line number is the index
    symbols = ["[END]", "a", "b", " ", "[NOISE]", "[UNK]", "", "k", "s", "a"]
    (tmp_path / "chars.syms").write_text("\n".join(symbols) + "\n")
    (tmp_path / "corpus.txt").write_text("  a (b)\t {b}  [noise]\n</s>\nx b\nzz\n")
    (tmp_path / "replace.json").write_text('{"x": "ks", "[NOISE]": "[unk]"}')
    ds = LmDataset(lambda: str(tmp_path / "corpus.txt"), orth_symbols_file=str(tmp_path / "chars.syms"),
                   orth_replace_map_file=str(tmp_path / "replace.json"), error_on_invalid_seq=False)
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 2 and ds.num_skipped == 1  # "zz" has an unknown symbol and errors are off
    assert ds.get_data(0, "data").tolist() == [9, 3, 2, 3, 2, 3, 5, 0]  # "a" is on line 1 and 9: the last counts
    assert ds.get_data(1, "data").tolist() == [7, 8, 3, 2, 0]
    assert ds.num_outputs == {"data": [10, 1]}

    dropped = LmDataset(str(tmp_path / "corpus.txt"), orth_symbols_file=str(tmp_path / "chars.syms"),
                        auto_replace_unknown_symbol=True, unknown_symbol=None, seq_end_symbol=None,
                        parse_orth_opts={"prefix": ["[NOISE]"]})
    dropped.init_seq_order(epoch=1)
    assert [dropped.get_data(i, "data").tolist() for i in range(dropped.num_seqs)] == [
        [4, 9, 3, 2, 3, 2, 3, 4], [4, 3, 2], [4]]  # x and z dropped


def test_lm_bliss_corpus_and_char_based_symbol_map(tmp_path) -> None:
    bliss = (b'<?xml version="1.0" encoding="utf8"?>\n<corpus name="c"><recording name="r">'
             b'<segment name="1"><orth> ab\n  ba </orth></segment><segment name="2"><orth>b</orth></segment>'
             b"</recording></corpus>\n")
    with gzip.open(tmp_path / "corpus.xml.gz", "wb") as f:
        f.write(bliss)
    (tmp_path / "map.txt").write_text("{'[END]': 0, 'a': 1, 'b': 2, ' ': 3}")
    ds = LmDataset(str(tmp_path / "corpus.xml.gz"), orth_symbols_map_file=str(tmp_path / "map.txt"))
    ds.init_seq_order(epoch=1)  # a symbol map alone does not make it word based (RETURNN's word_based=False)
    assert [ds.get_data(i, "data").tolist() for i in range(2)] == [[1, 2, 3, 2, 1, 0], [2, 0]]
    (tmp_path / "broken.xml").write_text("<corpus><segment><orth>a</orth></segment>")
    with pytest.raises(DatasetError, match="broken.xml is not well-formed XML"):
        LmDataset(str(tmp_path / "broken.xml"), orth_symbols_map_file=str(tmp_path / "map.txt"))
