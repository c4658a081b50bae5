"""The manual's DownsampleLayer with target resampling on both backends, against NumPy: ``sample_target`` resamples
the classes, ``base`` chains it, a ``softmax`` with ``copy_output`` trains on it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, CLS, SEQ_LENS, X, _both, _forward  # noqa: E402

from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "down": {"class": "downsample", "factor": 2, "axis": 0, "sample_target": True, "padding": True},
    "down2": {"class": "downsample", "factor": 2, "axis": "T", "method": "max", "sample_target": True,
              "base": "down", "from": "down"},
    "output": {"class": "softmax", "loss": "ce", "copy_output": "down", "from": "down"},
    "out2": {"class": "softmax", "loss": "ce", "copy_output": "down2", "from": "down2"},
    "both": {"class": "downsample", "factor": [2, 2], "axis": [2, "T"], "method": "max", "is_output_layer": True},
    "json": {"class": "downsample", "factor": "2", "axis": "[0]", "is_output_layer": True},
    "mlp": {"class": "downsample", "factor": 2, "axis": 0, "method": "mlp", "is_output_layer": True},
}


def _labels(factor: int) -> tuple[list[np.ndarray], list[int]]:
    """Per seq: the max class of each complete group of ``factor`` frames, and the group counts."""
    lens = [n // factor for n in SEQ_LENS]
    return [CLS[b, : n * factor].reshape(n, factor).max(1) for b, n in enumerate(lens)], lens


def _ce(probs: np.ndarray, labels: list[np.ndarray]) -> tuple[float, float]:
    """Summed cross entropy and frame errors of ``probs`` (B, T, K) on per-seq ``labels``."""
    loss = sum(-np.log(probs[b, np.arange(len(y)), y]).sum() for b, y in enumerate(labels))
    errors = sum((probs[b, : len(y)].argmax(-1) != y).sum() for b, y in enumerate(labels))
    return float(loss), float(errors)


def test_sample_target_and_copy_output() -> None:
    backends = _both(NET)
    down, lens = _forward(backends, "down")
    labels, want_lens = _labels(2)
    np.testing.assert_array_equal(lens, want_lens)
    for b, n in enumerate(want_lens):
        np.testing.assert_allclose(down[b, :n], X[b, : 2 * n].reshape(n, 2, 4).mean(1), rtol=1e-5, atol=1e-6)
    probs, _ = _forward(backends, "output")
    probs2, lens2 = _forward(backends, "out2")
    labels2, want_lens2 = _labels(4)  # max of max over 2 and 2 frames = max over 4 frames
    np.testing.assert_array_equal(lens2, want_lens2)
    for backend in backends:
        result = backend.eval_step(BATCH)
        assert result.frames["output"] == sum(want_lens)
        assert result.frames["out2"] == sum(want_lens2)
        loss, errors = _ce(probs, labels)
        np.testing.assert_allclose(result.losses["output"], loss, rtol=1e-4)
        np.testing.assert_allclose(result.errors["output"], errors)
        np.testing.assert_allclose(result.losses["out2"], _ce(probs2, labels2)[0], rtol=1e-4)


def test_copy_output_needs_a_resampled_target() -> None:
    net = {"down": {"class": "downsample", "factor": 2, "axis": 0},
           "output": {"class": "softmax", "loss": "ce", "copy_output": "down", "from": "down"}}
    with pytest.raises(NetworkError, match="copy_output 'down' gives no resampled target"):
        _both(net)
    net = {"down": {"class": "downsample", "factor": 2, "axis": 0},
           "down2": {"class": "downsample", "factor": 2, "axis": 0, "base": "down", "sample_target": True},
           "output": {"class": "softmax", "loss": "ce", "from": "down2"}}
    with pytest.raises(NetworkError, match="base 'down' resampled no target"):
        _both(net)


def test_axis_lists_json_and_mlp() -> None:
    backends = _both(NET)
    p = backends[0].get_param_values()
    lens = [n // 2 for n in SEQ_LENS]
    groups = [X[b, : 2 * n].reshape(n, 2, 4) for b, n in enumerate(lens)]
    for name, want in (("both", [g.max(1).reshape(-1, 2, 2).max(-1) for g in groups]),
                       ("json", [g.mean(1) for g in groups]),
                       ("mlp", [np.maximum(g.reshape(-1, 8) @ p["mlp/DP"] + p["mlp/b"], 0) for g in groups])):
        out, out_lens = _forward(backends, name)
        np.testing.assert_array_equal(out_lens, lens)
        for b, n in enumerate(lens):
            np.testing.assert_allclose(out[b, :n], want[b], rtol=1e-5, atol=1e-5, err_msg=name)
    assert p["mlp/DP"].shape == (8, 4)
