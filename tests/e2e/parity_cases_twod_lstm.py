"""Cross-backend case of the Theano-era 2D LSTMs (``mdlstm``, ``deep_lstm``), on images of the frames' features."""

from __future__ import annotations

from typing import Any

#: case -> (network, config, data kind), gathered by test_theano_vs_tf.py
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "theano-era-2d-lstms-adam": (
        {"img": {"class": "1Dto2D_fixed_size"},  # each frame a column: height 4 (the data dim), width T
         "md": {"class": "mdlstm", "n_out": 2, "directions": 2, "projection": "concat", "from": "img"},
         "deep": {"class": "deep_lstm", "n_out": 2, "depth": 2},
         # the softmax sums the image's rows, as RETURNN's output layer did with a 4D input
         "output": {"class": "softmax", "loss": "ce", "from": ["md", "deep"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
}
