"""The manual's NetworkTwoDLayer 2D LSTMs ``mdlstm`` and ``deep_lstm`` on both backends, against a NumPy version
of RETURNN's CUDA kernel (cell by cell over each image's own size), and a short training where the loss falls."""

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
EXTERN = {"data": DataSpec(2), "sizes": DataSpec(100, sparse=True), "classes": DataSpec(3, sparse=True)}
SIZES = [(3, 4), (2, 3), (4, 2)]  # (height, width) per seq; frame y * width + x is pixel (y, x)
FRAMES = [13, 6, 8]
N = 2
NET = {
    "img": {"class": "1Dto2D", "from": ["data", "data:sizes"]},
    "md4": {"class": "mdlstm", "n_out": N, "from": "img"},
    "md2": {"class": "mdlstm", "n_out": N, "directions": 2, "projection": "concat", "collapse_output": "sum",
            "from": "img"},
    "md1": {"class": "mdlstm", "n_out": N, "directions": 1, "collapse_output": "flatten", "from": "img"},
    "deep": {"class": "deep_lstm", "n_out": N, "depth": 3, "from": "data"},
}


def _batch() -> Any:
    rng = np.random.RandomState(7)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 2).astype("f"), "sizes": np.array(hw, "int32"),
                                       "classes": rng.randint(0, 3, hw[1]).astype("int32")})
            for i, (n, hw) in enumerate(zip(FRAMES, SIZES))]
    return one_batch(seqs, EXTERN)


BATCH = _batch()
X = BATCH.data["data"]


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and seq lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _lstm_2d(img: np.ndarray, p: dict[str, np.ndarray], layer: str, d: int, flip_y: bool, flip_x: bool) -> np.ndarray:
    """RETURNN's 2D LSTM cell by cell on one (height, width, channels) image from the corner the flips name."""
    img = img[::-1] if flip_y else img
    img = img[:, ::-1] if flip_x else img
    h_, w_ = img.shape[:2]
    w, u, v, b = (p[f"{layer}/{k}{d}"] for k in "WUVb")
    c = np.zeros((h_ + 1, w_ + 1, N), "f")  # row/column 0: the zero states before the image
    out = np.zeros((h_ + 1, w_ + 1, N), "f")
    for y in range(h_):
        for x in range(w_):
            z = img[y, x] @ w + b + out[y + 1, x] @ u + out[y, x + 1] @ v
            gi, gf, gl, go = (_sigmoid(z[k * N:(k + 1) * N]) for k in range(4))
            c[y + 1, x + 1] = gi * np.tanh(z[4 * N:]) + gf * gl * c[y, x + 1] + gf * (1 - gl) * c[y + 1, x]
            out[y + 1, x + 1] = go * np.tanh(c[y + 1, x + 1])
    out = out[1:, 1:]
    out = out[::-1] if flip_y else out
    return out[:, ::-1] if flip_x else out


def _image(b: int) -> np.ndarray:
    h, w = SIZES[b]
    return X[b, : h * w].reshape(h, w, -1)


def test_mdlstm_four_directions_averaged(outputs) -> None:
    outs, p = outputs
    y, lens = outs["md4"]
    np.testing.assert_array_equal(lens, [w for _, w in SIZES])
    assert y.shape == (3, 4, 4, N)  # (batch, widest, highest, cells)
    for b, (h, w) in enumerate(SIZES):
        dirs = [_lstm_2d(_image(b), p, "md4", d + 1, fy, fx)
                for d, (fy, fx) in enumerate([(False, False), (True, False), (False, True), (True, True)])]
        expected = np.zeros((4, 4, N), "f")
        expected[:w, :h] = np.mean(dirs, 0).transpose(1, 0, 2)
        np.testing.assert_allclose(y[b], expected, rtol=1e-4, atol=1e-5, err_msg=f"seq {b}")


