"""Each layer's forward output against a NumPy computation of the same config semantics."""

from __future__ import annotations

import numpy as np
import pytest
from theano_helpers import batch, make_backend

from returnn_core.datasets import DataSpec
from returnn_core.errors import NetworkError

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}
LENS = (6, 4, 1)


@pytest.fixture(scope="module")
def data() -> list[np.ndarray]:
    rng = np.random.RandomState(7)
    return [rng.randn(n, 4).astype("float32") for n in LENS]


def _padded(data: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(data), max(LENS), 4), "float32")
    for i, x in enumerate(data):
        out[i, : len(x)] = x
    return out


def _forward(net: dict, data: list[np.ndarray], layers: list[str]) -> tuple[dict, dict]:
    backend = make_backend(net, EXTERN, train=False)
    bd = batch({"data": data}, EXTERN)
    outs = {name: backend.forward_step(bd, name) for name in layers}
    return outs, backend.get_param_values()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_feed_forward_layers(data) -> None:
    net = {
        "lin": {"class": "linear", "n_out": 5, "activation": "tanh"},
        "hid": {"class": "hidden", "n_out": 5, "activation": "relu", "with_bias": False},
        "act": {"class": "activation", "activation": "sigmoid", "from": "lin"},
        "cat": {"class": "concat", "from": ["lin", "hid"]},
        "cp": {"class": "copy", "from": ["lin", "hid"]},
        "add": {"class": "combine", "kind": "add", "from": ["lin", "hid"]},
        "mul": {"class": "combine", "kind": "mul", "from": ["lin", "hid"]},
        "drop": {"class": "dropout", "dropout": 0.5, "from": "lin"},
        "output": {"class": "softmax", "from": "cat", "loss": "ce"},
    }
    outs, p = _forward(net, data, list(net))
    x = _padded(data)
    lin = np.tanh(x @ p["lin/W"] + p["lin/b"])
    hid = np.maximum(x @ p["hid/W"], 0)
    assert "hid/b" not in p
    assert p["output/W"].shape == (10, 3)  # n_out taken from the target
    expect = {
        "lin": lin, "hid": hid, "act": 1 / (1 + np.exp(-lin)), "cat": np.concatenate([lin, hid], -1),
        "add": lin + hid, "mul": lin * hid, "drop": lin,  # no dropout outside training
        "output": _softmax(np.concatenate([lin, hid], -1) @ p["output/W"] + p["output/b"]),
    }
    expect["cp"] = expect["cat"]
    for name, want in expect.items():
        got, lens = outs[name]
        assert list(lens) == list(LENS)
        for b, n in enumerate(LENS):
            np.testing.assert_allclose(got[b, :n], want[b, :n], rtol=1e-5, atol=1e-5, err_msg=name)


def test_sparse_input_is_embedded() -> None:
    ext = {"data": DataSpec(6, sparse=True), "classes": DataSpec(3, sparse=True)}
    net = {"emb": {"class": "linear", "n_out": 4, "with_bias": False}, "output": {"class": "softmax", "from": "emb", "n_out": 3}}
    backend = make_backend(net, ext, train=False)
    idx = [np.array([0, 5, 2], "int32"), np.array([3], "int32")]
    got, _ = backend.forward_step(batch({"data": idx}, ext), "emb")
    w = backend.get_param_values()["emb/W"]
    np.testing.assert_allclose(got[0], w[[0, 5, 2]], rtol=1e-6)
    np.testing.assert_allclose(got[1, 0], w[3], rtol=1e-6)


def _np_conv1d_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = w.shape[0]
    t = x.shape[1]
    left = (k - 1) // 2
    xp = np.zeros((x.shape[0], t + k - 1, x.shape[2]), "float32")
    xp[:, left : left + t] = x
    return sum(xp[:, i : i + t] @ w[i] for i in range(k)) + b


