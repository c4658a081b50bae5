"""Shapes a rec sub-network knows before the first step: a sub-layer read as ``prev:`` without ``n_out`` takes the
shape its class states from its options and sources (``Layer.out_shape_from_opts``, RETURNN's templates)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")

from test_rec_subnet import _backend  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402
from returnn_core.frontend.layers.attention import GaussWindowAttentionLayer  # noqa: E402
from returnn_core.frontend.layers.basic import CombineLayer, CopyLayer, LinearLayer  # noqa: E402
from returnn_core.frontend.layers.time_axis import CombineDimsLayer  # noqa: E402

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}
INNER, WINDOW = 3, 4


def _unknown(name: str) -> None:
    return None


def test_classes_state_their_shape_from_options_and_sources() -> None:
    assert LinearLayer.out_shape_from_opts({"n_out": 7}, [None], _unknown) == (7,)
    assert CopyLayer.out_shape_from_opts({}, [(2,), (3,)], _unknown) == (5,)
    assert CopyLayer.out_shape_from_opts({}, [(2,), None], _unknown) is None
    assert CombineLayer.out_shape_from_opts({"kind": "add"}, [None, (1,), (6,)], _unknown) == (6,)
    assert CombineDimsLayer.out_shape_from_opts({"axes": "non_spatial"}, [(3, 5)], _unknown) == (15,)
    gauss = {"base": "base:enc", "window_size": 4, "inner_size": 3}
    assert GaussWindowAttentionLayer.out_shape_from_opts(gauss, [(1,)], {"base:enc": (20,)}.get) == (3, 20)
    assert LinearLayer.out_shape_from_opts({}, [(3,)], _unknown) is None


def _gauss(base: np.ndarray, n: int, t: float) -> np.ndarray:
    """(INNER, D): RETURNN's Gauss windows (std 1, inner step 0.5) around t over the first n frames of base."""
    idx = np.round(t) - WINDOW // 2 + np.arange(WINDOW)
    frames = base[np.clip(idx, 0, n - 1).astype(int)]  # (W, D)
    offsets = (np.arange(INNER) - (INNER - 1) / 2) * 0.5
    weights = np.exp(-(idx[:, None] - (t + offsets[None, :])) ** 2 / 2) / np.sqrt(2 * np.pi)  # (W, I)
    return weights.T @ frames


def test_prev_combine_dims_of_a_gauss_window_has_its_inner_times_base_dim() -> None:
    """The manual's attention-copy decoder: 'dt' reads prev:att_comb, whose dim only the classes' shapes tell."""
    net = {"enc": {"class": "copy", "from": "data"},
           "output": {"class": "rec", "from": "data", "unit": {
               "dt": {"class": "linear", "activation": "sigmoid", "n_out": 1, "from": ["prev:att_comb"]},
               "t": {"class": "combine", "kind": "add", "n_out": 1, "from": ["prev:t", "dt"]},
               "att": {"class": "gauss_window_attention", "window_size": WINDOW, "inner_size": INNER,
                       "from": ["t"], "base": "base:enc"},
               "att_comb": {"class": "combine_dims", "axes": "non_spatial", "from": ["att"]},
               "output": {"class": "copy", "from": ["att_comb"]}}}}
    backend = _backend(net, extern=EXTERN, train=False)
    params = backend.get_param_values()
    w, b = params["output/rec/dt/W"], params["output/rec/dt/b"]
    assert w.shape == (INNER * 4, 1)
    rng = np.random.RandomState(5)
    seqs = [DatasetSeq(i, f"s{i}", {"data": rng.randn(n, 4).astype("f"), "classes": np.zeros(n, "int32")})
            for i, n in enumerate([5, 3])]
    batch = next(iter(generate_batches(seqs, batch_size=100, max_seqs=2))).to_data(ExternData(EXTERN))
    out, lens = backend.forward_step(batch, "output")
    assert out.shape[-1] == INNER * 4
    x = batch.data["data"]
    for i, n in enumerate(lens):
        comb, t = np.zeros(INNER * 4), 0.0
        for step in range(n):
            t = t + float(1 / (1 + np.exp(-(comb @ w + b)))[0])
            comb = _gauss(x[i, :n], n, t).reshape(-1)
            np.testing.assert_allclose(out[i, step], comb, rtol=1e-4, atol=1e-5)


def test_a_sub_layer_with_a_target_and_no_loss_takes_the_targets_dim() -> None:
    """The manual's attention demo: the loss is on the rec layer, its unit's softmax names only the target."""
    net = {"output": {"class": "rec", "from": "data", "target": "classes", "loss": "ce", "unit": {
        "embed": {"class": "linear", "activation": None, "n_out": 2, "from": ["data:classes"]},
        "output": {"class": "softmax", "from": ["prev:embed", "data:source"], "target": "classes"}}}}
    backend = _backend(net, extern=EXTERN)
    assert backend.get_param_values()["output/rec/output/W"].shape == (2 + 4, 3)
    rng = np.random.RandomState(2)
    seqs = [DatasetSeq(0, "s0", {"data": rng.randn(4, 4).astype("f"), "classes": np.array([0, 2, 1, 1], "int32")})]
    batch = next(iter(generate_batches(seqs, batch_size=100, max_seqs=1))).to_data(ExternData(EXTERN))
    res = backend.eval_step(batch)
    assert res.frames["output"] == 4 and 0 < res.losses["output"] < 4 * 10
