"""The manual's TF layer classes of issue 11 against NumPy (and TensorFlow's own image resizing): values, seq
lengths, the statistics their training steps accumulate, theano agreeing with tf, and errors naming the layer.

All layers of one network are computed in one eager TensorFlow pass; theano is checked on the outputs whose
format is special (bool, sparse, an extra axis), the parity cases train all of them on both backends.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("returnn_theano")

from returnn_tf.ops import TF_OPS  # noqa: E402

# the batch of the core layer tests: seqs of 7, 5 and 1 frames of 4 features and 3 classes
from test_frontend_layers import BATCH, CLS, EXTERN, MASK, X  # noqa: E402

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import ExternData  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402
from returnn_core.log import Log  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

LENS = tuple(int(n) for n in BATCH.seq_lens["data"])
pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")

NET: dict[str, Any] = {
    "h": {"class": "linear", "n_out": 4},
    "gate": {"class": "gating", "activation": "tanh"},
    "gate2": {"class": "gating", "gate_activation": "tanh", "from": ["data", "h"]},
    "positive": {"class": "compare", "kind": "greater", "value": 0.0},
    "both": {"class": "compare", "kind": "greater_equal", "value": -0.5, "from": ["data", "h"]},
    "scaled": {"class": "elemwise_prod", "axes": "F"},
    "wsum_f": {"class": "weighted_sum", "axes": "F"},
    "smooth": {"class": "weighted_sum", "axes": "T", "size": (3,), "padding": "same"},
    "split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
    "combined": {"class": "combine_dims", "axes": [3, 2], "from": "split"},
    "pre": {"class": "prefix_in_time", "prefix": 1.5, "repeat": 2},
    "pre_labels": {"class": "prefix_in_time", "prefix": 3, "from": "data:classes"},
    "post": {"class": "postfix_in_time", "postfix": -1.0, "repeat": 2},
    "one": {"class": "variable", "shape": (4,), "init": 0.5, "add_batch_axis": False, "param_name": "v", "from": []},
    "post_layer": {"class": "postfix_in_time", "postfix": "one", "from": "data"},
    "one_t": {"class": "variable", "shape": (2,), "init": -1.0, "add_time_axis": True, "from": []},
    "up_nn": {"class": "resize", "axis": "T", "factor": 2},
    "up_labels": {"class": "resize", "axis": "T", "factor": 2, "kind": "nearest_neighbor", "from": "data:classes"},
    "up_linear": {"class": "resize", "axis": "T", "factor": 3, "kind": "linear"},
    "up_cubic": {"class": "resize", "axis": "T", "factor": 2, "kind": "cubic"},
    "up_feature": {"class": "resize", "axis": "F", "factor": 2, "kind": "linear"},
    "chunks": {"class": "time_chunking", "chunk_size": 1, "chunk_step": 1},
    "frames": {"class": "reduce", "mode": "sum", "axes": "T", "from": "chunks"},
    "unflat": {"class": "split_batch_time", "from": "frames"},
    "query": {"class": "variable", "shape": (4,), "init": "normal:1.0", "from": []},
    "att": {"class": "dot_attention", "base": "h", "base_ctx": "data", "from": "query"},
    "att_t": {"class": "dot_attention", "base": "h", "base_ctx": "data", "from": "data"},
    "loc": {"class": "constant", "value": 2.6, "from": []},
    "gauss": {"class": "gauss_window_attention", "base": "data", "window_size": 3, "from": "loc"},
    "gauss_inner": {"class": "gauss_window_attention", "base": "data", "window_size": 4, "std": 0.7,
                    "inner_size": 3, "inner_size_step": 0.5, "from": "loc"},
    "loc_t": {"class": "slice", "axis": "F", "slice_start": 0, "slice_end": 1, "from": "h"},
    "gauss_t": {"class": "gauss_window_attention", "base": "data", "window_size": 2, "from": "loc_t"},
    "cat_f": {"class": "concat", "from": [("data", "F"), ("h", "F")]},
    "cat_t": {"class": "concat", "from": [("data", "T"), ("h", "T")]},
    "cat_labels": {"class": "concat", "from": [("data:classes", "T"), ("pre_labels", "T")]},
    "output": {"class": "copy", "from": "gate"},
}


def _backend(name: str, net: dict[str, Any], *, train: bool = False) -> Any:
    manager = get_plugin_manager()
    backend = manager.backends.get(name)(Config({}), manager, Log(0))
    backend.build(resolve_network(net, list(EXTERN)), ExternData(EXTERN), train=train)
    return backend


def _eager(backend: Any) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Every layer's output and seq lengths from one eager pass of the tf backend's network."""
    net = backend.net
    data = net.make_data({k: tf.constant(BATCH.data[k]) for k in EXTERN},
                         {k: tf.constant(BATCH.seq_lens[k]) for k in EXTERN})
    outs = net.compute(TF_OPS, data, train=False)
    return {k: (np.asarray(o.tensor), None if o.seq_lens is None else np.asarray(o.seq_lens)) for k, o in outs.items()}


