"""RETURNN's own layer expectations (its tests/test_TFNetworkLayer.py of 2017-2019) on both of our backends:
param names and shapes, outputs for given inputs, option defaults."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, SEQ_LENS, X, _backend, _both, _forward, one_batch  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")


def test_batch_norm_option_of_any_layer() -> None:
    net = {"layer1": {"class": "linear", "activation": "relu", "batch_norm": True, "n_out": 3, "is_output_layer": True},
           "plain": {"class": "linear", "activation": "relu", "n_out": 3, "reuse_params": "layer1"},
           "output": {"class": "softmax", "loss": "ce", "from": "layer1"}}
    backends = _both(net)
    prefix = "layer1/batch_norm/layer1_layer1_output_"
    params = backends[0].get_param_values()
    assert {k for k in params if k.startswith("layer1/")} == {
        "layer1/W", "layer1/b", *(prefix + p for p in ("beta", "gamma", "mean", "variance"))}
    assert params["layer1/W"].shape == (4, 3) and params[prefix + "mean"].shape == (3,)
    out, _ = _forward(backends, "layer1")
    plain, _ = _forward(backends, "plain")
    # inference with fresh moving averages (0, 1): the activated output over sqrt(1 + epsilon), epsilon 1e-3
    np.testing.assert_allclose(out, plain / np.sqrt(1 + 1e-3), rtol=1e-5, atol=1e-6)


def test_batch_norm_option_dict_and_training_statistics() -> None:
    net = {"h": {"class": "linear", "activation": None, "n_out": 2, "batch_norm": {"momentum": 0.5, "use_std": False}},
           "output": {"class": "softmax", "loss": "ce", "from": "h"}}
    backends = _both(net, train=True)
    prefix = "h/batch_norm/h_h_output_"
    assert prefix + "gamma" not in backends[0].get_param_values()
    params = backends[0].get_param_values()
    frames = np.concatenate([X[b, :n] for b, n in enumerate(SEQ_LENS)]) @ params["h/W"] + params["h/b"]
    for be in backends:
        be.train_step(BATCH, 0.0)
        p = be.get_param_values()
        np.testing.assert_allclose(p[prefix + "mean"], 0.5 * frames.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(p[prefix + "variance"], 0.5 + 0.5 * frames.var(0), rtol=1e-4, atol=1e-5)


def test_batch_norm_layer_default_epsilon() -> None:
    backends = _both({"output": {"class": "batch_norm"}})
    out, _ = _forward(backends, "output")
    np.testing.assert_allclose(out, X / np.sqrt(1 + 1e-3), rtol=1e-5, atol=1e-6)


def test_constant_and_compare_without_any_data() -> None:
    backends = _both({"const": {"class": "constant", "value": 3, "from": []},
                      "output": {"class": "compare", "from": "const", "value": 3, "is_output_layer": True},
                      "c42": {"class": "constant", "value": 42, "from": [], "is_output_layer": True}})
    # RETURNN gives batch 1 for broadcasting where no data is read (tf); theano reads the fed batch's size
    for be in backends:
        c42, _ = be.forward_step(BATCH, "c42")
        assert c42.shape[1:] == (1, 1) and set(c42.reshape(-1).tolist()) == {42.0}
        out, _ = be.forward_step(BATCH, "output")
        assert out.dtype == np.bool_ and set(out.reshape(-1).tolist()) == {True}


def test_bad_batch_norm_option_names_layer() -> None:
    from returnn_core.errors import NetworkError

    with pytest.raises(NetworkError, match="layer 'h'.*batch_norm option.*mommentum"):
        _both({"h": {"class": "linear", "n_out": 2, "batch_norm": {"mommentum": 0.5}}, "output": {"class": "copy",
                                                                                              "from": "h"}})


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "replication"])
def test_pad_modes_mirror_each_seq_at_its_own_end(mode: str) -> None:
    net = {"t": {"class": "pad", "axes": "T", "padding": (2, 1), "mode": mode, "is_output_layer": True},
           "output": {"class": "pad", "axes": "F", "padding": (1, 2), "mode": mode}}
    backends = _both(net)
    np_mode = "edge" if mode == "replication" else mode
    out, lens = _forward(backends, "t")
    assert list(lens) == [n + 3 for n in SEQ_LENS]
    for b, n in enumerate(SEQ_LENS):
        if n > 2 or mode != "reflect":  # numpy's reflect of a too-short seq repeats differently
            np.testing.assert_allclose(out[b, :n + 3], np.pad(X[b, :n], [(2, 1), (0, 0)], mode=np_mode), rtol=1e-6)
    out, _ = _forward(backends, "output")
    assert out.shape[-1] == 4 + 3
    np.testing.assert_allclose(out, np.pad(X, [(0, 0), (0, 0), (1, 2)], mode=np_mode), rtol=1e-6)



def test_resize_fill_sparse_labels() -> None:
    extern = {"data": DataSpec(20, sparse=True)}
    net = {"output": {"class": "resize", "factor": 3, "axis": "T", "kind": "fill", "fill_value": 19, "from": "data"},
           "neg": {"class": "resize", "factor": 2, "axis": "T", "kind": "fill", "fill_value": -1, "from": "data",
                   "is_output_layer": True}}
    labels = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]], "int32")
    feed = _labels_batch(labels, [5, 3])
    for name in ("tf", "theano"):
        be = _backend(name, net, extern=extern)
        out, lens = be.forward_step(feed, "output")
        assert list(lens) == [15, 9]
        assert out[0].tolist() == [1, 19, 19, 2, 19, 19, 3, 19, 19, 4, 19, 19, 5, 19, 19]
        assert out[1, :9].tolist() == [6, 19, 19, 7, 19, 19, 8, 19, 19]
        out, _ = be.forward_step(feed, "neg")
        assert out[0, :4].tolist() == [1, 19, 2, 19]  # -1: the last class


def _labels_batch(labels: np.ndarray, lens: list[int]):
    """A batch of sparse ``data`` seqs (rows of ``labels`` cut to ``lens``)."""
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": row[:n]}) for i, (row, n) in enumerate(zip(labels, lens))]
    return one_batch(seqs, {"data": DataSpec(20, sparse=True)})


def test_axis_descriptions_bt_spatial_and_negative_time_slice() -> None:
    net = {"split": {"class": "split_dims", "axis": "F", "dims": (2, 2)},
           "bt": {"class": "merge_dims", "axes": "BT", "from": "split"},
           "back": {"class": "split_batch_time", "base": "data", "from": "bt", "is_output_layer": True},
           "s1": {"class": "reduce", "mode": "mean", "axes": "s:1", "keep_dims": True, "from": "split",
                  "is_output_layer": True},
           "spatial": {"class": "reduce", "mode": "max", "axes": "spatial", "from": "split", "is_output_layer": True},
           "output": {"class": "slice", "axis": "T", "slice_start": 1, "slice_end": -1}}
    backends = _both(net)
    split = X.reshape(X.shape[0], X.shape[1], 2, 2)
    back, lens = _forward(backends, "back")
    np.testing.assert_allclose(back, split, rtol=1e-6)
    assert list(lens) == list(SEQ_LENS)
    s1, _ = _forward(backends, "s1")
    np.testing.assert_allclose(s1, split.mean(axis=2, keepdims=True), rtol=1e-5, atol=1e-6)
    spatial, _ = _forward(backends, "spatial")  # time (masked) and the split axis: per seq, per feature
    want = np.stack([split[b, :n].max(axis=(0, 1)) for b, n in enumerate(SEQ_LENS)])
    np.testing.assert_allclose(spatial.reshape(want.shape), want, rtol=1e-6)
    out, lens = _forward(backends, "output")
    assert list(lens) == [max(n - 2, 0) for n in SEQ_LENS]  # RETURNN: each seq loses its first and its last frame
    for b, n in enumerate(SEQ_LENS):
        np.testing.assert_allclose(out[b, :max(n - 2, 0)], X[b, 1:max(n - 1, 1)], rtol=1e-6)


def test_window_keeps_labels_sparse() -> None:
    net = {"output": {"class": "window", "window_size": 3, "padding": "valid", "from": "data"},
           "same": {"class": "window", "window_size": 3, "from": "data", "is_output_layer": True}}
    feed = _labels_batch(np.array([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [11, 0, 0, 0, 0]], "int32"), [5, 3, 1])
    for name in ("tf", "theano"):
        be = _backend(name, net, extern={"data": DataSpec(20, sparse=True)})
        out, lens = be.forward_step(feed, "output")
        assert list(lens) == [3, 1, 0]
        assert out[0].tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5]] and out[1, 0].tolist() == [6, 7, 8]
        out, lens = be.forward_step(feed, "same")
        assert list(lens) == [5, 3, 1] and out[0, :2].tolist() == [[0, 1, 2], [1, 2, 3]]


def test_conv_input_add_feature_dim_on_raw_samples() -> None:
    net = {"conv_1": {"class": "conv", "activation": "abs", "filter_size": (4,), "n_out": 6, "padding": "valid",
                      "strides": 10},
           "pad": {"class": "pad", "axes": "time", "padding": 20, "from": "conv_1"},
           "conv_2": {"class": "conv", "activation": "abs", "filter_size": (2, 3), "input_add_feature_dim": True,
                      "n_out": 5, "padding": "valid", "strides": 2, "from": "pad"},
           "output": {"class": "merge_dims", "axes": "except_time", "from": "conv_2"}}
    rng = np.random.RandomState(1)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 1).astype("f")}) for i, n in enumerate((400, 300))]
    (only,) = list(generate_batches(seqs, batch_size=0))
    feed = only.to_data(ExternData({"data": DataSpec(1)}))
    backends = _both(net, extern={"data": DataSpec(1)})
    assert backends[0].get_param_values()["conv_2/W"].shape == (2, 3, 1, 5)
    out, lens = _forward(backends, "output", feed)
    # 400 samples: 40 frames, 80 padded, (80 - 2) // 2 + 1 = 40; features (6 - 3) // 2 + 1 = 2 positions x 5
    assert list(lens) == [40, 35] and out.shape[-1] == 10


def test_rec_counter_from_prev_output_with_out_type_dim() -> None:
    # RETURNN's test_engine_rec_subnet_count: out_type's dim tells the loop the shape of prev:output
    net = {"output": {"class": "rec", "from": "data", "unit": {
        "output": {"class": "activation", "activation": "identity + 1", "from": "prev:output", "initial_output": 0,
                   "out_type": {"dim": 1, "dtype": "int32"}}}}}
    backends = _both(net)
    out, lens = _forward(backends, "output")
    assert list(lens) == list(SEQ_LENS)
    for b, n in enumerate(SEQ_LENS):
        assert out[b, :n, 0].tolist() == list(range(1, n + 1))


def test_dropout_noise_shape_shares_the_mask_along_time() -> None:
    import tensorflow as tf
    from returnn_tf.ops import TF_OPS
    from returnn_theano._pt import pt, pytensor, shared_rng
    from returnn_theano.ops import PyTensorOps, RandomSource

    ones = np.ones((2, 6, 4), "f")
    got = [TF_OPS.dropout(tf.constant(ones), 0.5, [2, 1, 4]).numpy()]
    th_ops = PyTensorOps(RandomSource(shared_rng(seed=3, name="rng")))
    x = pt.tensor3("x", dtype="float32")
    got.append(pytensor.function([x], th_ops.dropout(x, 0.5, [th_ops.dynamic_dim(x, 0), 1, 4]))(ones))
    for out in got:
        assert set(np.unique(out).tolist()) <= {0.0, 2.0}
        assert (out == out[:, :1]).all()  # one mask per seq and feature, the same in every frame
    # the layer option: "*" for the other axes; it builds and trains on both backends
    net = {"drop": {"class": "dropout", "dropout": 0.5, "dropout_noise_shape": {"*": None, "T": 1}},
           "output": {"class": "softmax", "loss": "ce", "from": "drop"}}
    for be in _both(net, train=True):
        assert np.isfinite(be.train_step(BATCH, 0.1).losses["output"])


def test_rec_initial_state_var_is_trained() -> None:
    net = {"output": {"class": "rec", "unit": "lstm", "n_out": 3, "initial_state": "var", "loss": "ce"}}
    backends = _both(net, train=True, optimizer={"class": "sgd"})
    zeros_net = {"output": {"class": "rec", "unit": "lstm", "n_out": 3}}
    for be in backends:
        params = be.get_param_values()
        assert params["output/initial_h"].shape == params["output/initial_c"].shape == (3,)
        plain = _backend(be.name, zeros_net)
        plain.set_param_values({k: v for k, v in params.items() if not k.startswith("output/initial_")})
        np.testing.assert_allclose(be.forward_step(BATCH, "output")[0], plain.forward_step(BATCH, "output")[0],
                                   rtol=1e-5, atol=1e-6)  # zeros at first: as without
        be.train_step(BATCH, 1.0)
        after = be.get_param_values()
        assert np.abs(after["output/initial_h"]).sum() > 0 and np.abs(after["output/initial_c"]).sum() > 0


def test_combine_with_bias_adds_b_before_the_activation() -> None:
    net = {"output": {"class": "combine", "kind": "add", "from": ["data", "data"], "with_bias": True,
                      "activation": "tanh"},
           "plain": {"class": "combine", "kind": "add", "from": ["data", "data"], "is_output_layer": True}}
    backends = _both(net)
    assert {k for k in backends[0].get_param_values()} == {"output/b"}  # plain (with_bias off by default): none
    bias = np.array([0.5, -1.0, 0.0, 2.0], "f")
    for be in backends:
        be.set_param_values({"output/b": bias})
    out, _ = _forward(backends, "output")
    np.testing.assert_allclose(out, np.tanh(2 * X + bias), rtol=1e-5, atol=1e-6)


def test_softmax_over_spatial_generic_attention_reduce_out() -> None:
    net = {"energy": {"class": "linear", "activation": None, "n_out": 1, "is_output_layer": True},
           "att_w": {"class": "softmax_over_spatial", "from": "energy", "is_output_layer": True},
           "att": {"class": "generic_attention", "weights": "att_w", "base": "data", "from": "att_w",
                   "is_output_layer": True},
           "output": {"class": "reduce_out", "mode": "max", "num_pieces": 2}}
    backends = _both(net)
    energy, _ = _forward(backends, "energy")
    weights, lens = _forward(backends, "att_w")
    assert list(lens) == list(SEQ_LENS)
    for b, n in enumerate(SEQ_LENS):
        e = energy[b, :n, 0]
        np.testing.assert_allclose(weights[b, :n, 0], np.exp(e - e.max()) / np.exp(e - e.max()).sum(), rtol=1e-5)
    att, _ = _forward(backends, "att")
    want = np.stack([(weights[b, :n] * X[b, :n]).sum(0) for b, n in enumerate(SEQ_LENS)])
    np.testing.assert_allclose(att.reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    maxout, _ = _forward(backends, "output")
    np.testing.assert_allclose(maxout, X.reshape(*X.shape[:2], 2, 2).max(-1), rtol=1e-6)


def test_attention_weights_accumulated_over_decoder_steps() -> None:
    # RETURNN 2018's attention decoder: prev:accum_att_weights (out_type shape (None, 1)) lives over the encoder
    # time, zeros before the first step
    net = {"enc_ctx": {"class": "linear", "activation": None, "n_out": 5},
           "output": {"class": "rec", "from": [], "target": "classes", "unit": {
               "weight_feedback": {"class": "linear", "activation": None, "with_bias": False,
                                   "from": "prev:accum_att_weights", "n_out": 5},
               "energy_in": {"class": "combine", "kind": "add", "from": ["base:enc_ctx", "weight_feedback"]},
               "energy": {"class": "linear", "activation": "tanh", "with_bias": False, "from": "energy_in",
                          "n_out": 1},
               "att_weights": {"class": "softmax_over_spatial", "from": "energy"},
               "accum_att_weights": {"class": "combine", "kind": "add",
                                     "from": ["prev:accum_att_weights", "att_weights"],
                                     "out_type": {"dim": 1, "shape": (None, 1)}},
               "att": {"class": "generic_attention", "weights": "att_weights", "base": "base:enc_ctx"},
               "output": {"class": "softmax", "from": "att", "loss": "ce", "target": "classes"}}}}
    be = _backend("tf", net, train=True)  # (the same layers run on theano; its compile of this loop is slow)
    params = be.get_param_values()
    first = be.train_step(BATCH, 0.5).losses["output/output"]
    for _ in range(5):
        last = be.train_step(BATCH, 0.5).losses["output/output"]
    assert np.isfinite(first) and last < first
    assert params["output/rec/weight_feedback/W"].shape == (1, 5)


def test_rnn_cell_initial_state_by_key_and_weights_init() -> None:
    # RETURNN's test_rec_subnet_train_t3d: "initial_state": {"c": "base:...", "h": 0}; with all weights 0 every gate
    # is sigmoid(0) = 0.5 and the cell input tanh(0) = 0, so the first output is 0.5 * tanh(0.5 * c0) (an LSTM
    # without forget-gate bias, as RETURNN's lstm/NativeLSTM)
    net = {"init_c": {"class": "reduce", "mode": "mean", "axes": "T", "from": "data"},
           "output": {"class": "rec", "from": "data", "unit": {
               "s": {"class": "rnn_cell", "unit": "lstm", "from": "data:source", "n_out": 4, "weights_init": 0,
                     "initial_state": {"c": "base:init_c", "h": 0}},
               "output": {"class": "copy", "from": "s"}}}}
    be = _backend("tf", net)
    assert not np.abs(be.get_param_values()["output/rec/s/W"]).any()
    out, _ = be.forward_step(BATCH, "output")
    c0 = np.stack([X[b, :n].mean(0) for b, n in enumerate(SEQ_LENS)])
    np.testing.assert_allclose(out[:, 0], 0.5 * np.tanh(0.5 * c0), rtol=1e-5, atol=1e-6)


def test_dot_attention_energy_factor_sharpens_the_weights() -> None:
    net = {"enc": {"class": "linear", "activation": "tanh", "n_out": 4},
           "q": {"class": "reduce", "mode": "mean", "axes": "T", "from": "enc"},
           "soft": {"class": "dot_attention", "from": "q", "base": "enc", "base_ctx": "enc", "energy_factor": 0.0,
                    "is_output_layer": True},
           "output": {"class": "dot_attention", "from": "q", "base": "enc", "base_ctx": "enc"}}
    backends = _both(net)
    enc, _ = _forward(backends, "enc")
    soft, _ = _forward(backends, "soft")  # factor 0: every present frame weighs the same
    want = np.stack([enc[b, :n].mean(0) for b, n in enumerate(SEQ_LENS)])
    np.testing.assert_allclose(soft.reshape(want.shape), want, rtol=1e-5, atol=1e-6)
