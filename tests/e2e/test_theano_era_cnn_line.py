"""The manual's NetworkCNNTLayer ``conv_1d`` (each seq one line image) and ``resnet`` on both backends, against a
NumPy version of Theano's convolution and pooling over the padded batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import _backend, one_batch, outputs_on_both  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
EXTERN = {"data": DataSpec(6)}
FRAMES = [5, 3, 4]
NET: dict[str, dict[str, Any]] = {
    "c1": {"class": "conv_1d", "n_features": 2, "filter": [2, 3], "d_row": 3, "pool_size": [1, 2], "padding": True},
    "c2": {"class": "conv_1d", "n_features": 2, "filter": [2, 3], "border_mode": "same", "activation": "relu",
           "from": "c1"},
    "rows": {"class": "conv_1d", "filter": 3, "border_mode": "full", "mode": "avg", "pool_size": [2, 1]},
    "a": {"class": "conv", "n_features": 2, "d_row": 2},
    "fa": {"class": "conv", "n_features": 2, "filter": 3, "border_mode": "same", "from": "a"},
    "res": {"class": "resnet", "from": ["a", "fa"]},
}


def _batch() -> Any:
    rng = np.random.RandomState(6)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 6).astype("f")}) for i, n in enumerate(FRAMES)]
    return one_batch(seqs, EXTERN)


BATCH = _batch()
X = BATCH.data["data"]


def _conv(img: np.ndarray, w: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Theano's conv2d (flipped filter) of an (rows, cols, channels) image, zero ``pads``: (rows, cols, maps)."""
    img = np.pad(img, [*pads, (0, 0)])
    feats, _, fr, fc = w.shape
    out = np.zeros((img.shape[0] - fr + 1, img.shape[1] - fc + 1, feats), "f")
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x] = np.einsum("hwc,fchw->f", img[y : y + fr, x : x + fc], w[:, :, ::-1, ::-1])
    return out


def _pool(z: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Complete-window pooling of (rows, cols, maps) ``z``."""
    rows, cols = z.shape[0] // size[0], z.shape[1] // size[1]
    windows = z[: rows * size[0], : cols * size[1]].reshape(rows, size[0], cols, size[1], -1)
    return windows.max((1, 3)) if mode == "max" else windows.mean((1, 3))


def _line(x: np.ndarray, lens: list[int], w: np.ndarray, b: np.ndarray, *, rows: int, pads: Any, conv_lens: Any,
          pool: tuple[int, int] = (1, 1), mode: str = "max", act: Any = np.tanh, time: int | None = None,
          channels_first: bool = False) -> tuple[np.ndarray, list[int]]:
    """conv_1d over the padded batch ``x`` (B, T, D): the (B, T', features * rows) output and lengths."""
    outs, out_lens = [], []
    time = time or x.shape[1]
    for seq, n in zip(x, lens):
        frames = np.zeros((time, x.shape[2]), "f")
        frames[:n] = seq[:n]
        if channels_first:  # a conv_1d source: (features, rows) per frame
            img = frames.reshape(time, -1, rows).transpose(2, 0, 1)
        else:
            img = frames.reshape(time, rows, -1).transpose(1, 0, 2)
        z = _conv(img, w, pads)
        n_conv = conv_lens(n)
        z[:, n_conv:] = 0
        z = _pool(z, pool, mode)
        n_out = min(-(-n_conv // pool[1]), z.shape[1])
        z = act(z + b)
        z[:, n_out:] = 0
        outs.append(z.transpose(1, 2, 0).reshape(z.shape[1], -1))
        out_lens.append(n_out)
    return np.stack(outs), out_lens


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def test_conv_1d_over_line_images(outputs) -> None:
    outs, p = outputs
    c1, lens1 = _line(X, FRAMES, p["c1/W"], p["c1/b"], rows=3, pads=((0, 0), (0, 0)), conv_lens=lambda n: n - 2,
                      pool=(1, 2), time=6)  # padding: 2 - 5 mod 2 zero frames, then complete windows
    np.testing.assert_array_equal(outs["c1"][1], lens1)
    np.testing.assert_allclose(outs["c1"][0], c1, rtol=1e-5, atol=1e-5)
    assert p["c1/W"].shape == (2, 2, 2, 3) and outs["c1"][0].shape[-1] == 2 * 2
    c2, lens2 = _line(c1, lens1, p["c2/W"], p["c2/b"], rows=2, pads=((0, 1), (1, 1)), conv_lens=lambda n: n,
                      act=lambda v: np.maximum(v, 0), channels_first=True)
    np.testing.assert_array_equal(outs["c2"][1], lens2)
    np.testing.assert_allclose(outs["c2"][0], c2, rtol=1e-5, atol=1e-5)
    rows, lens3 = _line(X, FRAMES, p["rows/W"], p["rows/b"], rows=6, pads=((2, 2), (2, 2)),
                        conv_lens=lambda n: n + 2, pool=(2, 1), mode="avg")
    np.testing.assert_array_equal(outs["rows"][1], lens3)
    np.testing.assert_allclose(outs["rows"][0], rows, rtol=1e-5, atol=1e-5)


def test_resnet_adds_the_maps(outputs) -> None:
    outs, p = outputs
    assert not any(key.startswith("res/") for key in p)
    np.testing.assert_allclose(outs["res"][0], np.maximum(outs["a"][0] + outs["fa"][0], 0), atol=1e-6)
    np.testing.assert_array_equal(outs["res"][1], FRAMES)


@pytest.mark.parametrize(("layer", "message"), [
    ({"class": "conv_1d", "d_row": 4}, "not a multiple of d_row 4"),
    ({"class": "conv_1d", "pool_size": [2, 2], "ignore_border": False}, "complete windows only"),
    ({"class": "resnet", "from": ["data", "data"]}, "needs exactly two conv layers"),
])
def test_bad_options_name_the_layer(layer: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkError, match=r"layer 'bad'") as info:
        _backend("theano", {"bad": {**layer, "is_output_layer": True}}, extern=EXTERN).forward_step(BATCH, "bad")
    assert message in str(info.value)
