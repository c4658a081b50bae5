"""Cross-backend cases of rec sub-networks: ``rec`` with a dict unit, ``rnn_cell``, ``choice`` (teacher forcing in
training) and ``decide``; ``test_theano_vs_tf.py`` runs them with the other ``parity_cases_*.py`` modules."""

from __future__ import annotations

from typing import Any

#: case -> (network, config, data kind)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "rec-subnet-rnn-cell-choice-decide": (
        {"enc": {"class": "linear", "activation": "tanh", "n_out": 3},
         "enc_mean": {"class": "reduce", "mode": "mean", "axes": "T", "from": ["enc"]},
         "output": {"class": "rec", "from": ["data"], "target": "classes", "unit": {
             # dense: PyTensor's gradient of a row gather fails for a batch of one seq (AdvancedIncSubtensor1's
             # runtime broadcast check), which the sparse prev:output would hit in the one-seq batch here
             "embed": {"class": "linear", "activation": None, "n_out": 3, "from": ["prev:prob"]},
             "cell": {"class": "rnn_cell", "unit": "lstm", "n_out": 4, "from": ["data:source", "embed"]},
             # reads only the input frame: moved out of the loop and computed over the whole sequence
             "frame": {"class": "linear", "activation": "tanh", "n_out": 3, "from": ["data:source"]},
             "mix": {"class": "combine", "kind": "add", "from": ["frame", "base:enc_mean"]},
             "prob": {"class": "softmax", "from": ["cell", "mix"], "n_out": 3, "loss": "ce",
                      "target": "classes"},
             "output": {"class": "choice", "beam_size": 2, "target": "classes", "from": ["prob"]},
         }},
         "decision": {"class": "decide", "from": ["output"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
    # search forced on (the choice's search option): beam search through the loop with the top_k primitive, decide,
    # and the beam's scores; the loss reads the decided labels and the scores, so both backends must agree on them
    "rec-subnet-search-top-k-beam-scores": (
        {"output": {"class": "rec", "from": ["data"], "unit": {
            "prob": {"class": "softmax", "from": ["prev:output", "data:source"], "n_out": 3},
            "output": {"class": "choice", "beam_size": 3, "target": "classes", "from": ["prob"], "search": True},
        }},
         "decision": {"class": "decide", "from": ["output"]},
         "scores": {"class": "beam_scores", "from": ["output"]},
         "embed": {"class": "linear", "activation": "tanh", "n_out": 3, "from": ["decision"]},
         "mix": {"class": "combine", "kind": "add", "from": ["embed", "scores"]},
         "final": {"class": "softmax", "from": ["mix"], "loss": "ce"}},
        {"optimizer": {"class": "adam"}}, "eval_only",
    ),
}
