"""The core's shape, conv, norm and subnetwork layers on both backends: values against NumPy, same outputs
for the same parameters, seq lengths, moving averages and errors that name the layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import BatchData, DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402
from returnn_core.log import Log  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

BACKENDS = ("tf", "theano")
EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}
LENS = (7, 5, 1)

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")


def one_batch(seqs: list[DatasetSeq], extern: dict[str, DataSpec]) -> BatchData:
    """All ``seqs`` as one padded batch of the data ``extern`` describes."""
    (only,) = list(generate_batches(seqs, batch_size=0))
    return only.to_data(ExternData(extern))


def _batch() -> BatchData:
    rng = np.random.RandomState(5)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 4).astype("f"),
                                       "classes": rng.randint(0, 3, n).astype("int32")})
            for i, n in enumerate(LENS)]
    return one_batch(seqs, EXTERN)


BATCH = _batch()
X = BATCH.data["data"]
CLS = BATCH.data["classes"]
SEQ_LENS = BATCH.seq_lens["data"]
MASK = (np.arange(X.shape[1])[None, :] < SEQ_LENS[:, None]).astype("f")


def _backend(name: str, net: dict[str, Any], *, train: bool = False, extern: dict[str, DataSpec] | None = None,
             **config: Any) -> Any:
    manager = get_plugin_manager()
    backend = manager.backends.get(name)(Config(dict(config)), manager, Log(0))
    ext = ExternData(EXTERN if extern is None else extern)
    backend.build(resolve_network(net, ext.keys()), ext, train=train)
    return backend


def _both(net: dict[str, Any], **kw: Any) -> tuple[Any, Any]:
    """The network on tf and on theano, theano with tf's initial parameters."""
    tf_be, th_be = _backend("tf", net, **kw), _backend("theano", net, **kw)
    tf_params, th_params = tf_be.get_param_values(), th_be.get_param_values()
    assert sorted(tf_params) == sorted(th_params)
    for key, value in tf_params.items():
        assert value.shape == th_params[key].shape, key
    if tf_params:
        th_be.set_param_values(tf_params)
    return tf_be, th_be


def _forward(backends: tuple[Any, Any], layer: str, batch: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``layer``'s output and seq lengths (for ``batch``, default BATCH), checked to be the same on both backends."""
    (a, a_lens), (b, b_lens) = (be.forward_step(BATCH if batch is None else batch, layer) for be in backends)
    assert a.shape == b.shape, (layer, a.shape, b.shape)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=f"{layer}: theano vs tf")
    np.testing.assert_array_equal(b_lens, a_lens, err_msg=f"{layer}: seq lens, theano vs tf")
    return a, a_lens


def outputs_marked(net: dict[str, Any]) -> dict[str, Any]:
    """``net`` with every layer an output layer (so each can be fetched by name)."""
    return {name: {**layer, "is_output_layer": True} for name, layer in net.items()}


