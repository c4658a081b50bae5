"""Layers through the backend's forward step: shapes, values against numpy, seq lengths, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from tf_helpers import make_backend

from returnn_core.datasets import BatchData
from returnn_core.errors import NetworkError, ReturnnError

RNG = np.random.RandomState(3)
X = RNG.normal(size=(2, 7, 3)).astype(np.float32)
LENS = np.array([7, 5], np.int32)
CLS = RNG.randint(0, 2, size=(2, 7)).astype(np.int32)


def batch() -> BatchData:
    return BatchData({"data": X.copy(), "classes": CLS.copy()}, {"data": LENS, "classes": LENS}, ["a", "b"], [0, 1])


def forward(net: dict, layer: str = "output", **kw) -> tuple[np.ndarray, np.ndarray, object]:
    backend = make_backend(net, train=False, **kw)
    out, lens = backend.forward_step(batch(), layer)
    return out, lens, backend


def test_linear_values_and_canonical_params() -> None:
    out, lens, be = forward({"output": {"class": "linear", "activation": "tanh", "n_out": 4}})
    p = be.get_param_values()
    assert p["output/W"].shape == (3, 4) and p["output/b"].shape == (4,)
    np.testing.assert_allclose(out, np.tanh(X @ p["output/W"] + p["output/b"]), atol=1e-5)
    assert list(lens) == [7, 5]


def test_sparse_input_is_an_embedding_and_aliases() -> None:
    out, _, be = forward({"output": {"class": "forward", "from": "data:classes", "n_out": 5, "with_bias": False}})
    # forward/hidden are the Theano-era ForwardLayer, whose activation defaults to sigmoid
    np.testing.assert_allclose(out, 1.0 / (1.0 + np.exp(-be.get_param_values()["output/W"][CLS])), atol=1e-6)
    out, _, _ = forward({"output": {"class": "hidden", "n_out": 2}})
    assert out.shape == (2, 7, 2)


def test_softmax_rows_sum_to_one() -> None:
    out, _, _ = forward({"output": {"class": "softmax", "n_out": 3}})
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_copy_concat_combine_activation_eval_dropout() -> None:
    net = {
        "a": {"class": "copy"},
        "b": {"class": "activation", "activation": "relu"},
        "cat": {"class": "concat", "from": ["a", "b"]},
        "sum": {"class": "combine", "kind": "add", "from": ["a", "b"]},
        "mul": {"class": "combine", "kind": "mul", "from": ["a", "b"]},
        "avg": {"class": "combine", "kind": "average", "from": ["a", "b"]},
        "sub": {"class": "combine", "kind": "sub", "from": ["a", "b"]},
        "ev": {"class": "eval", "eval": "source(0) * 2 + tf.exp(source(1))", "from": ["a", "b"]},
        "drop": {"class": "dropout", "dropout": 0.5, "from": "a"},
        "output": {"class": "copy", "from": ["cat"]},
    }
    be = make_backend(net, train=False)
    relu = np.maximum(X, 0)
    expect = {"cat": np.concatenate([X, relu], -1), "sum": X + relu, "mul": X * relu, "avg": (X + relu) / 2,
              "sub": X - relu, "ev": X * 2 + np.exp(relu), "drop": X}
    for name, ref in expect.items():
        out, _ = be.forward_step(batch(), name)
        np.testing.assert_allclose(out, ref, atol=1e-5, err_msg=name)


def test_constant_and_multiple_sources_concatenate() -> None:
    out, lens, _ = forward({"c": {"class": "constant", "value": 2.5}, "output": {"class": "combine", "kind": "mul",
                                                                               "from": ["data", "c"]}})
    np.testing.assert_allclose(out, X * 2.5, atol=1e-6)
    out, _, _ = forward({"output": {"class": "copy", "from": ["data", "data:classes"]}})
    assert out.shape == (2, 7, 5)
    np.testing.assert_allclose(out[..., 3:].argmax(-1), CLS)


def test_rec_and_last_hidden_state() -> None:
    net = {"lstm": {"class": "rec", "unit": "lstmblockfused", "n_out": 4},
           "bw": {"class": "rec", "unit": "gru", "n_out": 2, "direction": -1},
           "last": {"class": "get_last_hidden_state", "from": "lstm", "key": "h"},
           "output": {"class": "copy", "from": ["lstm", "bw"]}}
    out, lens, be = forward(net)
    assert out.shape == (2, 7, 6)
    assert np.all(out[1, 5:] == 0)
    last, last_lens = be.forward_step(batch(), "last")
    assert last.shape == (2, 1, 4) and list(last_lens) == [1, 1]
    np.testing.assert_allclose(last[0, 0], out[0, 6, :4], atol=1e-6)
    np.testing.assert_allclose(last[1, 0], out[1, 4, :4], atol=1e-6)
    p = be.get_param_values()
    assert p["lstm/W"].shape == (3, 16) and p["lstm/W_re"].shape == (4, 16) and p["bw/W"].shape == (3, 6)


def test_initial_state_from_layer() -> None:
    net = {"src": {"class": "reduce", "mode": "mean", "axes": "T"},
           "h0": {"class": "linear", "n_out": 4, "from": "src", "activation": "tanh"},
           "output": {"class": "rec", "unit": "standardlstm", "n_out": 4, "initial_state": "h0"}}
    out, _, be = forward(net)
    out0, _, _ = forward({"output": {"class": "rec", "unit": "standardlstm", "n_out": 4}})
    assert out.shape == (2, 7, 4) and not np.allclose(out, out0)


def test_conv_pool_and_seq_lens() -> None:
    net = {"conv": {"class": "conv", "filter_size": (3,), "n_out": 5, "padding": "valid"},
           "output": {"class": "pool", "mode": "max", "pool_size": (2,), "padding": "valid", "from": "conv"}}
    be = make_backend(net, train=False)
    conv, conv_lens = be.forward_step(batch(), "conv")
    w, b = be.get_param_values()["conv/W"], be.get_param_values()["conv/b"]
    assert w.shape == (3, 3, 5)
    ref = np.stack([np.einsum("bki,kio->bo", X[:, t : t + 3], w) for t in range(5)], 1) + b
    np.testing.assert_allclose(conv, ref, atol=1e-5)
    assert list(conv_lens) == [5, 3]
    out, lens = be.forward_step(batch(), "output")
    np.testing.assert_allclose(out, np.maximum(ref[:, 0:4:2], ref[:, 1:5:2]), atol=1e-5)
    assert list(lens) == [2, 1]


def test_conv2d_after_split_and_merge_dims() -> None:
    net = {"split": {"class": "split_dims", "axis": "F", "dims": (3, 1)},
           "conv": {"class": "conv", "filter_size": (3, 2), "n_out": 4, "from": "split"},
           "output": {"class": "merge_dims", "axes": "static", "from": "conv"}}
    out, lens, be = forward(net)
    assert be.get_param_values()["conv/W"].shape == (3, 2, 1, 4)
    assert out.shape == (2, 7, 12) and list(lens) == [7, 5]


def test_layer_norm_and_batch_norm() -> None:
    out, _, be = forward({"output": {"class": "layer_norm"}})
    ref = (X - X.mean(-1, keepdims=True)) / np.sqrt(X.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert set(be.get_param_values()) == {"output/scale", "output/bias"}
    out, _, be = forward({"output": {"class": "batch_norm"}})
    np.testing.assert_allclose(out, X / np.sqrt(1 + 1e-3), atol=1e-5)  # inference: mean 0, variance 1; RETURNN eps 1e-3
    assert set(be.get_param_values()) == {"output/gamma", "output/beta", "output/mean", "output/variance"}


def test_slice_reduce_window_pad_expand_squeeze() -> None:
    net = {
        "sl_f": {"class": "slice", "axis": "F", "slice_start": 1},
        "sl_t": {"class": "slice", "axis": "T", "slice_start": 1, "slice_step": 2},
        "red_t": {"class": "reduce", "mode": "max", "axes": "T"},
        "mean_t": {"class": "reduce", "mode": "mean", "axes": "T"},
        "red_f": {"class": "reduce", "mode": "sum", "axes": "F"},
        "win": {"class": "window", "window_size": 3},
        "pad": {"class": "pad", "axes": "T", "padding": (1, 2), "value": 9.0},
        "exp": {"class": "expand_dims", "axis": "F"},
        "output": {"class": "squeeze", "axis": "F", "from": "exp"},
    }
    be = make_backend(net, train=False)
    get = lambda name: be.forward_step(batch(), name)  # noqa: E731
    out, _ = get("sl_f")
    np.testing.assert_allclose(out, X[..., 1:])
    out, lens = get("sl_t")
    np.testing.assert_allclose(out, X[:, 1::2])
    assert list(lens) == [3, 2]
    out, _ = get("red_t")
    np.testing.assert_allclose(out[:, 0], np.stack([X[0].max(0), X[1, :5].max(0)]), atol=1e-6)
    out, _ = get("mean_t")
    np.testing.assert_allclose(out[:, 0], np.stack([X[0].mean(0), X[1, :5].mean(0)]), atol=1e-5)
    out, _ = get("red_f")
    np.testing.assert_allclose(out, X.sum(-1, keepdims=False)[..., None] if out.ndim == 3 else X.sum(-1), atol=1e-5)
    out, _ = get("win")
    assert out.shape == (2, 7, 3, 3)
    np.testing.assert_allclose(out[0, 3], X[0, 2:5])
    np.testing.assert_allclose(out[1, 4, 2], 0.0)  # beyond the seq end
    out, lens = get("pad")
    assert list(lens) == [10, 8]
    np.testing.assert_allclose(out[0, 0], 9.0)
    np.testing.assert_allclose(out[0, 1:8], X[0])
    np.testing.assert_allclose(out[1, 6:8], 9.0)
    out, _ = get("exp")
    assert out.shape == (2, 7, 3, 1)
    out, _ = get("output")
    np.testing.assert_allclose(out, X)


def test_time_chunking_roundtrip_and_subnetwork() -> None:
    net = {"chunks": {"class": "time_chunking", "chunk_size": 4, "chunk_step": 2},
           "lin": {"class": "copy", "from": "chunks"},
           "output": {"class": "time_unchunking", "chunking_layer": "chunks", "from": "lin"}}
    be = make_backend(net, train=False)
    chunks, clens = be.forward_step(batch(), "chunks")
    assert chunks.shape == (6, 4, 3) and list(clens) == [4, 4, 3, 4, 3, 1]
    out, lens = be.forward_step(batch(), "output")
    np.testing.assert_allclose(out[0], X[0], atol=1e-6)
    np.testing.assert_allclose(out[1, :5], X[1, :5], atol=1e-6)
    net = {"pre": {"class": "linear", "n_out": 2},
           "output": {"class": "subnetwork", "subnetwork": {
               "a": {"class": "linear", "n_out": 4, "activation": "relu"},
               "output": {"class": "combine", "kind": "add", "from": ["a", "base:pre", "base:pre"]}}}}
    be = make_backend({**net, "output": {**net["output"], "subnetwork": {**net["output"]["subnetwork"],
                                         "a": {"class": "linear", "n_out": 2}}}}, train=False)
    p = be.get_param_values()
    assert "output/a/W" in p and p["output/a/W"].shape == (3, 2)
    out, _ = be.forward_step(batch(), "output")
    pre = X @ p["pre/W"] + p["pre/b"]
    np.testing.assert_allclose(out, X @ p["output/a/W"] + p["output/a/b"] + 2 * pre, atol=1e-5)


def test_reuse_params_shares_variables() -> None:
    net = {"a": {"class": "linear", "n_out": 3}, "output": {"class": "linear", "n_out": 3, "from": "a",
                                                           "reuse_params": "a"}}
    out, _, be = forward(net)
    p = be.get_param_values()
    assert set(p) == {"a/W", "a/b"}
    h = X @ p["a/W"] + p["a/b"]
    np.testing.assert_allclose(out, h @ p["a/W"] + p["a/b"], atol=1e-5)


def test_reinterpret_data_sparse() -> None:
    net = {"output": {"class": "reinterpret_data", "from": "data:classes", "set_sparse_dim": 5}}
    out, _, _ = forward(net)
    np.testing.assert_array_equal(out, CLS)


@pytest.mark.parametrize(
    ("net", "needle"),
    [
        ({"output": {"class": "linear"}}, "needs 'n_out'"),
        ({"output": {"class": "linear", "n_out": 2, "from": "nope"}}, "'nope'"),
        ({"output": {"class": "nosuchlayer"}}, "nosuchlayer"),
        ({"output": {"class": "linear", "n_out": 2, "bogus": 1}}, "bogus"),
        ({"output": {"class": "softmax", "n_out": 3, "loss": "ce"}}, "does not fit target 'classes'"),
        ({"a": {"class": "linear", "n_out": 2}, "output": {"class": "combine", "from": ["a", "data"]}},
         "different feature dims"),
        ({"output": {"class": "softmax", "n_out": 2, "loss": "ce", "target": "missing"}}, "needs target 'missing'"),
        ({"output": {"class": "linear", "n_out": 2, "activation": "nope"}}, "unknown activation"),
        ({"output": {"class": "eval", "eval": "source(3)"}}, "source(3)"),
    ],
)
def test_bad_networks_give_clear_errors(net: dict, needle: str) -> None:
    with pytest.raises(ReturnnError) as info:
        make_backend(net, train=True)
    assert needle in str(info.value)
    if isinstance(info.value, NetworkError) and "class" in net.get("output", {}):
        assert "output" in str(info.value) or "nope" in str(info.value) or "nosuchlayer" in str(info.value)