@pytest.fixture(scope="module")
def backends() -> tuple[Any, dict[str, np.ndarray], dict[str, tuple[np.ndarray, Any]]]:
    """The tf backend with random weights for the weighted layers, its parameters and all outputs."""
    be = _backend("tf", NET)
    rng = np.random.RandomState(3)
    params = be.get_param_values()
    for key in ("scaled/W", "wsum_f/W", "smooth/W", "h/b"):
        params[key] = rng.uniform(-1, 1, params[key].shape).astype("f")
    be.set_param_values(params)
    return be, params, _eager(be)


def _softmax(e: np.ndarray) -> np.ndarray:
    e = np.exp(e - e.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_gating_compare_and_static_weights(backends) -> None:
    _, params, outs = backends
    h = X @ params["h/W"] + params["h/b"]
    w_f = params["wsum_f/W"]
    w_t = params["smooth/W"]
    xp = np.pad(X, [(0, 0), (1, 1), (0, 0)])
    want = {
        "gate": np.tanh(X[..., :2]) * _sigmoid(X[..., 2:]),
        "gate2": X * np.tanh(h),
        "positive": X > 0,
        "both": (X >= -0.5) & (X >= h),
        "scaled": X * params["scaled/W"],
        "wsum_f": (X * w_f).sum(-1),
        "smooth": sum(w_t[k] * xp[:, k : k + X.shape[1]] for k in range(3)),
        "combined": X.reshape(3, -1, 2, 2).transpose(0, 1, 3, 2).reshape(X.shape),
    }
    assert outs["wsum_f"][0].shape == X.shape[:2]
    for name, value in want.items():
        got, lens = outs[name]
        assert got.dtype == value.dtype or value.dtype != bool, name
        np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-5, err_msg=name)
        assert list(lens) == list(LENS), name


def test_initial_weights_are_returnns(backends) -> None:
    fresh = _backend("tf", {"wsum": {"class": "weighted_sum", "axes": "T", "size": (4,), "padding": "same"},
                            "prod": {"class": "elemwise_prod", "axes": "F", "size": (4,)},
                            "output": {"class": "copy", "from": "data"}}).get_param_values()
    np.testing.assert_array_equal(fresh["wsum/W"], np.full(4, 0.25, "f"))
    np.testing.assert_array_equal(fresh["prod/W"], np.ones(4, "f"))


def test_variable(backends) -> None:
    _, params, outs = backends
    np.testing.assert_array_equal(params["one/v"], np.full(4, 0.5, "f"))
    np.testing.assert_array_equal(outs["one"][0], np.full((3, 4), 0.5, "f"))
    assert outs["one"][1] is None
    np.testing.assert_array_equal(outs["one_t"][0], np.full((3, 1, 2), -1.0, "f"))
    assert list(outs["one_t"][1]) == [1, 1, 1]
    np.testing.assert_array_equal(outs["query"][0], np.tile(params["query/query"], (3, 1)))


def test_prefix_postfix_in_time(backends) -> None:
    _, params, outs = backends
    got, lens = outs["pre"]
    assert list(lens) == [n + 2 for n in LENS]
    np.testing.assert_array_equal(got[:, :2], 1.5)
    np.testing.assert_array_equal(got[:, 2:], X)
    got, lens = outs["pre_labels"]
    assert got.dtype == np.int32 and list(lens) == [n + 1 for n in LENS]
    np.testing.assert_array_equal(got, np.concatenate([np.full((3, 1), 3), CLS], 1))
    for name, frame in (("post", np.full(4, -1.0, "f")), ("post_layer", np.full(4, 0.5, "f"))):
        repeat = 2 if name == "post" else 1
        got, lens = outs[name]
        assert list(lens) == [n + repeat for n in LENS], name
        want = np.zeros((3, X.shape[1] + repeat, 4), "f")
        for b, n in enumerate(LENS):
            want[b, :n] = X[b, :n]
            want[b, n : n + repeat] = frame
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_concat_on_named_axes(backends) -> None:
    _, params, outs = backends
    h = X @ params["h/W"] + params["h/b"]
    np.testing.assert_allclose(outs["cat_f"][0], np.concatenate([X, h], -1), rtol=1e-6)
    labels = np.concatenate([np.full((3, 1), 3), CLS], 1)
    for name, a, b, b_lens in (("cat_t", X, h, LENS), ("cat_labels", CLS, labels, [n + 1 for n in LENS])):
        got, lens = outs[name]
        assert list(lens) == [n + m for n, m in zip(LENS, b_lens)], name
        for i, (n, m) in enumerate(zip(LENS, b_lens)):
            np.testing.assert_allclose(got[i, : n + m], np.concatenate([a[i, :n], b[i, :m]]), rtol=1e-6, err_msg=name)