def test_conv_pool(data) -> None:
    net = {
        "conv": {"class": "conv", "filter_size": (3,), "n_out": 5, "padding": "same", "activation": None},
        "valid": {"class": "conv", "filter_size": 2, "n_out": 2, "padding": "valid", "strides": 2},
        "maxp": {"class": "pool", "mode": "max", "pool_size": (2,), "padding": "valid", "from": "conv"},
        "avgp": {"class": "pool", "mode": "avg", "pool_size": (2,), "padding": "same", "from": "conv"},
        "output": {"class": "softmax", "from": "conv", "loss": "ce"},
    }
    outs, p = _forward(net, data, ["conv", "valid", "maxp", "avgp"])
    x = _padded(data)
    conv = _np_conv1d_same(x, p["conv/W"], p["conv/b"])
    got, lens = outs["conv"]
    np.testing.assert_allclose(got, conv, rtol=1e-4, atol=1e-5)
    assert list(lens) == list(LENS)
    valid = np.stack([x[:, 2 * i] @ p["valid/W"][0] + x[:, 2 * i + 1] @ p["valid/W"][1] for i in range(3)], 1)
    got, lens = outs["valid"]
    np.testing.assert_allclose(got, valid + p["valid/b"], rtol=1e-4, atol=1e-5)
    assert list(lens) == [3, 2, 0]
    got, lens = outs["maxp"]
    np.testing.assert_allclose(got, np.maximum(conv[:, 0:6:2], conv[:, 1:6:2]), rtol=1e-5)
    assert list(lens) == [3, 2, 0]
    got, lens = outs["avgp"]
    np.testing.assert_allclose(got, (conv[:, 0:6:2] + conv[:, 1:6:2]) / 2, rtol=1e-5, atol=1e-6)
    assert list(lens) == [3, 2, 1]


def test_norm_layers(data) -> None:
    net = {
        "bn": {"class": "batch_norm", "epsilon": 1e-3},
        "ln": {"class": "layer_norm"},
        "output": {"class": "softmax", "from": "ln", "loss": "ce"},
    }
    outs, p = _forward(net, data, ["bn", "ln"])
    assert {"bn/gamma", "bn/beta", "bn/mean", "bn/variance", "ln/scale", "ln/bias"} <= set(p)
    x = _padded(data)
    # eval mode uses the moving averages (initially mean 0, variance 1)
    np.testing.assert_allclose(outs["bn"][0], x / np.sqrt(1 + 1e-3), rtol=1e-5, atol=1e-6)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(outs["ln"][0], (x - mean) / np.sqrt(var + 1e-6), rtol=1e-4, atol=1e-4)


