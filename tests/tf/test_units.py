"""The core's rec units on TF against a numpy LSTM/GRU/RNN: canonical gate order, masking, direction, states,
gradients; the LSTM on both TF paths (BlockLSTM and the while-loop scan)."""

from __future__ import annotations

import numpy as np
import pytest
import returnn_tf.ops
import tensorflow as tf

from returnn_core.frontend import resolve_unit
from returnn_core.log import Log
from returnn_core.plugin import get_plugin_manager

#: RETURNN's TF cell units: TensorFlow's cells add a forget bias of 1.0 (unit option forget_bias)
TF_CELL_LSTMS = ["lstmblockfused", "standardlstm", "basiclstm", "lstmblock"]
LSTM_UNITS = [*TF_CELL_LSTMS, "cudnnlstm", "lstm"]


def _sig(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def np_lstm(x, lens, w, w_re, b, h0=None, c0=None, direction=1):
    """Reference LSTM (gates [cell in, input, forget, output]); masked frames keep the state, output 0."""
    bsz, t_max, _ = x.shape
    n = w_re.shape[0]
    y = np.zeros((bsz, t_max, n))
    hs, cs = [], []
    for i in range(bsz):
        h = np.zeros(n) if h0 is None else h0[i].copy()
        c = np.zeros(n) if c0 is None else c0[i].copy()
        steps = range(lens[i]) if direction == 1 else reversed(range(lens[i]))
        for t in steps:
            z = x[i, t] @ w + h @ w_re + b
            ci, ig, fg, og = np.split(z, 4)
            c = _sig(fg) * c + _sig(ig) * np.tanh(ci)
            h = _sig(og) * np.tanh(c)
            y[i, t] = h
        hs.append(h)
        cs.append(c)
    return y, np.array(hs), np.array(cs)


def _inputs(n_in=3, n=4, k=4, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(3, 6, n_in)).astype(np.float32)
    lens = np.array([6, 4, 1], np.int32)
    params = {
        "W": rng.normal(scale=0.5, size=(n_in, k * n)).astype(np.float32),
        "W_re": rng.normal(scale=0.5, size=(n, k * n)).astype(np.float32),
        "b": rng.normal(scale=0.3, size=(k * n,)).astype(np.float32),
    }
    mask = (np.arange(6)[None, :] < lens[:, None]).astype(np.float32)
    return x, lens, mask, params


def _unit(name: str):
    return resolve_unit(get_plugin_manager(), "tf", name, layer="test", log=Log(0))


@pytest.fixture(params=["block_lstm", "scan"])
def lstm_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with TFOps.lstm on BlockLSTM, then on the step loop."""
    monkeypatch.setattr(returnn_tf.ops.TF_OPS, "fused_lstm", request.param == "block_lstm")
    return request.param


@pytest.mark.parametrize("name", LSTM_UNITS)
@pytest.mark.parametrize("direction", [1, -1])
def test_lstm_units_match_numpy(name: str, direction: int, lstm_path: str) -> None:
    x, lens, mask, params = _inputs()
    unit = _unit(name)(3, 4)
    assert set(unit.param_specs()) == {"W", "W_re", "b"}
    assert unit.param_specs()["W"].shape == (3, 16)
    rng = np.random.RandomState(1)
    h0, c0 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    y, (h, c) = unit({k: tf.constant(v) for k, v in params.items()}, tf.constant(x), tf.constant(mask),
                     initial_state=(tf.constant(h0), tf.constant(c0)), direction=direction)
    b = params["b"] + np.repeat([0.0, 0.0, 1.0, 0.0], 4).astype("f") if name in TF_CELL_LSTMS else params["b"]
    ref_y, ref_h, ref_c = np_lstm(x, lens, params["W"], params["W_re"], b, h0, c0, direction)
    np.testing.assert_allclose(y.numpy(), ref_y, atol=1e-4)
    np.testing.assert_allclose(h.numpy(), ref_h, atol=1e-4)
    np.testing.assert_allclose(c.numpy(), ref_c, atol=1e-4)


@pytest.mark.parametrize("name", LSTM_UNITS + ["gru", "rnn"])
def test_unit_gradients_flow(name: str, lstm_path: str) -> None:
    k = {"gru": 3, "rnn": 1}.get(name, 4)
    x, lens, mask, params = _inputs(k=k)
    unit = _unit(name)(3, 4)
    variables = {n: tf.Variable(v) for n, v in params.items()}
    with tf.GradientTape() as tape:
        y, _ = unit(variables, tf.constant(x), tf.constant(mask))
        loss = tf.reduce_sum(tf.square(y))
    grads = tape.gradient(loss, list(variables.values()))
    for g, n in zip(grads, variables):
        assert g is not None and np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0, n


def test_gru_and_rnn_match_numpy() -> None:
    x, lens, mask, params = _inputs(k=3)
    y, (h,) = _unit("gru")(3, 4)({k: tf.constant(v) for k, v in params.items()}, tf.constant(x), tf.constant(mask))
    n = 4
    w, w_re, b = params["W"], params["W_re"], params["b"]
    for i in range(3):
        hp = np.zeros(n)
        for t in range(lens[i]):
            zx = x[i, t] @ w + b
            r = _sig(zx[:n] + hp @ w_re[:, :n])
            u = _sig(zx[n : 2 * n] + hp @ w_re[:, n : 2 * n])
            cand = np.tanh(zx[2 * n :] + (r * hp) @ w_re[:, 2 * n :])
            hp = u * hp + (1 - u) * cand
            np.testing.assert_allclose(y.numpy()[i, t], hp, atol=1e-4)
        np.testing.assert_allclose(h.numpy()[i], hp, atol=1e-4)
        assert np.all(y.numpy()[i, lens[i]:] == 0)
    x, lens, mask, params = _inputs(k=1)
    y, (h,) = _unit("rnn")(3, 4)({k: tf.constant(v) for k, v in params.items()}, tf.constant(x), tf.constant(mask))
    hp = np.zeros(4)
    for t in range(6):
        hp = np.tanh(x[0, t] @ params["W"] + hp @ params["W_re"] + params["b"])
    np.testing.assert_allclose(h.numpy()[0], hp, atol=1e-4)


def test_lstm_prefers_registered_nativelstm() -> None:
    manager = get_plugin_manager()
    cls = _unit("lstm")
    if ("tf", "nativelstm") in manager.rec_units:
        assert cls is manager.rec_units.get("nativelstm", backend="tf")
    else:
        assert cls is manager.rec_units.get("lstm", backend="tf")


def test_tf_cell_forget_bias_is_a_unit_option() -> None:
    x, lens, mask, params = _inputs()
    feed = ({k: tf.constant(v) for k, v in params.items()}, tf.constant(x), tf.constant(mask))
    y_plain, _ = _unit("lstmblock")(3, 4, forget_bias=0.0)(*feed)
    y_shifted, _ = _unit("lstmblock")(3, 4, forget_bias=2.5)(*feed)
    np.testing.assert_allclose(y_plain.numpy(), np_lstm(x, lens, params["W"], params["W_re"], params["b"])[0], atol=1e-4)
    b = params["b"] + np.repeat([0.0, 0.0, 2.5, 0.0], 4).astype("f")
    np.testing.assert_allclose(y_shifted.numpy(), np_lstm(x, lens, params["W"], params["W_re"], b)[0], atol=1e-4)