def outputs_on_both(net: dict[str, Any], extern: dict[str, DataSpec], batch: Any
                    ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and seq lengths for ``batch`` (checked equal on tf and theano) with random parameters."""
    backends = _both(outputs_marked(net), extern=extern)
    params = {k: np.random.RandomState(1).uniform(-1, 1, v.shape).astype("f")
              for k, v in backends[0].get_param_values().items()}
    for backend in backends:
        backend.set_param_values(params)
    return {layer: _forward(backends, layer, batch) for layer in net}, params


def _masked(x: np.ndarray) -> np.ndarray:
    return x * MASK.reshape(MASK.shape + (1,) * (x.ndim - 2))


def _window(x: np.ndarray, size: int, left: int) -> np.ndarray:
    padded = np.pad(_masked(x), [(0, 0), (left, size - 1 - left)] + [(0, 0)] * (x.ndim - 2))
    return np.stack([padded[:, i : i + x.shape[1]] for i in range(size)], 2)


def _reduce_t(fn: Any, x: np.ndarray) -> np.ndarray:
    return np.stack([fn(x[b, :n], axis=0) for b, n in enumerate(SEQ_LENS)])


def _pad_t(x: np.ndarray, left: int, right: int, value: float) -> np.ndarray:
    out = np.full((x.shape[0], x.shape[1] + left + right, *x.shape[2:]), value, "f")
    for b, n in enumerate(SEQ_LENS):
        out[b, left : left + n] = x[b, :n]
    return out


def _conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray, *, stride: int = 1, dilation: int = 1,
              padding: str = "same") -> np.ndarray:
    """1-D convolution over time with TF's SAME/VALID padding."""
    k, t = w.shape[0], x.shape[1]
    eff = (k - 1) * dilation + 1
    if padding == "same":
        out_len = -(-t // stride)
        total = max((out_len - 1) * stride + eff - t, 0)
        x = np.pad(x, [(0, 0), (total // 2, total - total // 2), (0, 0)])
    else:
        out_len = (t - eff) // stride + 1
    frames = [sum(x[:, i * stride + j * dilation] @ w[j] for j in range(k)) for i in range(out_len)]
    return np.stack(frames, 1) + b


SHAPE_NET = {
    "split": {"class": "split_dims", "axis": "F", "dims": (2, -1)},
    "merge": {"class": "merge_dims", "axes": "static", "from": "split"},
    "merge_ordered": {"class": "merge_dims", "axes": [3, 2], "keep_order": True, "from": "split"},
    "sl_f": {"class": "slice", "axis": "F", "slice_start": 1, "slice_end": 3},
    "sl_t": {"class": "slice", "axis": "T", "slice_start": 1, "slice_step": 2},
    "sl_sparse": {"class": "slice", "axis": "T", "slice_end": 4, "from": "data:classes"},
    "mean_t": {"class": "reduce", "mode": "mean", "axes": "T"},
    "max_t": {"class": "reduce", "mode": "max", "axes": "T", "keep_dims": True},
    "lse_t": {"class": "reduce", "mode": "logsumexp", "axis": "T"},
    "min_ts": {"class": "reduce", "mode": "min", "axes": ["T", 2], "from": "split"},
    "sum_f": {"class": "reduce", "mode": "sum", "axes": "F", "keep_dims": True},
    "avg_s": {"class": "reduce", "mode": "avg", "axes": 2, "from": "split"},
    "win": {"class": "window", "window_size": 3},
    "win_left": {"class": "window", "window_size": 4, "window_right": 0, "from": "split"},
    "pad_t": {"class": "pad", "axes": "T", "padding": (1, 2), "value": 9.0},
    "pad_f": {"class": "pad", "axes": "F", "padding": 1},
    "pad_tf": {"class": "pad", "axes": ["T", "F"], "padding": [(0, 2), (1, 0)], "value": -1.0},
    "exp": {"class": "expand_dims", "axis": "F"},
    "exp_spatial": {"class": "expand_dims", "axis": "spatial", "dim": 2},
    "squeeze": {"class": "squeeze", "axis": "F", "from": "exp"},
    "output": {"class": "copy", "from": "merge"},
}


@pytest.fixture(scope="module")
def shape_backends() -> tuple[Any, Any]:
    return _both(SHAPE_NET)


def test_split_merge_and_slice(shape_backends) -> None:
    split = X.reshape(*X.shape[:2], 2, 2)
    cases = {
        "split": (split, SEQ_LENS),
        "merge": (X, SEQ_LENS),
        "merge_ordered": (split.transpose(0, 1, 3, 2).reshape(X.shape), SEQ_LENS),
        "sl_f": (X[..., 1:3], SEQ_LENS),
        "sl_t": (X[:, 1::2], [3, 2, 0]),
        "sl_sparse": (CLS[:, :4], [4, 4, 1]),
    }
    for name, (want, lens) in cases.items():
        got, got_lens = _forward(shape_backends, name)
        np.testing.assert_allclose(got, want, err_msg=name)
        assert list(got_lens) == list(lens), name


def test_reduce_masks_padding(shape_backends) -> None:
    split = X.reshape(*X.shape[:2], 2, 2)
    lse = lambda x, axis: np.log(np.exp(x).sum(axis))  # noqa: E731
    cases = {
        "mean_t": _reduce_t(np.mean, X)[:, None],
        "max_t": _reduce_t(np.max, X)[:, None],
        "lse_t": _reduce_t(lse, X)[:, None],
        "min_ts": _reduce_t(np.min, split).min(1)[:, None],
        "sum_f": X.sum(-1, keepdims=True),
        "avg_s": split.mean(2),
    }
    for name, want in cases.items():
        got, lens = _forward(shape_backends, name)
        if name in ("sum_f", "avg_s"):
            got, want = _masked(got), _masked(want)
            assert list(lens) == list(SEQ_LENS), name
        else:
            assert list(lens) == [1, 1, 1], name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_window_pad_expand_squeeze(shape_backends) -> None:
    split = X.reshape(*X.shape[:2], 2, 2)
    cases = {
        "win": (_window(X, 3, 1), SEQ_LENS),
        "win_left": (_window(split, 4, 3), SEQ_LENS),
        "pad_t": (_pad_t(X, 1, 2, 9.0), [n + 3 for n in SEQ_LENS]),
        "pad_f": (np.pad(X, [(0, 0), (0, 0), (1, 1)]), SEQ_LENS),
        "pad_tf": (np.pad(_pad_t(X, 0, 2, -1.0), [(0, 0), (0, 0), (1, 0)], constant_values=-1.0),
                   [n + 2 for n in SEQ_LENS]),
        "exp": (X[..., None], SEQ_LENS),
        "exp_spatial": (np.stack([X, X], 2), SEQ_LENS),
        "squeeze": (X, SEQ_LENS),
    }
    for name, (want, lens) in cases.items():
        got, got_lens = _forward(shape_backends, name)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        np.testing.assert_allclose(got, want, err_msg=name)
        assert list(got_lens) == list(lens), name


def test_time_chunking_roundtrip() -> None:
    net = {"chunks": {"class": "time_chunking", "chunk_size": 4, "chunk_step": 2},
           "scaled": {"class": "linear", "n_out": 4, "from": "chunks"},
           "output": {"class": "time_unchunking", "chunking_layer": "chunks", "from": "chunks"},
           "labels": {"class": "time_chunking", "chunk_size": 3, "from": "data:classes"},
           "sparse_back": {"class": "time_unchunking", "chunking_layer": "labels", "from": "labels"},
           "gap": {"class": "time_chunking", "chunk_size": 2, "chunk_step": 3},
           "gap_back": {"class": "time_unchunking", "chunking_layer": "gap", "from": "gap"}}
    backends = _both(net)
    chunks, lens = _forward(backends, "chunks")
    # 7 frames, chunks start at 0, 2, 4 (the last one reaching past the end is zero-padded)
    assert chunks.shape == (9, 4, 4)
    assert list(lens) == [4, 4, 3, 4, 3, 1, 1, 0, 0]
    np.testing.assert_allclose(chunks[2, :3], X[0, 4:7])
    np.testing.assert_allclose(chunks[2, 3], 0.0)
    np.testing.assert_allclose(chunks[4], X[1, 2:6])
    out, out_lens = _forward(backends, "output")
    np.testing.assert_allclose(out, X, atol=1e-6)
    assert list(out_lens) == list(SEQ_LENS)
    labels, label_lens = _forward(backends, "labels")
    assert labels.dtype.kind == "i" and labels.shape == (9, 3)
    np.testing.assert_array_equal(labels[:3].reshape(-1)[:7], CLS[0])
    assert list(label_lens) == [3, 3, 1, 3, 2, 0, 1, 0, 0]
    back, _ = _forward(backends, "sparse_back")
    np.testing.assert_allclose(back, np.eye(3)[CLS], atol=1e-6)
    # frames no chunk covers (step > size) come back as zeros
    gap, _ = _forward(backends, "gap_back")
    covered = np.isin(np.arange(7) % 3, (0, 1)).astype("f")
    np.testing.assert_allclose(gap, X * covered[None, :, None], atol=1e-6)
    _forward(backends, "scaled")


def test_conv_and_pool() -> None:
    net = {
        "conv": {"class": "conv", "filter_size": (3,), "n_out": 5, "padding": "same"},
        "valid": {"class": "conv", "filter_size": 2, "n_out": 2, "padding": "valid", "strides": 2},
        "dilated": {"class": "conv", "filter_size": 2, "n_out": 2, "dilation_rate": 2, "with_bias": False},
        "split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
        "conv2d": {"class": "conv", "filter_size": (3, 2), "n_out": 3, "from": "split", "activation": "tanh"},
        "in_split": {"class": "conv", "filter_size": (2, 2), "n_out": 3, "input_split_feature_dim": 2,
                     "padding": "valid"},
        "sparse_in": {"class": "conv", "filter_size": 2, "n_out": 2, "from": "data:classes"},
        "maxp": {"class": "pool", "mode": "max", "pool_size": (2,), "padding": "valid", "from": "conv"},
        "avgp": {"class": "pool", "mode": "avg", "pool_size": (2,), "padding": "same", "from": "conv"},
        "avgp2d": {"class": "pool", "mode": "avg", "pool_size": (3, 2), "strides": 1, "from": "conv2d"},
        "output": {"class": "copy", "from": "conv"},
    }
    backends = _both(net)
    p = backends[0].get_param_values()
    assert p["conv2d/W"].shape == (3, 2, 2, 3) and p["in_split/W"].shape == (2, 2, 2, 3)
    assert "dilated/b" not in p
    conv, lens = _forward(backends, "conv")
    np.testing.assert_allclose(conv, _conv_ref(X, p["conv/W"], p["conv/b"]), rtol=1e-4, atol=1e-5)
    assert list(lens) == list(SEQ_LENS)
    valid, lens = _forward(backends, "valid")
    np.testing.assert_allclose(valid, _conv_ref(X, p["valid/W"], p["valid/b"], stride=2, padding="valid"),
                               rtol=1e-4, atol=1e-5)
    assert list(lens) == [3, 2, 0]
    dilated, lens = _forward(backends, "dilated")
    np.testing.assert_allclose(dilated, _conv_ref(X, p["dilated/W"], 0.0, dilation=2), rtol=1e-4, atol=1e-5)
    assert list(lens) == list(SEQ_LENS)
    conv2d, lens = _forward(backends, "conv2d")
    assert conv2d.shape == (3, 7, 2, 3) and list(lens) == list(SEQ_LENS)
    in_split, lens = _forward(backends, "in_split")
    assert in_split.shape == (3, 6, 1, 3) and list(lens) == [6, 4, 0]
    sparse_in, _ = _forward(backends, "sparse_in")
    onehot = np.eye(3, dtype="f")[CLS]
    np.testing.assert_allclose(sparse_in, _conv_ref(onehot, p["sparse_in/W"], p["sparse_in/b"]), rtol=1e-4,
                               atol=1e-5)
    maxp, lens = _forward(backends, "maxp")
    np.testing.assert_allclose(maxp, np.maximum(conv[:, 0:6:2], conv[:, 1:6:2]), rtol=1e-5)
    assert list(lens) == [3, 2, 0]
    avgp, lens = _forward(backends, "avgp")
    want = np.concatenate([(conv[:, 0:6:2] + conv[:, 1:6:2]) / 2, conv[:, 6:7]], 1)
    np.testing.assert_allclose(avgp, want, rtol=1e-5, atol=1e-6)
    assert list(lens) == [4, 3, 1]
    avgp2d, lens = _forward(backends, "avgp2d")
    assert avgp2d.shape == conv2d.shape and list(lens) == list(SEQ_LENS)


def test_layer_norm_and_batch_norm_inference() -> None:
    net = {"bn": {"class": "batch_norm", "epsilon": 1e-3},
           "split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
           "bn_spatial": {"class": "batch_norm", "from": "split", "use_shift": False, "use_std": False},
           "ln": {"class": "layer_norm"},
           "output": {"class": "copy", "from": "ln"}}
    backends = _both(net)
    assert {"bn/gamma", "bn/beta", "bn/mean", "bn/variance", "ln/scale", "ln/bias"} <= set(
        backends[0].get_param_values())
    bn, _ = _forward(backends, "bn")
    np.testing.assert_allclose(bn, X / np.sqrt(1 + 1e-3), rtol=1e-5, atol=1e-6)  # moving averages: 0 and 1
    bn2, _ = _forward(backends, "bn_spatial")
    np.testing.assert_allclose(bn2, X.reshape(bn2.shape) / np.sqrt(1 + 1e-3), rtol=1e-5, atol=1e-6)
    ln, _ = _forward(backends, "ln")
    want = (X - X.mean(-1, keepdims=True)) / np.sqrt(X.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(ln, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("masked_time", [True, False])
def test_batch_norm_moving_averages_in_training(masked_time: bool) -> None:
    net = {"bn": {"class": "batch_norm", "momentum": 0.5, "masked_time": masked_time},
           "output": {"class": "softmax", "loss": "ce", "from": "bn"}}
    backends = _both(net, train=True)
    for be in backends:
        be.train_step(BATCH, 0.0)
    frames = np.concatenate([X[b, :n] for b, n in enumerate(SEQ_LENS)]) if masked_time else X.reshape(-1, 4)
    for be in backends:
        p = be.get_param_values()
        np.testing.assert_allclose(p["bn/mean"], 0.5 * frames.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p["bn/variance"], 0.5 + 0.5 * frames.var(0), rtol=1e-5, atol=1e-6)


def test_training_through_the_layers_agrees() -> None:
    net = {"pad": {"class": "pad", "axes": "T", "padding": (1, 1), "value": 0.5},
           "conv": {"class": "conv", "filter_size": 3, "n_out": 5, "padding": "valid", "from": "pad"},
           "win": {"class": "window", "window_size": 3, "from": "conv"},
           "merge": {"class": "merge_dims", "axes": "static", "from": "win"},
           "chunks": {"class": "time_chunking", "chunk_size": 3, "chunk_step": 2, "from": "merge"},
           "h": {"class": "linear", "n_out": 4, "activation": "tanh", "from": "chunks"},
           "unchunk": {"class": "time_unchunking", "chunking_layer": "chunks", "from": "h"},
           "split": {"class": "split_dims", "axis": "F", "dims": (2, 2), "from": "unchunk"},
           "pool": {"class": "pool", "mode": "max", "pool_size": (1, 2), "padding": "same", "from": "split"},
           "flat": {"class": "merge_dims", "axes": "static", "from": "pool"},
           "bn": {"class": "batch_norm", "from": "flat"},
           "ln": {"class": "layer_norm", "from": "bn"},
           "output": {"class": "softmax", "loss": "ce", "from": ["ln", "unchunk"]}}
    backends = _both(net, train=True, optimizer={"class": "sgd"})
    initial = backends[0].get_param_values()
    for step in range(3):
        a, b = (be.train_step(BATCH, 0.1) for be in backends)
        assert a.frames == b.frames
        np.testing.assert_allclose(b.losses["output"], a.losses["output"], rtol=2e-4, atol=1e-4,
                                   err_msg=f"step {step}")
    tf_params, th_params = (be.get_param_values() for be in backends)
    for key, value in tf_params.items():
        np.testing.assert_allclose(th_params[key], value, rtol=1e-3, atol=1e-4, err_msg=key)
    for key in ("conv/W", "h/W", "bn/gamma", "bn/mean", "ln/scale"):  # gradients reach through every layer
        assert not np.allclose(tf_params[key], initial[key]), key


def test_unchunking_needs_a_chunking_layer() -> None:
    net = {"a": {"class": "copy"},
           "output": {"class": "time_unchunking", "chunking_layer": "a", "from": "a"}}
    for name in BACKENDS:
        with pytest.raises(NetworkError, match=r"layer 'output'.*chunking_layer 'a' is not a time_chunking layer"):
            _backend(name, net)


def test_subnetwork_with_base_refs() -> None:
    net = {"pre": {"class": "linear", "n_out": 2},
           "output": {"class": "subnetwork", "from": "data", "subnetwork": {
               "a": {"class": "linear", "n_out": 2, "from": "data"},
               "inner": {"class": "subnetwork", "from": "a", "subnetwork": {
                   "output": {"class": "reduce", "mode": "max", "axes": "T", "keep_dims": True}}},
               "output": {"class": "combine", "kind": "add", "from": ["a", "base:pre", "base:pre"]}}}}
    backends = _both(net)
    p = backends[0].get_param_values()
    assert p["output/a/W"].shape == (4, 2)
    out, lens = _forward(backends, "output")
    pre = X @ p["pre/W"] + p["pre/b"]
    np.testing.assert_allclose(out, X @ p["output/a/W"] + p["output/a/b"] + 2 * pre, rtol=1e-5, atol=1e-5)
    assert list(lens) == list(SEQ_LENS)


@pytest.mark.parametrize(
    ("layer", "needle"),
    [
        ({"class": "split_dims", "dims": (3, 2)}, "cannot split axis of size 4 into (3, 2)"),
        ({"class": "split_dims"}, "needs 'dims'"),
        ({"class": "split_dims", "axis": "T", "dims": (2, -1)}, "cannot split the batch or time axis"),
        ({"class": "merge_dims", "axes": ["T", "F"]}, "cannot merge the batch or time axis"),
        ({"class": "reduce", "mode": "median", "axes": "T"}, "unknown reduce mode 'median'"),
        ({"class": "reduce", "mode": "sum"}, "needs 'axes'"),
        ({"class": "window", "window_size": 3, "padding": "full"}, "padding must be 'same' or 'valid'"),
        ({"class": "slice", "axis": "T", "slice_start": -2}, "time slices need slice_start >= 0"),
        ({"class": "squeeze", "axis": "F"}, "squeeze axis 2 has size 4, not 1"),
        ({"class": "squeeze", "axis": "T"}, "cannot squeeze the batch or time axis"),
        ({"class": "window", "window_size": 0}, "window_size >= 1"),
        ({"class": "pad", "axes": "T", "padding": 1, "mode": "wrap"}, "unknown pad mode 'wrap'"),
        ({"class": "expand_dims", "axis": 1}, "cannot add an axis before batch or time"),
        ({"class": "time_chunking", "chunk_size": 0}, "chunk_size and chunk_step must be >= 1"),
        ({"class": "time_unchunking"}, "needs 'chunking_layer'"),
        ({"class": "conv", "n_out": 2}, "needs 'filter_size'"),
        ({"class": "conv", "filter_size": (3, 3), "n_out": 2}, "has 2 spatial axes, but the input has rank 3"),
        ({"class": "conv", "filter_size": 3, "n_out": 2, "padding": "full"}, "padding must be 'same' or 'valid'"),
        ({"class": "conv", "filter_size": 3, "n_out": 2, "strides": 2, "dilation_rate": 2},
         "strides and dilation_rate cannot both be > 1"),
        ({"class": "conv", "filter_size": 3}, "needs 'n_out'"),
        ({"class": "conv", "filter_size": 2, "n_out": 2, "input_split_feature_dim": 3}, "input_split_feature_dim"),
        ({"class": "pool", "pool_size": 2, "mode": "median"}, "pool mode must be 'max' or 'avg'"),
        ({"class": "batch_norm", "bogus": 1}, "unknown option(s) bogus"),
        ({"class": "subnetwork", "subnetwork": {"a": {"class": "copy"}}}, "needs a layer named 'output'"),
    ],
)
def test_bad_options_name_the_layer(layer: dict[str, Any], needle: str) -> None:
    net = {"bad": layer, "output": {"class": "copy", "from": "data"}}
    for name in BACKENDS:
        with pytest.raises(NetworkError) as info:
            _backend(name, net)
        msg = str(info.value)
        assert "layer 'bad'" in msg and needle in msg, (name, msg)
