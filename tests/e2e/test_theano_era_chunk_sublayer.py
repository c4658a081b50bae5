"""The manual's NetworkHiddenLayer chunking_sublayer on both backends, against NumPy: a sub-layer on overlapping
chunks of each seq, overlap-added back with a window."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, EXTERN, SEQ_LENS, X, outputs_on_both  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "shifted": {"class": "chunking_sublayer", "n_out": 4, "sublayer": {"class": "time_shift", "n_shift": 1},
                "chunk_size": 3, "chunk_step": 2, "add_left_context": 1, "chunk_distribution": "triangle"},
    "summed": {"class": "chunking_sublayer", "n_out": 4, "sublayer": '{"class": "time_shift"}', "chunk_size": 2,
               "chunk_step": 1, "add_right_context": 1, "normalize_output": False},
    "dense": {"class": "chunking_sublayer", "n_out": 2, "trainable": True, "chunk_size": 4, "chunk_step": 3,
              "chunk_distribution": "hamming", "sublayer": {"class": "hidden", "activation": "tanh"}},
}


def _chunked(x: np.ndarray, n: int, time: int, size: int, step: int, left: int, right: int, weight, normalize: bool,
             sub) -> np.ndarray:
    """One seq (its padded ``time`` frames, ``n`` present) through chunks of the sub-layer ``sub``."""
    out, total = np.zeros((time, sub(x[:1]).shape[-1])), np.zeros(time)
    starts = range(0, max(time - size, 0) + step, step)
    for s in starts:
        first, end = max(s - left, 0), min(s + size + right, time, n)
        if end <= first:
            continue
        y = sub(x[first:end])
        length = min(s + size, time) - s
        for t in range(max(s, first), min(s + length, end)):
            w = weight(t - s, length)
            out[t] += w * y[t - first]
            total[t] += w
    if normalize:
        out = np.where(total[:, None] > 0, out / np.maximum(total, 1e-20)[:, None], 0)
    return out[:n]


def _shift(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros_like(x[:1]), x[:-1]])


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def test_chunking_sublayer(outputs) -> None:
    outs, p = outputs
    time = X.shape[1]
    triangle = lambda j, n: min(j + 1, n - j)  # noqa: E731
    hamming = lambda j, n: 0.53836 - 0.46164 * np.cos(2 * np.pi * j / max(n - 1, 1))  # noqa: E731
    dense = lambda x: np.tanh(x @ p["dense/sublayer/W"] + p["dense/sublayer/b"])  # noqa: E731
    for b, n in enumerate(SEQ_LENS):
        x = X[b]
        want = _chunked(x, n, time, 3, 2, 1, 0, triangle, True, _shift)
        np.testing.assert_allclose(outs["shifted"][0][b, :n], want, rtol=1e-5, atol=1e-5)
        want = _chunked(x, n, time, 2, 1, 0, 1, lambda j, n: 1.0, False, _shift)
        np.testing.assert_allclose(outs["summed"][0][b, :n], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outs["dense"][0][b, :n], dense(x[:n]), rtol=1e-5, atol=1e-5)
        want = _chunked(x, n, time, 4, 3, 0, 0, hamming, True, dense)
        np.testing.assert_allclose(outs["dense"][0][b, :n], want, rtol=1e-5, atol=1e-5)
        assert not outs["shifted"][0][b, n:].any()
    np.testing.assert_array_equal(outs["shifted"][1], SEQ_LENS)
    assert sorted(p) == ["dense/sublayer/W", "dense/sublayer/b"]
