"""The manual's NetworkTwoDLayer classes 1Dto2D, 1Dto2D_fixed_size, 2Dto1D and conv2 on both backends, against
NumPy versions of RETURNN's (height, width) image semantics, with per-image sizes from a ``sizes`` data key."""

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
EXTERN = {"data": DataSpec(2), "sizes": DataSpec(100, sparse=True)}
SIZES = [(3, 4), (2, 3), (4, 2)]  # (height, width) per seq; frame y * width + x is pixel (y, x)
FRAMES = [13, 6, 8]
NET = {
    "img": {"class": "1Dto2D", "from": ["data", "data:sizes"]},
    "conv": {"class": "conv2", "n_features": 3, "filter": [2, 2], "pool_size": [1, 2], "from": "img"},
    "rows": {"class": "2Dto1D", "from": "conv"},
    "flat": {"class": "2Dto1D", "collapse": "flatten", "from": "img"},
    "fixed": {"class": "1Dto2D_fixed_size"},
    "conv_f": {"class": "conv2", "n_features": 2, "filter": [1, 2], "pool_size": [1, 1], "filter_dilation": [1, 2],
               "activation": "identity", "from": "fixed"},
    "sum": {"class": "2Dto1D", "collapse": "sum", "maxout": True, "from": "conv_f"},
    "pad": {"class": "2Dto1D", "collapse": "pad_3", "from": "fixed"},
    "out": {"class": "softmax", "n_out": 3, "from": "conv"},  # RETURNN's output layer sums an image's rows
}


def _batch() -> Any:
    rng = np.random.RandomState(7)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 2).astype("f"), "sizes": np.array(hw, "int32")})
            for i, (n, hw) in enumerate(zip(FRAMES, SIZES))]
    return one_batch(seqs, EXTERN)


BATCH = _batch()
X = BATCH.data["data"]


def _backend(name: str, net: dict[str, Any]) -> Any:
    return shared_backend(name, outputs_marked(net), extern=EXTERN)


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and seq lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def _image(b: int) -> np.ndarray:
    """Seq b as RETURNN's (height, width, channels) image."""
    h, w = SIZES[b]
    return X[b, : h * w].reshape(h, w, -1)


def _conv_pool(img: np.ndarray, w: np.ndarray, bias: np.ndarray, pool: tuple[int, int],
               dil: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Valid convolution (W: features, channels, fh, fw), bias, max pooling with ignore_border."""
    feats, _, fh, fw = w.shape
    eh, ew = (fh - 1) * dil[0] + 1, (fw - 1) * dil[1] + 1
    oh, ow = img.shape[0] - eh + 1, img.shape[1] - ew + 1
    conv = np.zeros((oh, ow, feats), "f")
    for y in range(oh):
        for x in range(ow):
            patch = img[y : y + eh : dil[0], x : x + ew : dil[1]]  # (fh, fw, channels)
            conv[y, x] = np.einsum("hwc,fchw->f", patch, w) + bias
    ph, pw = pool
    oh, ow = oh // ph, ow // pw
    return conv[: oh * ph, : ow * pw].reshape(oh, ph, ow, pw, feats).max(axis=(1, 3))


def test_one_d_to_two_d_and_flatten(outputs) -> None:
    outs, _ = outputs
    img, lens = outs["img"]
    np.testing.assert_array_equal(lens, [w for _, w in SIZES])
    assert img.shape == (3, 4, 4, 2)  # (batch, widest, highest, channels)
    for b, (h, w) in enumerate(SIZES):
        expected = np.zeros((4, 4, 2), "f")
        expected[:w, :h] = _image(b).transpose(1, 0, 2)
        np.testing.assert_allclose(img[b], expected, err_msg=f"seq {b}")
    flat, flat_lens = outs["flat"]  # RETURNN flattens the padded batch image row by row
    np.testing.assert_array_equal(flat_lens, [16] * 3)
    np.testing.assert_allclose(flat, img.transpose(0, 2, 1, 3).reshape(3, 16, 2))


def test_conv2_and_mean_over_rows(outputs) -> None:
    outs, p = outputs
    conv, lens = outs["conv"]
    # the (4, 2) image would give no output column, so the batch's images are padded to at least (2, 3)
    padded = [(max(h, 2), max(w, 3)) for h, w in SIZES]
    out_sizes = [((h - 1) // 1, (w - 1) // 2) for h, w in padded]
    np.testing.assert_array_equal(lens, [w for _, w in out_sizes])
    rows, _ = outs["rows"]
    for b, (h, w) in enumerate(padded):
        img = np.zeros((h, w, 2), "f")
        img[: SIZES[b][0], : SIZES[b][1]] = _image(b)
        expected = np.tanh(_conv_pool(img, p["conv/W"], p["conv/b"], (1, 2)))
        oh, ow = out_sizes[b]
        np.testing.assert_allclose(conv[b, :ow, :oh], expected.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
        assert not conv[b, ow:].any() and not conv[b, :, oh:].any()
        np.testing.assert_allclose(rows[b, :ow], expected.mean(0), rtol=1e-5, atol=1e-5)


def test_fixed_size_conv_dilation_sum_and_pad(outputs) -> None:
    outs, p = outputs
    conv, lens = outs["conv_f"]
    np.testing.assert_array_equal(lens, [n - 2 for n in FRAMES])  # filter width 2, dilation 2
    total, _ = outs["sum"]
    pad, pad_lens = outs["pad"]
    np.testing.assert_array_equal(pad_lens, FRAMES)
    for b, n in enumerate(FRAMES):
        img = X[b, :n].T[:, :, None]  # height = feature dim 2, width = frames, 1 channel
        expected = _conv_pool(img, p["conv_f/W"], p["conv_f/b"], (1, 1), (1, 2))
        np.testing.assert_allclose(conv[b, : n - 2], expected.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(total[b, : n - 2, 0], expected.max(-1).sum(0), rtol=1e-5, atol=1e-5)
        # pad_3: the rows zero-padded to 3, features channel-major
        np.testing.assert_allclose(pad[b, :n], np.concatenate([X[b, :n], np.zeros((n, 1), "f")], 1))


@pytest.mark.parametrize(("layer", "message"), [
    ({"class": "conv2", "n_features": 2, "filter": [1, 1], "from": "fixed"}, "pool_size must be two positive"),
    ({"class": "2Dto1D", "collapse": "conv", "from": "fixed"}, "collapse 'conv'"),
    ({"class": "2Dto1D", "from": "data"}, "needs an image input"),
    ({"class": "1Dto2D_fixed_size", "pad_x": 1}, "pad_x is not supported"),
])
def test_bad_options_name_the_layer(layer: dict[str, Any], message: str) -> None:
    net = {"fixed": {"class": "1Dto2D_fixed_size"}, "bad": layer}
    with pytest.raises(NetworkError, match=r"layer 'bad'") as info:
        _backend("theano", net).forward_step(BATCH, "bad")
    assert message in str(info.value)


def test_softmax_over_an_image_sums_its_height_first(outputs) -> None:
    outs, params = outputs
    conv, conv_lens = outs["conv"]
    out, lens = outs["out"]
    np.testing.assert_array_equal(lens, conv_lens)
    z = conv.sum(axis=2) @ params["out/W"] + params["out/b"]
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    for b, n in enumerate(lens):
        np.testing.assert_allclose(out[b, :n], want[b, :n], rtol=1e-4, atol=1e-6)
