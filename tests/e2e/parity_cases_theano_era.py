"""Cross-backend cases of the manual's Theano-era layer classes and rec units (issue 12)."""

from __future__ import annotations

from typing import Any

#: case -> (network, config, data kind), gathered by test_theano_vs_tf.py
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "theano-era-lstm-classes-adam": (
        {"l2": {"class": "lstm2", "n_out": 4, "n_cells": 5, "n_proj": 2, "peepholes": True, "direction": -1,
                "grad_clip": 1.0, "activation": "tanh,tanh"},
         "lopt": {"class": "lstm_opt", "n_out": 3, "sharp_gates": "global"},
         "simple": {"class": "lstm_simple", "n_out": 3, "reverse": True, "dropout": 0.0},
         "ln": {"class": "ln_lstm", "n_out": 3, "from": "l2"},
         "assoc": {"class": "associative_lstm", "n_out": 4, "n_copies": 2, "grad_clip": 1.0},
         "generic": {"class": "generic_lstm", "n_out": 3, "sublayer": {"class": "hidden", "activation": "identity"},
                     "out_sublayer": {"class": "linear", "activation": "relu"}, "from": "lopt"},
         "output": {"class": "softmax", "loss": "ce", "from": ["l2", "lopt", "simple", "ln", "assoc", "generic"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
    "theano-era-recurrent-sgd": (
        {"h": {"class": "hidden", "n_out": 5, "from": ["data", "data:classes"]},
         "r": {"class": "recurrent", "n_out": 4, "projection": 2, "from": "h"},
         "lin": {"class": "linear_recurrent", "n_out": 3, "direction": -1},
         "l": {"class": "lstm", "n_out": 3, "from": "h"},
         "l3": {"class": "lstm3", "n_out": 3, "grad_clip": 2.0},
         "native": {"class": "native_lstm", "n_out": 3, "direction": -1, "from": "h"},
         "sru": {"class": "rec", "unit": "sru", "n_out": 3},
         "output": {"class": "softmax", "loss": "ce", "from": ["r", "lin", "l", "l3", "native", "sru"]}},
        {"optimizer": {"class": "sgd"}}, "ce",
    ),
    "theano-era-time-axis-momentum": (
        {"pad": {"class": "frame_concat_zero", "num_frames": 2},
         "cut": {"class": "frame_cutoff", "num_frames": 2, "from": "pad"},
         "shift": {"class": "time_shift", "n_shift": 1, "from": "cut"},
         "chunk": {"class": "chunking", "chunk_size": 2, "from": "shift"},
         "down": {"class": "downsample", "factor": 2, "axis": "F", "from": "shift"},
         "ff": {"class": "forward", "n_out": 4, "activation": "tanh", "from": "chunk"},
         "up": {"class": "upsample", "factor": 2, "axis": "T", "time_like_last_source": True, "from": ["ff", "data"]},
         "wide": {"class": "upsample", "factor": 2, "axis": 2, "from": "up"},
         "rev": {"class": "reverse", "from": "wide"},
         "half": {"class": "scale_grad", "scale": 0.5, "from": "rev"},
         "prod": {"class": "bin_op", "op": "*", "from": ["half", "wide"]},
         "rows": {"class": "add_zero_rows", "row_index": 2, "from": "prod"},
         "fewer": {"class": "remove_rows", "row_index": 0, "number": 2, "from": "rows"},
         "labels": {"class": "idx_to_vec", "n_out": 3, "from": "data:classes"},
         "squash": {"class": "tanh_to_sigmoid", "from": "fewer"},
         "stretch": {"class": "sigmoid_to_tanh", "from": "squash"},
         "total": {"class": "sum", "from": ["stretch", "fewer"]},
         "emb": {"class": "embedding", "n_out": 2, "from": ["data", "data:classes"]},
         "emb_shared": {"class": "hidden_shared", "base": "emb_h", "from": "rbf"},
         "emb_h": {"class": "hidden", "n_out": 2, "from": "comb"},
         "rbf": {"class": "rbf", "n_out": 2},
         "comb": {"class": "linear_comb", "n_out": 2, "n_comb": 2},
         "poly": {"class": "polynomial_expansion", "n_degree": 2, "from": "comb"},
         "pick": {"class": "random_selection", "n_out": 3},
         "blur": {"class": "time_blur", "t_start": -1, "t_end": 2, "t_step": 1, "distribution": "hamming",
                  "from": "rbf"},
         "trunc": {"class": "trunc", "n_trunc": 3, "from": "pick"},
         "trunc_cat": {"class": "time_concat", "from": ["trunc", "pick"]},
         "trunc_back": {"class": "upsample", "factor": 1, "axis": "T", "time_like_last_source": True,
                        "from": ["trunc_cat", "data"]},
         "output": {"class": "softmax", "loss": "ce",
                    "from": ["total", "down", "labels", "emb", "emb_shared", "poly", "blur", "trunc_back"]}},
        {"optimizer": {"class": "momentum", "momentum": 0.5}}, "ce",
    ),
    # the classes of the second round in one case (one graph per backend): gated units, ACT, images
    "theano-era-gated-images-adam": (
        {"gru": {"class": "gru", "n_out": 3, "reverse": True, "from": ["data", "data:classes"]},
         "sru": {"class": "sru", "n_out": 3, "psize": 2, "carry_time": True, "from": "gru"},
         "act": {"class": "act_lstm", "n_out": 2, "n_max_calc_steps": 2, "time_penalty": 0.1, "grad_clip": 1.0,
                 "direction": -1},
         "sizes": {"class": "constant", "value": 2, "n_out": 1},  # every image 2 x 2 from the first 4 frames
         "img": {"class": "1Dto2D", "from": ["data", "sizes"]},
         "conv": {"class": "conv2", "n_features": 2, "filter": [1, 2], "pool_size": [2, 1], "from": "img"},
         "rows": {"class": "2Dto1D", "from": "conv"},
         "stretch": {"class": "upsample", "factor": 1, "axis": "T", "time_like_last_source": True,
                     "from": ["rows", "data"]},
         "fixed": {"class": "1Dto2D_fixed_size", "d_row": 2},
         "conv_f": {"class": "conv2", "n_features": 3, "filter": [2, 1], "pool_size": [1, 1], "activation": "relu",
                    "from": "fixed"},
         "cols": {"class": "2Dto1D", "collapse": "pad_2", "maxout": True, "from": "conv_f"},
         "output": {"class": "softmax", "loss": "ce", "from": ["sru", "act", "cols", "stretch"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
    # the LSTMs with other gate shapes and sra compared in evaluation only (their gradients are the backends'
    # autodiff of the same ops; a training comparison of four more scans costs a minute of the suite)
    "theano-era-gate-shapes-eval": (
        {"sra": {"class": "sra", "n_out": 2, "reverse": True, "psize": 1},
         "half": {"class": "lstm_half_gates", "n_out": 2, "from": "sra"},
         "proj": {"class": "lstm_proj_gates", "n_out": 2, "n_gate_proj": 1},
         "cplx": {"class": "lstm_complex", "n_out": 2, "grad_clip": 1.0, "use_complex": "1:1:0:1"},
         "output": {"class": "softmax", "loss": "ce", "from": ["half", "proj", "cplx"]}},
        {"optimizer": {"class": "adam"}}, "eval_only",
    ),
    # the native layer class: its LSTM is the lstm unit every LSTM class above trains through (evaluation only)
    "theano-era-native-eval": (
        {"pre": {"class": "hidden", "n_out": 8, "activation": "identity", "from": ["data", "data:classes"]},
         "nat": {"class": "native", "native_class": "LstmGenericBase", "n_out": 2,
                 "params": [{"name": "W_re", "shape": ["n_out", "n_out*4"]}], "from": "pre"},
         "output": {"class": "softmax", "loss": "ce", "from": "nat"}},
        {"optimizer": {"class": "adam"}}, "eval_only",
    ),
}
