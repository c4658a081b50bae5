"""One config on the tf and the theano backend: same initial parameters, same batches, same first-step losses."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402
from returnn_core.errors import UnknownNameError  # noqa: E402
from returnn_core.log import Log  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

STEPS = 4

CASES = {
    "lstm-adam": (
        {"fw": {"class": "rec", "unit": "standardlstm", "n_out": 6},
         "bw": {"class": "rec", "unit": "lstm", "n_out": 5, "direction": -1},
         "output": {"class": "softmax", "loss": "ce", "from": ["fw", "bw"]}},
        {"optimizer": {"class": "adam"}}, "ce",
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
        {"optimizer": {"class": "momentum", "momentum": 0.8}}, "mse",
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
    "ctc-nadam": (
        {"fw": {"class": "rec", "unit": "standardlstm", "n_out": 6},
         "output": {"class": "softmax", "loss": "ctc", "from": "fw"}},
        {"optimizer": {"class": "nadam"}, "gradient_clip_global_norm": 1.0}, "ctc",
    ),
    "adagrad-ff-slice": (
        {"h": {"class": "linear", "n_out": 7, "activation": "sigmoid"},
         "s": {"class": "slice", "axis": "F", "slice_start": 1, "from": "h"},
         "output": {"class": "softmax", "loss": "ce", "from": ["s", "h"]}},
        {"optimizer": {"class": "adagrad"}}, "ce",
    ),
}

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True), "dense": DataSpec(3)}


def _batches(kind: str) -> list:
    rng = np.random.RandomState(11)
    seqs = []
    for i in range(12):
        n = rng.randint(4, 10)
        labels = rng.randint(0, 3, n if kind != "ctc" else rng.randint(1, 3))
        feats = {"data": rng.randn(n, 4).astype("f"), "classes": labels.astype("int32"),
                 "dense": rng.uniform(-1, 1, (n, 3)).astype("f")}
        seqs.append(DatasetSeq(i, f"seq-{i}", feats))
    ext = ExternData(EXTERN)
    return [b.to_data(ext) for b in generate_batches(seqs, batch_size=30, max_seqs=4)]


def _backend(name: str, net: dict, config: dict):
    manager = get_plugin_manager()
    backend = manager.backends.get(name)(Config(dict(config)), manager, Log(0))
    ext = ExternData(EXTERN)
    backend.build(resolve_network(net, ext.keys()), ext, train=True)
    return backend


@pytest.mark.parametrize("case", list(CASES))
def test_first_steps_agree(case: str) -> None:
    net, config, kind = CASES[case]
    tf_backend = _backend("tf", net, config)
    th_backend = _backend("theano", net, config)
    tf_params = tf_backend.get_param_values()
    th_params = th_backend.get_param_values()
    assert sorted(tf_params) == sorted(th_params)
    for name, value in tf_params.items():
        assert value.shape == th_params[name].shape, name
    th_backend.set_param_values(tf_params)
    batches = _batches(kind)
    assert len(batches) >= STEPS
    for i, bd in enumerate(batches[:STEPS]):
        a, b = tf_backend.train_step(bd, 0.05), th_backend.train_step(bd, 0.05)
        assert a.frames == b.frames
        for layer in a.losses:
            np.testing.assert_allclose(b.losses[layer], a.losses[layer], rtol=2e-4, atol=1e-4,
                                       err_msg=f"{case} step {i} layer {layer}")
        if kind == "ce":
            assert a.errors == b.errors
    for name, value in tf_backend.get_param_values().items():
        np.testing.assert_allclose(th_backend.get_param_values()[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
    ev_a, ev_b = tf_backend.eval_step(batches[-1]), th_backend.eval_step(batches[-1])
    np.testing.assert_allclose(ev_b.losses["output"], ev_a.losses["output"], rtol=2e-4, atol=1e-4)


def test_tf_only_layer_error_names_the_backend() -> None:
    net = {"chunk": {"class": "time_chunking", "chunk_size": 3},
           "output": {"class": "softmax", "loss": "ce", "from": "chunk"}}
    with pytest.raises(UnknownNameError) as info:
        _backend("theano", net, {})
    msg = str(info.value)
    assert msg.startswith("layer 'chunk': unknown layer class 'time_chunking' for backend 'theano'")
    assert "only backend 'tf' has it" in msg
