"""The Theano-era ``native`` layer class (NativeLstm / LstmGenericBase) on both backends against NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import MASK, SEQ_LENS, X, _backend, _both, _forward  # noqa: E402

from returnn_core.errors import NetworkError  # noqa: E402
from returnn_core.frontend._unit import resolve_unit  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")

V_H = [{"name": "W_re", "shape": ["n_out", "n_out*4"]}]
NET = {
    "pre": {"class": "hidden", "n_out": 8, "activation": "identity", "from": "data"},
    "nat": {"class": "native", "native_class": "NativeLstm", "n_out": 2, "params": V_H, "from": "pre"},
    # X has dim 4 = 4 * 1: the data itself are the gate inputs; params as the JSON string a config may give
    "gen": {"class": "native", "native_class": "LstmGenericBase", "n_out": 1,
            "params": '[{"name": "V_h", "shape": [1, "4 * n_out"]}]', "from": "data"},
}
NET["output"] = {"class": "copy", "from": ["nat", "gen"]}


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _native_lstm(z: np.ndarray, v_h: np.ndarray) -> np.ndarray:
    """RETURNN's LSTM kernel: Z blocks [cell in, input, forget, output] plus Y[t-1] V_h, zero initial state; padded
    frames keep the state and output zero."""
    n = v_h.shape[0]
    y = np.zeros((*z.shape[:2], n), "f")
    for b in range(z.shape[0]):
        h, c = np.zeros(n, "f"), np.zeros(n, "f")
        for t in range(z.shape[1]):
            ci, gi, gf, go = np.split(z[b, t] + h @ v_h, 4)
            c_new = _sig(gf) * c + _sig(gi) * np.tanh(ci)
            h_new = _sig(go) * np.tanh(c_new)
            m = MASK[b, t]
            c, h = m * c_new + (1 - m) * c, m * h_new + (1 - m) * h
            y[b, t] = m * h_new
    return y


@pytest.mark.parametrize("kernel", ["nativelstm", "fallback"])
def test_native_lstm_classes_match_numpy_on_both_backends(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel == "fallback":  # as without returnn-native: the lstm unit is each backend's own LSTM
        for module in ("returnn_native.tf_unit", "returnn_native.pytensor_unit"):
            unit = pytest.importorskip(module).NativeLstmUnit
            monkeypatch.setattr(unit, "unusable_reason", staticmethod(lambda: "disabled by the test"))
        for name in ("tf", "theano"):
            assert not resolve_unit(get_plugin_manager(), name, "lstm", layer="nat").__module__.startswith(
                "returnn_native")
    backends = _both(NET)
    params = backends[0].get_param_values()
    assert params["nat/W_re"].shape == (2, 8) and params["gen/V_h"].shape == (1, 4)
    assert sorted(k for k in params if k.startswith(("nat/", "gen/"))) == ["gen/V_h", "nat/W_re"]
    out, lens = _forward(backends, "output")
    np.testing.assert_array_equal(lens, SEQ_LENS)
    z = X @ params["pre/W"] + params["pre/b"]
    np.testing.assert_allclose(out[..., :2], _native_lstm(z, params["nat/W_re"]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[..., 2:], _native_lstm(X, params["gen/V_h"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer, message", [
    ({"native_class": "NativeLstm2"}, "native_class 'NativeLstm2' is not supported; supported: NativeLstm, "
                                      "LstmGenericBase"),
    ({"native_class": "NativeLstm", "n_out": 2}, "dim 4 * n_out = 8, but they have dim 4"),
    ({"params": [{"name": "W_re", "shape": ["n_out", "n_out*3"]}]}, "shape (n_out, 4*n_out) = (1, 4), got (1, 3)"),
    ({"params": [{"name": "W_re", "shape": ["n_out", "__import__('os')"]}]}, "is not an int or arithmetic over"),
    ({"params": V_H * 2}, "takes one parameter"),
    ({"params": "W_re"}, "params is a string but not JSON"),
])
def test_bad_native_options_are_named(layer: dict[str, Any], message: str) -> None:
    opts = {"class": "native", "native_class": "NativeLstm", "n_out": 1, "params": V_H, "from": "data"} | layer
    with pytest.raises(NetworkError) as info:
        _backend("tf", {"output": opts})
    assert "'output'" in str(info.value) and message in str(info.value)
