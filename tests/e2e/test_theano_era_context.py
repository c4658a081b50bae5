"""The manual's NetworkHiddenLayer window_context and gaussian_filter_1d on both backends, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, EXTERN, MASK, SEQ_LENS, X, outputs_on_both  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "past": {"class": "window_context", "window": 3},
    "future": {"class": "window_context", "window": 2, "direction": 1},
    "expo": {"class": "window_context", "window": 3, "average": "exponential", "scan": True},
    "proj": {"class": "window_context", "window": 2, "average": "concat", "n_out": 2},
    "uni": {"class": "window_context", "window": 2, "average": "uniform", "n_out": 3, "direction": 1},
    "smooth_t": {"class": "gaussian_filter_1d", "sigma": 1.0, "axis": 0, "window_radius": 2},
    "smooth_f": {"class": "gaussian_filter_1d", "sigma": 0.7, "axis": 2, "window_radius": 1},
}


def _context(x: np.ndarray, n: int, window: int, direction: int) -> list[np.ndarray]:
    """Per frame of one seq (L, D): the window's frames, oldest (or farthest) first, zeros outside the seq."""
    seq = x[:n] if direction == -1 else x[:n][::-1]
    padded = np.concatenate([np.zeros((window - 1, x.shape[1]), "f"), seq])
    frames = [padded[k : k + n] for k in range(window)]
    return frames if direction == -1 else [f[::-1] for f in frames]


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def test_window_context(outputs) -> None:
    outs, p = outputs
    for b, n in enumerate(SEQ_LENS):
        x = X[b]
        want = {
            "past": np.concatenate(_context(x, n, 3, -1), -1),
            "future": np.concatenate(_context(x, n, 2, 1), -1),
            "expo": sum(f / (3 - i) for i, f in enumerate(_context(x, n, 3, -1))),
        }
        hp = np.tanh(x @ p["proj/W"] + p["proj/b"])
        want["proj"] = np.concatenate(_context(hp, n, 2, -1), -1)
        hu = np.tanh(x @ p["uni/W"] + p["uni/b"])
        want["uni"] = sum(_context(hu, n, 2, 1)) / 2
        for name, value in want.items():
            np.testing.assert_allclose(outs[name][0][b, :n], value, rtol=1e-5, atol=1e-5, err_msg=name)
    assert outs["proj"][0].shape[-1] == 4 and outs["uni"][0].shape[-1] == 3


def test_gaussian_filter_1d(outputs) -> None:
    outs, _ = outputs
    taps_t = np.exp(-0.5 * np.arange(-2, 3) ** 2)
    taps_t /= taps_t.sum()
    taps_f = np.exp(-0.5 * np.arange(-1, 2) ** 2 / 0.49)
    taps_f /= taps_f.sum()
    for b, n in enumerate(SEQ_LENS):
        x = X[b, :n]
        edge = np.concatenate([x[:1], x[:1], x, x[-1:], x[-1:]])  # mode "nearest" within the seq
        want_t = sum(tap * edge[k : k + n] for k, tap in enumerate(taps_t))
        np.testing.assert_allclose(outs["smooth_t"][0][b, :n], want_t, rtol=1e-5, atol=1e-5)
        edge_f = np.concatenate([x[:, :1], x, x[:, -1:]], -1)
        want_f = sum(tap * edge_f[:, k : k + 4] for k, tap in enumerate(taps_f))
        np.testing.assert_allclose(outs["smooth_f"][0][b, :n], want_f, rtol=1e-5, atol=1e-5)
    assert not (outs["smooth_t"][0] * (1 - MASK[..., None])).any()