def test_mdlstm_two_directions_concat_collapsed(outputs) -> None:
    outs, p = outputs
    y, lens = outs["md2"]
    np.testing.assert_array_equal(lens, [w for _, w in SIZES])
    assert y.shape == (3, 4, 2 * N)
    assert "md2/W3" not in p
    for b, (_, w) in enumerate(SIZES):
        dirs = [_lstm_2d(_image(b), p, "md2", 1, False, False), _lstm_2d(_image(b), p, "md2", 2, False, True)]
        per_cell = np.stack(dirs, -1).reshape(*dirs[0].shape[:2], 2 * N)  # RETURNN: feature c * directions + d
        np.testing.assert_allclose(y[b, :w], per_cell.sum(0), rtol=1e-4, atol=1e-5, err_msg=f"seq {b}")
        assert not y[b, w:].any()


def test_mdlstm_one_direction_flattened_row_by_row(outputs) -> None:
    outs, p = outputs
    y, lens = outs["md1"]
    np.testing.assert_array_equal(lens, [16] * 3)  # the padded (4, 4) batch image, as RETURNN
    for b, (h, w) in enumerate(SIZES):
        expected = np.zeros((4, 4, N), "f")
        expected[:h, :w] = _lstm_2d(_image(b), p, "md1", 1, False, False)
        np.testing.assert_allclose(y[b], expected.reshape(16, N), rtol=1e-4, atol=1e-5, err_msg=f"seq {b}")


def test_deep_lstm_is_the_last_row_of_a_two_direction_2d_lstm(outputs) -> None:
    outs, p = outputs
    y, lens = outs["deep"]
    np.testing.assert_array_equal(lens, FRAMES)
    for b, n in enumerate(FRAMES):
        img = np.repeat(X[b, :n][None], 3, axis=0)  # depth 3 rows of the frames
        dirs = [_lstm_2d(img, p, "deep", 1, False, False), _lstm_2d(img, p, "deep", 2, False, True)]
        np.testing.assert_allclose(y[b, :n], np.concatenate([d[-1] for d in dirs], -1), rtol=1e-4, atol=1e-5)


def test_initial_bias_opens_the_forget_gate() -> None:
    params = shared_backend("tf", outputs_marked({"img": NET["img"], "md": NET["md4"]}),
                            extern=EXTERN).get_param_values()
    assert sorted(params) == sorted(f"md/{k}{d}" for k in "WUVb" for d in range(1, 5))
    assert params["md/W1"].shape == (2, 5 * N) and params["md/U1"].shape == params["md/V1"].shape == (N, 5 * N)
    np.testing.assert_array_equal(params["md/b2"], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("backend", ["tf", "theano"])
def test_training_lowers_the_loss(backend: str) -> None:
    net = {"img": NET["img"],
           "md": {"class": "mdlstm", "n_out": 4, "directions": 2, "collapse_output": "mean", "from": "img"},
           "output": {"class": "softmax", "loss": "ce", "target": "classes", "n_out": 3, "from": "md"}}
    be = shared_backend(backend, net, train=True, extern=EXTERN, optimizer={"class": "adam"})
    losses = [float(be.train_step(BATCH, 0.05).losses["output"]) for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize(("layer", "message"), [
    ({"class": "mdlstm", "n_out": 2, "directions": 3, "from": "img"}, "directions must be 1, 2 or 4"),
    ({"class": "mdlstm", "n_out": 2, "projection": "max", "from": "img"}, "projection must be"),
    ({"class": "mdlstm", "n_out": 2, "collapse_output": "conv", "from": "img"}, "collapse_output 'conv'"),
    ({"class": "mdlstm", "n_out": 2, "from": "data"}, "needs an image input"),
    ({"class": "deep_lstm", "n_out": 2, "from": "data"}, "needs depth"),
])
def test_bad_options_name_the_layer(layer: dict[str, Any], message: str) -> None:
    net = {"img": NET["img"], "bad": layer}
    with pytest.raises(NetworkError, match=r"layer 'bad'") as info:
        shared_backend("theano", outputs_marked(net), extern=EXTERN).forward_step(BATCH, "bad")
    assert message in str(info.value)
