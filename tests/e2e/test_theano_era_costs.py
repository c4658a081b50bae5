"""More of the manual's NetworkHiddenLayer classes on both backends, against NumPy: the layers with their own cost
or error (errors, detection, loss), the random ones (corruption, random_route, blur) and time_to_batch/
batch_to_time."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, CLS, MASK, SEQ_LENS, X, _backend, _both, _forward  # noqa: E402

from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "probs": {"class": "hidden", "n_out": 3, "activation": "softmax"},
    "err": {"class": "errors", "target": "classes", "from": "probs"},
    "det": {"class": "detection", "label_idx": 1, "target": "classes"},
    "ce": {"class": "loss", "loss": "ce", "from": ["data", "probs"]},
    "copied": {"class": "loss", "loss": "ce", "copy_input": "probs", "from": "data"},
    "tb": {"class": "time_to_batch"},
    "bt": {"class": "batch_to_time", "base": "tb", "from": "tb"},
    "rev": {"class": "reverse"},
    "mix": {"class": "random_route", "p": 0.25, "from": ["data", "rev"]},
    "pick": {"class": "random_route", "test_route": 1, "from": ["data", "rev"]},
    "clipped": {"class": "corruption", "clip": True},
    "box": {"class": "blur", "ctx": 3},
    "empty": {"class": "blur", "p": 0.0},
    "output": {"class": "copy", "from": ["err", "bt", "mix", "pick", "clipped"]},
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ce(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-(np.log(np.take_along_axis(probs, labels[..., None], -1))[..., 0] * MASK).sum())


def test_costs_and_routes() -> None:
    backends = _both(NET)
    p = backends[0].get_param_values()
    probs = _softmax(X @ p["probs/W"] + p["probs/b"])
    wrong = (probs.argmax(-1) != CLS) * MASK
    # theano's forward feeds the targets the batch has, tf's only the inputs (then no error is known: all 0)
    np.testing.assert_array_equal(backends[1].forward_step(BATCH, "err")[0], wrong)
    assert not backends[0].forward_step(BATCH, "err")[0].any()
    det_probs = _softmax(X @ p["det/W"] + p["det/b"])
    hits = (CLS == 1).astype("int64")
    ce_probs = _softmax(np.concatenate([X, probs], -1) @ p["ce/W"] + p["ce/b"])
    copied = _softmax(probs)  # RETURNN's loss layer applies the softmax to what it copies
    for name, want in (("det", det_probs), ("ce", ce_probs), ("copied", copied)):
        got, _ = _forward(backends, name)
        np.testing.assert_allclose(got * MASK[..., None], want * MASK[..., None], rtol=1e-4, atol=1e-5)
    assert not any(key.startswith("copied/") for key in p)
    for backend in backends:
        result = backend.eval_step(BATCH)
        np.testing.assert_allclose(result.errors["err"], wrong.sum())
        np.testing.assert_allclose(result.losses["det"], _ce(det_probs, hits), rtol=1e-4)
        np.testing.assert_allclose(result.errors["det"], ((det_probs.argmax(-1) != hits) * MASK).sum())
        np.testing.assert_allclose(result.losses["ce"], _ce(ce_probs, CLS), rtol=1e-4)
        np.testing.assert_allclose(result.losses["copied"], _ce(copied, CLS), rtol=1e-4)
    x = X * MASK[..., None]
    rev = np.stack([np.concatenate([x[b, :n][::-1], x[b, n:]]) for b, n in enumerate(SEQ_LENS)])
    frames, frame_lens = _forward(backends, "tb")
    assert frames.shape == (X.shape[1] * 3, 1, 4)
    np.testing.assert_array_equal(frame_lens, MASK.T.reshape(-1))
    np.testing.assert_allclose(frames[:, 0], x.transpose(1, 0, 2).reshape(-1, 4), atol=1e-6)
    back, back_lens = _forward(backends, "bt")
    np.testing.assert_array_equal(back_lens, SEQ_LENS)
    np.testing.assert_allclose(back, x, atol=1e-6)
    np.testing.assert_allclose(_forward(backends, "mix")[0], 0.25 * x + 0.75 * rev, atol=1e-5)
    np.testing.assert_allclose(_forward(backends, "pick")[0], rev, atol=1e-6)
    np.testing.assert_allclose(_forward(backends, "clipped")[0], np.clip(x, 0, 1), atol=1e-6)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1)])  # blur p=1: the 3 x 3 box over time and features, zeros outside
    box = sum(padded[:, i : i + x.shape[1], j : j + 4] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(_forward(backends, "box")[0], box * MASK[..., None], rtol=1e-5, atol=1e-6)
    assert not _forward(backends, "empty")[0].any()  # p=0: no ones in the kernel, divided by 1


NOISE_NET = {
    "wide": {"class": "upsample", "factor": 64, "axis": "F"},
    "gauss": {"class": "corruption", "p": 0.5, "from": "wide"},
    "coin": {"class": "corruption", "noise": "binomial", "p": 0.3, "from": "wide"},
    "output": {"class": "copy", "from": ["gauss", "coin"]},
}


@pytest.mark.parametrize("backend_name", ["tf", "theano"])
def test_corruption_noise_statistics(backend_name: str) -> None:
    backend = _backend(backend_name, {k: {**v, "is_output_layer": True} for k, v in NOISE_NET.items()})
    wide = np.repeat(X, 64, axis=-1)
    present = MASK.astype(bool)
    gauss = (backend.forward_step(BATCH, "gauss")[0] - wide)[present]  # 13 frames x 256 features
    assert abs(gauss.mean()) < 0.05 and abs(gauss.std() - 0.5) < 0.05
    coin = (backend.forward_step(BATCH, "coin")[0] - wide)[present]
    np.testing.assert_allclose(np.unique(np.round(coin, 4)), [0.0, 1.0])
    assert abs(coin.mean() - 0.3) < 0.05


@pytest.mark.parametrize("layer, needle", [
    ({"class": "errors"}, "needs 'target'"),
    ({"class": "random_route", "p": [0.5, 0.6], "from": ["data", "data"]}, "sum to 1"),
    ({"class": "loss"}, "needs 'loss'"),
    ({"class": "batch_to_time", "base": "data0"}, "must be a time_to_batch layer"),
])
def test_bad_options_name_the_layer(layer: dict, needle: str) -> None:
    net = {"data0": {"class": "copy"}, "bad": layer, "output": {"class": "copy", "from": "bad"}}
    with pytest.raises(NetworkError, match=needle):
        _backend("theano", net)