def test_batch_norm_trains_moving_averages() -> None:
    ext = {"data": DataSpec(2), "classes": DataSpec(2, sparse=True)}
    net = {"bn": {"class": "batch_norm", "momentum": 0.5}, "output": {"class": "softmax", "from": "bn", "loss": "ce"}}
    backend = make_backend(net, ext)
    xs = [np.array([[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]], "f")[:2], np.array([[5.0, 10.0]], "f")]
    bd = batch({"data": xs, "classes": [np.array([0, 1], "int32"), np.array([1], "int32")]}, ext)
    backend.train_step(bd, 0.0)
    p = backend.get_param_values()
    frames = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])  # the padded frame takes no part
    np.testing.assert_allclose(p["bn/mean"], 0.5 * frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(p["bn/variance"], 0.5 + 0.5 * frames.var(0), rtol=1e-5)


def test_shape_layers(data) -> None:
    net = {
        "split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
        "merge": {"class": "merge_dims", "axes": "static", "from": "split"},
        "sl_f": {"class": "slice", "axis": "F", "slice_start": 1, "slice_end": 3},
        "sl_t": {"class": "slice", "axis": "T", "slice_start": 1, "slice_step": 2},
        "mean_t": {"class": "reduce", "mode": "mean", "axes": "T"},
        "max_t": {"class": "reduce", "mode": "max", "axes": "T"},
        "sum_f": {"class": "reduce", "mode": "sum", "axes": "F", "keep_dims": True},
        "output": {"class": "softmax", "from": "merge", "loss": "ce"},
    }
    outs, _ = _forward(net, data, [n for n in net if n != "output"])
    x = _padded(data)
    assert outs["split"][0].shape == (3, 6, 2, 2)
    np.testing.assert_array_equal(outs["merge"][0], x)
    np.testing.assert_array_equal(outs["sl_f"][0], x[:, :, 1:3])
    got, lens = outs["sl_t"]
    np.testing.assert_array_equal(got, x[:, 1::2])
    assert list(lens) == [3, 2, 0]
    for name, fn in (("mean_t", np.mean), ("max_t", np.max)):
        got, lens = outs[name]
        want = np.stack([fn(d, axis=0) for d in data])
        np.testing.assert_allclose(got[:, 0], want, rtol=1e-5, err_msg=name)
        assert list(lens) == [1, 1, 1]
    np.testing.assert_allclose(outs["sum_f"][0], x.sum(-1, keepdims=True), rtol=1e-5, atol=1e-5)


def test_bad_options_name_the_layer() -> None:
    with pytest.raises(NetworkError, match=r"layer 'lin'.*unknown option\(s\) filter_size"):
        make_backend({"lin": {"class": "linear", "n_out": 2, "filter_size": 3}, "output": {"class": "copy", "from": "lin"}},
                     EXTERN, train=False)
    with pytest.raises(NetworkError, match=r"layer 'lin' \(class 'linear'\): needs 'n_out'"):
        make_backend({"lin": {"class": "linear"}, "output": {"class": "copy", "from": "lin"}}, EXTERN, train=False)
    with pytest.raises(NetworkError, match=r"layer 'add': cannot add sources of different feature dims \(2, 4\)"):
        make_backend({"a": {"class": "linear", "n_out": 2}, "add": {"class": "combine", "from": ["a", "data"]},
                      "output": {"class": "copy", "from": "add"}}, EXTERN, train=False)


def test_window_pad_and_last_state(data) -> None:
    net = {
        "win": {"class": "window", "window_size": 3},
        "pad_t": {"class": "pad", "axes": "T", "padding": (1, 2), "value": 9.0},
        "pad_f": {"class": "pad", "axes": "F", "padding": 1},
        "rec": {"class": "rec", "unit": "rnn", "n_out": 2},
        "last": {"class": "get_last_hidden_state", "from": "rec"},
        "output": {"class": "softmax", "from": "rec", "loss": "ce"},
    }
    outs, _ = _forward(net, data, ["win", "pad_t", "pad_f", "rec", "last"])
    x = _padded(data)
    got, lens = outs["win"]
    assert got.shape == (3, 6, 3, 4) and list(lens) == list(LENS)
    for b, n in enumerate(LENS):
        xp = np.concatenate([np.zeros((1, 4)), data[b], np.zeros((1, 4))])
        np.testing.assert_allclose(got[b, :n], np.stack([xp[i : i + n] for i in range(3)], 1), rtol=1e-6)
    got, lens = outs["pad_t"]
    assert list(lens) == [n + 3 for n in LENS]
    for b, n in enumerate(LENS):
        np.testing.assert_array_equal(got[b, 1 : 1 + n], data[b])
        assert (got[b, 0] == 9).all() and (got[b, 1 + n :] == 9).all()
    np.testing.assert_array_equal(outs["pad_f"][0], np.pad(x, [(0, 0), (0, 0), (1, 1)]))
    rec, _ = outs["rec"]
    last, lens = outs["last"]
    assert last.shape == (3, 1, 2)  # forward adds a time axis of 1 to outputs without one
    np.testing.assert_allclose(last[:, 0], np.stack([rec[b, n - 1] for b, n in enumerate(LENS)]), rtol=1e-6)
