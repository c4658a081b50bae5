"""The manual's NetworkHiddenLayer attention_vector on both backends, against NumPy: one attention over a base
layer per seq, with the cost of a target position."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import _both, _forward, one_batch  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
EXTERN = {"data": DataSpec(4), "pos": DataSpec(6, sparse=True)}
LENS, POS = [6, 3, 4], [4, 0, 2]
NET = {
    "enc": {"class": "hidden", "n_out": 3, "activation": "tanh"},
    "state": {"class": "reduce", "mode": "max", "axes": "T"},
    "vec": {"class": "attention_vector", "base": "enc", "template": 2, "target": "pos", "from": "state",
            "is_output_layer": True},
}


def _batch():
    rng = np.random.RandomState(8)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 4).astype("f"), "pos": np.array([k], "int32")})
            for i, (n, k) in enumerate(zip(LENS, POS))]
    return one_batch(seqs, EXTERN)


def test_attention_vector() -> None:
    batch = _batch()
    backends = _both(NET, extern=EXTERN)
    p = backends[0].get_param_values()
    x = batch.data["data"]
    enc, _ = _forward(backends, "enc", batch)
    out, lens = _forward(backends, "vec", batch)
    np.testing.assert_array_equal(lens, [1, 1, 1])
    cost = 0.0
    for b, n in enumerate(LENS):
        keys = np.tanh(enc[b, :n] @ p["vec/W_base"] + p["vec/b_base"])
        query = np.tanh(x[b, :n].max(0) @ p["vec/W_state"] + p["vec/b_state"])
        sim = np.exp(-((keys - query) ** 2).sum(-1) / 2)
        alpha = sim / sim.sum()
        np.testing.assert_allclose(out[b, 0], alpha @ enc[b, :n], rtol=1e-5, atol=1e-6)
        cost -= np.log(alpha[POS[b]])
    for backend in backends:
        result = backend.eval_step(batch)
        np.testing.assert_allclose(result.losses["vec"], cost, rtol=1e-4)
        assert result.frames["vec"] == 3
