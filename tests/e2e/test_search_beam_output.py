"""Search output with the beam left in (no ``decide``): the ``beam_scores`` of a hand-set model whose scores are
known, and the search task writing ``[(score, hypothesis), ...]`` per seq as RETURNN does, with ``search_do_eval``."""

from __future__ import annotations

import ast
import itertools
import pathlib

import numpy as np
import pytest

pytest.importorskip("returnn_tf")

from test_rec_subnet import MAX_LEN, TRANSITIONS, _backend, _batches, _search_net, trained_search_config  # noqa: E402

from returnn_core.config import Config  # noqa: E402
from returnn_core.engine.driver import Engine  # noqa: E402
from returnn_core.engine.search import edit_distance  # noqa: E402


def _score(hyp: list[int]) -> float:
    """Log score per label of a hypothesis under TRANSITIONS (the previous label selects the row)."""
    return sum(float(TRANSITIONS[prev, lab]) for prev, lab in zip((0, *hyp[:-1]), hyp)) / len(hyp)


def test_the_beam_comes_out_best_first_with_its_length_normalised_scores() -> None:
    beam = 3
    net = dict(_search_net(beam), scores={"class": "beam_scores", "from": ["output"]})
    backend = _backend(net, search=True)
    backend.set_param_values({"output/rec/prob/W": TRANSITIONS, "output/rec/prob/b": np.zeros(3, "f")})
    all_hyps = [list(h) for n in range(1, MAX_LEN + 1) for h in itertools.product(range(3), repeat=n)
                if 0 not in h[:-1] and (n == MAX_LEN or h[-1] == 0)]
    best_three = sorted(_score(h) for h in all_hyps)[::-1][:beam]
    for batch in _batches(num=4):
        labels, lens = backend.forward_step(batch, "output")
        scores = backend.forward_step(batch, "scores")[0].reshape(batch.num_seqs, beam)
        assert labels.shape[0] == batch.num_seqs * beam
        for i in range(batch.num_seqs):
            np.testing.assert_allclose(scores[i], best_three, rtol=1e-5)
            for k in range(beam):
                row = i * beam + k
                np.testing.assert_allclose(_score(list(labels[row, : lens[row]])), scores[i, k], rtol=1e-5)


def test_edit_distance() -> None:
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 4]) == 2
    assert edit_distance([1, 2], [2, 1]) == 2


def test_search_task_writes_the_whole_beam_without_decide(tmp_path: pathlib.Path) -> None:
    base = trained_search_config(tmp_path, beam_size=3)
    log = tmp_path / "search.log"
    search = dict(base, task="search", search_data="train", search_output_file_format="py")
    Engine(Config(dict(search, search_output_layer="output", search_output_file=str(tmp_path / "beam.py"),
                       log=[str(log)], log_file_verbosity=1))).run()
    Engine(Config(dict(search, search_output_layer="decision", search_output_file=str(tmp_path / "best.py"),
                       search_do_eval=False))).run()
    beams = ast.literal_eval((tmp_path / "beam.py").read_text())
    best = ast.literal_eval((tmp_path / "best.py").read_text())
    assert list(beams) == ["a", "b"]
    for tag, entries in beams.items():
        assert len(entries) == 3
        scores = [score for score, _ in entries]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
        assert entries[0][1] == best[tag]  # decide picks the first entry of the beam
    hyps = {tag: [int(x) for x in entries[0][1].split()] for tag, entries in beams.items()}
    refs = {"a": [1, 2, 0], "b": [2, 1, 1, 0]}
    rate = sum(edit_distance(hyps[t], refs[t]) for t in refs) / 7
    assert f"label error rate {rate:.4g} (edit distance of the best hypothesis to 'classes')" in log.read_text()
