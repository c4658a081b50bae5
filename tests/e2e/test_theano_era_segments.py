"""The manual's NetworkHiddenLayer segment_input, segment_class_targets, unsegment_input and segment on both
backends, against NumPy: every frame the start of a segment of the next frames of its seq; two seqs' halves."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, CLS, SEQ_LENS, X, _both, _forward  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
WINDOW = 3
NET = {
    "frames": {"class": "copy"},
    "seg": {"class": "segment_input", "window": WINDOW, "from": "frames"},
    "seg_labels": {"class": "segment_input", "window": 2, "input_is_sparse": True, "num_classes": 3,
                   "from": "data:classes", "is_output_layer": True},
    "targets": {"class": "segment_class_targets", "num_classes": 3, "window": WINDOW, "from": "data:classes"},
    "output": {"class": "softmax", "loss": "ce", "n_out": 3, "copy_output": "targets", "from": "seg"},
    "back": {"class": "unsegment_input", "original_output": "frames", "from": "output", "is_output_layer": True},
    "rev": {"class": "reverse"},
    "halves": {"class": "segment", "from": ["data", "rev"], "is_output_layer": True},
}


def _segments(x: np.ndarray, window: int) -> tuple[np.ndarray, list[int]]:
    """Segment b * T + f: frames f .. f + window - 1 of seq b (zero past its end), and its length."""
    time = x.shape[1]
    out, lens = np.zeros((x.shape[0] * time, window, *x.shape[2:]), "f"), []
    for b, n in enumerate(SEQ_LENS):
        for f in range(time):
            k = max(min(window, n - f), 0)
            out[b * time + f, :k] = x[b, f : f + k]
            lens.append(k)
    return out, lens


def test_segments_targets_and_back() -> None:
    backends = _both(NET)
    p = backends[0].get_param_values()
    time = X.shape[1]
    segs, lens = _segments(X, WINDOW)
    got, got_lens = _forward(backends, "seg")
    np.testing.assert_array_equal(got_lens, lens)
    np.testing.assert_allclose(got, segs, atol=1e-6)
    labels, label_lens = _segments(np.eye(3, dtype="f")[CLS], 2)
    np.testing.assert_allclose(_forward(backends, "seg_labels")[0], labels, atol=1e-6)
    np.testing.assert_array_equal(_forward(backends, "seg_labels")[1], label_lens)
    hot, _ = _segments(np.eye(3, dtype="f")[CLS], WINDOW)
    want_targets = np.cumsum(hot, 1) / np.arange(1, WINDOW + 1)[None, :, None]
    targets, _ = _forward(backends, "targets")
    mask = (np.arange(WINDOW)[None, :] < np.array(lens)[:, None])[..., None]
    np.testing.assert_allclose(targets, want_targets * mask, atol=1e-6)
    z = segs @ p["output/W"] + p["output/b"]
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    back, back_lens = _forward(backends, "back")
    np.testing.assert_array_equal(back_lens, SEQ_LENS)
    for b, n in enumerate(SEQ_LENS):
        for t in range(n):
            want = [probs[b * time + t - w, w] if t - w >= 0 else np.zeros(3) for w in range(WINDOW)]
            np.testing.assert_allclose(back[b, t], np.concatenate(want), rtol=1e-5, atol=1e-6)
    ce = -(want_targets * np.log(probs) * mask).sum()
    for backend in backends:
        result = backend.eval_step(BATCH)
        np.testing.assert_allclose(result.losses["output"], ce, rtol=1e-4)
        assert result.frames["output"] == sum(lens)


def test_segment_joins_the_halves() -> None:
    backends = _both({"rev": NET["rev"], "halves": NET["halves"]})
    out, lens = _forward(backends, "halves")
    np.testing.assert_array_equal(lens, SEQ_LENS)
    for b, n in enumerate(SEQ_LENS):
        rev = X[b, :n][::-1]
        np.testing.assert_allclose(out[b, :n], np.concatenate([X[b, : n // 2], rev[n // 2 :]]), atol=1e-6)
        assert not out[b, n:].any()
