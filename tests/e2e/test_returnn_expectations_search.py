"""RETURNN's search output file (its Engine.search of 2018-2019): seqs in corpus order, whatever order ran."""

from __future__ import annotations

import ast
import pathlib

import pytest

pytest.importorskip("returnn_tf")

from test_rec_subnet import trained_search_config  # noqa: E402

from returnn_core.config import Config  # noqa: E402
from returnn_core.engine import Engine  # noqa: E402


def test_search_output_in_corpus_order_when_the_data_runs_reversed(tmp_path: pathlib.Path) -> None:
    base = trained_search_config(tmp_path, beam_size=2)
    reversed_data = dict(base["train"], seq_ordering="reverse")
    texts = {}
    for fmt in ("py", "txt"):
        out = tmp_path / f"search.{fmt}"
        Engine(Config(dict(base, task="search", search_data=reversed_data, search_output_layer="decision",
                           search_output_file=str(out), search_output_file_format=fmt))).run()
        texts[fmt] = out.read_text()
    hyps = ast.literal_eval(texts["py"])
    assert list(hyps) == ["a", "b"]  # corpus order, not the run order b, a
    assert texts["txt"] == "".join(f"{hyps[tag]}\n" for tag in ("a", "b"))
