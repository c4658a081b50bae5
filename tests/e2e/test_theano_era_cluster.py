"""Theano-era ``clustersubnet`` on both backends: each seq runs through its cluster's copy of the subnetwork."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import _backend, _both, _forward, one_batch, outputs_marked  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec, ExternData  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True), "cluster_idx": DataSpec(2, sparse=True)}
SUBNET = {"fw1": {"class": "forward", "n_out": 5, "activation": "tanh"},
          "output": {"class": "forward", "n_out": 3, "activation": "identity", "from": ["fw1"]}}
NET = {
    "fw0": {"class": "forward", "n_out": 6},
    # the 2017 demo's way of reading the cluster index: a source layer of no sources
    "cluster": {"class": "source", "data_key": "cluster_idx", "dtype": "int32", "n_out": 2, "from": "null",
                "sparse": True},
    "sub": {"class": "clustersubnet", "n_out": 3, "subnetwork": SUBNET, "n_clusters": 2, "from": ["fw0", "cluster"]},
}


def _batch(clusters):
    rng = np.random.RandomState(2)
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 4).astype("f"),
                                       "classes": rng.randint(0, 3, n).astype("int32"),
                                       "cluster_idx": np.array([c], "int32")})
            for i, (n, c) in enumerate(zip((6, 4, 2), clusters))]
    return one_batch(seqs, EXTERN)


def _subnet(x, params, prefix):
    def dense(h, layer, act):
        return act(h @ params[f"{prefix}{layer}/W"] + params[f"{prefix}{layer}/b"])
    return dense(dense(x, "fw1", np.tanh), "output", lambda v: v)


def test_each_seq_takes_its_clusters_subnetwork():
    batch = _batch([1, 0, 1])
    backends = _both(outputs_marked(NET), extern=ExternData(EXTERN))
    rng = np.random.RandomState(1)  # one stream: the two copies get different values
    params = {k: rng.uniform(-1, 1, v.shape).astype("f") for k, v in sorted(backends[0].get_param_values().items())}
    for backend in backends:
        backend.set_param_values(params)
    outs = {layer: _forward(backends, layer, batch) for layer in ("fw0", "sub")}
    assert {k for k in params if k.startswith("sub/")} == {
        f"sub/{c}/{layer}/{p}" for c in (0, 1) for layer in ("fw1", "output") for p in ("W", "b")}
    fw0, _ = outs["fw0"]
    sub, lens = outs["sub"]
    assert lens.tolist() == [6, 4, 2]
    for b, cluster in enumerate([1, 0, 1]):
        n = lens[b]
        np.testing.assert_allclose(sub[b, :n], _subnet(fw0[b, :n], params, f"sub/{cluster}/"), rtol=1e-4, atol=1e-5)
        other = _subnet(fw0[b, :n], params, f"sub/{1 - cluster}/")
        assert not np.allclose(sub[b, :n], other, atol=1e-3)


def test_clustersubnet_errors_name_the_layer():
    with pytest.raises(NetworkError, match="layer 'sub'.*cluster index"):
        _backend("tf", outputs_marked({**NET, "sub": {**NET["sub"], "from": ["fw0"]}}), extern=ExternData(EXTERN))
    with pytest.raises(NetworkError, match="layer 'sub'.*load"):
        _backend("tf", outputs_marked({**NET, "sub": {**NET["sub"], "load": "model.hdf"}}), extern=ExternData(EXTERN))