def test_register_as_extern_data_serves_as_loss_target() -> None:
    plain = _backend("tf", {"output": {"class": "softmax", "loss": "ce", "n_out": 3}})
    registered = _backend("tf", {
        "aligned": {"class": "reinterpret_data", "from": "data:classes", "register_as_extern_data": "alignment"},
        "output": {"class": "softmax", "loss": "ce", "target": "alignment", "n_out": 3}})
    registered.set_param_values(plain.get_param_values())
    want, got = plain.eval_step(BATCH), registered.eval_step(BATCH)
    assert got.frames == want.frames
    np.testing.assert_allclose(got.losses["output"], want.losses["output"], rtol=1e-6)


def _cubic(d: float) -> float:
    d, a = abs(d), -0.75
    return (a + 2) * d**3 - (a + 3) * d**2 + 1 if d <= 1 else (a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0)


def _resize_seq(x: np.ndarray, factor: int, kind: str) -> np.ndarray:
    """One seq (T, D) upsampled the way TensorFlow 1's resize_* (no align_corners) does, with edge clamping."""
    n = len(x)
    out = []
    for i in range(n * factor):
        src = i / factor
        base = math.floor(src)
        taps = {"nn": [(0, 1.0)], "linear": [(0, 1 - (src - base)), (1, src - base)],
                "cubic": [(k, _cubic(src - (base + k))) for k in (-1, 0, 1, 2)]}[kind]
        out.append(sum(w * x[min(max(base + k, 0), n - 1)] for k, w in taps))
    return np.stack(out)


def test_resize_matches_tensorflow_image_resize(backends) -> None:
    _, _, outs = backends
    for name, factor, kind in (("up_nn", 2, "nn"), ("up_linear", 3, "linear"), ("up_cubic", 2, "cubic")):
        got, lens = outs[name]
        assert list(lens) == [n * factor for n in LENS], name
        for b, n in enumerate(LENS):
            np.testing.assert_allclose(got[b, : n * factor], _resize_seq(X[b, :n], factor, kind), rtol=1e-5,
                                       atol=1e-5, err_msg=f"{name} seq {b}")
    # the longest seq has no padding: there the layer is exactly TensorFlow 1's image resizing
    image = X[:1, :, None, :]  # (1, T, 1, D)
    size = (X.shape[1] * 2, 1)
    for name, fn in (("up_nn", tf.compat.v1.image.resize_nearest_neighbor),
                     ("up_cubic", tf.compat.v1.image.resize_bicubic)):
        ref = fn(image, size, align_corners=False, half_pixel_centers=False).numpy()[0, :, 0]
        np.testing.assert_allclose(outs[name][0][0], ref, rtol=1e-4, atol=1e-4, err_msg=name)
    got, lens = outs["up_labels"]
    assert got.dtype == np.int32 and list(lens) == [2 * n for n in LENS]
    present = np.repeat(MASK, 2, axis=1) > 0
    np.testing.assert_array_equal(got[present], np.repeat(CLS, 2, axis=1)[present])
    np.testing.assert_allclose(outs["up_feature"][0][0], np.stack([_resize_seq(f, 2, "linear") for f in X[0]]),
                               rtol=1e-5, atol=1e-5)


def test_split_batch_time_restores_the_batch(backends) -> None:
    _, _, outs = backends
    got, lens = outs["unflat"]
    assert list(lens) == list(LENS)
    np.testing.assert_allclose(got, X * MASK[..., None], atol=1e-6)


def test_attention(backends) -> None:
    _, params, outs = backends
    h = X @ params["h/W"] + params["h/b"]
    q = params["query/query"]
    step, time_q = [], []
    for b, n in enumerate(LENS):
        step.append(_softmax(X[b, :n] @ q) @ h[b, :n])
        time_q.append(_softmax(X[b] @ X[b, :n].T) @ h[b, :n])
    np.testing.assert_allclose(outs["att"][0], np.stack(step), rtol=1e-5, atol=1e-5)
    assert outs["att"][1] is None
    np.testing.assert_allclose(outs["att_t"][0][MASK > 0], np.stack(time_q)[MASK > 0], rtol=1e-5, atol=1e-5)
    assert list(outs["att_t"][1]) == list(LENS)


