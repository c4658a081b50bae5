"""The manual's NetworkHiddenLayer time_warp, time_warp_global and adaptive_depth on both backends, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, MASK, SEQ_LENS, X, _both, _forward, outputs_marked  # noqa: E402

from returnn_core.datasets import DataSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}
NET = {
    "warp": {"class": "time_warp", "t_start": -1, "t_end": 2, "t_step": 1, "sigma": 0.5, "input_window": 3,
             "input_proj": 2},
    "warp_plain": {"class": "time_warp", "t_start": -2, "t_end": 1, "t_step": 1, "sigma": 1.0, "input_window": 2},
    "l1": {"class": "hidden", "n_out": 4, "activation": "tanh"},
    "l2": {"class": "hidden", "n_out": 4, "activation": "tanh", "from": "l1"},
    "l3": {"class": "hidden", "n_out": 4, "activation": "tanh", "from": "l2"},
    "depth": {"class": "adaptive_depth", "eps": 0.3, "bias": 0.0, "tau": 0.5, "from": ["l1", "l2", "l3"]},
    "depth_exp": {"class": "adaptive_depth", "damping": "expected", "from": ["l1", "l2"]},
    "global": {"class": "time_warp_global", "window_size": 3, "sigma2": 0.8},
    "global_wide": {"class": "time_warp_global", "n_out": 4, "window_size": 5, "from": "l1"},
}


def _sig(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


def _warp(x: np.ndarray, w: np.ndarray, proj: np.ndarray | None, start: int, end: int, sigma: float) -> np.ndarray:
    """RETURNN's TimeWarpLayer on one seq (L, D)."""
    n, window = len(x), w.shape[0]
    warp_in = x @ proj if proj is not None else x
    right = window // 2
    left = window - right - 1
    padded = np.concatenate([np.zeros((left, warp_in.shape[1])), warp_in, np.zeros((right, warp_in.shape[1]))])
    warp = np.array([sum((padded[t + k] * w[window - 1 - k, ::-1]).sum() for k in range(window)) for t in range(n)])
    span = end - start - 1
    pos = _sig(warp) * span + start
    out, weights = np.zeros_like(x), np.zeros(n)
    for offset in range(start, end):
        g = np.exp(-0.5 * ((offset - pos) / (sigma * span / 2.0)) ** 2)
        for t in range(n):
            if 0 <= t + offset < n:
                out[t + offset] += x[t] * g[t]
                weights[t + offset] += g[t]
    return out / np.maximum(weights, 1e-4)[:, None]


def _depth(layers: list[np.ndarray], ws: list[np.ndarray], b: np.ndarray, eps: float, bias: float,
           damping: str) -> tuple[np.ndarray, np.ndarray]:
    """RETURNN's AdaptiveDepthLayer over (T, D) layer outputs: the output and the ponder cost per frame."""
    total, halted = np.zeros(len(layers[0])), np.zeros(len(layers[0]))
    out, cost = np.zeros_like(layers[0]), np.zeros(len(layers[0]))
    for k, (h, w) in enumerate(zip(layers, ws)):
        p = _sig(h @ w + b + bias)[:, 0]
        now = ((total + p >= 1 - eps) & (total < 1 - eps)).astype(float)
        halted += now
        out = now[:, None] * h + (1 - now[:, None]) * out
        cost += (k + 2 - total) * now if damping == "graves" else now * p * (k + 1)
        total += p
    never = 1 - halted
    out += never[:, None] * layers[-1]
    cost += (len(layers) + 1 - total) * never if damping == "graves" else never * total * len(layers)
    return out, cost


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray], tuple]:
    """Each layer's output and lengths (the same on both backends), the parameters and the backends."""
    backends = _both(outputs_marked(NET), extern=EXTERN)
    params = {k: np.random.RandomState(1).uniform(-1, 1, v.shape).astype("f")
              for k, v in backends[0].get_param_values().items()}
    for backend in backends:
        backend.set_param_values(params)
    return {layer: _forward(backends, layer) for layer in NET}, params, backends


def test_time_warp(outputs) -> None:
    outs, p, _ = outputs
    for b, n in enumerate(SEQ_LENS):
        want = _warp(X[b, :n], p["warp/W_warp"], p["warp/W_warp_in_proj"], -1, 2, 0.5)
        np.testing.assert_allclose(outs["warp"][0][b, :n], want, rtol=1e-4, atol=1e-5)
        want = _warp(X[b, :n], p["warp_plain/W_warp"], None, -2, 1, 1.0)
        np.testing.assert_allclose(outs["warp_plain"][0][b, :n], want, rtol=1e-4, atol=1e-5)
        assert not outs["warp"][0][b, n:].any()


def test_adaptive_depth(outputs) -> None:
    outs, p, backends = outputs
    layers = [outs[name][0] for name in ("l1", "l2", "l3")]
    costs = {}
    for name, n_src, eps, bias, damping in (("depth", 3, 0.3, 0.0, "graves"), ("depth_exp", 2, 0.01, -1.0,
                                                                               "expected")):
        cost = 0.0
        for b, n in enumerate(SEQ_LENS):
            want, frame_cost = _depth([h[b, :n] for h in layers[:n_src]], [p[f"{name}/W_{k}"] for k in range(n_src)],
                                      p[f"{name}/b"], eps, bias, damping)
            np.testing.assert_allclose(outs[name][0][b, :n], want, rtol=1e-4, atol=1e-5)
            cost += frame_cost.sum()
        costs[name] = cost
    for backend in backends:
        result = backend.eval_step(BATCH)
        for name, cost in costs.items():  # the ponder cost as the layer's cost, tau scales it in the objective
            np.testing.assert_allclose(result.losses[name], cost, rtol=1e-4)
            assert result.frames[name] == MASK.sum()


def _warp_global(x: np.ndarray, w: np.ndarray, b: np.ndarray, window: int, sigma2: float) -> np.ndarray:
    """RETURNN's TimeWarpGlobalLayer on one seq (L, D) alone."""
    n = len(x)
    compress = np.minimum(np.maximum(x @ w + b, 0), 10)[:, 0]
    pos = np.cumsum(1 / (1 + compress)) - 1
    pos *= (n - 1) / max(pos[-1], 1)
    out = np.zeros_like(x)
    for t in range(n):
        start = max(int(np.floor(t * (n - window + 1) / max(n - 1, 1))), 0)
        frames = range(start, min(start + window, n))
        f = np.array([np.exp(-((t - pos[s]) ** 2) / (2 * sigma2)) for s in frames])
        out[t] = (x[list(frames)] * f[:, None]).sum(0) * min(1 / max(f.sum(), 1e-5), window)
    return out


def test_time_warp_global(outputs) -> None:
    outs, p, _ = outputs
    for b, n in enumerate(SEQ_LENS):
        want = _warp_global(X[b, :n], p["global/W_warp"], p["global/b_warp"], 3, 0.8)
        np.testing.assert_allclose(outs["global"][0][b, :n], want, rtol=1e-4, atol=1e-5)
        want = _warp_global(outs["l1"][0][b, :n], p["global_wide/W_warp"], p["global_wide/b_warp"], 5, 0.5)
        np.testing.assert_allclose(outs["global_wide"][0][b, :n], want, rtol=1e-4, atol=1e-5)
        assert not outs["global"][0][b, n:].any()
