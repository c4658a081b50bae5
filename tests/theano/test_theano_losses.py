"""Losses (ce, mse, bin_ce, ctc) and their errors against NumPy, through eval steps."""

from __future__ import annotations

import numpy as np
from theano_helpers import batch, ctc_brute_force, make_backend

from returnn_core.datasets import DataSpec


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_ce_and_frame_error() -> None:
    ext = {"data": DataSpec(3), "classes": DataSpec(4, sparse=True)}
    net = {"output": {"class": "softmax", "loss": "ce"}}
    backend = make_backend(net, ext, train=False)
    rng = np.random.RandomState(0)
    xs = [rng.randn(5, 3).astype("f"), rng.randn(2, 3).astype("f")]
    ys = [rng.randint(0, 4, 5).astype("int32"), rng.randint(0, 4, 2).astype("int32")]
    res = backend.eval_step(batch({"data": xs, "classes": ys}, ext))
    p = backend.get_param_values()
    x, y = np.concatenate(xs), np.concatenate(ys)
    probs = _softmax(x @ p["output/W"] + p["output/b"])
    np.testing.assert_allclose(res.losses["output"], -np.log(probs[np.arange(7), y]).sum(), rtol=1e-5)
    assert res.errors["output"] == (probs.argmax(-1) != y).sum()
    assert res.frames["output"] == 7


def test_mse_and_bin_ce() -> None:
    ext = {"data": DataSpec(3), "target": DataSpec(2)}
    net = {
        "lin": {"class": "linear", "n_out": 2, "loss": "mse", "target": "target"},
        "sig": {"class": "linear", "activation": "sigmoid", "n_out": 2, "loss": "bin_ce", "target": "target"},
    }
    backend = make_backend(net, ext, train=False)
    rng = np.random.RandomState(1)
    xs = [rng.randn(4, 3).astype("f"), rng.randn(3, 3).astype("f")]
    ts = [rng.randint(0, 2, (4, 2)).astype("f"), rng.randint(0, 2, (3, 2)).astype("f")]
    res = backend.eval_step(batch({"data": xs, "target": ts}, ext))
    p = backend.get_param_values()
    x, t = np.concatenate(xs), np.concatenate(ts)
    lin = x @ p["lin/W"] + p["lin/b"]
    np.testing.assert_allclose(res.losses["lin"], ((lin - t) ** 2).sum(), rtol=1e-5)
    assert "lin" not in res.errors
    prob = 1 / (1 + np.exp(-(x @ p["sig/W"] + p["sig/b"])))
    np.testing.assert_allclose(res.losses["sig"], -(t * np.log(prob) + (1 - t) * np.log(1 - prob)).sum(), rtol=1e-5)
    np.testing.assert_allclose(res.errors["sig"], ((prob > 0.5) != (t > 0.5)).mean(-1).sum(), rtol=1e-6)
    assert res.frames["sig"] == 7


def test_ctc_matches_brute_force_and_label_error() -> None:
    ext = {"data": DataSpec(3), "classes": DataSpec(2, sparse=True)}
    net = {"output": {"class": "softmax", "loss": "ctc"}}
    backend = make_backend(net, ext, train=False)
    assert backend.get_param_values()["output/W"].shape == (3, 3)  # labels + blank
    rng = np.random.RandomState(2)
    xs = [rng.randn(5, 3).astype("f"), rng.randn(3, 3).astype("f"), rng.randn(4, 3).astype("f")]
    ys = [np.array([0, 0, 1], "int32"), np.array([1], "int32"), np.array([1, 0], "int32")]
    res = backend.eval_step(batch({"data": xs, "classes": ys}, ext))
    p = backend.get_param_values()
    want, errors = 0.0, 0
    for x, y in zip(xs, ys):
        probs = _softmax(x @ p["output/W"] + p["output/b"])
        want += ctc_brute_force(probs, list(y), blank=2)
        best = probs.argmax(-1)
        decoded = [int(k) for i, k in enumerate(best) if k != 2 and (i == 0 or k != best[i - 1])]
        errors += _edit_distance(decoded, list(y))
    np.testing.assert_allclose(res.losses["output"], want, rtol=1e-4)
    assert res.errors["output"] == errors
    assert res.frames["output"] == 6


def _edit_distance(a: list[int], b: list[int]) -> int:
    d = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        prev, d[0] = d.copy(), i
        for j, y in enumerate(b, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (x != y))
    return int(d[-1])


def test_ctc_trains() -> None:
    ext = {"data": DataSpec(2), "classes": DataSpec(2, sparse=True)}
    net = {"rec": {"class": "rec", "unit": "lstm", "n_out": 8},
           "output": {"class": "softmax", "loss": "ctc", "from": "rec"}}
    backend = make_backend(net, ext, optimizer={"class": "adam"})
    rng = np.random.RandomState(3)
    xs, ys = [], []
    for _ in range(6):
        labels = rng.randint(0, 2, 3)
        frames = np.repeat(np.eye(2, dtype="f")[labels], 2, axis=0)
        xs.append(frames + 0.1 * rng.randn(*frames.shape).astype("f"))
        ys.append(labels.astype("int32"))
    bd = batch({"data": xs, "classes": ys}, ext)
    first = backend.train_step(bd, 0.05).losses["output"]
    for _ in range(40):
        last = backend.train_step(bd, 0.05).losses["output"]
    assert np.isfinite(last) and last < 0.3 * first
