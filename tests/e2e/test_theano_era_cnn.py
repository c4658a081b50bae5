"""The manual's NetworkCNNLayer ``conv`` (each frame a small image) on both backends, against a NumPy version of
Theano's convolution and pooling; the TF era's ``conv`` keeps its own options."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import _backend as shared_backend  # noqa: E402
from test_frontend_layers import one_batch, outputs_marked, outputs_on_both  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
EXTERN = {"data": DataSpec(12)}
FRAMES = [3, 1, 2]
#: layer -> (its options, and those of the NumPy reference); frames are 3 x 4 images (d_row 3)
NET: dict[str, dict[str, Any]] = {
    "c1": {"class": "conv", "n_features": 2, "filter": 2, "d_row": 3, "pool_size": [1, 2],
           "filter_dilation": [1, 2]},
    "full": {"class": "conv", "n_features": 2, "filter": [2, 3], "border_mode": "full", "d_row": 3,
             "pool_size": [3, 2], "ignore_border": False, "mode": "avg", "activation": "relu"},
    "same": {"class": "conv", "filter": 3, "border_mode": "same", "conv_stride": [1, 2], "pool_size": [2, 2],
             "pool_stride": [1, 1], "mode": "sum", "activation": "identity"},  # d_row -1: int(sqrt(12)) = 3
    "stack": {"class": "conv", "n_features": 2, "pool_size": [2, 1], "pool_padding": [1, 0], "from": ["c1", "c1"]},
    "tf_era": {"class": "conv", "filter_size": [2], "n_out": 3, "padding": "valid"},
}
REF: dict[str, dict[str, Any]] = {
    "c1": {"rows": 3, "dil": (1, 2), "pool": (1, 2)},
    "full": {"rows": 3, "border": "full", "pool": (3, 2), "ignore_border": False, "mode": "avg", "act": "relu"},
    "same": {"rows": 3, "border": "same", "stride": (1, 2), "pool": (2, 2), "pstride": (1, 1), "mode": "sum",
             "act": "identity"},
    "stack": {"rows": 2, "pool": (2, 1), "ppad": (1, 0)},
}
N_OUT = {"c1": 2 * 2 * 1, "full": 2 * 2 * 3, "same": 1 * 2 * 1, "stack": 2 * 2 * 1}
ACTS = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "identity": lambda v: v}


def _batch() -> Any:
    rng = np.random.RandomState(3)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 12).astype("f")}) for i, n in enumerate(FRAMES)]
    return one_batch(seqs, EXTERN)


BATCH = _batch()


def _backend(name: str, net: dict[str, Any]) -> Any:
    return shared_backend(name, outputs_marked(net), extern=EXTERN)


def _window_reduce(x: np.ndarray, size: int, stride: int, pad: int, ignore_border: bool, mode: str) -> np.ndarray:
    """Theano's pooling along axis 0 of ``x``: zero ``pad`` on both ends, partial end windows clipped."""
    n = x.shape[0]
    xp = np.concatenate([np.zeros((pad, *x.shape[1:]), "f"), x, np.zeros((pad, *x.shape[1:]), "f")])
    total = n + 2 * pad
    count = (total - size) // stride + 1 if ignore_border else (
        (total - 1) // stride + 1 if stride >= size else max(0, (total - 1 - size + stride) // stride) + 1)
    out = []
    for k in range(count):
        start, end = k * stride, min(k * stride + size, total)
        window = xp[start:end]
        if mode == "max":
            out.append(window.max(0))
        elif mode == "sum":
            out.append(window.sum(0))
        else:  # average_exc_pad: only the pixels of the image itself count
            inside = max(0, min(end, pad + n) - max(start, pad))
            out.append(window.sum(0) / inside)
    return np.stack(out)


