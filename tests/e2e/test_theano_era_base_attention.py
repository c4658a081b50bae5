"""The manual's NetworkHiddenLayer base (BaseInterpolationLayer) and source_attention on both backends, against
NumPy: softmax weights over the base seq's own frames."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, EXTERN, SEQ_LENS, outputs_on_both  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "enc": {"class": "hidden", "n_out": 3, "activation": "tanh"},
    "rev": {"class": "reverse"},
    "interp": {"class": "base", "base": "enc", "from": "rev"},
    "two": {"class": "base", "base": ["enc", "rev"]},
    "att": {"class": "source_attention", "base": "enc", "n_tmp": 2, "from": "rev"},
}


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def test_base_and_source_attention(outputs) -> None:
    outs, p = outputs
    enc, rev = outs["enc"][0], outs["rev"][0]
    for b, n in enumerate(SEQ_LENS):
        memory = enc[b, :n]
        weights = _softmax((memory @ p["interp/W_base_0"])[:, 0])  # the frame's own score cancels
        np.testing.assert_allclose(outs["interp"][0][b, :n], np.broadcast_to(weights @ memory, (n, 3)),
                                   rtol=1e-5, atol=1e-5)
        both = np.concatenate([memory, rev[b, :n]], -1)
        weights = _softmax((memory @ p["two/W_base_0"] + rev[b, :n] @ p["two/W_base_1"])[:, 0])
        np.testing.assert_allclose(outs["two"][0][b, :n], np.broadcast_to(weights @ both, (n, 7)),
                                   rtol=1e-5, atol=1e-5)
        keys = np.tanh(memory @ p["att/W_base"] + p["att/b_base"])
        query = np.tanh(rev[b, :n] @ p["att/W_in"] + p["att/b_in"])
        dist = np.sqrt(((query[:, None] - keys[None]) ** 2).sum(-1))
        np.testing.assert_allclose(outs["att"][0][b, :n], _softmax(-dist) @ memory, rtol=1e-5, atol=1e-5)
    assert {"interp/W", "interp/b", "interp/W_base_0"} <= set(p)
    np.testing.assert_array_equal(outs["att"][1], SEQ_LENS)
