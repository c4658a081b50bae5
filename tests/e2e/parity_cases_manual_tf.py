"""Cross-backend cases of the manual's TF layer classes added in issue 11 (attention, time axis, statistics,
static weights, variable) and of the nativelstm2/nativelstmlowmem units; ``test_theano_vs_tf.py`` runs them."""

from __future__ import annotations

from typing import Any

from returnn_core.plugin import get_plugin_manager

#: case -> (network, config, data kind)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "manual-tf-gating-time-axis": (
        {"h": {"class": "linear", "n_out": 6, "activation": "tanh"},
         "gate": {"class": "gating", "activation": "tanh", "from": "h"},
         "pre": {"class": "prefix_in_time", "prefix": 0.5, "repeat": 2, "from": "gate"},
         "post": {"class": "postfix_in_time", "postfix": -0.5, "from": "pre"},
         "up": {"class": "resize", "axis": "T", "factor": 2, "kind": "linear", "from": "post"},
         "mean_up": {"class": "reduce", "mode": "mean", "axes": "T", "from": "up"},
         "scaled": {"class": "elemwise_prod", "axes": "F", "from": "gate"},
         "comb": {"class": "combine", "kind": "add", "from": ["scaled", "mean_up"]},
         "output": {"class": "softmax", "loss": "ce", "from": ["comb", "gate"]}},
        {"optimizer": {"class": "sgd"}}, "ce",
    ),
    "manual-tf-attention": (
        {"enc": {"class": "linear", "n_out": 4, "activation": "tanh"},
         # no bias: it would add the same energy to every frame, which the softmax cancels (a zero gradient that
         # Adam turns into noise)
         "enc_ctx": {"class": "linear", "n_out": 5, "with_bias": False, "from": "enc"},
         "query": {"class": "linear", "n_out": 5, "from": "data"},
         "att": {"class": "dot_attention", "base": "enc", "base_ctx": "enc_ctx", "from": "query"},
         "step_query": {"class": "variable", "shape": (5,), "init": 0.3, "from": []},
         "step_att": {"class": "dot_attention", "base": "enc", "base_ctx": "enc_ctx", "from": "step_query"},
         "loc": {"class": "linear", "n_out": 1, "activation": "softplus", "from": "enc"},
         "gauss": {"class": "gauss_window_attention", "base": "enc", "window_size": 3, "std": 1.5, "from": "loc"},
         "comb": {"class": "combine", "kind": "add", "from": ["att", "step_att", "gauss"]},
         "output": {"class": "softmax", "loss": "ce", "from": ["comb", "enc"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
    "manual-tf-static-weights-statistics": (
        {"split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
         "combined": {"class": "combine_dims", "axes": [3, 2], "from": "split"},
         "wsum": {"class": "weighted_sum", "axes": "spatial_except_time", "from": "split"},
         "smooth": {"class": "weighted_sum", "axes": "T", "size": (3,), "padding": "same", "from": "combined"},
         "chunks": {"class": "time_chunking", "chunk_size": 1, "chunk_step": 1, "from": "combined"},
         "frames": {"class": "reduce", "mode": "sum", "axes": "T", "from": "chunks"},
         "unflat": {"class": "split_batch_time", "base": "data", "from": "frames"},
         "running": {"class": "accumulate_mean", "exp_average": 0.5, "from": "combined"},
         "positive": {"class": "compare", "kind": "greater", "value": 0.0, "from": "data"},
         "twice": {"class": "concat", "from": [("combined", "T"), ("data", "T")]},
         "twice_mean": {"class": "reduce", "mode": "mean", "axes": "T", "from": "twice"},
         "sum": {"class": "combine", "kind": "add", "from": ["smooth", "unflat", "running", "twice_mean"]},
         "aligned": {"class": "reinterpret_data", "from": "data:classes", "register_as_extern_data": "alignment"},
         "output": {"class": "softmax", "loss": "ce", "target": "alignment", "n_out": 3, "from": ["sum", "wsum"]},
         "stats": {"class": "framewise_statistics", "sil_label_idx": 0, "histogram_num_bins": 2, "from": "output"}},
        {"optimizer": {"class": "momentum"}}, "ce",
    ),
}
if ("tf", "nativelstm") in get_plugin_manager().rec_units:
    CASES["manual-tf-nativelstm2-lowmem"] = (
        {"fw": {"class": "rec", "unit": "nativelstm2", "n_out": 4},
         "bw": {"class": "rec", "unit": "nativelstmlowmem", "n_out": 3, "direction": -1, "from": "fw"},
         "output": {"class": "softmax", "loss": "ce", "from": ["fw", "bw"]}},
        {"optimizer": {"class": "adam"}}, "ce",
    )