def _gauss_ref(t: float, base: np.ndarray, n: int, window: int, std: float, offsets: Any = (0.0,)) -> np.ndarray:
    start = int(np.round(t)) - window // 2
    out = []
    for off in offsets:
        acc = 0.0
        for idx in range(start, start + window):
            weight = math.exp(-((t + off - idx) ** 2) / (2 * std**2)) / (std * math.sqrt(2 * math.pi))
            acc = acc + weight * base[min(min(max(idx, 0), len(base) - 1), n - 1)]
        out.append(acc)
    return np.stack(out)


def test_gauss_window_attention(backends) -> None:
    _, params, outs = backends
    got = outs["gauss"][0]
    inner = outs["gauss_inner"][0]
    assert got.shape == (3, 4) and inner.shape == (3, 3, 4)
    for b, n in enumerate(LENS):
        np.testing.assert_allclose(got[b], _gauss_ref(2.6, X[b], n, 3, 1.0)[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(inner[b], _gauss_ref(2.6, X[b], n, 4, 0.7, (-0.5, 0.0, 0.5)), rtol=1e-5,
                                   atol=1e-6)
    h = X @ params["h/W"] + params["h/b"]
    got_t, lens = outs["gauss_t"]
    assert list(lens) == list(LENS)
    for b, n in enumerate(LENS):
        for t in range(n):
            np.testing.assert_allclose(got_t[b, t], _gauss_ref(h[b, t, 0], X[b], n, 2, 1.0)[0], rtol=1e-4,
                                       atol=1e-5)


def test_theano_agrees_on_bool_sparse_and_extra_axes(backends) -> None:
    tf_be, params, outs = backends
    th_be = _backend("theano", NET)
    th_be.set_param_values(params)
    for name in ("both", "pre_labels", "post_layer", "gauss_inner", "up_cubic"):
        got, lens = th_be.forward_step(BATCH, name)
        want = outs[name][0]
        np.testing.assert_allclose(got.reshape(want.shape).astype("f"), want.astype("f"), rtol=1e-5, atol=1e-5,
                                   err_msg=name)
        if outs[name][1] is not None:
            assert list(lens) == list(outs[name][1]), name


STATS_NET = {
    "running": {"class": "accumulate_mean", "exp_average": 0.3, "is_prob_distribution": True},
    "output": {"class": "softmax", "loss": "ce", "n_out": 3},
    "stats": {"class": "framewise_statistics", "sil_label_idx": 1, "histogram_num_bins": 4, "from": "output"},
}


def test_accumulate_mean_and_framewise_statistics_in_training() -> None:
    from returnn_core.frontend.layers.statistics import stat_names

    be = _backend("tf", STATS_NET, train=True)
    before = be.get_param_values()
    np.testing.assert_array_equal(before["running/mean"], np.full(4, 0.25, "f"))  # 1 / dim
    be.train_step(BATCH, 0.1)
    after = be.get_param_values()
    frames = X[MASK > 0]
    np.testing.assert_allclose(after["running/mean"], 0.25 + 0.3 * (frames.mean(0) - 0.25), rtol=1e-5)
    logits = frames @ before["output/W"] + before["output/b"]
    labels = CLS[MASK > 0]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -log_probs[np.arange(len(labels)), labels]
    error = (logits.argmax(-1) != labels).astype("f")
    sil = labels == 1
    hist = np.eye(4)[np.clip(np.round(np.exp(-ce) * 4), 0, 3).astype(int)]
    for sub, sel in (("", slice(None)), ("_sil", sil), ("_no_sil", ~sil)):
        np.testing.assert_allclose(after[f"stats/accumulated_seq_length{sub}"], len(labels[sel]))
        np.testing.assert_allclose(after[f"stats/accumulated_loss_ce{sub}"], ce[sel].sum(), rtol=1e-5)
        np.testing.assert_allclose(after[f"stats/accumulated_frame_error{sub}"], error[sel].sum())
        np.testing.assert_allclose(after[f"stats/accumulated_true_label_prob_histogram{sub}"], hist[sel].sum(0))
    # evaluation reads the statistics of its batch and the accumulators without adding to them
    be.set_param_values(before | {k: v for k, v in after.items() if k.startswith("stats/")})
    vector = _eager(be)["stats"][0]
    names = stat_names(4)
    assert vector.shape == (3, len(names))
    got = dict(zip(names, vector[0]))
    np.testing.assert_allclose(got["batch_loss_ce_no_sil"], ce[~sil].mean(), rtol=1e-5)
    np.testing.assert_allclose(got["batch_loss_perplexity"], np.exp(ce.mean()), rtol=1e-5)
    np.testing.assert_allclose(got["accumulated_frame_error_sil"], error[sil].mean(), rtol=1e-5)
    np.testing.assert_allclose([got[f"batch_true_label_prob_histogram[{i}]"] for i in range(4)], hist.mean(0),
                               rtol=1e-5)
    assert be.get_param_values()["stats/accumulated_seq_length"] == len(labels)


@pytest.mark.parametrize("unit", ["nativelstm2", "nativelstmlowmem"])
def test_native_lstm_variants_compute_nativelstm(unit: str) -> None:
    if ("tf", unit) not in get_plugin_manager().rec_units:
        pytest.skip("returnn-native is not installed")
    ref = _backend("tf", {"output": {"class": "rec", "unit": "nativelstm", "n_out": 3}})
    other = _backend("tf", {"output": {"class": "rec", "unit": unit, "n_out": 3}})
    p = ref.get_param_values()
    if unit == "nativelstmlowmem":
        other.set_param_values({"output/W": np.concatenate([p["output/W"], p["output/W_re"]]), "output/b": p["output/b"]})
    else:
        other.set_param_values(p)
    np.testing.assert_allclose(other.forward_step(BATCH, "output")[0], ref.forward_step(BATCH, "output")[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("net", "message"), [
    ({"output": {"class": "gating", "from": "h"}, "h": {"class": "linear", "n_out": 3}},
     "layer 'output' (class 'gating'): its input dim 3 is odd"),
    ({"output": {"class": "dot_attention", "base": "data", "base_ctx": "h", "from": "data"},
      "h": {"class": "linear", "n_out": 3}},
     "layer 'output' (class 'dot_attention'): the query dim 4 differs from the dim 3 of base_ctx"),
    ({"output": {"class": "resize", "axis": "T", "factor": 0}},
     "layer 'output' (class 'resize'): needs an int factor >= 1"),
    ({"output": {"class": "elemwise_prod", "axes": "T"}},
     "layer 'output' (class 'elemwise_prod'): axis 1 has no fixed size"),
    ({"output": {"class": "compare", "kind": "similar", "value": 1}},
     "layer 'output' (class 'compare'): unknown compare kind 'similar'"),
    ({"output": {"class": "accumulate_mean", "exp_average": 0.1, "axes": "T"}},
     "layer 'output' (class 'accumulate_mean'): axes must contain the batch and the time axis"),
    ({"output": {"class": "rec", "unit": "nativelstm2", "n_out": 2, "unit_opts": {"rec_weight_dropout": 0.1}}},
     "rec_weight_dropout=0.1 is not supported"),
    ({"output": {"class": "copy", "from": [("data", "F")]}},
     "layer 'output': (source, axis) pairs in 'from' are only for class 'concat'"),
    ({"output": {"class": "concat", "from": [("data", "F"), ("data", "T")]}},
     "layer 'output' (class 'concat'): (source, axis) pairs must name the same axis for every source"),
    ({"output": {"class": "concat", "from": [("data", "F"), "data"]}},
     "layer 'output' (class 'concat'): give every source as a (source, axis) pair or none"),
    ({"output": {"class": "reinterpret_data", "register_as_extern_data": "classes"}},
     "layer 'output' (class 'reinterpret_data'): register_as_extern_data must be a new data key, got 'classes'"),
])
def test_errors_name_the_layer(net: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkError) as info:
        _backend("tf", net)
    assert message in str(info.value)


def test_ops_composites_floor_round_batch_matmul() -> None:
    """The default floor, round (halves to even) and batch_matmul of :class:`Ops`, run on TensorFlow tensors."""
    from returnn_core.frontend import Ops

    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51, 3.7, -3.7, 4.0], "f")
    np.testing.assert_array_equal(Ops.floor(TF_OPS, tf.constant(x)).numpy(), np.floor(x))
    np.testing.assert_array_equal(Ops.round(TF_OPS, tf.constant(x)).numpy(), np.round(x))
    rng = np.random.RandomState(1)
    a, b = rng.randn(2, 3, 4, 5).astype("f"), rng.randn(2, 3, 5, 2).astype("f")
    np.testing.assert_allclose(Ops.batch_matmul(TF_OPS, tf.constant(a), tf.constant(b)).numpy(), a @ b, rtol=1e-5,
                               atol=1e-5)
