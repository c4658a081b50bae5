"""Cross-backend cases of the layers, units, losses and optimizers that were there first (issue 10).

Each ``parity_cases_*.py`` module of this folder defines ``CASES``; ``test_theano_vs_tf.py`` runs them all.
"""

from __future__ import annotations

from typing import Any

from returnn_core.plugin import get_plugin_manager

#: case -> (network, config, data kind; "eval_only" compares evaluation only, e.g. for random layers)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "lstm-adam": (
        {"fw": {"class": "rec", "unit": "standardlstm", "n_out": 6},
         "bw": {"class": "rec", "unit": "lstm", "n_out": 5, "direction": -1},
         "output": {"class": "softmax", "loss": "ce", "from": ["fw", "bw"]}},
        {"optimizer": {"class": "adam", "beta_1": 0.8}}, "ce",
    ),
    "gru-rnn-rmsprop-l2-clip": (
        {"g": {"class": "rec", "unit": "gru", "n_out": 5},
         "r": {"class": "rec", "unit": "rnn", "n_out": 4, "direction": -1, "from": "g"},
         "output": {"class": "softmax", "loss": "ce", "from": ["g", "r"], "L2": 0.01}},
        {"optimizer": {"class": "rmsprop", "momentum": 0.5}, "gradient_clip": 0.5}, "ce",
    ),
    "conv-norm-momentum-mse": (
        {"conv": {"class": "conv", "filter_size": (3,), "n_out": 6, "activation": "relu"},
         "pool": {"class": "pool", "mode": "max", "pool_size": (1,), "from": "conv"},
         "bn": {"class": "batch_norm", "from": "pool"},
         "ln": {"class": "layer_norm", "from": "bn"},
         "comb": {"class": "combine", "kind": "add", "from": ["ln", "pool"]},
         "output": {"class": "linear", "activation": "tanh", "n_out": 3, "loss": "mse", "target": "dense",
                    "from": "comb"}},
        {"optimizer": {"class": "momentum", "momentum": 0.8, "nesterov": True}}, "mse",
    ),
    "conv2d-shapes-adadelta": (
        {"split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
         "conv": {"class": "conv", "filter_size": (3, 2), "n_out": 3, "padding": "same", "from": "split",
                  "activation": "tanh"},
         "pool": {"class": "pool", "mode": "avg", "pool_size": (2, 1), "strides": (1, 1), "padding": "same",
                  "from": "conv"},
         "merge": {"class": "merge_dims", "axes": "static", "from": "pool"},
         "red": {"class": "reduce", "mode": "max", "axes": "F", "keep_dims": True, "from": "merge"},
         "output": {"class": "softmax", "loss": "ce", "from": ["merge", "red"]}},
        {"optimizer": {"class": "adadelta"}}, "ce",
    ),
    "window-pad-last-state-sgd": (
        {"win": {"class": "window", "window_size": 3},
         "flat": {"class": "merge_dims", "axes": "static", "from": "win"},
         "padded": {"class": "pad", "axes": "F", "padding": (1, 2), "value": 0.5, "from": "flat"},
         "rec": {"class": "rec", "unit": "gru", "n_out": 4, "from": "padded"},
         "last": {"class": "get_last_hidden_state", "from": "rec"},
         "comb": {"class": "combine", "kind": "mul", "from": ["rec", "last"]},
         "output": {"class": "softmax", "loss": "ce", "from": ["comb", "padded"]}},
        {"optimizer": {"class": "sgd"}}, "ce",
    ),
    "ctc-edit-distance-nadam": (
        {"fw": {"class": "rec", "unit": "standardlstm", "n_out": 6},
         "output": {"class": "softmax", "loss": "ctc", "from": "fw"},
         "ed": {"class": "softmax", "n_out": 3, "loss": "edit_distance", "from": "fw"}},
        {"optimizer": {"class": "nadam"}, "gradient_clip_global_norm": 1.0}, "ctc",
    ),
    "attention-weights-maxout": (
        {"enc": {"class": "linear", "n_out": 6, "activation": "tanh"},
         "energy": {"class": "linear", "n_out": 1, "with_bias": False, "from": "enc"},  # (a bias cancels)
         "att_w": {"class": "softmax_over_spatial", "energy_factor": 0.5, "from": "energy"},
         "att": {"class": "generic_attention", "weights": "att_w", "base": "enc", "from": "att_w"},
         "mix": {"class": "combine", "kind": "add", "from": ["enc", "att"]},
         "maxout": {"class": "reduce_out", "mode": "max", "num_pieces": 2, "from": "mix"},
         "output": {"class": "softmax", "loss": "ce", "from": "maxout"}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
    "adagrad-ff-slice-smoothing": (
        {"h": {"class": "hidden", "n_out": 7, "activation": "sigmoid"},
         "s": {"class": "slice", "axis": "F", "slice_start": 1, "from": "h"},
         "output": {"class": "softmax", "loss": "ce", "loss_opts": {"label_smoothing": 0.1}, "from": ["s", "h"]}},
        {"optimizer": {"class": "adagrad"}}, "ce",
    ),
    "source-copy-concat-activation-l1": (
        {"src": {"class": "source", "data_key": "data"},
         "copy": {"class": "copy", "from": ["src", "data"]},
         "act": {"class": "activation", "activation": "elu", "from": "copy"},
         "cat": {"class": "concat", "from": ["act", "copy"]},
         "hid": {"class": "forward", "n_out": 5, "activation": "softplus", "from": "cat"},
         "output": {"class": "linear", "n_out": 3, "loss": "l1", "target": "dense", "from": "hid"}},
        {"optimizer": {"class": "sgd"}}, "mse",
    ),
    "expand-squeeze-constant-generic-ce": (
        {"h": {"class": "linear", "n_out": 4, "activation": "tanh"},
         "e": {"class": "expand_dims", "axis": "F", "from": "h"},
         "sq": {"class": "squeeze", "axis": "F", "from": "e"},
         "c": {"class": "constant", "value": 0.5, "from": []},
         "comb": {"class": "combine", "kind": "sub", "from": ["sq", "c"]},
         "output": {"class": "softmax", "loss": "generic_ce", "from": "comb"}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
    "reinterpret-embedding-via-layer": (
        {"labels": {"class": "reinterpret_data", "from": "data:classes", "increase_sparse_dim": 2},
         "emb": {"class": "linear", "n_out": 4, "from": "labels"},
         "h": {"class": "linear", "n_out": 5, "activation": "relu", "from": ["emb", "data"]},
         "align": {"class": "copy", "from": "data:classes"},
         "output": {"class": "softmax", "n_out": 3, "loss": "via_layer", "loss_opts": {"align_layer": "align"},
                    "from": "h"}},
        {"optimizer": {"class": "sgd"}}, "ce",
    ),
    "subnetwork-bin-ce": (
        {"sub": {"class": "subnetwork", "from": "data", "subnetwork": {
            "h": {"class": "linear", "n_out": 5, "activation": "tanh", "from": "data"},
            "output": {"class": "linear", "n_out": 4, "from": ["h", "data"]}}},
         "output": {"class": "linear", "activation": "sigmoid", "n_out": 3, "loss": "bin_ce", "target": "bits",
                    "from": "sub"}},
        {"optimizer": {"class": "adam"}}, "bits",
    ),
    "time-chunking-rnn": (
        {"chunk": {"class": "time_chunking", "chunk_size": 3, "chunk_step": 2},
         "rec": {"class": "rec", "unit": "rnn", "n_out": 4, "from": "chunk"},
         "unchunk": {"class": "time_unchunking", "chunking_layer": "chunk", "from": "rec"},
         "output": {"class": "softmax", "loss": "ce", "from": "unchunk"}},
        {"optimizer": {"class": "sgd"}}, "ce",
    ),
    "dropout-eval": (
        {"drop": {"class": "dropout", "dropout": 0.3},
         "h": {"class": "linear", "n_out": 5, "activation": "tanh", "dropout": 0.2, "from": "drop"},
         "output": {"class": "softmax", "loss": "ce", "from": "h"}},
        {"optimizer": {"class": "sgd"}}, "eval_only",
    ),
}
if ("tf", "nativelstm") in get_plugin_manager().rec_units:
    CASES["nativelstm-blstm"] = (
        {"fw": {"class": "rec", "unit": "nativelstm", "n_out": 5},
         "bw": {"class": "rec", "unit": "nativelstm", "n_out": 5, "direction": -1},
         "output": {"class": "softmax", "loss": "ce", "from": ["fw", "bw"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    )
