"""The scan units (LSTM, GRU, RNN) against NumPy step-by-step references, with padding and both directions."""

from __future__ import annotations

import numpy as np
import pytest
from theano_helpers import batch, make_backend

from returnn_core.datasets import DataSpec

EXTERN = {"data": DataSpec(3), "classes": DataSpec(2, sparse=True)}
LENS = (5, 2, 4)
N = 4


def _sig(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _lstm_step(z: np.ndarray, h: np.ndarray, c: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    z = z + h @ p["W_re"]
    ci, i, f, o = np.tanh(z[:N]), _sig(z[N : 2 * N]), _sig(z[2 * N : 3 * N]), _sig(z[3 * N :])
    c = f * c + i * ci
    return o * np.tanh(c), c


def _tf_cell_lstm_step(z: np.ndarray, h: np.ndarray, c: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """TensorFlow's LSTM cells (RETURNN's standardlstm, lstmblock, ...): a forget bias of 1.0."""
    return _lstm_step(z + np.repeat([0.0, 0.0, 1.0, 0.0], N), h, c, p)


def _gru_step(z: np.ndarray, h: np.ndarray, c: None, p: dict) -> tuple[np.ndarray, None]:
    w = p["W_re"]
    r = _sig(z[:N] + h @ w[:, :N])
    u = _sig(z[N : 2 * N] + h @ w[:, N : 2 * N])
    cand = np.tanh(z[2 * N :] + (r * h) @ w[:, 2 * N :])
    return u * h + (1 - u) * cand, None


def _rnn_step(z: np.ndarray, h: np.ndarray, c: None, p: dict) -> tuple[np.ndarray, None]:
    return np.tanh(z + h @ p["W_re"]), None


def _reference(x: np.ndarray, p: dict, step, direction: int) -> np.ndarray:
    """One seq (its present frames only); output in original time order."""
    frames = x if direction == 1 else x[::-1]
    h, c = np.zeros(N), np.zeros(N)
    ys = []
    for frame in frames:
        h, c = step(frame @ p["W"] + p["b"], h, c, p)
        ys.append(h)
    ys = np.array(ys)
    return ys if direction == 1 else ys[::-1]


@pytest.mark.parametrize(("unit", "step", "blocks"), [("lstmp", _lstm_step, 4), ("standardlstm", _tf_cell_lstm_step, 4),
                                                      ("gru", _gru_step, 3),
                                                      ("rnn", _rnn_step, 1)])
def test_unit_matches_reference(unit: str, step, blocks: int) -> None:
    net = {
        "fw": {"class": "rec", "unit": unit, "n_out": N},
        "bw": {"class": "rec", "unit": unit, "n_out": N, "direction": -1},
        "output": {"class": "softmax", "from": ["fw", "bw"], "loss": "ce"},
    }
    backend = make_backend(net, EXTERN, train=False)
    rng = np.random.RandomState(3)
    params = backend.get_param_values()
    assert params["fw/W"].shape == (3, blocks * N) and params["fw/W_re"].shape == (N, blocks * N)
    # non-zero biases so that the gate blocks are told apart
    backend.set_param_values({k: rng.uniform(-0.5, 0.5, v.shape).astype("f") for k, v in params.items()})
    params = backend.get_param_values()
    xs = [rng.randn(n, 3).astype("float32") for n in LENS]
    bd = batch({"data": xs}, EXTERN)
    for layer, direction in (("fw", 1), ("bw", -1)):
        got, lens = backend.forward_step(bd, layer)
        assert list(lens) == list(LENS)
        p = {k.split("/")[1]: v for k, v in params.items() if k.startswith(layer + "/")}
        for b, x in enumerate(xs):
            want = _reference(x.astype("float64"), p, step, direction)
            np.testing.assert_allclose(got[b, : len(x)], want, rtol=1e-4, atol=1e-5, err_msg=f"{unit} {layer} {b}")
            assert not got[b, len(x) :].any(), "padded frames output zeros"


def test_lstm_without_native_plugin_is_the_scan_lstm() -> None:
    net = {"a": {"class": "rec", "unit": "lstm", "n_out": N}, "b": {"class": "rec", "unit": "standardlstm", "n_out": N,
                                                                    "unit_opts": {"forget_bias": 0.0}},
           "output": {"class": "softmax", "from": ["a", "b"], "loss": "ce"}}
    backend = make_backend(net, EXTERN, train=False)
    params = backend.get_param_values()
    backend.set_param_values({k.replace("b/", "a/", 1) if k.startswith("b/") else k: v for k, v in params.items()
                              if k.startswith("b/")})
    bd = batch({"data": [np.ones((3, 3), "f"), np.ones((1, 3), "f")]}, EXTERN)
    np.testing.assert_allclose(backend.forward_step(bd, "a")[0], backend.forward_step(bd, "b")[0], rtol=1e-6)


def test_lstm_with_native_plugin_is_nativelstm_and_agrees() -> None:
    pytest.importorskip("returnn_native")
    import returnn_native._hooks as native_hooks
    from theano_helpers import theano_manager

    manager = theano_manager()
    manager.register(native_hooks, "native", distribution="returnn-native")
    net = {"a": {"class": "rec", "unit": "lstm", "n_out": N, "direction": -1},
           "b": {"class": "rec", "unit": "standardlstm", "n_out": N, "direction": -1,
                 "unit_opts": {"forget_bias": 0.0}},
           "output": {"class": "softmax", "from": ["a", "b"], "loss": "ce"}}
    backend = make_backend(net, EXTERN, manager=manager, optimizer={"class": "sgd"})
    unit_cls = backend.net.layers["a"].unit_cls
    assert (unit_cls.__module__, unit_cls.__name__) == ("returnn_native.pytensor_unit", "NativeLstmUnit")
    rng = np.random.RandomState(4)
    params = backend.get_param_values()
    values = {k: rng.uniform(-0.5, 0.5, v.shape).astype("f") for k, v in params.items() if k.startswith("a/")}
    w_out = params["output/W"]
    w_out[N:] = w_out[:N]  # the output sees both units alike
    backend.set_param_values({**values, **{k.replace("a/", "b/", 1): v for k, v in values.items()},
                              "output/W": w_out})
    xs = [rng.randn(n, 3).astype("float32") for n in LENS]
    bd = batch({"data": xs, "classes": [np.zeros(n, "int32") for n in LENS]}, EXTERN)
    native, lens = backend.forward_step(bd, "a")
    scan, _ = backend.forward_step(bd, "b")
    assert list(lens) == list(LENS)
    np.testing.assert_allclose(native, scan, rtol=1e-4, atol=1e-5)
    assert backend.train_step(bd, 0.1).is_finite()
    after = backend.get_param_values()
    # equal parameters, equally weighted in the output: equal gradients, so both units move alike
    for name in ("W", "W_re", "b"):
        assert not np.array_equal(after[f"a/{name}"], values[f"a/{name}"]), name
        np.testing.assert_allclose(after[f"a/{name}"], after[f"b/{name}"], rtol=1e-3, atol=1e-5, err_msg=name)
