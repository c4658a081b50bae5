"""The manual's NetworkHiddenLayer input_base on both backends: a hidden layer's first weight block as a seq."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import EXTERN, _backend, _both, _forward  # noqa: E402

from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "h": {"class": "hidden", "n_out": 2, "from": ["data", "data:classes"]},
    "weights": {"class": "input_base", "from": "h", "is_output_layer": True},
    "output": {"class": "softmax", "loss": "ce", "from": "h"},
}


def test_input_base_gives_the_first_weight_block() -> None:
    backends = _both(NET)
    w = backends[0].get_param_values()["h/W"]
    assert w.shape == (4 + 3, 2)  # data's rows, then the classes' one-hot rows
    out, lens = _forward(backends, "weights")
    np.testing.assert_array_equal(lens, [4, 4, 4])
    np.testing.assert_allclose(out, np.broadcast_to(w[:4], (3, 4, 2)), atol=1e-6)


def test_input_base_needs_a_hidden_source() -> None:
    net = {"weights": {"class": "input_base", "from": "data", "is_output_layer": True}}
    with pytest.raises(NetworkError, match="needs exactly one source, a hidden layer"):
        _backend("theano", net, extern=EXTERN)
