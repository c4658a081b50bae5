"""Network-dict resolution shared by all backends."""

from __future__ import annotations

import pytest

from returnn_core.errors import NetworkError
from returnn_core.network import DataRef, LayerRef, resolve_network

KEYS = ["data", "classes", "speaker"]


def test_default_from_data_and_order():
    net = resolve_network(
        {
            "output": {"class": "softmax", "from": ["fw", "bw"], "loss": "ce"},
            "bw": {"class": "rec", "from": "data", "direction": -1},
            "fw": {"class": "rec"},
        },
        KEYS,
    )
    order = list(net.layers)
    assert order.index("fw") < order.index("output") and order.index("bw") < order.index("output")
    assert net["fw"].sources == [DataRef("data")]
    assert net["output"].sources == [LayerRef("fw"), LayerRef("bw")]
    assert net.output_layers == ["output"] and net["output"].target == "classes"
    assert net["bw"].opts == {"direction": -1}


def test_data_key_sources_and_outputs():
    net = resolve_network(
        {"a": {"class": "copy", "from": "data:speaker", "is_output_layer": True},
         "b": {"class": "linear", "from": "a", "loss": "mse", "target": "speaker"}},
        KEYS,
    )
    assert net["a"].sources == [DataRef("speaker")]
    assert net.output_layers == ["a", "b"] and net["b"].target == "speaker"
    assert [s.name for s in net.loss_layers] == ["b"]


@pytest.mark.parametrize(
    ("net", "pattern"),
    [
        ({"output": {"class": "softmax", "from": "lstm1"}, "lstm2": {"class": "rec"}}, r"layer 'output': 'from' names layer 'lstm1'.*did you mean 'lstm2'"),
        ({"output": {"class": "copy", "from": "data:nope"}}, r"layer 'output': 'from' names data key 'nope'"),
        ({"output": {"from": "data"}}, r"layer 'output' has no 'class'"),
        ({"a": {"class": "copy", "from": "b"}, "b": {"class": "copy", "from": "a"}, "output": {"class": "copy", "from": "a"}},
         r"depends on itself: a -> b -> a"),
        ({"a": {"class": "copy"}}, r"no output layer"),
        ({}, r"non-empty dict"),
        ({"output": {"class": "copy", "reuse_params": "output"}}, r"depends on itself"),
    ],
)
def test_errors_name_the_layer(net, pattern):
    with pytest.raises(NetworkError, match=pattern):
        resolve_network(net, KEYS)


def test_subnetwork_base_refs_are_dependencies():
    net = resolve_network(
        {
            "output": {"class": "softmax", "from": "sub", "loss": "ce"},
            "sub": {"class": "subnetwork", "from": "data",
                    "subnetwork": {"output": {"class": "combine", "from": ["data", "base:side"]}}},
            "side": {"class": "linear", "from": "data", "n_out": 3},
        },
        KEYS,
    )
    order = list(net.layers)
    assert order.index("side") < order.index("sub") < order.index("output")
    assert "side" in net["sub"].deps


def test_base_refs_in_a_rec_units_options_are_dependencies():
    # RETURNN's 2018 attention decoders name the encoder through an option (generic_attention's "base")
    net = resolve_network(
        {
            "output": {"class": "rec", "from": [], "target": "classes", "unit": {
                "att": {"class": "generic_attention", "weights": "att_weights", "base": "base:encoder"},
                "att_weights": {"class": "softmax_over_spatial", "from": ["energy"]},
                "energy": {"class": "linear", "from": ["base:enc_ctx"], "n_out": 1, "activation": None},
                "output": {"class": "softmax", "from": ["att"], "loss": "ce", "target": "classes"}}},
            "enc_ctx": {"class": "linear", "from": "data", "n_out": 3},
            "encoder": {"class": "linear", "from": "data", "n_out": 3},
        },
        KEYS,
    )
    order = list(net.layers)
    assert order.index("encoder") < order.index("output") and order.index("enc_ctx") < order.index("output")
    assert {"encoder", "enc_ctx"} <= set(net["output"].deps)


def test_initial_values():
    import numpy as np

    from returnn_core.network import initial_value

    rng = np.random.RandomState(0)
    w = initial_value("glorot_uniform", (30, 20), rng, what="W")
    assert w.dtype == np.float32 and np.abs(w).max() <= np.sqrt(6 / 50) and w.std() > 0.05
    q = initial_value("orthogonal", (8, 5), rng, what="W")
    assert np.allclose(q.T @ q, np.eye(5), atol=1e-5)
    assert (initial_value("zeros", (3,), rng, what="b") == 0).all() and (initial_value(0.5, (2,), rng, what="b") == 0.5).all()
    assert np.abs(initial_value("uniform:0.1", (100,), rng, what="b")).max() <= 0.1
    with pytest.raises(NetworkError, match="layer 'x' parameter 'W': unknown initializer 'bogus'"):
        initial_value("bogus", (2, 2), rng, what="layer 'x' parameter 'W'")


def test_layer_class_lookup_names_the_layer():
    from returnn_core.errors import UnknownNameError
    from returnn_core.network import resolve_layer_class
    from returnn_core.plugin import PluginManager

    pm = PluginManager(disabled=())
    pm.layers.register("softmax", "json:JSONDecoder", backend="mine")
    net = resolve_network({"output": {"class": "sofmax", "loss": "ce"}}, KEYS)
    with pytest.raises(UnknownNameError, match=r"^layer 'output': unknown layer class 'sofmax' for backend 'mine' \(did you mean 'softmax'\?\)"):
        resolve_layer_class(pm, net["output"], "mine")
    assert resolve_layer_class(pm, resolve_network({"output": {"class": "softmax"}}, KEYS)["output"], "mine").__name__ == "JSONDecoder"


def test_axis_names():
    from returnn_core.network import axis_index

    dense = {"rank": 3, "has_time": True, "sparse": False, "layer": "x"}
    assert [axis_index(a, **dense) for a in ("B", "time", "F", -1, 1)] == [0, 1, 2, 2, 1]
    with pytest.raises(NetworkError, match="layer 'x': axis 'T', but the input has no time axis"):
        axis_index("T", rank=2, has_time=False, sparse=False, layer="x")
    with pytest.raises(NetworkError, match="no feature axis"):
        axis_index("F", rank=2, has_time=True, sparse=True, layer="x")
    with pytest.raises(NetworkError, match="axis 3 out of range for rank 3"):
        axis_index(3, **dense)
    with pytest.raises(NetworkError, match="unknown axis 'Q'"):
        axis_index("Q", **dense)
