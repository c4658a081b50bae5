"""More of the manual's NetworkHiddenLayer classes on both backends, against NumPy: embedding, rbf, linear_comb,
polynomial_expansion, random_selection, hidden_shared, trunc, time_blur, time_concat."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import CLS, MASK, SEQ_LENS, X, _both, _forward  # noqa: E402
from test_theano_era_layers import _sig  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
NET = {
    "emb": {"class": "embedding", "n_out": 2, "from": ["data", "data:classes"]},
    "rbf": {"class": "rbf", "n_out": 3},
    "comb": {"class": "linear_comb", "n_out": 2, "n_comb": 2, "activation": "tanh"},
    "poly": {"class": "polynomial_expansion", "n_degree": 3},
    "pick": {"class": "random_selection", "n_out": 2},
    "blur": {"class": "time_blur", "t_start": -1, "t_end": 2, "t_step": 1, "distribution": "triangle"},
    "h": {"class": "hidden", "n_out": 2, "activation": "tanh"},
    "shared": {"class": "hidden_shared", "base": "h", "activation": "tanh", "from": "blur"},
    "trunc": {"class": "trunc", "n_trunc": 3, "is_output_layer": True},
    "cat": {"class": "time_concat", "from": ["trunc", "data"], "is_output_layer": True},
}
DIMS = {"emb": 2, "rbf": 3, "comb": 2, "poly": 12, "pick": 2, "blur": 4, "shared": 2}
NET["output"] = {"class": "copy", "from": list(DIMS)}


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each layer's output (the same on both backends), the parameters and trunc's output and lengths."""
    backends = _both(NET)
    params = {k: np.random.RandomState(2).uniform(-1, 1, v.shape).astype("f")
              for k, v in backends[0].get_param_values().items()}
    for backend in backends:
        backend.set_param_values(params)
    out, _ = _forward(backends, "output")
    ends = np.cumsum(list(DIMS.values()))
    outs = {name: out[..., end - dim : end] for (name, dim), end in zip(DIMS.items(), ends)}
    return outs, params, _forward(backends, "trunc"), _forward(backends, "cat")


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a * MASK[..., None], b * MASK[..., None], rtol=1e-4, atol=1e-5)


def test_feature_maps(outputs) -> None:
    outs, p, _, _ = outputs
    one_hot = np.eye(3, dtype="f")[CLS]
    _close(outs["emb"], _sig(X @ p["emb/W"][:4] + one_hot @ p["emb/W"][4:]))  # no bias, sigmoid as hidden
    dist = ((X[..., :, None] - p["rbf/W"][None, None]) ** 2).sum(2)
    _close(outs["rbf"], np.exp(-_sig(p["rbf/b"]) * dist))
    _close(outs["comb"], np.tanh((X.reshape(*X.shape[:2], 2, 2) * p["comb/W"]).sum(-1) + p["comb/b"]))
    rng = np.random.RandomState(1234)  # RETURNN's seed for the permutations
    second = X[..., rng.permutation(4)] * X
    third = second[..., rng.permutation(4)] * X
    _close(outs["poly"], np.concatenate([X, second, third], -1))
    _close(outs["pick"], X[..., np.random.RandomState(1234).permutation(4)[:2]])
    assert not any(key.startswith("shared/") for key in p)  # hidden_shared uses h's parameters
    _close(outs["shared"], np.tanh(outs["blur"] @ p["h/W"] + p["h/b"]))


def test_trunc_and_time_blur(outputs) -> None:
    outs, _, (trunc, lens), (cat, cat_lens) = outputs
    np.testing.assert_array_equal(lens, np.minimum(SEQ_LENS, 3))
    np.testing.assert_allclose(trunc, (X * MASK[..., None])[:, :3], atol=1e-6)
    np.testing.assert_array_equal(cat_lens, lens + SEQ_LENS)  # time_concat: trunc's frames, then all of data's
    for b, n in enumerate(SEQ_LENS):
        expected = np.concatenate([X[b, : lens[b]], X[b, :n]])
        np.testing.assert_allclose(cat[b, : len(expected)], expected, atol=1e-6)
        assert not cat[b, len(expected) :].any()
    expected = np.zeros_like(X)
    weights = {-1: 1.0, 0: 2.0, 1: 1.0}  # triangle over the offsets -1, 0, 1
    for b, n in enumerate(SEQ_LENS):
        for t in range(n):
            near = {o: w for o, w in weights.items() if 0 <= t - o < n}
            expected[b, t] = sum(w * X[b, t - o] for o, w in near.items()) / sum(near.values())
    _close(outs["blur"], expected)
