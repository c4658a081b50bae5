"""The nativelstm units of both backends, found only through the registry, agree with each other."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("returnn_native")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("pytensor")

from returnn_core.paths import cache_dir  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

if "base_compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
    os.environ["PYTENSOR_FLAGS"] = ",".join(
        f for f in (os.environ.get("PYTENSOR_FLAGS", ""), f"base_compiledir={cache_dir('pytensor')}") if f
    )


@pytest.mark.parametrize("direction", [1, -1])
def test_tf_and_theano_units_agree(direction: int) -> None:
    import pytensor
    import pytensor.tensor as pt

    manager = get_plugin_manager()
    tf_unit = manager.rec_units.get("nativelstm", backend="tf")(5, 7)
    th_unit = manager.rec_units.get("nativelstm", backend="theano")(5, 7)
    assert tf_unit.param_specs() == th_unit.param_specs()
    rng = np.random.default_rng(direction + 10)
    params = {k: (rng.normal(size=s.shape) * 0.4).astype(np.float32) for k, s in tf_unit.param_specs().items()}
    x = rng.normal(size=(3, 6, 5)).astype(np.float32)
    mask = (np.arange(6)[None] < np.array([6, 4, 1])[:, None]).astype(np.float32)

    tf_params = {k: tf.constant(v) for k, v in params.items()}
    with tf.GradientTape() as tape:
        tape.watch(tf_params["W_re"])
        y_tf, (h_tf, c_tf) = tf_unit(tf_params, tf.constant(x), tf.constant(mask), direction=direction)
        loss = tf.reduce_sum(y_tf**2) + tf.reduce_sum(c_tf)
    dw_tf = tape.gradient(loss, tf_params["W_re"])

    th_params = {k: pytensor.shared(v, name=k) for k, v in params.items()}
    xs, ms = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
    y_th, (h_th, c_th) = th_unit(th_params, xs, ms, direction=direction)
    dw_th = pytensor.grad((y_th**2).sum() + c_th.sum(), th_params["W_re"])
    outs = pytensor.function([xs, ms], [y_th, h_th, c_th, dw_th], mode="CVM")(x, mask)

    for got, want in zip(outs, (y_tf, h_tf, c_tf, dw_tf)):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)


def test_theano_backend_blstm_runs_on_the_pair_op() -> None:
    """A BLSTM as the theano backend builds it (two rec layers, directions 1 and -1 on the same source) compiles to
    one forward and one gradient pair op, its directions running at once (PyTensor runs ops one by one)."""
    from returnn_native.pytensor_ops import NativeLstmOp, NativeLstmPairOp

    from returnn_core.config import Config
    from returnn_core.datasets import DataSpec, ExternData
    from returnn_core.log import Log
    from returnn_core.network import resolve_network

    manager = get_plugin_manager()
    net = {"fw": {"class": "rec", "unit": "nativelstm", "n_out": 4, "direction": 1},
           "bw": {"class": "rec", "unit": "nativelstm", "n_out": 4, "direction": -1},
           "output": {"class": "softmax", "from": ["fw", "bw"], "loss": "ce"}}
    extern = ExternData({"data": DataSpec(3), "classes": DataSpec(2, sparse=True)})
    backend = manager.backends.get("theano")(Config({"optimizer": {"class": "sgd"}}), manager, Log(0))
    backend.build(resolve_network(net, extern.keys()), extern, train=True)
    ops = [node.op for node in backend._train_function().fn.maker.fgraph.toposort()]
    pairs = sorted(op.single.__name__ for op in ops if isinstance(op, NativeLstmPairOp))
    assert pairs == ["NativeLstmGradOp", "NativeLstmOp"]
    assert not any(isinstance(op, NativeLstmOp) or type(op).__name__ == "NativeLstmGradOp" for op in ops)
