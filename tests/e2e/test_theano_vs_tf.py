"""One config on the tf and the theano backend: same initial parameters, same batches, same losses and updates.

The cases are checked against the registries: every layer, rec unit, loss and optimizer that both backends
register must appear in some case, so a new definition cannot land without a cross-backend check.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

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

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
STEPS = 4
KINDS = ("layers", "rec_units", "losses", "updaters")
#: names only one backend has, and why (the test below holds the registries to exactly this list)
BACKEND_SPECIFIC = {
    ("layers", "eval"): "tf",  # evaluates TensorFlow code from the config
    # returnn-sprint's losses run Sprint through tf.py_function with the seq tags of the batch
    ("losses", "sprint"): "tf",
    ("losses", "fast_bw"): "tf",
}

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

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True), "dense": DataSpec(3), "bits": DataSpec(3)}


def _batches(kind: str) -> list:
    rng = np.random.RandomState(11)
    seqs = []
    for i in range(12):
        n = rng.randint(4, 10)
        labels = rng.randint(0, 3, n if kind != "ctc" else rng.randint(1, 3))
        feats = {"data": rng.randn(n, 4).astype("f"), "classes": labels.astype("int32"),
                 "dense": rng.uniform(-1, 1, (n, 3)).astype("f"),
                 "bits": (rng.uniform(0, 1, (n, 3)) > 0.5).astype("f")}
        seqs.append(DatasetSeq(i, f"seq-{i}", feats))
    ext = ExternData(EXTERN)
    return [b.to_data(ext) for b in generate_batches(seqs, batch_size=30, max_seqs=4)]


def _backend(name: str, net: dict, config: dict):
    manager = get_plugin_manager()
    backend = manager.backends.get(name)(Config(dict(config)), manager, Log(0))
    ext = ExternData(EXTERN)
    backend.build(resolve_network(net, ext.keys()), ext, train=True)
    return backend


def _assert_results_agree(a: Any, b: Any, what: str) -> None:
    assert a.frames == b.frames, what
    assert sorted(a.losses) == sorted(b.losses), what
    for layer in a.losses:
        np.testing.assert_allclose(b.losses[layer], a.losses[layer], rtol=2e-4, atol=1e-4, err_msg=f"{what} {layer}")
    assert sorted(a.errors) == sorted(b.errors), what
    for layer in a.errors:
        np.testing.assert_allclose(b.errors[layer], a.errors[layer], rtol=1e-5, atol=1e-5, err_msg=f"{what} {layer}")


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
    if kind != "eval_only":
        for i, bd in enumerate(batches[:STEPS]):
            _assert_results_agree(tf_backend.train_step(bd, 0.05), th_backend.train_step(bd, 0.05),
                                  f"{case} step {i}")
        for name, value in tf_backend.get_param_values().items():
            np.testing.assert_allclose(th_backend.get_param_values()[name], value, rtol=1e-3, atol=1e-4,
                                       err_msg=f"{case}: parameter {name} after {STEPS} updates")
    for bd in batches[-2:]:
        _assert_results_agree(tf_backend.eval_step(bd), th_backend.eval_step(bd), f"{case} eval")


def _used_names(net: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for layer in net.values():
        yield "layers", layer["class"]
        if layer["class"] == "rec":
            yield "rec_units", layer.get("unit", "lstm")
        if "loss" in layer:
            yield "losses", layer["loss"]
        if isinstance(layer.get("subnetwork"), Mapping):
            yield from _used_names(layer["subnetwork"])


def _registered(kind: str, backend: str) -> list[str]:
    """Names (not aliases) of one registry for one backend."""
    return [e.name for e in get_plugin_manager().registries[kind] if e.backend == backend and e.alias_of is None]


def test_every_registered_name_has_a_cross_backend_case() -> None:
    used = set()
    for net, config, _ in CASES.values():
        used.update(_used_names(net))
        used.add(("updaters", config["optimizer"]["class"]))
    manager = get_plugin_manager()
    for kind in KINDS:
        for name in _registered(kind, "tf"):
            if (kind, name) in BACKEND_SPECIFIC:
                continue
            aliases = {e.name for e in manager.registries[kind] if e.backend == "tf" and e.alias_of == name}
            assert {(kind, n) for n in {name} | aliases} & used, f"{kind} {name!r} has no cross-backend case"


def _options(kind: str, target: Any) -> Any:
    if kind == "layers":
        return sorted(target.options)
    if kind == "rec_units":
        return None if target.options is None else sorted(target.options)
    if kind == "losses":
        return getattr(target, "options", None)
    return (getattr(target, "defaults", None), getattr(target, "aliases", None))


def test_both_backends_register_the_same_names_and_options() -> None:
    manager = get_plugin_manager()
    for kind in KINDS:
        tf_names = {e.name for e in manager.registries[kind] if e.backend == "tf"}
        th_names = {e.name for e in manager.registries[kind] if e.backend == "theano"}
        only_tf = {n for n in tf_names - th_names if BACKEND_SPECIFIC.get((kind, n)) != "tf"}
        only_th = {n for n in th_names - tf_names if BACKEND_SPECIFIC.get((kind, n)) != "theano"}
        assert not only_tf and not only_th, f"{kind}: only tf {sorted(only_tf)}, only theano {sorted(only_th)}"
        for name in tf_names & th_names:
            a = manager.registries[kind].get(name, backend="tf")
            b = manager.registries[kind].get(name, backend="theano")
            assert _options(kind, a) == _options(kind, b), f"{kind} {name!r}: options differ between the backends"


def test_tf_only_layer_error_names_the_backend() -> None:
    net = {"e": {"class": "eval", "eval": "source(0) * 2"},
           "output": {"class": "softmax", "loss": "ce", "from": "e"}}
    with pytest.raises(UnknownNameError) as info:
        _backend("theano", net, {})
    msg = str(info.value)
    assert msg.startswith("layer 'e': unknown layer class 'eval' for backend 'theano'")
    assert "only backend 'tf' has it" in msg