def _cnn(img: np.ndarray, w: np.ndarray, b: np.ndarray, *, border: str = "valid", stride=(1, 1), dil=(1, 1),
         pool=(1, 1), pstride=None, ppad=(0, 0), ignore_border: bool = True, mode: str = "max",
         act: str = "tanh", **_: Any) -> np.ndarray:
    """One frame's (rows, cols, channels) image through Theano's conv2d (a true convolution), pooling, bias and
    activation: the (rows, cols, features) maps."""
    feats, _, fr, fc = w.shape
    er, ec = (fr - 1) * dil[0] + 1, (fc - 1) * dil[1] + 1
    if border == "full":
        img = np.pad(img, [(er - 1, er - 1), (ec - 1, ec - 1), (0, 0)])
    elif border == "same":
        img = np.pad(img, [((er - 1) // 2, er // 2), ((ec - 1) // 2, ec // 2), (0, 0)])
    flipped = w[:, :, ::-1, ::-1]
    rows, cols = (img.shape[0] - er) // stride[0] + 1, (img.shape[1] - ec) // stride[1] + 1
    conv = np.zeros((rows, cols, feats), "f")
    for y in range(rows):
        for x in range(cols):
            patch = img[y * stride[0]: y * stride[0] + er: dil[0], x * stride[1]: x * stride[1] + ec: dil[1]]
            conv[y, x] = np.einsum("hwc,fchw->f", patch, flipped)
    pstride = pstride or pool
    pooled = _window_reduce(conv, pool[0], pstride[0], ppad[0], ignore_border, mode)
    pooled = _window_reduce(pooled.transpose(1, 0, 2), pool[1], pstride[1], ppad[1], ignore_border, mode)
    return ACTS[act](pooled.transpose(1, 0, 2) + b)


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and seq lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


@pytest.mark.parametrize("layer", sorted(REF))
def test_frames_as_images_match_theano(outputs, layer: str) -> None:
    outs, p = outputs
    out, lens = outs[layer]
    np.testing.assert_array_equal(lens, FRAMES)  # the time axis only carries the frames
    assert out.shape == (3, max(FRAMES), N_OUT[layer])
    ref = dict(REF[layer])
    x = BATCH.data["data"]
    for b, n in enumerate(FRAMES):
        for t in range(n):
            if layer == "stack":  # the two c1 sources' maps stacked on the channel axis
                maps = outs["c1"][0][b, t].reshape(2, 1, 2)
                img = np.concatenate([maps, maps], axis=2)
            else:
                img = x[b, t].reshape(ref["rows"], -1, 1)
            expected = _cnn(img, p[f"{layer}/W"], p[f"{layer}/b"], **ref)
            np.testing.assert_allclose(out[b, t], expected.reshape(-1), rtol=1e-5, atol=1e-5,
                                       err_msg=f"{layer} seq {b} frame {t}")
        assert not out[b, n:].any()


def test_tf_era_conv_keeps_its_form(outputs) -> None:
    outs, p = outputs
    out, lens = outs["tf_era"]
    np.testing.assert_array_equal(lens, [n - 1 for n in FRAMES])
    x = BATCH.data["data"]
    w, bias = p["tf_era/W"], p["tf_era/b"]
    assert w.shape == (2, 12, 3)
    expected = np.einsum("tc,co->to", x[0, 0:1], w[0]) + np.einsum("tc,co->to", x[0, 1:2], w[1]) + bias
    np.testing.assert_allclose(out[0, :1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("layer", "message"), [
    ({"class": "conv", "n_features": 2, "d_row": 5}, "not a multiple of d_row 5"),
    ({"class": "conv", "n_features": 2, "mode": "fmp", "d_row": 3}, "fractional max pooling"),
    ({"class": "conv", "filter": 4, "d_row": 3}, "does not fit the image"),
    ({"class": "conv", "pool_size": [4, 1], "d_row": 3}, "larger than the conv output"),
    ({"class": "conv", "n_features": 2, "d_row": 3, "n_out": 5}, "n_out is 5 but its output dim is 24"),
    ({"class": "conv", "n_features": 2, "base": "c1"}, "use reuse_params"),
])
def test_bad_options_name_the_layer(layer: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkError, match=r"layer 'bad'") as info:
        _backend("theano", {"bad": layer}).forward_step(BATCH, "bad")
    assert message in str(info.value)
