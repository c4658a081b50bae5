"""More of the manual's NetworkHiddenLayer classes on both backends, against NumPy: the signal layers
preemphasis_layer, energy_normalization_layer, dft_layer_abs, mfcc_layer; the batch-axis layers concat_batch,
split_batch, duplicate_index_batch; interp."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")
signal = pytest.importorskip("scipy.signal")

from test_frontend_layers import one_batch, outputs_on_both  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
EXTERN = {"data": DataSpec(16)}
LENS = [4, 2, 3]
NET: dict[str, dict[str, Any]] = {
    "pre": {"class": "preemphasis_layer", "alpha": 0.9},
    "energy": {"class": "energy_normalization_layer"},
    "dft": {"class": "dft_layer_abs", "dftLength": 16},
    "dft_sqrt": {"class": "dft_layer_abs", "dftLength": 16, "windowName": "hann", "flag_useSqrtWindow": True},
    "mfcc": {"class": "mfcc_layer", "dftSize": 16, "nrOfFilters": 4, "nrOfMfccCoefficients": 3, "from": "dft"},
    "pad": {"class": "frame_concat_zero", "num_frames": 2, "left": False},
    "both": {"class": "concat_batch", "from": ["data", "pad"]},
    "second": {"class": "split_batch", "n_parts": 3, "part": 1},
    "twice": {"class": "duplicate_index_batch"},
    "weights": {"class": "hidden", "n_out": 2, "activation": "softmax"},
    "mixed": {"class": "interp", "n_out": 16, "from": ["data", "pre", "weights"]},
}


def _batch() -> Any:
    rng = np.random.RandomState(4)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 16).astype("f")}) for i, n in enumerate(LENS)]
    return one_batch(seqs, EXTERN)


BATCH = _batch()
X = BATCH.data["data"]
MASK = (np.arange(X.shape[1])[None, :] < np.array(LENS)[:, None])[..., None]


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and lengths (the same on tf and theano) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got * MASK, want * MASK, rtol=1e-4, atol=1e-4)


def _mel_bank(dft_size: int, rate: float, n_filters: int) -> np.ndarray:
    """RETURNN's MfccLayer filter matrix, written out as its loops (flag_areaNormalized 0)."""
    mel = lambda f: 1125.0 * np.log(1 + f / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (np.exp(m / 1125.0) - 1)  # noqa: E731
    b = [np.round(dft_size / rate * inv(m * mel(rate / 2) / (n_filters + 1.0))) for m in range(n_filters + 2)]
    num, den = np.zeros((dft_size // 2 + 1, n_filters)), np.ones((dft_size // 2 + 1, n_filters))
    for i in range(n_filters):
        m = i + 1
        for r in range(int(np.ceil(b[m - 1])), int(np.floor(b[m]))):
            num[r, i], den[r, i] = 2 * (r - b[m - 1]), (b[m + 1] - b[m - 1]) * (b[m] - b[m - 1])
        for r in range(int(np.floor(b[m])), int(np.floor(b[m + 1]))):
            num[r, i], den[r, i] = 2 * (b[m + 1] - r), (b[m + 1] - b[m - 1]) * (b[m + 1] - b[m])
    return num / den


def test_signal_layers(outputs) -> None:
    outs, _ = outputs
    x = X * MASK
    want_pre = x.copy()
    want_pre[..., 1:] -= 0.9 * x[..., :-1]
    _close(outs["pre"][0], want_pre)
    _close(outs["energy"][0], x / np.sqrt(np.maximum((x**2).sum(-1, keepdims=True), 1e-20)))
    dft = np.abs(np.fft.rfft(x * signal.get_window("hamming", 16), axis=-1))
    _close(outs["dft"][0], dft)
    _close(outs["dft_sqrt"][0], np.abs(np.fft.rfft(x * np.sqrt(signal.get_window("hann", 16)), axis=-1)))
    logs = np.log(np.maximum((dft**2) @ _mel_bank(16, 16000.0, 4), 1e-20))
    dct = np.cos(np.pi / 4 * np.arange(4)[:, None] * (np.arange(4) + 1)[None, :])
    _close(outs["mfcc"][0], (logs @ dct)[..., :3])
    for name in ("pre", "energy", "dft", "mfcc"):
        np.testing.assert_array_equal(outs[name][1], LENS)


def test_batch_axis_layers_and_interp(outputs) -> None:
    outs, params = outputs
    x = X * MASK
    both, lens = outs["both"]
    np.testing.assert_array_equal(lens, LENS + [n + 2 for n in LENS])
    assert both.shape == (6, X.shape[1] + 2, 16)
    np.testing.assert_allclose(both[:3, : X.shape[1]], x, atol=1e-6)
    np.testing.assert_allclose(both[3:, : X.shape[1]], x, atol=1e-6)
    assert not both[:3, X.shape[1] :].any() and not both[3:, X.shape[1] :].any()
    second, lens = outs["second"]
    np.testing.assert_array_equal(lens, [LENS[1]])
    np.testing.assert_allclose(second[0, : LENS[1]], X[1, : LENS[1]], atol=1e-6)
    twice, lens = outs["twice"]
    np.testing.assert_array_equal(lens, LENS + LENS)
    assert twice.shape == (6, X.shape[1], 1) and not twice.any()
    z = X @ params["weights/W"] + params["weights/b"]
    w = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    _close(outs["mixed"][0], w[..., :1] * X + w[..., 1:] * outs["pre"][0])
